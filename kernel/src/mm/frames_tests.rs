//! Host tests of the frame table.
use super::*;

fn table(frames: usize) -> FrameTable {
    let entries = Box::leak(vec![FrameEntry::default(); frames].into_boxed_slice());
    let mut t = FrameTable::new(entries, 0x4000_0000);
    t.set_range(0x4000_0000, frames as u64 * 4096, frame::FREE);
    t.set_range(0x4000_0000, 2 * 4096, frame::KERNEL);
    t
}

/// Frames of each kind, for the accounting checks: [free, kernel, public, data, table].
pub(crate) fn census(t: &FrameTable) -> [u32; 5] {
    let mut c = [0u32; 5];
    for kind in (0..t.len()).filter_map(|i| t.get(t.pa(i)).ok()).map(|e| e.kind as usize) {
        if let Some(slot) = c.get_mut(kind) {
            *slot += 1;
        }
    }
    c
}

const A: EnvId = EnvId(0x1001);
const B: EnvId = EnvId(0x1002);

#[test]
fn specific_and_any_allocation() {
    let mut t = table(16);
    assert_eq!(t.free.count, 14);
    assert_eq!(t.alloc(A, Some(0x4000_5000), true), Ok(0x4000_5000));
    assert_eq!(t.alloc(B, Some(0x4000_5000), true), Err(Error::Busy));
    assert_eq!(t.alloc(B, Some(0x4000_0000), true), Err(Error::Busy)); // kernel
    assert_eq!(t.alloc(B, Some(0x5000_0000), true), Err(Error::NotFound));
    assert_eq!(t.alloc(B, Some(0x4000_5004), true), Err(Error::Invalid));
    let mut got = vec![];
    while let Ok(pa) = t.alloc(B, None, true) {
        got.push(pa);
    }
    assert_eq!(got.len(), 13);
    assert!(!got.contains(&0x4000_5000) && !got.contains(&0x4000_0000));
    assert_eq!(t.alloc(A, None, true), Err(Error::NoMemory));
    assert_eq!(census(&t), [0, 2, 0, 14, 0]);
}

#[test]
fn only_the_owner_frees_and_never_while_mapped() {
    let mut t = table(8);
    let pa = t.alloc(A, None, true).unwrap();
    assert_eq!(t.free(B, pa), Err(Error::Denied));
    t.get_mut(pa).unwrap().maps = 1;
    assert_eq!(t.free(A, pa), Err(Error::Busy));
    assert_eq!(t.give(A, pa, B), Err(Error::Busy));
    t.get_mut(pa).unwrap().maps = 0;
    t.give(A, pa, B).unwrap();
    assert_eq!(t.free(A, pa), Err(Error::Denied));
    t.free(B, pa).unwrap();
    assert_eq!(t.free.count, 6);
    assert_eq!(t.free(B, pa), Err(Error::Denied)); // already free
}

#[test]
fn tables_bind_and_unbind_only_when_idle() {
    let mut t = table(8);
    let pa = t.alloc(A, None, true).unwrap();
    assert_eq!(t.bind_table(A, pa, 4), Err(Error::Invalid));
    assert_eq!(t.bind_table(B, pa, 1), Err(Error::Denied));
    t.bind_table(A, pa, 1).unwrap();
    assert_eq!(t.bind_table(A, pa, 1), Err(Error::Busy));
    assert_eq!(t.free(A, pa), Err(Error::Busy));
    t.get_mut(pa).unwrap().entries = 1;
    assert_eq!(t.unbind_table(A, pa), Err(Error::Busy));
    t.get_mut(pa).unwrap().entries = 0;
    assert_eq!(t.unbind_table(A, pa), Ok(1));
    t.free(A, pa).unwrap();
}

#[test]
fn reclaim_returns_everything_an_owner_holds() {
    let mut t = table(32);
    let before = census(&t);
    for _ in 0..5 {
        t.alloc(A, None, true).unwrap();
    }
    let tb = t.alloc(A, None, true).unwrap();
    t.bind_table(A, tb, 0).unwrap();
    let b = t.alloc(B, None, true).unwrap();
    assert_eq!(t.reclaim(A, EnvId(0), 0..32), 6);
    t.free(B, b).unwrap();
    assert_eq!(census(&t), before);
    // The free list still hands out every free frame exactly once.
    let mut seen = std::collections::HashSet::new();
    while let Ok(pa) = t.alloc(A, None, true) {
        assert!(seen.insert(pa));
    }
    assert_eq!(seen.len(), 30);
}

#[test]
fn device_frames_are_given_down_never_freed_and_pass_to_the_heir() {
    let mut t = table(8);
    let dev = t.pa(7);
    t.set_range(dev, 4096, frame::DEVICE);
    t.get_mut(dev).unwrap().owner = A.0;
    assert_eq!(t.free(A, dev), Err(Error::Denied));
    assert_eq!(t.bind_table(A, dev, 3), Err(Error::Denied));
    assert_eq!(t.give(B, dev, A), Err(Error::Denied), "only its owner gives it");
    t.get_mut(dev).unwrap().maps = 1;
    assert_eq!(t.give(A, dev, B), Err(Error::Denied), "not while mapped");
    t.get_mut(dev).unwrap().maps = 0;
    t.give(A, dev, B).unwrap();
    assert_eq!(t.get(dev).unwrap().owner, B.0);
    assert_eq!(t.reclaim(B, A, 7..8), 0, "device frames never go on the free list");
    assert_eq!((t.get(dev).unwrap().owner, t.get(dev).unwrap().kind), (A.0, frame::DEVICE));
}

#[test]
fn teardown_scans_only_the_owners_span_and_still_finds_all_it_holds() {
    let mut t = table(64);
    let top: Vec<u64> = (0..3).map(|_| t.alloc(A, None, true).unwrap()).collect();
    // The free list hands out the top of RAM first: A's span is 61..64, 3 entries, not 64.
    assert_eq!(top, [0x4003_f000, 0x4003_e000, 0x4003_d000]);
    // B takes a frame near the bottom on purpose: its own span, not A's, grows to it.
    assert_eq!(t.alloc(B, Some(0x4000_2000), true), Ok(0x4000_2000));
    t.give(A, top[0], B).unwrap(); // (B's span then also takes in 63)
    assert_eq!(t.reclaim(A, B, 61..64), 2);
    assert_eq!(t.reclaim(B, A, 2..64), 2);
    assert_eq!(census(&t), [62, 2, 0, 0, 0]);
}

#[test]
fn boot_threads_free_runs_as_one_push_per_frame_would() {
    // Boot's pattern: the kernel's gaps first, then the free runs over entries never marked.
    let entries = Box::leak(vec![FrameEntry::default(); 32].into_boxed_slice());
    let mut t = FrameTable::new(entries, 0x4000_0000);
    for (first, n, kind) in
        [(0, 2, frame::KERNEL), (8, 8, frame::PUBLIC), (2, 6, frame::FREE), (16, 16, frame::FREE)]
    {
        t.set_range(0x4000_0000 + first * 4096, n * 4096, kind);
    }
    t.set_range(0x4001_4000, 2 * 4096, frame::DEVICE); // out of the middle of the list
                                                       // Walk the list from its head: every back link matches, highest frame first.
    let (mut at, mut prev, mut order) = (t.free.head, 0, vec![]);
    while at != 0 {
        assert_eq!((t.entries[at as usize - 1].kind, t.prev(at as usize - 1)), (frame::FREE, prev));
        order.push(at - 1);
        (prev, at) = (at, t.next(at as usize - 1));
    }
    assert_eq!(order.len() as u32, t.free.count);
    let expect: Vec<u32> = (22..32).rev().chain((16..20).rev()).chain((2..8).rev()).collect();
    assert_eq!(order, expect);
    // Allocation takes them from the top, by address from anywhere, and frees go on top.
    assert_eq!(t.alloc(A, None, false), Ok(0x4001_f000));
    assert_eq!(t.alloc(A, Some(0x4000_4000), false), Ok(0x4000_4000));
    assert_eq!(t.free(A, 0x4000_4000), Ok(()));
    assert_eq!((t.free.head, t.next(4), t.prev(30)), (5, 31, 5));
    assert_eq!(census(&t), [19, 2, 8, 1, 0]);
}

#[test]
fn a_free_run_is_threaded_with_no_write_inside_it() {
    let t = table(64);
    let inside = |t: &FrameTable| t.entries[3..62].iter().all(|e| *e == FrameEntry::default());
    assert!(inside(&t), "frames 3..62 of a fresh run are all-zero entries");
    assert_eq!((t.free.count, t.free.head, t.next(2), t.prev(63)), (62, 64, 0, 0));
}

#[test]
fn a_range_outside_the_table_marks_only_what_lies_inside() {
    let mut t = table(32); // frames 0x4000_0000 .. 0x4002_0000
    let before = census(&t);
    t.set_range(0x5000_0000, 8 * 4096, frame::KERNEL); // wholly above
    t.set_range(0x1000_0000, 8 * 4096, frame::KERNEL); // wholly below
    t.set_range(!0xfff, u64::MAX, frame::KERNEL); // its end past 2^64
    assert_eq!(census(&t), before);
    t.set_range(0x4001_e000, 8 * 4096, frame::PUBLIC); // the last two frames, and beyond
    assert_eq!(census(&t), [before[0] - 2, before[1], before[2] + 2, before[3], before[4]]);
}

#[test]
fn a_frame_taken_for_a_copy_is_not_marked_zeroed_so_a_table_made_of_it_is_zeroed() {
    let mut t = table(8);
    let copy = t.alloc(A, None, false).unwrap();
    assert_eq!(t.get(copy).unwrap().flags & frame::ZEROED, 0);
    assert_eq!(t.bind_table(A, copy, 3), Ok(false)); // false: `TableBind` zeroes it
    let fresh = t.alloc(A, None, true).unwrap();
    assert_eq!(t.bind_table(A, fresh, 3), Ok(true));
}
