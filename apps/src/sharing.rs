//! Shared level-3 tables under attack: `fork` freezes the parent's text and read-only data
//! tables and links them into the child whole (`docs/memory-model.md`). Nobody may change
//! a frozen table, only its owner may freeze it and only when every page in it is
//! read-only and its own (or public), only a frozen table may be linked into another tree, a page mapped through it cannot be freed or
//! taken, the links are counted and refused at the limit, and a table outlives neither
//! its owner nor the last of its sharers by a frame.

use core::sync::atomic::{AtomicU64, Ordering::SeqCst};

use crate::runner::check;
use exo_libos::abi::pte::{bits, Pte};
use exo_libos::abi::{frame, EnvId, Error};
use exo_libos::process::{self, Fork};
use exo_libos::sys;
use exo_libos::vm::{self, PAGE, REGION, RO, RW};

/// A writable word of the parent's, copy-on-write in a forked child: a frame the child may
/// map read-only, but not its own.
static PARENTS_WORD: AtomicU64 = AtomicU64::new(0);
/// The parent's level-3 table of its stack (never frozen), for the child to try to share.
static PARENTS_TABLE: AtomicU64 = AtomicU64::new(0);

fn text_page() -> u64 {
    text_table_is_frozen_for_parent_and_child as *const () as u64 & !(PAGE - 1)
}

/// The table mapping this program's text.
fn text_table() -> Result<u64, &'static str> {
    sys::table_get(EnvId::SELF, text_page(), 2).map(|e| Pte(e).addr()).map_err(|_| "no text table")
}

pub fn text_table_is_frozen_for_parent_and_child() -> Result<(), &'static str> {
    let (va, e) = (text_page(), vm::entry(text_page()));
    // Other children of ours (servers) may share it too: count from what it is now.
    let shares = |t: u64| vm::frame_entry(t).map_or(u8::MAX, |f| f.shares);
    let before = shares(text_table()?);
    let status = match process::fork().map_err(|_| "fork")? {
        Fork::Child => {
            // The child reads the page through the shared table (and its window on it), its
            // link counted ...
            let counted = text_table().is_ok_and(|t| {
                shares(t) == before + 1 && vm::frame_entry(t).is_some_and(|f| f.flags & frame::FROZEN != 0)
            });
            let same = counted && vm::entry(va) == e && sys::table_get(EnvId::SELF, va, 3) == Ok(e);
            // ... and may change nothing in it: not rewrite, clear or add an entry.
            let fresh = sys::frame_alloc(EnvId::SELF, None).unwrap_or(0);
            let tries = [
                sys::table_set(EnvId::SELF, va, 3, e),
                sys::table_set(EnvId::SELF, va, 3, 0),
                sys::table_set(EnvId::SELF, va, 3, Pte::user_page(fresh, RO).0),
            ];
            let refused = tries.iter().filter(|r| **r == Err(Error::Busy)).count() as i32;
            sys::exit(refused + 10 * same as i32)
        }
        Fork::Parent(c) => process::wait(c).map_err(|_| "wait")?,
    };
    check(status / 10 == 1, "the child's link is not counted, or it does not see the parent's text")?;
    check(status % 10 == 3, "the child changed an entry of the shared table")?;
    // The parent, its owner, may not change it either (it stays frozen), nor free a page of it.
    check(
        sys::table_set(EnvId::SELF, va, 3, 0) == Err(Error::Busy),
        "the owner cleared an entry of its frozen table",
    )?;
    check(
        sys::frame_free(EnvId::SELF, Pte(e).addr()) == Err(Error::Busy),
        "a page of a shared table was freed",
    )?;
    check(shares(text_table()?) == before, "the dead child's share was not dropped")
}

/// Frames free plus frames this environment holds: what a child's life must not change.
fn accounted() -> u64 {
    let mine = vm::env_info(vm::me()).map_or(0, |i| i.frames as u64);
    vm::kinfo().free_frames as u64 + mine
}

/// A blank child with tables down to level 2 over `va` (its space, not yet running).
fn blank_child(va: u64) -> Result<EnvId, Error> {
    let g = sys::env_create(0)?;
    let root = sys::frame_alloc(g, None)?;
    sys::table_bind(g, root, 0)?;
    vm::ensure_tables_to(g, va, 2)?;
    Ok(g)
}

/// In a child: every way of sharing a table it may not, then the one it may, to the limit.
/// Returns 0, or the number of the step that went wrong.
fn share_every_way() -> i32 {
    // A gigabyte of address space of its own: one level-2 table covers every link below.
    let r = (vm::alloc_va(2 << 18) + (1 << 30) - 1) & !((1 << 30) - 1);
    let Ok(own) = vm::map_new(r, RO) else { return 1 };
    let Ok(l3) = sys::table_get(EnvId::SELF, r, 2).map(|e| Pte(e).addr()) else { return 2 };
    let Ok(g) = blank_child(r) else { return 3 };
    let link = |env: EnvId, va: u64, table: u64| sys::table_set(env, va, 2, Pte::table(table).0);
    let freeze = || sys::table_set(EnvId::SELF, r, 2, Pte::table(l3).0 | bits::FROZEN_LINK);
    // No table its owner has not frozen: its parent's (never frozen), nor its own yet.
    if link(g, r, PARENTS_TABLE.load(SeqCst)) != Err(Error::Denied) || link(g, r, l3) != Err(Error::Denied) {
        return 4;
    }
    // A table holding a writable page, a frame not its own (the parent's, shared with it
    // read-only by fork), or a window on a table.
    let cow = Pte(vm::entry(&PARENTS_WORD as *const _ as u64 & !(PAGE - 1))).addr();
    let Ok(w) = sys::frame_alloc(EnvId::SELF, None) else { return 5 };
    for (k, (pa, perm)) in [(w, RW), (cow, RO), (l3, RO)].into_iter().enumerate() {
        if vm::map_frame(r + PAGE, pa, perm).is_err() {
            return 6 + k as i32 * 10;
        }
        if freeze() != Err(Error::Denied) {
            return 7 + k as i32 * 10;
        }
        if vm::unmap(r + PAGE).is_err() {
            return 8 + k as i32 * 10;
        }
    }
    let _ = sys::frame_free(EnvId::SELF, w);
    if vm::frame_entry(own).is_some_and(|f| f.flags & frame::SHARED_RO != 0) {
        return 40; // a refused freeze marked the page shared
    }
    // Read-only and its own: frozen, for the owner too, then shared.
    if freeze().is_err()
        || sys::table_set(EnvId::SELF, r, 3, 0) != Err(Error::Busy)
        || link(g, r, l3).is_err()
    {
        return 41;
    }
    // A page of it can be neither freed nor given while the sharer maps it.
    if sys::frame_free(EnvId::SELF, own) != Err(Error::Busy) || sys::frame_give(own, g) != Err(Error::Busy) {
        return 42;
    }
    // Links are counted to 255, then refused.
    let more = (1..512).map(|k| r + k * REGION).take_while(|&va| link(g, va, l3).is_ok()).count();
    if more != 254 || link(g, r + 300 * REGION, l3) != Err(Error::Busy) {
        return 43;
    }
    if (1..255).any(|k| sys::table_set(g, r + k * REGION, 2, 0).is_err()) {
        return 44;
    }
    // The owner unlinks it (as `exec` does) while the sharer keeps it: nothing is freed.
    if sys::table_set(EnvId::SELF, r, 2, 0).is_err() || sys::table_unbind(EnvId::SELF, l3) != Err(Error::Busy)
    {
        return 45;
    }
    if sys::frame_free(EnvId::SELF, own) != Err(Error::Busy) {
        return 46;
    }
    // The sharer dies first: the table is emptied and thaws, the owner's to free.
    if sys::env_destroy(g).is_err() {
        return 47;
    }
    let t = vm::frame_entry(l3).unwrap_or_default();
    if (t.shares, t.entries, t.flags) != (0, 0, 0) || sys::frame_free(EnvId::SELF, own).is_err() {
        return 48;
    }
    // A last table shared with a sharer that outlives this child's exit by nothing: the
    // kernel destroys the sharer first.
    let r2 = r + REGION;
    let Ok(_) = vm::map_new(r2, RO) else { return 50 };
    let Ok(l3) = sys::table_get(EnvId::SELF, r2, 2).map(|e| Pte(e).addr()) else { return 51 };
    let Ok(g) = blank_child(r2) else { return 52 };
    let frozen = sys::table_set(EnvId::SELF, r2, 2, Pte::table(l3).0 | bits::FROZEN_LINK);
    if frozen.is_err() || link(g, r2, l3).is_err() {
        return 53;
    }
    0
}

pub fn only_the_owner_shares_a_table_and_only_its_own_read_only_pages() -> Result<(), &'static str> {
    PARENTS_WORD.store(1, SeqCst);
    let stack = sys::table_get(EnvId::SELF, vm::STACK_TOP - PAGE, 2).map_err(|_| "no stack table")?;
    PARENTS_TABLE.store(Pte(stack).addr(), SeqCst);
    let before = accounted();
    let status = match process::fork().map_err(|_| "fork")? {
        Fork::Child => sys::exit(share_every_way()),
        Fork::Parent(c) => process::wait(c).map_err(|_| "wait")?,
    };
    if status != 0 {
        exo_libos::println!("sharing: step {status} went wrong");
    }
    check(status == 0, "a table was shared, changed or freed against the rules")?;
    check(accounted() == before, "the owner and its sharer left frames behind")
}

/// `exec` in a forked child, whose text table is its parent's, shared: it unlinks that
/// table (the kernel would refuse to clear its entries) and links fresh ones; the parent's
/// stays whole and its link count comes back down.
pub fn exec_over_a_shared_text_table(programs: &[(&str, &[u8])]) -> Result<(), &'static str> {
    let hello = crate::runner::built_in(programs, "hello")?;
    let (t, e) = (text_table()?, vm::entry(text_page()));
    let shares = || vm::frame_entry(t).map_or(u8::MAX, |f| f.shares);
    let before = shares();
    let status = match process::fork().map_err(|_| "fork")? {
        Fork::Child => {
            let err = exo_libos::exec::exec(hello, "hello after fork");
            exo_libos::println!("exec failed: {err:?}");
            sys::exit(99)
        }
        Fork::Parent(c) => process::wait(c).map_err(|_| "wait")?,
    };
    check(status == 0, "the forked child could not exec over its shared text table")?;
    check(shares() == before, "the child's share outlived it")?;
    check(vm::entry(text_page()) == e && text_table()? == t, "the parent's text table changed")
}

/// In a child: links its parent's frozen text table into a blank child of its own until
/// the kernel refuses (255 links in all), then holds them. Returns only on failure.
fn hog_text_table_links() -> i32 {
    let Ok(l3) = text_table() else { return 1 };
    let r = (vm::alloc_va(2 << 18) + (1 << 30) - 1) & !((1 << 30) - 1);
    let Ok(g) = blank_child(r) else { return 2 };
    let link = |va: u64| sys::table_set(g, va, 2, Pte::table(l3).0).is_ok();
    if (0..512).map(|k| r + k * REGION).take_while(|&va| link(va)).count() == 0 {
        return 3;
    }
    loop {
        sys::yield_now();
    }
}

/// A child uses up the links of its parent's frozen text table (it may link it, as any
/// descendant may): the parent's next `fork` must not fail because of it. The new child
/// gets a copy of the table instead, and can fork in turn (its table maps its parent's
/// pages, so it cannot be frozen: copied again).
pub fn a_child_that_uses_up_the_text_tables_links_cannot_stop_its_parent_forking() -> Result<(), &'static str>
{
    let shares = |t: u64| vm::frame_entry(t).map_or(0, |f| f.shares);
    let before = accounted();
    let hog = match process::fork().map_err(|_| "fork")? {
        Fork::Child => sys::exit(hog_text_table_links()),
        Fork::Parent(c) => c,
    };
    let t = text_table()?;
    use exo_libos::abi::env_state::{BLOCKED, RUNNABLE};
    let alive = || vm::env_info(hog).is_some_and(|i| i.state == RUNNABLE || i.state == BLOCKED);
    let full = (0..100_000).any(|_| {
        sys::yield_now();
        shares(t) == u8::MAX || !alive()
    }) && shares(t) == u8::MAX;
    let status = if full {
        match process::fork() {
            Ok(Fork::Child) => {
                let grandchild = match process::fork() {
                    Ok(Fork::Child) => sys::exit(5),
                    Ok(Fork::Parent(g)) => process::wait(g) == Ok(5),
                    Err(_) => false,
                };
                sys::exit(if grandchild { 7 } else { 1 })
            }
            Ok(Fork::Parent(c)) => process::wait(c).unwrap_or(-1),
            Err(_) => -2,
        }
    } else {
        0
    };
    let _ = sys::env_destroy(hog);
    let _ = process::wait(hog);
    check(full, "the child could not use up the table's links")?;
    check(status != -2, "fork failed: a child had used up the text table's links")?;
    check(status == 7, "the child forked with a copied text table, or its own child, went wrong")?;
    check(shares(t) < u8::MAX, "the links were not given back")?;
    check(accounted() == before, "the children left frames behind")
}
