//! Host tests of translation-table checks. "Physical" memory is a host buffer here.

use exo_abi::pte::{Perm, Pte};
use exo_abi::{frame, EnvId, Error, FrameEntry};

use super::Space;
use crate::mm::frames::tests::census;
use crate::mm::frames::FrameTable;
use crate::mm::kmap::Table;

const A: EnvId = EnvId(0x1001);
const CHILD: EnvId = EnvId(0x1002);
const OTHER: EnvId = EnvId(0x1003);

fn machine(frames: usize) -> FrameTable {
    let mem: &'static mut [Table] = Box::leak((0..frames).map(|_| Table([0; 512])).collect());
    let base = mem.as_ptr() as u64;
    let entries = Box::leak(vec![FrameEntry::default(); frames].into_boxed_slice());
    let mut ft = FrameTable::new(entries, base);
    ft.set_range(base, frames as u64 * 4096, frame::FREE);
    ft.set_range(base, 4096, frame::PUBLIC);
    ft
}

fn table(ft: &mut FrameTable, env: EnvId, level: u8) -> u64 {
    let pa = ft.alloc(env, None, true).unwrap();
    ft.bind_table(env, pa, level).unwrap();
    pa
}

/// A's space with tables down to level 3 for the first 2 MiB of `va`.
fn space(ft: &mut FrameTable, va: u64) -> u64 {
    let root = table(ft, A, 0);
    let l1 = table(ft, A, 1);
    let l2 = table(ft, A, 2);
    let l3 = table(ft, A, 3);
    let mut s = Space { ft, env: A, root, asid: 1, by: 0 };
    s.set(va, 0, Pte::table(l1), |_, _, _, _| None).unwrap();
    s.set(va, 1, Pte::table(l2), |_, _, _, _| None).unwrap();
    s.set(va, 2, Pte::table(l3), |_, _, _, _| None).unwrap();
    root
}

const RW: Perm = Perm { write: true, exec: false };
const RO: Perm = Perm { write: false, exec: false };

#[test]
fn map_remap_unmap_keep_counts_exact() {
    let mut ft = machine(32);
    let va = 0x40_0000;
    let root = space(&mut ft, va);
    let f1 = ft.alloc(A, None, true).unwrap();
    let f2 = ft.alloc(A, None, true).unwrap();
    let mut s = Space { ft: &mut ft, env: A, root, asid: 1, by: 0 };
    let own = |o: u32, _: u64, _: bool, f: u8| (o == A.0).then_some(f);
    s.set(va, 3, Pte::user_page(f1, RW), own).unwrap();
    assert_eq!(s.get(va, 3).unwrap().addr(), f1);
    s.set(va, 3, Pte::user_page(f2, RW), own).unwrap(); // remap
    assert_eq!(s.ft.get(f1).unwrap().maps, 0);
    assert_eq!(s.ft.get(f2).unwrap().maps, 1);
    s.set(va + 4096, 3, Pte::user_page(f2, RO), own).unwrap(); // second mapping
    assert_eq!(s.ft.get(f2).unwrap().maps, 2);
    assert_eq!(s.ft.free(A, f2), Err(Error::Busy));
    s.set(va, 3, Pte(0), own).unwrap();
    s.set(va + 4096, 3, Pte(0), own).unwrap();
    assert_eq!(s.ft.get(f2).unwrap().maps, 0);
    let l3 = s.get(va, 2).unwrap().addr();
    assert_eq!(s.ft.get(l3).unwrap().entries, 0);
    s.ft.free(A, f2).unwrap();
}

#[test]
fn refuses_frames_that_are_not_the_callers_to_map() {
    let mut ft = machine(32);
    let va = 0x40_0000;
    let root = space(&mut ft, va);
    let sibling = ft.alloc(OTHER, None, true).unwrap();
    let child_frame = ft.alloc(CHILD, None, true).unwrap();
    let kernel_pa = ft.pa(0); // PUBLIC in this machine
    let mut s = Space { ft: &mut ft, env: A, root, asid: 1, by: 0 };
    let own = |o: u32, _: u64, _: bool, f: u8| (o == A.0).then_some(f);
    assert_eq!(s.set(va, 3, Pte::user_page(sibling, RW), own), Err(Error::Denied));
    // A parent may not map its child's frames into itself (only the other way round).
    assert_eq!(s.set(va, 3, Pte::user_page(child_frame, RW), own), Err(Error::Denied));
    // Public frames: read-only yes, writable or executable no.
    assert_eq!(s.set(va, 3, Pte::user_page(kernel_pa, RW), own), Err(Error::Denied));
    s.set(va, 3, Pte::user_page(kernel_pa, RO), own).unwrap();
    // Not RAM at all.
    assert_eq!(s.set(va + 4096, 3, Pte::user_page(0x1000, RO), own), Err(Error::NotFound));
    // Kernel-half and wrapped addresses.
    let f = s.ft.alloc(A, None, true).unwrap();
    assert_eq!(s.set(0xffff_0000_0000_0000, 3, Pte::user_page(f, RW), own), Err(Error::Invalid));
    assert_eq!(s.set(exo_abi::USER_VA_LIMIT, 3, Pte::user_page(f, RW), own), Err(Error::Invalid));
    assert_eq!(s.set(va + 1, 3, Pte::user_page(f, RW), own), Err(Error::Invalid));
    // No level-3 table there yet.
    assert_eq!(s.set(0x8000_0000, 3, Pte::user_page(f, RW), own), Err(Error::NotFound));
}

#[test]
fn table_pages_cannot_be_shared_cycled_or_mapped_writable() {
    let mut ft = machine(32);
    let va = 0x40_0000;
    let root = space(&mut ft, va);
    let mut s = Space { ft: &mut ft, env: A, root, asid: 1, by: 0 };
    let own = |o: u32, _: u64, _: bool, f: u8| (o == A.0).then_some(f);
    let l1 = s.get(va, 0).unwrap().addr();
    let l3 = s.get(va, 2).unwrap().addr();
    // Linking an already-linked table elsewhere (a cycle or a shared subtree) is refused.
    assert_eq!(s.set(1 << 39, 0, Pte::table(l1), own), Err(Error::Busy));
    assert_eq!(s.set(1 << 39, 0, Pte::table(root), own), Err(Error::Invalid)); // wrong level
                                                                               // A table page may be read through a read-only window, never written.
    assert_eq!(s.set(va, 3, Pte::user_page(l3, RW), own), Err(Error::Denied));
    s.set(va, 3, Pte::user_page(l3, RO), own).unwrap();
    // A frame mapped as data cannot become a table.
    let f = s.ft.alloc(A, None, true).unwrap();
    s.set(va + 4096, 3, Pte::user_page(f, RW), own).unwrap();
    assert_eq!(s.ft.bind_table(A, f, 3), Err(Error::Busy));
    // An entry with a block descriptor or extra bits is refused.
    assert_eq!(s.set(1 << 30, 1, Pte(f | 1), own), Err(Error::Invalid));
    // A non-empty table cannot be unlinked.
    assert_eq!(s.set(va, 2, Pte(0), own), Err(Error::Busy));
}

#[test]
fn teardown_frees_tables_and_last_mapped_frames_and_balances() {
    let mut ft = machine(64);
    let before = census(&ft);
    let va = 0x40_0000;
    let root = space(&mut ft, va);
    let shared = ft.alloc(A, None, true).unwrap();
    let mut s = Space { ft: &mut ft, env: A, root, asid: 1, by: 0 };
    // `may_map` is the kernel's ancestor check; here A's frames may appear in A's space.
    s.set(va, 3, Pte::user_page(shared, RO), |o, _, _, f| (o == A.0).then_some(f)).unwrap();
    for k in 1..10 {
        let f = s.ft.alloc(A, None, true).unwrap();
        s.set(va + k * 4096, 3, Pte::user_page(f, RW), |o, _, _, f| (o == A.0).then_some(f)).unwrap();
    }
    // Mapped twice: freed once, at its last mapping. One frame A holds but never maps,
    // and one of another's that A maps, stay where they are.
    s.set(va + 10 * 4096, 3, Pte::user_page(shared, RO), |o, _, _, f| (o == A.0).then_some(f)).unwrap();
    let unmapped = s.ft.alloc(A, None, true).unwrap();
    let others = s.ft.alloc(OTHER, None, true).unwrap();
    s.set(va + 11 * 4096, 3, Pte::user_page(others, RO), |_, _, _, f| Some(f)).unwrap();
    assert_eq!(s.dismantle(), 4 + 10, "four tables and ten mapped frames of A's");
    assert_eq!(s.ft.get(others).unwrap().maps, 0);
    assert_eq!(s.ft.get(unmapped).unwrap().owner, A.0);
    assert_eq!(s.ft.get(others).unwrap().owner, OTHER.0);
    assert_eq!(s.ft.reclaim(A, EnvId(0), 0..s.ft.len()), 1, "the frame table still finds the unmapped one");
    s.ft.free(OTHER, others).unwrap();
    assert_eq!(census(&ft), before);
}

#[test]
fn set_at_finds_the_page_where_the_table_was_linked_and_only_there() {
    let mut ft = machine(32);
    let va = 0x4060_0000; // region 0x203 of 2 MiB: not a multiple of a level-2 table's reach
    let root = space(&mut ft, va);
    let f = ft.alloc(A, None, true).unwrap();
    let loose = table(&mut ft, A, 3); // bound, linked nowhere
    let theirs = table(&mut ft, OTHER, 3);
    let mut s = Space { ft: &mut ft, env: A, root, asid: 1, by: 0 };
    let own = |o: u32, _: u64, _: bool, fl: u8| (o == A.0).then_some(fl);
    let l3 = s.get(va, 2).unwrap().addr();
    let l2 = s.get(va, 1).unwrap().addr();
    assert_eq!(s.ft.get(l3).unwrap().link as u64, va >> 21);
    assert_eq!(s.set_at(l3, 5, Pte::user_page(f, RW), own), Ok(()));
    assert_eq!(s.get(va + 5 * 4096, 3).unwrap().addr(), f); // the same entry as the walk's
    assert_eq!((s.ft.get(f).unwrap().maps, s.ft.get(l3).unwrap().entries), (1, 1));
    assert_eq!(s.set_at(l3, 512, Pte::user_page(f, RW), own), Err(Error::Invalid));
    assert_eq!(s.set_at(l2, 5, Pte::user_page(f, RW), own), Err(Error::Invalid));
    assert_eq!(s.set_at(loose, 5, Pte::user_page(f, RW), own), Err(Error::NotFound));
    assert_eq!(s.set_at(theirs, 5, Pte::user_page(f, RW), own), Err(Error::Denied));
    assert_eq!(s.set_at(f, 5, Pte::user_page(f, RW), own), Err(Error::Denied)); // data, not a table
    assert_eq!(s.set_at(l3, 5, Pte(0), own), Ok(()));
    assert_eq!((s.ft.get(f).unwrap().maps, s.ft.get(l3).unwrap().entries), (0, 0));
    // Unlinked, it is no table of the tree any more, and forgets where it was.
    s.set(va, 2, Pte(0), own).unwrap();
    assert_eq!(s.ft.get(l3).unwrap().link, 0);
    assert_eq!(s.set_at(l3, 5, Pte::user_page(f, RW), own), Err(Error::NotFound));
}

/// `env`'s root with tables down to level 2 (and level 3 if `l3`) for the 2 MiB at `va`.
fn tree(ft: &mut FrameTable, env: EnvId, va: u64, l3: bool) -> u64 {
    let root = table(ft, env, 0);
    let mut s = Space { ft, env, root, asid: 2, by: 0 };
    for level in 0..2 + l3 as u32 {
        let t = table(s.ft, env, level as u8 + 1);
        s.set(va, level, Pte::table(t), |_, _, _, _| None).unwrap();
    }
    root
}

/// The kernel's sharing rule for a space of CHILD's (A its parent), with `actor` acting.
fn rule(actor: EnvId) -> impl Fn(u32, u64, bool, u8) -> Option<u8> {
    move |o, _, write, f| {
        let shared = if write { frame::SHARED_RW } else { frame::SHARED_RW | frame::SHARED_RO };
        match o {
            o if o == CHILD.0 || o == A.0 && f & shared != 0 => Some(f),
            o if o == A.0 && actor == A => Some(f | frame::SHARED_RO),
            _ => None,
        }
    }
}

/// The owner's request to freeze level-3 table `l3`, linked where it is set.
fn freeze(l3: u64) -> Pte {
    Pte(Pte::table(l3).0 | exo_abi::pte::bits::FROZEN_LINK)
}

/// A's tables at `va` with three read-only pages of its own and a public one; returns
/// (A's root, its level-3 table, the pages).
fn text(ft: &mut FrameTable, va: u64) -> (u64, u64, [u64; 3]) {
    let root = space(ft, va);
    let pages = [0; 3].map(|_| ft.alloc(A, None, true).unwrap());
    let public = ft.pa(0);
    let mut s = Space { ft, env: A, root, asid: 1, by: 0 };
    let own = |o: u32, _: u64, _: bool, f: u8| (o == A.0).then_some(f);
    let x = Perm { write: false, exec: true };
    for (k, &pa) in pages.iter().enumerate() {
        s.set(va + k as u64 * 4096, 3, Pte::user_page(pa, if k == 0 { x } else { RO }), own).unwrap();
    }
    s.set(va + 3 * 4096, 3, Pte::user_page(public, RO), own).unwrap();
    (root, s.get(va, 2).unwrap().addr(), pages)
}

#[test]
fn a_shared_table_is_frozen_by_its_owner_checked_then_and_changed_by_nobody() {
    let mut ft = machine(64);
    let before = census(&ft);
    let va = 0x40_0000;
    let (root, l3, pages) = text(&mut ft, va);
    let child_root = tree(&mut ft, CHILD, va, false);
    let other = ft.alloc(OTHER, None, true).unwrap();
    let own = |o: u32, _: u64, _: bool, f: u8| (o == A.0).then_some(f);
    let mut child = Space { ft: &mut ft, env: CHILD, root: child_root, asid: 2, by: 0 };
    // Nobody may link a table its owner has not frozen, nor anything but a level-3 table,
    // nor freeze another's table.
    assert_eq!(child.set(va, 2, Pte::table(l3), rule(A)), Err(Error::Denied));
    assert_eq!(child.set(va, 1, Pte::table(l3), rule(A)), Err(Error::Denied));
    assert_eq!(child.set(va, 2, freeze(l3), rule(A)), Err(Error::Denied));
    let mut owner = Space { ft: child.ft, env: A, root, asid: 1, by: 0 };
    // A writable entry, or a frame not the owner's, makes freezing fail, and marks nothing.
    let w = owner.ft.alloc(A, None, true).unwrap();
    for (pa, perm) in [(w, RW), (other, RO)] {
        owner.set(va + 8 * 4096, 3, Pte::user_page(pa, perm), |_, _, _, f| Some(f)).unwrap();
        assert_eq!(owner.set(va, 2, freeze(l3), own), Err(Error::Denied));
        assert!(
            owner.ft.get(pages[1]).unwrap().flags & frame::SHARED_RO == 0,
            "a refused freeze marked a page"
        );
        owner.set(va + 8 * 4096, 3, Pte(0), own).unwrap();
    }
    // Only where it is linked.
    assert_eq!(owner.set(va + (1 << 21), 2, freeze(l3), own), Err(Error::Invalid));
    owner.set(va, 2, freeze(l3), own).unwrap();
    let mut child = Space { ft: owner.ft, env: CHILD, root: child_root, asid: 2, by: 0 };
    child.set(va, 2, Pte::table(l3), rule(CHILD)).unwrap();
    assert_eq!(child.get(va + 4096, 3).unwrap().addr(), pages[1]);
    let t = *child.ft.get(l3).unwrap();
    assert_eq!((t.shares, t.flags & frame::FROZEN, t.entries), (1, frame::FROZEN, 4));
    assert!(pages.iter().all(|&p| child.ft.get(p).unwrap().flags & frame::SHARED_RO != 0));
    // Frozen: no change by the sharer, nor by the owner, entry added, changed or cleared.
    let f = child.ft.alloc(CHILD, None, true).unwrap();
    assert_eq!(child.set(va + 5 * 4096, 3, Pte::user_page(f, RW), rule(CHILD)), Err(Error::Busy));
    assert_eq!(child.set(va, 3, Pte(0), rule(CHILD)), Err(Error::Busy));
    assert_eq!(child.set_at(l3, 5, Pte::user_page(f, RW), rule(CHILD)), Err(Error::Denied));
    let mut owner = Space { ft: child.ft, env: A, root, asid: 1, by: 0 };
    assert_eq!(owner.set(va + 5 * 4096, 3, Pte::user_page(w, RW), own), Err(Error::Busy));
    // Named directly (`TableSetAt`), no walk to find the frozen link: refused all the same.
    assert_eq!(owner.set_at(l3, 5, Pte::user_page(w, RW), own), Err(Error::Busy));
    assert_eq!(owner.set_at(l3, 0, Pte(0), own), Err(Error::Busy));
    assert_eq!(owner.set(va, 3, Pte::user_page(pages[0], RW), own), Err(Error::Busy));
    assert_eq!(owner.set(va, 3, Pte(0), own), Err(Error::Busy));
    assert_eq!(owner.ft.unbind_table(A, l3), Err(Error::Busy));
    // Nobody's walk takes a page out of it while it is shared (repossession, grants).
    let mut seen = 0;
    owner.for_each_page(|_, _| {
        seen += 1;
        true
    });
    assert_eq!(seen, 0, "the owner's walk entered its shared table");
    // More links (by the sharer, now that it is frozen), up to 255 in all, then Busy.
    let mut child = Space { ft: owner.ft, env: CHILD, root: child_root, asid: 2, by: 0 };
    let links = (1..512u64)
        .map(|k| va + (k << 21))
        .take_while(|&v| child.set(v, 2, Pte::table(l3), rule(CHILD)).is_ok());
    assert_eq!(links.count(), 254);
    assert_eq!(child.ft.get(l3).unwrap().shares, 255);
    for k in 1..255u64 {
        child.set(va + (k << 21), 2, Pte(0), rule(CHILD)).unwrap();
    }
    // The sharer's teardown ends its share and frees only its own tables.
    assert_eq!(child.dismantle(), 3, "the sharer freed a table or page of its parent's");
    let t = *ft.get(l3).unwrap();
    assert_eq!((t.shares, t.entries, t.owner), (0, 4, A.0));
    assert!(pages.iter().all(|&p| ft.get(p).unwrap().maps == 1));
    let mut owner = Space { ft: &mut ft, env: A, root, asid: 1, by: 0 };
    assert_eq!(owner.dismantle(), 4 + 3);
    owner.ft.free(A, w).unwrap();
    owner.ft.free(CHILD, f).unwrap();
    owner.ft.free(OTHER, other).unwrap();
    assert_eq!(census(&ft), before);
}

#[test]
fn a_shared_table_its_owner_unlinks_stays_whole_until_its_last_sharer_lets_go() {
    let mut ft = machine(64);
    let va = 0x40_0000;
    let (root, l3, pages) = text(&mut ft, va);
    let child_root = tree(&mut ft, CHILD, va, false);
    let own = |o: u32, _: u64, _: bool, f: u8| (o == A.0).then_some(f);
    Space { ft: &mut ft, env: A, root, asid: 1, by: 0 }.set(va, 2, freeze(l3), own).unwrap();
    let mut child = Space { ft: &mut ft, env: CHILD, root: child_root, asid: 2, by: 0 };
    child.set(va, 2, Pte::table(l3), rule(CHILD)).unwrap();
    // The owner (an exec) unlinks it with its entries: the sharer's pages stay, still counted.
    let mut owner = Space { ft: child.ft, env: A, root, asid: 1, by: 0 };
    owner.set(va, 2, Pte(0), own).unwrap();
    assert_eq!(owner.ft.free(A, pages[0]), Err(Error::Busy));
    assert_eq!(owner.ft.unbind_table(A, l3), Err(Error::Busy));
    let mut child = Space { ft: owner.ft, env: CHILD, root: child_root, asid: 2, by: 0 };
    assert_eq!(child.get(va, 3).unwrap().addr(), pages[0]);
    // The last sharer unlinks it: emptied, thawed, the owner's to free.
    child.set(va, 2, Pte(0), rule(CHILD)).unwrap();
    let t = *child.ft.get(l3).unwrap();
    assert_eq!((t.shares, t.entries, t.flags), (0, 0, 0));
    assert!(pages.iter().all(|&p| child.ft.get(p).unwrap().maps == 0));
    child.ft.free(A, pages[0]).unwrap();
    child.ft.unbind_table(A, l3).unwrap();
}
