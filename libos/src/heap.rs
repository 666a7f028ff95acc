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
            // A buddy heap serves a block of 2^k bytes only from a 2^k-aligned run, so grow by
            // a whole aligned block of the size asked for (address space is cheap; only the
            // pages mapped cost frames).
            let block = (layout.size().max(layout.align()) as u64).next_power_of_two().max(GROW);
            let start = h.1.next_multiple_of(block);
            if start + block > HEAP_LIMIT {
                return core::ptr::null_mut();
            }
            let mut va = start;
            while va < start + block {
                if vm::map_new(va, RW).is_err() {
                    break;
                }
                va += PAGE;
            }
            if va == start {
                return core::ptr::null_mut();
            }
            // SAFETY: [start, va) was just mapped read-write and belongs to nobody else.
            unsafe { h.0.add_to_heap(start as usize, va as usize) };
            h.1 = va;
            if va < start + block {
                // Out of memory part way: what was mapped is in the heap; try it once more.
                return h.0.alloc(layout).map_or(core::ptr::null_mut(), |p| p.as_ptr());
            }
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
