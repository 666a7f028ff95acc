//! Teardown under attack: the kernel frees a dying environment's frames by walking its
//! tables (each frame whose last mapping it was, and every table) and looks in the frame
//! table only for what the walk cannot see. A child that holds frames in every way it can
//! must leave nothing behind, and take nothing of its parent's with it.

use core::sync::atomic::{AtomicU64, Ordering::SeqCst};

use crate::runner::check;
use exo_libos::abi::EnvId;
use exo_libos::process::{self, Fork};
use exo_libos::vm::{self, PAGE, RO, RW};
use exo_libos::{abi::frame, abi::pte::Pte, sys};

static PARENTS_WORD: AtomicU64 = AtomicU64::new(0);

/// Frames free plus frames this environment holds: what a child's life must not change.
fn accounted() -> u64 {
    let mine = vm::env_info(vm::me()).map_or(0, |i| i.frames as u64);
    vm::kinfo().free_frames as u64 + mine
}

/// In the child: frames held unmapped, one mapped twice, a table bound but never linked,
/// a grandchild holding its own, and the parent's copy-on-write page written (so copied).
fn hold_frames_every_way() -> i32 {
    for _ in 0..3 {
        if sys::frame_alloc(EnvId::SELF, None).is_err() {
            return 1;
        }
    }
    let (va, pa) = (vm::alloc_va(2), sys::frame_alloc(EnvId::SELF, None));
    let Ok(pa) = pa else { return 2 };
    if vm::map_frame(va, pa, RW).and_then(|_| vm::map_frame(va + PAGE, pa, RO)).is_err() {
        return 3;
    }
    let unlinked = sys::frame_alloc(EnvId::SELF, None).and_then(|t| sys::table_bind(EnvId::SELF, t, 3));
    if unlinked.is_err() {
        return 4;
    }
    PARENTS_WORD.store(99, SeqCst);
    match process::fork() {
        Ok(Fork::Child) => {
            let _ = sys::frame_alloc(EnvId::SELF, None);
            loop {
                sys::yield_now();
            }
        }
        Ok(Fork::Parent(_)) => 0, // dies with us
        Err(_) => 5,
    }
}

pub fn child_leaves_no_frame_behind_and_takes_none_of_its_parents() -> Result<(), &'static str> {
    PARENTS_WORD.store(7, SeqCst);
    let page = &PARENTS_WORD as *const _ as u64 & !(PAGE - 1);
    let before = accounted();
    let status = match process::fork().map_err(|_| "fork")? {
        Fork::Child => sys::exit(hold_frames_every_way()),
        Fork::Parent(c) => process::wait(c).map_err(|_| "wait")?,
    };
    check(status == 0, "the child could not hold its frames")?;
    let pa = Pte(vm::entry(page)).addr();
    let mine = vm::frame_entry(pa).is_some_and(|f| f.owner == vm::me().0 && f.kind == frame::DATA);
    check(PARENTS_WORD.load(SeqCst) == 7 && mine, "the child's death took the parent's page")?;
    check(accounted() == before, "frames went missing with the child (or came from nowhere)")
}
