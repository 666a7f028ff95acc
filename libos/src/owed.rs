//! Stack pages owed: pages of a stack that `fork` gave the child no frame for, mapped on
//! first touch.
//!
//! A forked child's main stack below the saved stack pointer, and its call stack (`ipc`),
//! hold nothing it will read: rather than a zeroed frame each up front, `fork` leaves them
//! unmapped and records them here as *owed*. A fault on an owed page is answered by the
//! upcall handler with a zeroed frame, set by table and index (`TableSetAt`), without the
//! address-space state (`vm::with` must not be re-entered, and a stack fault can happen
//! inside it); the page stops being owed. A page that is not owed and not mapped was taken
//! (a forced repossession): a fault there still ends the program, as for any lost page.
//!
//! The kernel does not fault pages in for system calls (`uaccess` refuses an unmapped
//! page), so the wrappers in `sys` that pass the kernel a buffer first touch the owed pages
//! it covers ([`touch`]); a ring the kernel writes later (`net_bind`) likewise.
//!
//! The upcall stack is never owed: a fault in the handler is fatal. Nor are the child's
//! boot stack and the bookkeeping `fork` zeroes (`vm::unread_by_child`): the child's own
//! start uses them before it can take a fault (`process::child_start`).

use exo_abi::pte::{index, Pte};
use exo_abi::EnvId;

use crate::private::Private;
use crate::sys;
use crate::vm::{self, PAGE, RW};

/// One stretch of owed pages: page `base + i * PAGE` is owed if bit `i` of `mask` is set;
/// all of them in the level-3 table `l3` (one 2 MiB region). `mask` 0: nothing owed.
#[repr(C)]
#[derive(Clone, Copy, Default, Debug)]
pub(crate) struct Stretch {
    pub base: u64,
    pub l3: u64,
    pub mask: u64,
}

/// The stretches: the main stack's, then the call stack's.
pub(crate) type Owed = [Stretch; 2];

#[unsafe(link_section = ".private")]
static OWED: Private<Owed> = Private::new([Stretch { base: 0, l3: 0, mask: 0 }; 2]);

/// What is owed now.
pub(crate) fn get() -> Owed {
    // SAFETY: a read of this environment's own state; the handler changes it only at a
    // fault, which cannot happen during this read (`.private` is always mapped).
    unsafe { OWED.get().read_volatile() }
}

/// Sets what is owed: a forked child, at its start, before it touches either stack.
pub(crate) fn set(owed: Owed) {
    // SAFETY: as in `get`: nothing owed is touched (so no fault taken) during this store.
    unsafe { OWED.get().write_volatile(owed) }
}

/// A stretch for the pages wholly inside `[start, end)`, all of them set in `mask`, if there
/// are at most 64 and they lie in one 2 MiB region (else `None`: they cannot be owed).
pub(crate) fn stretch((start, end): (u64, u64)) -> Option<Stretch> {
    let (base, top) = (start.next_multiple_of(PAGE), end & !(PAGE - 1));
    let one_region = top > base && base & !(vm::REGION - 1) == (top - 1) & !(vm::REGION - 1);
    (one_region && top - base <= 64 * PAGE).then(|| Stretch { base, l3: 0, mask: mask(base, start, end) })
}

/// The bits, in a stretch from `base`, of the pages wholly inside `[lo, hi)` (which lies
/// within the stretch's 64 pages).
pub(crate) fn mask(base: u64, lo: u64, hi: u64) -> u64 {
    let (mut page, top) = (lo.next_multiple_of(PAGE), hi & !(PAGE - 1));
    let mut m = 0;
    while page < top {
        m |= 1 << ((page - base) / PAGE);
        page += PAGE;
    }
    m
}

impl Stretch {
    /// The bit of page `va` in `mask`, if the stretch covers it.
    pub fn bit(&self, va: u64) -> Option<u64> {
        let i = va.wrapping_sub(self.base) / PAGE;
        (i < 64).then(|| 1 << i)
    }
}

/// From the upcall handler, for a data abort at `va` with syndrome `esr`: if it is a
/// level-3 translation fault (nothing mapped) on an owed page, map a zeroed frame there and
/// resume (the page is no longer owed); false if it is not owed or could not be mapped.
/// Costs other faults two loads while nothing is owed.
#[inline]
pub(crate) fn fault_in(va: u64, esr: u64) -> bool {
    may_owe(esr) && fault_in_owed(va)
}

/// Whether a fault with syndrome `esr` may be on an owed page: a level-3 translation fault
/// while some page is owed ([`fault_in`]'s quick test).
#[inline(always)]
pub(crate) fn may_owe(esr: u64) -> bool {
    // SAFETY: this environment's own state, which only this handler and a forked child's
    // start (before any fault on an owed page) write; the reference ends before either.
    let o = unsafe { &*OWED.get() };
    o[0].mask | o[1].mask != 0 && esr & 0x3f == 0x07
}

#[cold]
#[inline(never)]
fn fault_in_owed(va: u64) -> bool {
    let mut owed = get();
    for k in 0..owed.len() {
        let s = owed[k];
        let Some(bit) = s.bit(va).filter(|b| s.mask & b != 0) else { continue };
        let Ok(pa) = crate::upcall::alloc_frame() else { return false };
        owed[k].mask &= !bit;
        set(owed); // before the resume, which does not come back once the page is mapped
        sys::upcall_resume_mapping(s.l3, index(va, 3) as u64, Pte::user_page(pa, RW).0);
        let _ = sys::frame_free(EnvId::SELF, pa);
        owed[k].mask |= bit; // still owed: the page was not mapped
        set(owed);
        return false;
    }
    false
}

/// Makes sure no page of `[ptr, ptr + len)` is owed, touching those that are (a fault each
/// maps it): before the kernel reads or writes the range for a system call.
#[inline]
pub(crate) fn touch(ptr: u64, len: u64) {
    let owed = get();
    if owed[0].mask | owed[1].mask == 0 {
        return;
    }
    touch_slow(owed, ptr, len);
}

#[cold]
#[inline(never)]
fn touch_slow(owed: Owed, ptr: u64, len: u64) {
    let end = ptr.saturating_add(len);
    for s in owed {
        let mut mask = s.mask;
        while mask != 0 {
            let page = s.base + u64::from(mask.trailing_zeros()) * PAGE;
            mask &= mask - 1;
            if page < end && page + PAGE > ptr {
                load(page);
            }
        }
    }
}

/// Reads a byte at `va`, an owed page of this environment's (which the fault maps).
#[cfg(target_os = "none")]
fn load(va: u64) {
    // SAFETY: `va` is an owed page: part of a stack of this program's, which the upcall
    // handler maps with a zeroed frame when the load faults. The load goes through no Rust
    // reference (no aliasing), writes nothing, and its value is dropped.
    unsafe {
        core::arch::asm!("ldrb {t:w}, [{p}]", p = in(reg) va, t = out(reg) _, options(nostack, readonly))
    };
}
#[cfg(not(target_os = "none"))]
fn load(_va: u64) {}
