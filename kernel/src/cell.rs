//! `Global<T>`: kernel state shared by every path into the kernel, without locks.
//!
//! exo's kernel runs on one core with interrupts masked whenever it executes (an interrupt
//! can only arrive while EL0 runs or the kernel idles in `wfi`), so no two kernel paths ever
//! run at once. What can still go wrong is re-entry: a fault inside a `with` closure that
//! ends up in another `with` on the same value. A one-byte flag catches that and panics
//! instead of handing out two `&mut` to the same data.

use core::cell::{Cell, UnsafeCell};

pub struct Global<T> {
    busy: Cell<bool>,
    value: UnsafeCell<T>,
}

// SAFETY: exo's kernel is single-core and never preempted (see the module doc), so the value
// is only ever reached from one thread of control; `busy` rules out aliasing `&mut`.
unsafe impl<T> Sync for Global<T> {}

impl<T> Global<T> {
    pub const fn new(value: T) -> Self {
        Self { busy: Cell::new(false), value: UnsafeCell::new(value) }
    }

    /// Runs `f` with exclusive access to the value. Panics on re-entry.
    #[inline]
    pub fn with<R>(&self, f: impl FnOnce(&mut T) -> R) -> R {
        assert!(!self.busy.replace(true), "kernel state re-entered");
        // SAFETY: `busy` was false, so no other `&mut` to the value exists, and none can be
        // made until it is cleared below (single core, no preemption in the kernel).
        let r = f(unsafe { &mut *self.value.get() });
        self.busy.set(false);
        r
    }
}
