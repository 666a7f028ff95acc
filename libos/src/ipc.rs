//! Serving protected control transfers: an environment becomes a server by naming a
//! handler; every call then runs it in a fresh context on a private stack, and its four
//! result words go back to the caller. Clients just use `sys::pct_call`.
//!
//! A call may carry one frame the caller owns (`Call::frame`), which the server may map
//! (read-only, or read-write if `Call::frame_writable`) until the caller takes the grant
//! back with `sys::pct_ungrant`.
//!
//! A grant can also vanish in the middle of a call: when its caller is destroyed, the
//! kernel withdraws the grant and its mappings while the server may still be using them.
//! A server that names the virtual range where it maps granted frames
//! ([`set_grant_window`]) survives that: a fault in the window during a call, at a page
//! that is no longer mapped, is taken as the grant having vanished; the upcall handler
//! backs the page with a zeroed scratch frame of the server's own, the handler runs to its
//! end (its reply goes nowhere: the caller is gone), and the scratch page is unmapped and
//! freed before the server parks again. A fault anywhere else still ends the server.

use exo_abi::pte::bits;
use exo_abi::{EnvId, Error};

use crate::private::Private;
use crate::{sys, vm};

/// One incoming call.
#[derive(Clone, Copy, Debug)]
pub struct Call {
    pub args: [u64; 4],
    pub caller: EnvId,
    /// The granted frame's physical address, or 0.
    pub frame: u64,
    pub frame_writable: bool,
}

/// What answers calls: a function item or a closure that captures nothing (zero-sized,
/// `Copy`), so that each server's entry is made for its handler alone ([`register`]).
pub trait Handler: Fn(&Call) -> [u64; 4] + Copy + 'static {}
impl<H: Fn(&Call) -> [u64; 4] + Copy + 'static> Handler for H {}

const STACK: usize = 32 * 1024;
/// Whole pages (`fork` leaves them all to the child to fault in: `owed`), so page-aligned.
#[repr(C, align(4096))]
struct Stack([u8; STACK]);

#[unsafe(link_section = ".private.stacks")]
static CALL_STACK: Private<Stack> = Private::new(Stack([0; STACK]));
/// The call stack's bytes, `(start, end)` (dead whenever no call runs: `fork` skips it).
pub(crate) fn call_stack() -> (u64, u64) {
    let start = CALL_STACK.get() as u64;
    (start, start + STACK as u64)
}

/// Whether a handler is registered (set once, by `register`).
#[unsafe(link_section = ".private")]
static SERVING: Private<bool> = Private::new(false);

/// Where this server maps granted frames: `(base, pages)`, or `pages` = 0 for nowhere.
#[unsafe(link_section = ".private")]
static GRANT_WINDOW: Private<(u64, u64)> = Private::new((0, 0));
/// The window's pages (bit i: page i) backed by scratch frames during the current call.
#[unsafe(link_section = ".private")]
static SCRATCH: Private<u64> = Private::new(0);

/// Largest window [`set_grant_window`] accepts, in pages (one bit each in `SCRATCH`).
pub const MAX_WINDOW_PAGES: u64 = 64;

/// Names the page-aligned range `[base, base + pages * 4 KiB)` where this server maps the
/// frames its callers grant, so that a grant withdrawn mid-call does not kill it (see the
/// module's notes). `pages` = 0 forgets the window; more than [`MAX_WINDOW_PAGES`] or an
/// unaligned base is refused with `Invalid`.
pub fn set_grant_window(base: u64, pages: u64) -> Result<(), Error> {
    if base & 0xfff != 0 || pages > MAX_WINDOW_PAGES || base.checked_add(pages * 0x1000).is_none() {
        return Err(Error::Invalid);
    }
    // SAFETY: written only from the environment's own code (never from an upcall); the
    // fault handler reads it, and no fault in the window can happen during this store.
    unsafe { *GRANT_WINDOW.get() = (base, pages) };
    Ok(())
}

/// True if, during the current call, part of the grant window had to be backed by scratch
/// frames: the caller's grant vanished, so what was read from it is zeros and what was
/// written to it reaches nobody. A server can check it before committing an effect.
pub fn grant_lost() -> bool {
    // SAFETY: a plain read of a word only this environment writes.
    unsafe { *SCRATCH.get() != 0 }
}

/// Whether this environment serves calls and `far` lies in its grant window
/// ([`on_grant_fault`]'s quick test).
#[inline(always)]
pub(crate) fn in_grant_window(far: u64) -> bool {
    // SAFETY: a read of a word the environment's own code sets, never an upcall.
    let (base, pages) = unsafe { *GRANT_WINDOW.get() };
    // SAFETY: as above; SERVING is set once, by `register`.
    let serving = || unsafe { *SERVING.get() };
    // (One compare for the window: `far` below `base` wraps round past its end. A program
    // with no window, pages 0, is answered by it.)
    far.wrapping_sub(base) < pages * 0x1000 && serving()
}

/// From the upcall handler: a data abort at `far`. If a call is being served, `far` lies
/// in the grant window and its page is unmapped, the grant vanished under the call: back
/// the page with a scratch frame and return true. Otherwise false (not ours to handle).
pub(crate) fn on_grant_fault(far: u64) -> bool {
    if !in_grant_window(far) {
        return false;
    }
    // SAFETY: a read of a word the environment's own code sets, never an upcall.
    let (base, _) = unsafe { *GRANT_WINDOW.get() };
    let page = far & !0xfff;
    if vm::entry(page) & bits::VALID != 0 {
        return false; // mapped, so not a vanished grant (e.g. a write to a read-only one)
    }
    if vm::map_new(page, vm::RW).is_err() {
        return false;
    }
    // SAFETY: the handler interrupted the call context, which does not touch SCRATCH.
    unsafe { *SCRATCH.get() |= 1 << ((page - base) / 0x1000) };
    true
}

/// After a call whose grant vanished: unmaps and frees the scratch pages.
fn drop_scratch() {
    // SAFETY: the handler has returned, so no fault of this call can write SCRATCH now.
    let mask = unsafe { core::mem::take(&mut *SCRATCH.get()) };
    // SAFETY: a read of a word the environment's own code sets, never an upcall.
    let (base, _) = unsafe { *GRANT_WINDOW.get() };
    for i in 0..MAX_WINDOW_PAGES {
        if mask & (1 << i) != 0 {
            let _ = vm::unmap_free(base + i * 0x1000);
        }
    }
}

/// The entry the kernel starts each call at, made for handler `H` alone: x0 the caller,
/// x1-x4 the words, x5 the granted frame and its options; x29 = x30 = 0 (`Sys::PctCall`),
/// so the frame chain ends here. The handler is called directly (inlined, if small), and
/// its result goes back to the caller from registers (x1-x4, where the words came in).
extern "C" fn pct_entry<H: Handler>(caller: u64, a0: u64, a1: u64, a2: u64, a3: u64, frame: u64) -> ! {
    let call = Call {
        args: [a0, a1, a2, a3],
        caller: EnvId(caller as u32),
        frame: frame & !0xfff,
        frame_writable: frame & 1 != 0,
    };
    // SAFETY: `H` is zero-sized and `Copy` (`register` checks the size when it builds
    // this entry), and `register` was given a value of it: a read of zero bytes from a
    // dangling, aligned pointer is a copy of that value.
    let handler: H = unsafe { core::ptr::NonNull::<H>::dangling().read() };
    let [r0, r1, r2, r3] = handler(&call);
    if grant_lost() {
        exo_pct_reply_after_a_lost_grant(0, r0, r1, r2, r3)
    }
    sys::pct_reply([r0, r1, r2, r3])
}

/// The reply of a call whose grant vanished, after its scratch pages go. Out of line, with
/// the words as arguments in x1-x4 (`_` fills x0), the registers the reply takes them in,
/// so that the common reply keeps them where they are (an exported symbol: the unused
/// argument stays).
#[cold]
#[inline(never)]
#[unsafe(no_mangle)]
extern "C" fn exo_pct_reply_after_a_lost_grant(_: u64, r0: u64, r1: u64, r2: u64, r3: u64) -> ! {
    drop_scratch();
    sys::pct_reply([r0, r1, r2, r3])
}

/// Turns this environment into a server: `handler` answers every call from now on.
/// Never returns (the environment's own context is parked for good).
pub fn serve(handler: impl Handler) -> Error {
    if let Err(e) = register(handler) {
        return e;
    }
    sys::pct_wait()
}

/// Registers `handler` for calls without serving yet: from now on a blocking call waits in
/// the kernel until this environment parks (`serve`, or `sys::pct_wait` after `register`),
/// where before it would find no server (`NotFound`). For a server with work to do first
/// (fsd mounting its partitions), so that its clients wait instead of polling.
pub fn register<H: Handler>(handler: H) -> Result<(), Error> {
    const { assert!(size_of::<H>() == 0, "a handler captures nothing: a fn item or such a closure") };
    // (The entry makes its own copies of `handler`: `pct_entry`.)
    let _ = handler;
    // SAFETY: no call can be running yet: calls start only once the context parks, and
    // the entry is registered just below.
    unsafe { *SERVING.get() = true };
    let top = CALL_STACK.get() as u64 + STACK as u64;
    sys::pct_register(pct_entry::<H> as *const () as u64, top)
}
