//! What the multicore tests (`smptest`, `xcoreyield`) share: children kept to one core,
//! where an environment runs, each core's published ticks, and how long to wait.

use core::sync::atomic::{AtomicU64, Ordering::SeqCst};

use exo_libos::abi::{env_state, EnvId};
use exo_libos::process::{self, Fork};
use exo_libos::sys;
use exo_libos::vm;

/// How long a waiting loop waits before it gives up, in milliseconds of virtual time.
pub const PATIENCE_MS: u64 = 1000;

/// The cores this environment may run on (its affinity).
pub fn my_cores() -> u8 {
    vm::env_info(vm::me()).map_or(0, |e| e.affinity)
}

static SHARED_VA: AtomicU64 = AtomicU64::new(0);

/// The multicore tests' page shared with their forked children, zeroed ([`crate::runner::shared_page`]).
pub fn shared() -> &'static [AtomicU64; 512] {
    crate::runner::shared_page(&SHARED_VA)
}

/// Forks a child that counts in `s[slot]` for ever, placed on `core` alone.
pub fn spinner(s: &'static [AtomicU64; 512], slot: usize, core: u8) -> Result<EnvId, &'static str> {
    match process::fork().map_err(|_| "fork")? {
        Fork::Child => loop {
            s[slot].fetch_add(1, SeqCst);
        },
        Fork::Parent(c) => {
            sys::env_set_affinity(c, 1 << core).map_err(|_| "set affinity")?;
            Ok(c)
        }
    }
}

/// Whether `env` runs on `core` now, as the kernel publishes it.
pub fn runs_on(env: EnvId, core: u8) -> bool {
    vm::env_info(env).is_some_and(|e| e.id == env.0 && e.cpu == core && e.state == env_state::RUNNABLE)
}

/// Core `c`'s published (ticks, busy ticks), read afresh from the kernel's page.
pub fn core_ticks(c: usize) -> (u64, u64) {
    let k = vm::kinfo();
    // SAFETY: a plain read of the kernel information page, which stays mapped; volatile
    // because the kernel updates it behind the compiler's back.
    let ticks = unsafe { core::ptr::read_volatile(&k.cpu_ticks[c]) };
    // SAFETY: the same, for the next field.
    (ticks, unsafe { core::ptr::read_volatile(&k.cpu_busy[c]) })
}
