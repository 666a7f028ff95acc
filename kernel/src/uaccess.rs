//! Reaching EL0 memory from the kernel, safely.
//!
//! The kernel never dereferences an EL0 pointer. It walks the environment's own tables in
//! software, page by page, checks that each page is mapped for EL0 with the permission the
//! operation needs, and touches the frame through the physmap. A bad pointer is an error
//! return, never a kernel fault.

use exo_abi::pte::{bits, index, Pte};
use exo_abi::Error;

use crate::mm::{phys_to_virt, uvm::slots};

/// The frame behind EL0 address `va` in the tree at `root`, if mapped for EL0 (and
/// writable, when `write`).
fn translate(root: u64, va: u64, write: bool) -> Result<u64, Error> {
    refuse_if!(root == 0 || va >= exo_abi::USER_VA_LIMIT, Error::Fault);
    let mut t = root;
    for level in 0..4 {
        // `t` is a table of this environment's tree: the root, or an address taken from a
        // valid table descriptor, which the kernel checked when it was linked.
        let e = Pte(slots(t)[index(va, level)]);
        refuse_if!(!e.is_valid() || !e.is_table_or_page(), Error::Fault);
        t = e.addr();
        let denied = || e.0 & bits::AP_EL0 == 0 || (write && e.0 & bits::AP_RO != 0);
        refuse_if!(level == 3 && denied(), Error::Fault);
    }
    Ok(t)
}

/// Calls `f` on each piece of `[va, va + len)` of the space at `root`, in order, as a
/// kernel slice over the environment's frame. All pages are checked before any is touched,
/// so a bad range has no effect at all.
pub fn with_user(
    root: u64,
    va: u64,
    len: u64,
    write: bool,
    mut f: impl FnMut(&mut [u8]),
) -> Result<(), Error> {
    let end = va.checked_add(len).ok_or(Error::Fault)?;
    let mut page = va & !0xfff;
    while page < end {
        translate(root, page, write)?;
        page += 0x1000;
    }
    let mut at = va;
    while at < end {
        let n = (0x1000 - (at & 0xfff)).min(end - at);
        let pa = translate(root, at, write)? + (at & 0xfff);
        // SAFETY: `pa..pa + n` lies in one frame that this environment has mapped with the
        // needed permission (checked just above); the physmap maps it; the kernel holds no
        // other reference into it during `f`.
        f(unsafe { core::slice::from_raw_parts_mut(phys_to_virt(pa) as *mut u8, n as usize) });
        at += n;
    }
    Ok(())
}

/// Copies `out.len()` bytes from EL0 memory at `va` (all of them, or none on an error).
pub fn copy_in(root: u64, va: u64, out: &mut [u8]) -> Result<(), Error> {
    let mut done = 0;
    with_user(root, va, out.len() as u64, false, |chunk| {
        out[done..done + chunk.len()].copy_from_slice(chunk);
        done += chunk.len();
    })
}

/// Copies a `T` from EL0 memory.
pub fn read<T: Copy + Default>(root: u64, va: u64) -> Result<T, Error> {
    let mut v = [T::default()];
    read_into(root, va, &mut v).map(|_| v[0])
}

/// Fills `out` from EL0 memory at `va`, or leaves it unchanged on an error.
pub fn read_into<T: Copy>(root: u64, va: u64, out: &mut [T]) -> Result<(), Error> {
    // SAFETY: `T: Copy` plain data; we write exactly the bytes of `out`.
    let out = unsafe { core::slice::from_raw_parts_mut(out.as_mut_ptr() as *mut u8, size_of_val(out)) };
    copy_in(root, va, out)
}

/// Copies a `T` to EL0 memory.
pub fn write<T: Copy>(root: u64, va: u64, v: &T) -> Result<(), Error> {
    // SAFETY: reading the bytes of a `Copy` value.
    let src = unsafe { core::slice::from_raw_parts(v as *const T as *const u8, size_of::<T>()) };
    let mut done = 0;
    with_user(root, va, src.len() as u64, true, |chunk| {
        chunk.copy_from_slice(&src[done..done + chunk.len()]);
        done += chunk.len();
    })
}
