//! `TableSetAt` under attack: the caller names a level-3 table by its frame, and the kernel
//! walks nothing, so every way of naming the wrong frame must be refused — a table of
//! another space, one not linked, one at another level, a data, public or absent frame, an
//! index past the table — and a table torn down on another core while the call is made
//! must never take an entry once it is not a linked table any more.

use core::sync::atomic::{AtomicU64, Ordering::SeqCst};

use crate::runner::check;
use exo_libos::abi::pte::{Perm, Pte};
use exo_libos::abi::{EnvId, Error};
use exo_libos::process::{self, Fork}; // (`sys::env_wait`, not `process::wait`: that frees
                                      // every unmapped frame of ours, the test's too)
use exo_libos::sys;
use exo_libos::vm::{self, PAGE, RO, RW, SHARED};

/// The level-3 table of `env` that covers `va` (its tables must reach it).
fn l3_of(env: EnvId, va: u64) -> Result<u64, &'static str> {
    let e = Pte(sys::table_get(env, va, 2).map_err(|_| "table_get")?);
    if e.is_valid() {
        Ok(e.addr())
    } else {
        Err("no level-3 table there")
    }
}

fn index(va: u64) -> u64 {
    (va >> 12) & 511
}

fn set_at(env: EnvId, table: u64, i: u64, pte: u64) -> Result<(), Error> {
    sys::table_set_at(env, table, i, pte)
}

/// Every frame that is not a linked level-3 table of the space named is refused, with the
/// error the ABI gives; the entries it would have set stay empty. A real one works, and a
/// page entry replaced through it drops its old translation (the new frame is read).
pub fn names_only_linked_level_3_tables_of_the_space() -> Result<(), &'static str> {
    let me = EnvId::SELF;
    let va = vm::alloc_va(2);
    vm::reserve(va).map_err(|_| "reserve")?;
    let l3 = l3_of(me, va)?;
    let l2 = Pte(sys::table_get(me, va, 1).map_err(|_| "table_get 1")?).addr();
    let (a, b) =
        (sys::frame_alloc(me, None).map_err(|_| "alloc")?, sys::frame_alloc(me, None).map_err(|_| "alloc")?);
    let page = |pa| Pte::user_page(pa, RW).0;
    let i = index(va);
    let k = vm::kinfo();
    let absent = !(PAGE - 1); // the last page of the address range: no RAM
    let unlinked = sys::frame_alloc(me, None).map_err(|_| "alloc")?;
    sys::table_bind(me, unlinked, 3).map_err(|_| "bind")?;
    let refusals = [
        (set_at(me, a, i, page(b)), Err(Error::Denied), "a data frame named as a table"),
        (set_at(me, k.frame_table, i, page(a)), Err(Error::Denied), "a public frame named as a table"),
        (set_at(me, absent, i, page(a)), Err(Error::NotFound), "a frame past RAM named as a table"),
        (set_at(me, l3 + 8, i, page(a)), Err(Error::Invalid), "an unaligned table address"),
        (set_at(me, l2, i, page(a)), Err(Error::Invalid), "a level-2 table named as level 3"),
        (set_at(me, unlinked, i, page(a)), Err(Error::NotFound), "a table linked nowhere"),
        (set_at(me, l3, 512, page(a)), Err(Error::Invalid), "index 512"),
        (set_at(me, l3, u64::MAX, page(a)), Err(Error::Invalid), "index 2^64 - 1"),
        (set_at(me, l3, i, page(a) & !(1 << 54)), Err(Error::Denied), "writable and executable"),
        (
            set_at(EnvId(0x0fff_ffff), l3, i, page(a)),
            Err(Error::NotFound),
            "an environment that does not exist",
        ),
    ];
    let _ = sys::table_unbind(me, unlinked).and_then(|_| sys::frame_free(me, unlinked));
    for (got, want, why) in refusals {
        check(got == want, why)?;
    }
    let untouched = vm::entry(va) == 0 && sys::table_get(me, va, 3) == Ok(0);
    check(untouched, "a refused call changed the entry")?;
    check(vm::frame_entry(a).is_some_and(|f| f.maps == 0), "a refused call counted a mapping")?;

    // Another space's tables: a child's, named by its parent for itself, and the parent's,
    // named by the child for itself and for its parent.
    let w = shared_words()?;
    w[0].store(0, SeqCst);
    w[2].store(vm::me().0 as u64, SeqCst);
    let parents = l3;
    let child = match process::fork().map_err(|_| "fork")? {
        Fork::Child => {
            let cva = vm::alloc_va(1);
            let ok = vm::reserve(cva).is_ok();
            let mine = l3_of(EnvId::SELF, cva).unwrap_or(0);
            let f = sys::frame_alloc(EnvId::SELF, None).unwrap_or(0);
            let own = set_at(EnvId::SELF, parents, i, Pte::user_page(f, RW).0);
            let up = set_at(EnvId(w[2].load(SeqCst) as u32), parents, i, Pte::user_page(f, RW).0);
            w[1].store(mine, SeqCst);
            let status = if !ok || mine == 0 {
                1
            } else if own != Err(Error::Denied) {
                2
            } else if up != Err(Error::Denied) {
                3
            } else {
                0
            };
            w[0].store(1, SeqCst);
            sys::exit(status)
        }
        Fork::Parent(c) => c,
    };
    // `sys::env_wait`, not `process::wait`, which frees every unmapped frame of ours.
    let status = sys::env_wait(child).map_err(|_| "wait")?;
    check(status != 1, "the child could not make its table")?;
    check(status != 2, "a child set an entry in its parent's table as its own")?;
    check(status != 3, "a child set an entry in its parent's table naming the parent")?;
    check(status == 0, "the child failed")?;
    let theirs = w[1].load(SeqCst);
    check(set_at(me, theirs, i, page(a)) != Ok(()), "a parent set an entry in a dead child's table")?;

    // A real one: map `a`, read it through `va`, replace it with `b` and read `b`.
    let fill = |pa: u64, v: u64| vm::fill_frame(pa, |p| p[..8].copy_from_slice(&v.to_le_bytes()));
    fill(a, 0xa).map_err(|_| "fill a")?;
    fill(b, 0xb).map_err(|_| "fill b")?;
    set_at(me, l3, i, Pte::user_page(a, RO).0).map_err(|_| "map a")?;
    // SAFETY: `va` maps frame `a` read-only now.
    let first = unsafe { (va as *const u64).read_volatile() };
    set_at(me, l3, i, Pte::user_page(b, RO).0).map_err(|_| "map b")?;
    // SAFETY: `va` maps frame `b` read-only now.
    let second = unsafe { (va as *const u64).read_volatile() };
    let cleared = set_at(me, l3, i, 0);
    let counts = [a, b].map(|f| vm::frame_entry(f).map_or(9, |e| e.maps));
    let _ = (sys::frame_free(me, a), sys::frame_free(me, b));
    check(first == 0xa, "the page mapped through TableSetAt did not read its frame")?;
    check(second == 0xb, "a replaced entry still translated to the old frame")?;
    check(cleared.is_ok() && counts == [0, 0], "clearing through TableSetAt left a count")
}

/// A child on core 1 makes a frame a level-3 table, links it, unlinks it, turns it back
/// into data and reads it, over and over; its parent on core 0 sets and clears an entry in
/// it through `TableSetAt` all the while. Every call either works on a linked table or is
/// refused (`NotFound` unlinked, `Denied` as data), and the frame never holds an entry once
/// it is data again. Then the child dies, and its table with it: refused too.
///
/// The child goes on past its `ROUNDS` until the parent has made `ROUNDS` calls (it counts
/// them in `w[4]`), up to `MOST_ROUNDS`: on a loaded host core 0's vCPU can stall long
/// enough for core 1 to finish a fixed number of rounds before the parent's first call
/// (the core suite once failed so, "the parent never raced the child").
pub fn cannot_reach_a_table_torn_down_on_another_core() -> Result<(), &'static str> {
    let mine = vm::env_info(vm::me()).map_or(0, |e| e.affinity);
    if mine & 0b11 != 0b11 {
        return Ok(()); // one core: no race to run
    }
    const ROUNDS: u64 = 300;
    let w = shared_words()?;
    (0..8).for_each(|i| w[i].store(0, SeqCst));
    let child = match process::fork().map_err(|_| "fork")? {
        Fork::Child => {
            let status = tear_down_and_read(w, ROUNDS, ROUNDS);
            w[3].store(1, SeqCst); // done, or given up: the parent stops racing
            sys::exit(status)
        }
        Fork::Parent(c) => c,
    };
    sys::env_set_affinity(child, 2).map_err(|_| "child to core 1")?;
    sys::env_set_affinity(EnvId::SELF, 1).map_err(|_| "self to core 0")?;
    let f = sys::frame_alloc(EnvId::SELF, None).map_err(|_| "alloc")?;
    let pte = Pte::user_page(f, Perm { write: false, exec: false }).0;
    let (mut set, mut refused, mut strange) = (0u64, 0u64, 0u64);
    w[0].store(1, SeqCst); // go
    while w[3].load(SeqCst) == 0 {
        let t = w[1].load(SeqCst);
        if t == 0 {
            continue;
        }
        match set_at(child, t, 7, pte) {
            Ok(()) => {
                set += 1;
                strange += (set_at(child, t, 7, 0) != Ok(())) as u64; // still linked: it holds an entry
            }
            Err(Error::NotFound | Error::Denied) => refused += 1,
            Err(_) => strange += 1,
        }
        w[4].fetch_add(1, SeqCst);
    }
    let status = sys::env_wait(child).map_err(|_| "wait")?;
    let t = w[1].load(SeqCst);
    let after = set_at(child, t, 7, pte);
    let _ = sys::env_set_affinity(EnvId::SELF, mine);
    let unmapped = vm::frame_entry(f).is_some_and(|e| e.maps == 0);
    let freed = sys::frame_free(EnvId::SELF, f);
    check(status != 1, "the child found an entry in its table after it became data")?;
    check(status == 0, "the child's own table calls failed")?;
    check(w[2].load(SeqCst) >= ROUNDS, "the child did not finish its rounds")?;
    check(strange == 0, "a call on the racing table failed in a way the ABI does not give")?;
    check(set + refused > 0, "the parent never raced the child")?;
    check(after == Err(Error::NotFound), "an entry was set in a dead child's table")?;
    check(unmapped && freed.is_ok(), "the parent's frame kept a mapping from the dead child")
}

/// The child's side: `rounds` times, and on until the parent has made `calls` calls
/// (`w[4]`) or `MOST_ROUNDS` are done, bind, link, unlink (retrying while the parent's
/// entry is in it), unbind and read the frame as data. Returns 0, 1 if the data held
/// anything, or 2 and up if a step of its own failed.
fn tear_down_and_read(w: &'static [AtomicU64; 512], rounds: u64, calls: u64) -> i32 {
    let me = EnvId::SELF;
    let region = vm::alloc_va(1024) & !(vm::REGION - 1);
    let region = region + vm::REGION; // a 2 MiB region nothing else of ours uses
    let look = vm::alloc_va(1);
    if vm::ensure_tables(me, region).is_err() || vm::reserve(look).is_err() {
        return 2;
    }
    // Our own table at `region` goes; `t` takes its place, again and again.
    let Ok(old) = l3_of(me, region) else { return 2 };
    if sys::table_set(me, region, 2, 0).is_err() || sys::table_unbind(me, old).is_err() {
        return 2;
    }
    let t = old;
    while w[0].load(SeqCst) == 0 {
        sys::yield_now();
    }
    let mut dirty = 0;
    let more = |round: u64| round < rounds || w[4].load(SeqCst) < calls && round < MOST_ROUNDS;
    for round in (0..).take_while(|&r| more(r)) {
        if sys::table_bind(me, t, 3).is_err() || sys::table_set(me, region, 2, Pte::table(t).0).is_err() {
            return 3;
        }
        w[1].store(t, SeqCst);
        for _ in 0..(round % 7) * 20 {
            core::hint::spin_loop();
        }
        let mut unlinked = sys::table_set(me, region, 2, 0);
        while unlinked == Err(Error::Busy) {
            unlinked = sys::table_set(me, region, 2, 0); // the parent's entry is in it
        }
        if unlinked.is_err() || sys::table_unbind(me, t).is_err() {
            return 5;
        }
        if vm::map_frame(look, t, RO).is_err() {
            return 4;
        }
        // SAFETY: `look` maps frame `t`, data again, read-only.
        let words = unsafe { &*(look as *const [u64; 512]) };
        dirty |= words.iter().fold(0, |a, &x| a | x);
        if vm::unmap(look).is_err() {
            return 4;
        }
        w[2].store(round + 1, SeqCst);
    }
    (dirty != 0) as i32
}

/// Most rounds the racing child makes while waiting for its parent's calls.
const MOST_ROUNDS: u64 = 30_000;

/// A page of words this environment shares read-write with the children it forks.
fn shared_words() -> Result<&'static [AtomicU64; 512], &'static str> {
    static VA: AtomicU64 = AtomicU64::new(0);
    if VA.load(SeqCst) == 0 {
        let va = vm::alloc_va(1);
        let pa = sys::frame_alloc(EnvId::SELF, None).map_err(|_| "shared frame")?;
        vm::map(va, Pte::user_page(pa, RW).0 | SHARED).map_err(|_| "map shared")?;
        VA.store(va, SeqCst);
    }
    // SAFETY: VA maps a page shared read-write with every forked child, for good.
    Ok(unsafe { &*(VA.load(SeqCst) as *const [AtomicU64; 512]) })
}
