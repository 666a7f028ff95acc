//! The heap: a buddy allocator over pages this libOS maps on demand at `vm::HEAP_BASE`.

#[cfg(target_os = "none")]
use core::alloc::{GlobalAlloc, Layout};
#[cfg(target_os = "none")]
use core::ptr::NonNull;

#[cfg(target_os = "none")]
use buddy_system_allocator::Heap;
#[cfg(target_os = "none")]
use spin::Mutex;

#[cfg(target_os = "none")]
use crate::vm::{self, HEAP_BASE, HEAP_LIMIT, PAGE, RW};

#[cfg(target_os = "none")]
struct LibosHeap {
    heap: Mutex<(Heap<32>, u64)>,
}

/// Grows by at least this much at a time.
#[cfg(target_os = "none")]
const GROW: u64 = 64 * 1024;

// SAFETY: blocks come from the buddy heap, which hands each out once, sized and aligned as
// asked; memory is mapped before it is added to the heap.
#[cfg(target_os = "none")]
unsafe impl GlobalAlloc for LibosHeap {
    unsafe fn alloc(&self, layout: Layout) -> *mut u8 {
        let mut h = self.heap.lock();
        loop {
            if let Ok(p) = h.0.alloc(layout) {
                return p.as_ptr();
            }
            let want = (layout.size() as u64 + layout.align() as u64).next_multiple_of(PAGE).max(GROW);
            let top = h.1;
            if top + want > HEAP_LIMIT {
                return core::ptr::null_mut();
            }
            let mut va = top;
            while va < top + want {
                if vm::map_new(va, RW).is_err() {
                    break;
                }
                va += PAGE;
            }
            if va == top {
                return core::ptr::null_mut();
            }
            // SAFETY: [top, va) was just mapped read-write and belongs to nobody else.
            unsafe { h.0.add_to_heap(top as usize, va as usize) };
            h.1 = va;
        }
    }

    unsafe fn dealloc(&self, ptr: *mut u8, layout: Layout) {
        if let Some(p) = NonNull::new(ptr) {
            // SAFETY: the caller returns a block this heap handed out with this layout.
            unsafe { self.heap.lock().0.dealloc(p, layout) };
        }
    }
}

#[cfg(target_os = "none")]
#[global_allocator]
static HEAP: LibosHeap = LibosHeap { heap: Mutex::new((Heap::new(), HEAP_BASE)) };

/// Nothing to do up front: the heap maps its first pages on first use.
pub fn init() {}

/// Bytes the heap has mapped so far.
#[cfg(target_os = "none")]
pub fn mapped() -> u64 {
    HEAP.heap.lock().1 - HEAP_BASE
}
