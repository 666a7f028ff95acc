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
            // Pages given back to the kernel under memory pressure (`reclaim`) come back
            // first, one at a time, before the heap grows.
            if let Some(p) = crate::reclaim::unpark().and_then(|va| NonNull::new(va as *mut u8)) {
                if vm::map_new(p.as_ptr() as u64, RW).is_ok() {
                    // SAFETY: `p` is a page this heap handed to `reclaim` (a block of the
                    // page's size and alignment), mapped again just now.
                    unsafe { h.0.dealloc(p, page_layout()) };
                    continue;
                }
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
fn page_layout() -> Layout {
    Layout::from_size_align(PAGE as usize, PAGE as usize).unwrap_or(Layout::new::<u8>())
}

/// Takes one free, page-aligned page out of the heap for `reclaim` to give to the kernel;
/// `None` when the heap has none or the interrupted code is inside the allocator.
///
/// It runs in the upcall handler, where a fault is fatal: so only when every page the
/// allocator could write (the heap's, and its own bookkeeping's) is mapped writable now —
/// not copy-on-write after a `fork`.
#[cfg(target_os = "none")]
pub(crate) fn take_free_page() -> Option<u64> {
    // Even taking the lock writes: first the allocator's own pages, then (under the lock,
    // which fixes the heap's extent) the heap's.
    let me = &HEAP as *const LibosHeap as u64;
    let own = (me & !(PAGE - 1))..(me + core::mem::size_of::<LibosHeap>() as u64);
    let mapped_writable = |va: u64| vm::entry(va) & exo_abi::pte::bits::VALID != 0 && writable(va);
    if !own.step_by(PAGE as usize).all(mapped_writable) {
        return None;
    }
    let mut h = HEAP.heap.try_lock()?;
    if !(HEAP_BASE..h.1).step_by(PAGE as usize).all(writable) {
        return None;
    }
    h.0.alloc(page_layout()).ok().map(|p| p.as_ptr() as u64)
}

/// The end of the heap's mapped pages (`HEAP_BASE` before it first grows).
#[cfg(target_os = "none")]
pub(crate) fn top() -> u64 {
    HEAP.heap.lock().1
}

#[cfg(not(target_os = "none"))]
pub(crate) fn top() -> u64 {
    0
}

/// Whether the allocator's writes to `va` cannot fault: the page is mapped writable and
/// not copy-on-write, or not mapped at all (the gaps growth leaves for alignment, and
/// parked pages: the allocator owns no block there, so it never writes them).
#[cfg(target_os = "none")]
fn writable(va: u64) -> bool {
    use exo_abi::pte::bits;
    let e = vm::entry(va);
    e & bits::VALID == 0 || e & (vm::COW | bits::AP_RO) == 0
}

/// Gives back a page [`take_free_page`] took and that is still mapped.
#[cfg(target_os = "none")]
pub(crate) fn return_page(va: u64) {
    if let (Some(mut h), Some(p)) = (HEAP.heap.try_lock(), NonNull::new(va as *mut u8)) {
        // SAFETY: `p` came from `take_free_page`, a block of exactly this layout.
        unsafe { h.0.dealloc(p, page_layout()) };
    }
}

/// The host build has no heap of its own: nothing to take.
#[cfg(not(target_os = "none"))]
pub(crate) fn take_free_page() -> Option<u64> {
    None
}

#[cfg(not(target_os = "none"))]
pub(crate) fn return_page(_: u64) {}

#[cfg(target_os = "none")]
#[global_allocator]
static HEAP: LibosHeap = LibosHeap { heap: Mutex::new((Heap::new(), HEAP_BASE)) };
