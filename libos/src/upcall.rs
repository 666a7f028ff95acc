//! The upcall handler: page faults, revocation requests (answered by `reclaim`) and slice
//! ends, at EL0.
//!
//! The kernel starts `exo_upcall_entry` on the private exception stack with the kind and
//! the fault's details in registers; a fault comes as `FAULT` with the raw syndrome, which
//! is read here (`exo_abi::upcall::classify`). Copy-on-write faults and faults in lazy regions are
//! handled here; anything else goes to the hook the program installed, or ends the
//! environment with a report. The handler never allocates: the heap may be mid-update in
//! the code it interrupted.

use exo_abi::pte::{bits, Pte};
use exo_abi::{upcall, EnvId, Error};

use crate::private::Private;
use crate::vm::{self, COW, PAGE, RW};
use crate::{println, sys};

pub(crate) const STACK_SIZE: usize = 32 * 1024;

/// Whole pages (`fork` gives the child zeroed ones, and copies no page it shares with other
/// statics), so page-aligned.
#[repr(C, align(4096))]
pub(crate) struct Stack([u8; STACK_SIZE]);

#[unsafe(link_section = ".private.stacks")]
pub(crate) static UPCALL_STACK: Private<Stack> = Private::new(Stack([0; STACK_SIZE]));

/// What a hook learns about an upcall: for a fault, `kind` and `arg` are the syndrome's
/// reading ([`upcall::classify`]), never `FAULT`.
#[derive(Clone, Copy, Debug)]
pub struct Upcall {
    pub kind: u64,
    pub esr: u64,
    pub far: u64,
    pub pc: u64,
    pub arg: u64,
}

/// Called for upcalls the libOS does not handle itself; returns true if it handled it
/// (then the interrupted code resumes). Must not allocate.
pub type Hook = fn(&Upcall) -> bool;

#[unsafe(link_section = ".private")]
static HOOK: Private<Option<Hook>> = Private::new(None);

pub fn set_hook(hook: Option<Hook>) {
    // SAFETY: single-threaded; the handler only reads HOOK, and cannot run during this
    // store (no fault can happen in it).
    unsafe { *HOOK.get() = hook };
}

pub fn stack_top() -> u64 {
    UPCALL_STACK.get() as u64 + STACK_SIZE as u64
}

/// The upcall stack's bytes, `(start, end)` (dead whenever no upcall runs: `fork` skips it).
pub(crate) fn stack() -> (u64, u64) {
    (UPCALL_STACK.get() as u64, stack_top())
}

/// Registers this environment's handler with the kernel.
pub fn register() -> Result<(), Error> {
    sys::env_set_upcall(exo_abi::EnvId::SELF, entry_address(), stack_top(), false)
}

pub fn entry_address() -> u64 {
    exo_upcall_entry as *const () as u64
}

unsafe extern "C" {
    fn exo_upcall_entry();
}

#[cfg(target_os = "none")]
core::arch::global_asm!(
    ".section .text.exo_upcall_entry, \"ax\"",
    ".global exo_upcall_entry",
    "exo_upcall_entry:",
    // The kernel starts the handler with x29 = x30 = 0 (a clean frame-pointer chain), and
    // the dispatch never returns: a branch is all it takes.
    "    b exo_upcall_dispatch",
);

/// Every upcall starts here. The common one, a data abort that none of the libOS's own
/// questions claims, goes to the program's hook at once; the rest take [`dispatch`].
#[unsafe(no_mangle)]
extern "C" fn exo_upcall_dispatch(kind: u64, esr: u64, far: u64, pc: u64, arg: u64) -> ! {
    // The kernel hands over a fault's syndrome as it is; its kind is read here.
    if kind == upcall::FAULT {
        if let Some(write) = upcall::data_abort(esr) {
            if only_the_hooks(esr, far, write == 1) {
                to_hook(esr, far, pc, write)
            }
        }
    }
    dispatch(kind, esr, far, pc, arg)
}

/// The hook's answer to a data abort: resume, or end the environment.
#[inline(always)]
fn to_hook(esr: u64, far: u64, pc: u64, write: u64) -> ! {
    let u = Upcall { kind: upcall::DATA_ABORT, esr, far, pc, arg: write };
    // SAFETY: read of a function pointer only this module writes.
    if unsafe { *HOOK.get() }.is_some_and(|h| h(&u)) {
        sys::upcall_resume();
    }
    unhandled(&u)
}

/// Whether a data abort at `far` is one `dispatch` would hand straight to the hook: no
/// stock to take (`reclaim`), not a copy-on-write page's first write, not in a lazy region,
/// not an owed stack page, not in a server's grant window. Each test is the quick one its
/// module answers first, so a `false` only means "ask `dispatch`".
#[inline(always)]
fn only_the_hooks(esr: u64, far: u64, write: bool) -> bool {
    crate::reclaim::nothing_to_take_stock_of()
        && vm::plain_fault(far, write)
        && !crate::owed::may_owe(esr)
        && !crate::ipc::in_grant_window(far)
}

/// Every upcall [`exo_upcall_dispatch`] does not answer at once, in full.
#[inline(never)]
fn dispatch(kind: u64, esr: u64, far: u64, pc: u64, arg: u64) -> ! {
    let (kind, arg) = if kind == upcall::FAULT { upcall::classify(esr) } else { (kind, arg) };
    let u = Upcall { kind, esr, far, pc, arg };
    // SAFETY: read of a function pointer only this module writes.
    let hook = unsafe { *HOOK.get() };
    // A program's hook may answer revocation itself; otherwise the libOS gives back what
    // it can drop (`reclaim`), and at every upcall it takes stock of forced repossessions.
    if kind == upcall::REVOKE && !hook.is_some_and(|h| h(&u)) {
        crate::reclaim::on_revoke(arg);
    }
    crate::reclaim::on_upcall();
    // The address-space state is taken once for both questions (the common fault asks both).
    let abort = kind == upcall::DATA_ABORT || kind == upcall::INSTRUCTION_ABORT;
    // While the interrupted code is inside `vm` it has no answers (`None`): only a stack
    // page owed to a forked child is mapped then, which needs no `vm` (`owed`).
    let (cow, lazy) = if abort {
        vm::fault_facts(far, kind == upcall::DATA_ABORT && arg == 1).unwrap_or((false, false))
    } else {
        (false, false)
    };
    let handled = match kind {
        upcall::DATA_ABORT if cow => copy_on_write(far).is_ok(),
        upcall::DATA_ABORT | upcall::INSTRUCTION_ABORT if lazy => {
            let cache = crate::reclaim::in_cache_region(far);
            if cache {
                crate::reclaim::note_cache_fault(); // (if it cannot be mapped, the program ends)
            }
            map_fresh_and_resume(far & !(PAGE - 1), if cache { vm::DROPPABLE } else { 0 })
        }
        // A stack page a forked child is owed (a level-3 translation fault: nothing mapped
        // there), or a server's grant window, its caller's grant withdrawn mid-call (`ipc`).
        upcall::DATA_ABORT => crate::owed::fault_in(far, esr) || crate::ipc::on_grant_fault(far),
        _ => false,
    };
    let hooked = kind != upcall::REVOKE && hook.is_some_and(|h| h(&u));
    if handled || hooked || kind == upcall::SLICE_END || kind == upcall::REVOKE {
        sys::upcall_resume();
    }
    unhandled(&u)
}

/// Maps a zeroed frame at `va` (with software bits `sw`) and resumes, in one kernel entry;
/// false if it cannot.
fn map_fresh_and_resume(va: u64, sw: u64) -> bool {
    let Ok(pa) = sys::frame_alloc(EnvId::SELF, None) else { return false };
    vm::map_and_resume(va, Pte::user_page(pa, RW).0 | sw);
    let _ = sys::frame_free(EnvId::SELF, pa);
    false
}

/// The end of an environment whose exception nobody handled (out of line: the common
/// upcalls do not pay its stack frame).
#[cold]
#[inline(never)]
fn unhandled(u: &Upcall) -> ! {
    println!(
        "env {:#x}: unhandled {} at pc {:#x}, address {:#x} (ESR {:#x})",
        vm::me().0,
        name(u.kind),
        u.pc,
        u.far,
        u.esr
    );
    sys::exit(exo_abi::killed_status(u.kind));
}

/// An exception kind in words.
pub fn name(kind: u64) -> &'static str {
    match kind {
        upcall::DATA_ABORT => "data abort",
        upcall::INSTRUCTION_ABORT => "instruction abort",
        upcall::ALIGNMENT => "alignment fault",
        upcall::UNDEFINED => "undefined instruction",
        upcall::BREAKPOINT => "breakpoint",
        _ => "exception",
    }
}

/// A frame of this environment's for the handler, retrying briefly when memory is short (a
/// revocation elsewhere may free some).
pub(crate) fn alloc_frame() -> Result<u64, Error> {
    let mut tries = 0;
    loop {
        match sys::frame_alloc(EnvId::SELF, None) {
            Ok(pa) => return Ok(pa),
            Err(Error::NoMemory) if tries < 50 => {
                tries += 1;
                sys::yield_now();
            }
            Err(e) => return Err(e),
        }
    }
}

/// A write to a copy-on-write page: take it over if nobody else maps the frame and it is
/// ours, otherwise copy it into a new frame. Retries briefly when memory is short (a
/// revocation elsewhere may free some).
pub(crate) fn copy_on_write(far: u64) -> Result<(), Error> {
    let va = far & !(PAGE - 1);
    let old = Pte(vm::entry(va));
    let writable = (old.0 & !(COW | bits::AP_RO)) | bits::UXN;
    let me = vm::me();
    if vm::frame_entry(old.addr()).is_some_and(|f| f.owner == me.0 && f.maps == 1) {
        return vm::map(va, writable);
    }
    let new = alloc_frame()?;
    // SAFETY: `va` maps the old frame readable; nothing writes it meanwhile.
    vm::fill_frame(new, |page| page.copy_from_slice(unsafe { crate::process::page_at(va) }))?;
    vm::map(va, (writable & !bits::ADDR_MASK) | new)?;
    if vm::frame_entry(old.addr()).is_some_and(|f| f.owner == me.0) {
        crate::process::orphaned(old.addr()); // a child still maps it
    }
    Ok(())
}
