//! The kernel heap: a buddy allocator over a fixed run of frames taken at boot.
//!
//! The kernel allocates little (it has no per-file or per-process caches); the heap exists
//! for the occasional variable-sized table. It is a `Global`, not a lock: see `cell.rs`.

use core::alloc::{GlobalAlloc, Layout};
use core::ptr::{null_mut, NonNull};

use buddy_system_allocator::Heap;

use crate::cell::Global;

struct KernelHeap(Global<Heap<32>>);

// SAFETY: `alloc` hands out blocks the buddy heap owns exclusively, sized and aligned as
// `layout` asks; `dealloc` returns only blocks `alloc` gave out (GlobalAlloc's contract).
unsafe impl GlobalAlloc for KernelHeap {
    unsafe fn alloc(&self, layout: Layout) -> *mut u8 {
        self.0.with(|h| h.alloc(layout).map_or(null_mut(), |p| p.as_ptr()))
    }

    unsafe fn dealloc(&self, ptr: *mut u8, layout: Layout) {
        if let Some(p) = NonNull::new(ptr) {
            // SAFETY: the caller returns a block this heap allocated with this layout.
            self.0.with(|h| unsafe { h.dealloc(p, layout) });
        }
    }
}

#[global_allocator]
static HEAP: KernelHeap = KernelHeap(Global::new(Heap::new()));

/// Zeroes `len` bytes of kernel memory at `va` (mapped, owned by the caller).
pub fn zero(va: u64, len: u64) {
    // SAFETY: the caller passes memory it owns, mapped read-write.
    unsafe { core::ptr::write_bytes(va as *mut u8, 0, len as usize) };
}

/// Gives the heap `[va, va + size)`.
///
/// # Safety
/// The range must be mapped read-write kernel memory that nothing else uses, for good.
pub unsafe fn init(va: u64, size: u64) {
    // SAFETY: the caller hands over exclusive, mapped memory.
    HEAP.0.with(|h| unsafe { h.init(va as usize, size as usize) });
}
