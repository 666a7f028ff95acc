//! Serving protected control transfers: an environment becomes a server by naming a
//! handler; every call then runs it in a fresh context on a private stack, and its four
//! result words go back to the caller. Clients just use `sys::pct_call`.
//!
//! A call may carry one frame the caller owns (`Call::frame`), which the server may map
//! (read-only, or read-write if `Call::frame_writable`) until the caller takes the grant
//! back with `sys::pct_ungrant`.

use exo_abi::{EnvId, Error};

use crate::private::Private;
use crate::sys;

/// One incoming call.
#[derive(Clone, Copy, Debug)]
pub struct Call {
    pub args: [u64; 4],
    pub caller: EnvId,
    /// The granted frame's physical address, or 0.
    pub frame: u64,
    pub frame_writable: bool,
}

pub type Handler = fn(&Call) -> [u64; 4];

const STACK: usize = 32 * 1024;
#[repr(C, align(16))]
struct Stack([u8; STACK]);

#[unsafe(link_section = ".private")]
static CALL_STACK: Private<Stack> = Private::new(Stack([0; STACK]));
#[unsafe(link_section = ".private")]
static HANDLER: Private<Option<Handler>> = Private::new(None);

#[cfg(target_os = "none")]
core::arch::global_asm!(
    ".section .text.exo_pct_entry, \"ax\"",
    ".global exo_pct_entry",
    "exo_pct_entry:",
    "    mov x29, xzr",
    "    mov x30, xzr",
    "    bl exo_pct_dispatch",
    "    brk #1",
);

unsafe extern "C" {
    fn exo_pct_entry();
}

#[unsafe(no_mangle)]
extern "C" fn exo_pct_dispatch(a0: u64, a1: u64, a2: u64, a3: u64, caller: u64, frame: u64) -> ! {
    let call = Call {
        args: [a0, a1, a2, a3],
        caller: EnvId(caller as u32),
        frame: frame & !0xfff,
        frame_writable: frame & 1 != 0,
    };
    // SAFETY: HANDLER is written only by `serve`, before any call can arrive.
    let result = match unsafe { *HANDLER.get() } {
        Some(h) => h(&call),
        None => [Error::NoSys as i64 as u64, 0, 0, 0],
    };
    sys::pct_reply(result)
}

/// Turns this environment into a server: `handler` answers every call from now on.
/// Never returns (the environment's own context is parked for good).
pub fn serve(handler: Handler) -> Error {
    // SAFETY: no call can be running yet: the entry is registered just below.
    unsafe { *HANDLER.get() = Some(handler) };
    let top = CALL_STACK.get() as u64 + STACK as u64;
    if let Err(e) = sys::pct_register(exo_pct_entry as *const () as u64, top) {
        return e;
    }
    sys::pct_wait()
}
