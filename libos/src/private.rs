//! `Private<T>`: a static of one environment's single thread of control.
//!
//! A libOS environment is single-threaded; the only other way into its code is an upcall
//! (or a call's context, in a server whose own context is parked), which interrupts it at
//! an arbitrary point. libOS state that `fork` must never share is put in the `.private`
//! section (`#[link_section = ".private"]`): a forked child gets its own pages there,
//! never shared: copies of the parent's small statics, and zeroed pages for what it does
//! not read (`.private.zero`, the unread tails) and for its stacks (`libos/link.ld` lays
//! them out). A static a child starts with zeroed must take all-zero as "not started"; one
//! it copies must be fit for a new environment or be reset in `process::child_start` (the
//! reclaim accounts are: `reclaim::after_fork`).

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
