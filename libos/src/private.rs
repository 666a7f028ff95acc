//! `Private<T>`: libOS state for one environment, kept where `fork` never shares it.
//!
//! A libOS environment is single-threaded; the only other way into its code is an upcall,
//! which interrupts it at an arbitrary point. Statics of this type go in the `.private`
//! section (a forked child gets zeroed, unshared pages there), so their all-zero value must
//! be a valid "not started" state.

use core::cell::UnsafeCell;

#[repr(transparent)]
pub struct Private<T>(UnsafeCell<T>);

// SAFETY: one thread of control per environment; users document how they tolerate an
// upcall arriving while they hold a reference.
unsafe impl<T> Sync for Private<T> {}

impl<T> Private<T> {
    pub const fn new(v: T) -> Self {
        Private(UnsafeCell::new(v))
    }

    pub fn get(&self) -> *mut T {
        self.0.get()
    }
}
