//! `Global<T>`: kernel state shared by every core, behind a spin lock.
//!
//! The kernel runs with interrupts masked, so on one core no two kernel paths ever run at
//! once; across cores each `Global` is a lock. [`KERNEL`](crate::env::KERNEL) is the big one
//! every trap takes (see `docs/multicore.md`); the others (heap, console, disk) are leaves,
//! taken inside it or alone, never the other way round. A core spinning on a lock still
//! answers kicks (`arch::smp::take_kick`), so a lock holder may wait for one. Re-entry on
//! the same core — a fault inside a `with` closure that ends up in another `with` on the
//! same value — panics instead of deadlocking or handing out two `&mut`.

use core::arch::asm;
use core::cell::UnsafeCell;
use core::sync::atomic::{AtomicUsize, Ordering};

/// A page-aligned value: the embedded init image (copied a word at a time) and
/// [`KERNEL`](crate::env::KERNEL), whose lock word `vectors.S` reaches with one `adrp`.
#[repr(C, align(4096))]
pub struct Aligned<T: ?Sized>(pub T);

#[repr(C)] // the lock word first: `vectors.S` takes it itself for `YieldTo` (`el0_yield`)
pub struct Global<T> {
    /// The holding core's index + 1; 0 when free. (`vectors.S`'s fast paths store the
    /// word's own address instead: all they need is "held", and it never equals a core + 1.)
    owner: AtomicUsize,
    value: UnsafeCell<T>,
}

// SAFETY: the value is only reached through `with`, which holds the lock: one core at a
// time, and never twice on the same core.
unsafe impl<T> Sync for Global<T> {}

use crate::arch::smp::{cpu, take_kick};

impl<T> Global<T> {
    /// Where the value lies, for `el0_yield`.
    pub const VALUE: usize = core::mem::offset_of!(Self, value);

    pub const fn new(value: T) -> Self {
        Self { owner: AtomicUsize::new(0), value: UnsafeCell::new(value) }
    }

    /// Runs `f` with exclusive access to the value. Panics on re-entry.
    #[inline]
    pub fn with<R>(&self, f: impl FnOnce(&mut T) -> R) -> R {
        self.with_on(cpu(), f)
    }

    /// [`Global::with`] on core `core`, which the caller has read already (it is this core).
    #[inline]
    pub fn with_on<R>(&self, core: usize, f: impl FnOnce(&mut T) -> R) -> R {
        let me = core + 1;
        while let Err(held) = self.owner.compare_exchange_weak(0, me, Ordering::Acquire, Ordering::Relaxed) {
            assert!(held != me, "kernel state re-entered");
            take_kick();
            wait_for_release(&self.owner);
        }
        // SAFETY: the lock is ours, so no other `&mut` to the value exists, and none can be
        // made until it is released below.
        let r = f(unsafe { &mut *self.value.get() });
        self.owner.store(0, Ordering::Release); // wakes the waiters: `wait_for_release`
        r
    }

    /// The value without the lock: for `early_map` alone, which runs with the MMU off, when
    /// exclusive accesses do not work on a real Pi 4 and only core 0 runs.
    ///
    /// # Safety
    /// Nothing else may reach the value while the reference lives.
    #[allow(clippy::mut_from_ref)]
    pub unsafe fn unlocked(&self) -> &mut T {
        // SAFETY: the caller guarantees exclusive access.
        unsafe { &mut *self.value.get() }
    }
}

/// Waits in `wfe` while the lock word `owner` reads held. The `ldaxr` arms this core's
/// exclusive monitor on the word, and any store to it by another core (the holder's
/// release, here or in `vectors.S`) clears the monitor, which is a wake-up event: so a
/// release needs no `sev`, and one that lands between the load and the `wfe` is not missed
/// (the event is latched). A kick (`smp::kick`) still `sev`s. Under QEMU a `wfe` also hands
/// the host thread to the other cores.
fn wait_for_release(owner: &AtomicUsize) {
    // SAFETY: an exclusive load of a word that lives as long as `owner`, and a `wfe`; no
    // memory is written, and the open exclusive is harmless: the next `stxr` of this core
    // (the `compare_exchange_weak` above) makes its own.
    unsafe { asm!("ldaxr {v}, [{p}]", "cbz {v}, 1f", "wfe", "1:", p = in(reg) owner.as_ptr(), v = out(reg) _) };
}

