//! Tests of the screen as a bound resource from the libOS's side (run in the hostile
//! list, `exo.test=core`): `fork` leaves the framebuffer to its owner, and the isolation
//! oracle holds device frames to the owner-only rule. On a board without a screen (virt)
//! there is nothing to bind, and they pass trivially.

use crate::oracle::{device_allowed, Oracle};
use crate::runner::check;
use exo_libos::abi::pte::{bits, Pte};
use exo_libos::abi::EnvId;
use exo_libos::process::{self, Fork};
use exo_libos::screen::device_pte;
use exo_libos::{sys, vm};

/// A child forked while its parent has the framebuffer mapped starts without that
/// mapping (it could not own it), and the parent's mapping stays as it was.
pub fn fork_leaves_the_framebuffer_out() -> Result<(), &'static str> {
    let k = vm::kinfo();
    if k.fb_bytes == 0 {
        return Ok(());
    }
    let fb = k.fb_base;
    let va = vm::alloc_va(1);
    vm::map(va, device_pte(fb)).map_err(|_| "the owner could not map its framebuffer")?;
    let forked = process::fork();
    let child = match forked {
        Ok(Fork::Child) => sys::exit((vm::entry(va) == 0) as i32),
        Ok(Fork::Parent(c)) => Ok(c),
        Err(e) => Err(e),
    };
    let status = child.map(process::wait);
    let kept = Pte(vm::entry(va));
    let _ = vm::unmap(va);
    let status = status.map_err(|_| "fork failed with the framebuffer mapped")?;
    check(status == Ok(1), "a forked child inherited a mapping of the framebuffer")?;
    check(kept.0 == device_pte(fb), "fork changed the owner's own framebuffer mapping")
}

/// The oracle accepts the framebuffer mapped by the child that owns it, and its rule
/// refuses it to anyone else, executable, or cacheable.
pub fn oracle_holds_device_frames_to_their_owner() -> Result<(), &'static str> {
    let k = vm::kinfo();
    if k.fb_bytes == 0 {
        return Ok(());
    }
    let fb = k.fb_base;
    let holder = sys::env_create(0).map_err(|_| "create")?;
    let va = vm::DYN_BASE;
    let setup = (|| {
        let root = sys::frame_alloc(holder, None)?;
        sys::table_bind(holder, root, 0)?;
        vm::ensure_tables(holder, va)?;
        sys::frame_give(fb, holder)?;
        sys::table_set(holder, va, 3, device_pte(fb))
    })();
    let verdict =
        setup.map_err(|_| "could not map the framebuffer into the child owning it").and_then(|_| {
            let mut oracle = Oracle::new(1 << 12);
            oracle.check()
        });
    let _ = sys::env_destroy(holder);
    let _ = sys::env_wait(holder);
    verdict.map(drop)?;
    check(vm::frame_entry(fb).map(|f| f.owner) == Some(vm::me().0), "the framebuffer did not come back")?;
    let pte = Pte(device_pte(fb));
    check(device_allowed(holder.0, holder, false, pte), "the rule refuses the owner")?;
    check(!device_allowed(vm::me().0, holder, false, pte), "the rule lets a non-owner map it")?;
    check(!device_allowed(holder.0, holder, true, pte), "the rule lets it be executable")?;
    let cached = Pte(pte.0 & !bits::ATTR_MASK);
    check(!device_allowed(holder.0, holder, false, cached), "the rule lets it be cacheable")?;
    check(!device_allowed(holder.0, EnvId(holder.0 + 0x1000), false, pte), "a stale id passes the rule")
}
