//! Memory pressure and the default libOS's answer to revocation (`exo_libos::reclaim`):
//! well-behaved programs asked for frames give back cache-region pages and free heap pages
//! and keep working; one that misses its deadline loses only its reserve. Part of the core
//! suite.
//!
//! The scene: the test forks two workers and a taker; the workers fill memory with their
//! working sets (plain mapped pages) until only a few frames are free. The taker keeps
//! allocating; each failure makes the kernel ask the environment that holds the most — a
//! worker, whose family outweighs the taker's and the test's own frames — and the worker's
//! libOS gives frames back, which the taker then gets.

use alloc::vec;
use alloc::vec::Vec;

use exo_libos::abi::{upcall, EnvId};
use exo_libos::process::{self, Fork};
use exo_libos::reclaim::{self, CacheRegion};
use exo_libos::upcall::{set_hook, Upcall};
use exo_libos::vm::{self, PAGE};
use exo_libos::{println, sys};

use crate::runner::{check, wait_for, Shared};

type Test = (&'static str, fn() -> Result<(), &'static str>);

pub const TESTS: &[Test] = &[
    ("under_memory_pressure_workers_give_back_cache_and_heap_pages_and_survive", give_back),
    ("a_missed_deadline_costs_only_the_reserve_and_the_program_survives", reserve_taken),
    ("past_the_reserve_a_forced_repossession_takes_the_droppable_cache_pages_first", droppable_first),
];

/// Runs every test whose name contains `filter`; returns the number that failed.
pub fn run(filter: &str) -> usize {
    crate::runner::run_suite("pressure", TESTS, filter, |test| test())
}

/// Cache-region pages each worker fills.
const CACHE_PAGES: u64 = 24;
/// Free heap a worker leaves behind (so whole free pages are there to give).
const FREE_HEAP: usize = 256 * 1024;
/// Frames the taker wants beyond what memory had left, from workers that answer (more than
/// their cache regions hold, so free heap pages go too) and from workers that do not (what
/// one reserve holds).
const WANTED: u64 = 96;
const WANTED_UNANSWERED: u64 = 16;
/// Frames left free when the taker starts.
const LEFT: u32 = 24;

/// Words of the page the test shares with its children.
mod word {
    /// Set by the test when the workers may stop and check.
    pub const STOP: usize = 0;
    /// Workers that are ready (filled their memory).
    pub const READY: usize = 1;
    /// Set by the test once the workers filled memory.
    pub const FULL: usize = 2;
    /// Frames the taker got after memory was full.
    pub const GOT: usize = 3;
    /// Set by the taker when it is done.
    pub const DONE: usize = 4;
    /// Frames the taker wants beyond what memory had left.
    pub const WANT: usize = 5;
    /// Placed on cores (`across_cores`): 1 + the core each taker (0, 1) last ran on.
    pub const TAKER_CORE: usize = 6;
    /// Per worker: 1 + the core it last ran on, at `8 + 8 * w + 7` (after its `STATS`).
    pub const WORKER_CORE: usize = 7;
    /// Per worker `w` (0, 1): frames it gave back, its cache pages, heap pages, reserve
    /// frames, repossessed, lost, cache pages repossessed — at `8 + 8 * w ..`.
    pub const STATS: usize = 8;
    /// The churning hog's frames at its fullest (`churn_is_not_giving_back`).
    pub const PEAK: usize = 24;
    /// Set by the test when the workers may fill memory; then workers that filled it.
    pub const PAD: usize = 25;
    pub const PADDED: usize = 26;
}

fn spawn(f: impl FnOnce() -> i32) -> Result<EnvId, &'static str> {
    match process::fork().map_err(|_| "fork")? {
        Fork::Parent(child) => Ok(child),
        Fork::Child => sys::exit(f()),
    }
}

/// What a worker's cache page `i` holds: a pattern only `w` and `i` decide.
fn pattern(w: u64, i: u64, k: u64) -> u64 {
    (w * 0x9e37_79b9 + i * 0x85eb_ca6b + k).wrapping_mul(0xc2b2_ae35)
}

fn fill(c: &CacheRegion, w: u64, i: u64) {
    let p = c.page(i) as *mut u64;
    for k in 0..PAGE / 8 {
        // SAFETY: page `i` of the cache region is mapped (or mapped now, lazily) read-write
        // and only this environment uses it.
        unsafe { p.wrapping_add(k as usize).write_volatile(pattern(w, i, k)) };
    }
}

fn holds(c: &CacheRegion, w: u64, i: u64) -> bool {
    let p = c.page(i) as *const u64;
    // SAFETY: the caller checked page `i` resident inside `reclaim::pinned`, so it stays
    // mapped while this reads it.
    (0..PAGE / 8).all(|k| unsafe { p.wrapping_add(k as usize).read_volatile() } == pattern(w, i, k))
}

/// A well-behaved program: a cache it can refill, live heap data, free heap pages. It keeps
/// checking what is resident while the pressure lasts, then refills what was given back
/// and checks everything. Exits 0 if nothing was ever wrong.
fn worker(s: &Shared, w: u64, decline: bool, reserve: usize, core: Option<u8>) -> i32 {
    if let Some(c) = core {
        let _ = sys::env_set_affinity(EnvId::SELF, 1 << c);
        sys::yield_now(); // on to that core
    }
    if decline {
        // Too busy to answer: the request goes unanswered and the deadline passes.
        fn ignore(u: &Upcall) -> bool {
            u.kind == upcall::REVOKE
        }
        set_hook(Some(ignore));
    }
    let live: Vec<u64> = (0..4096).map(|i| pattern(w, 1000, i)).collect();
    drop(core::hint::black_box(vec![1u8; FREE_HEAP]));
    if reclaim::own_heap().is_err() {
        return 10;
    }
    // With no reserve and no answer, every frame the kernel takes comes from mapped pages:
    // a cache large enough for several repossessions (16 frames each) keeps them all there.
    let pages = if decline && reserve == 0 { 4 * CACHE_PAGES } else { CACHE_PAGES };
    let Ok(cache) = reclaim::add_cache_region(pages) else { return 11 };
    for i in 0..pages {
        fill(&cache, w, i);
    }
    if reclaim::keep_reserve(reserve) != reserve {
        return 12;
    }
    s.add(word::READY, 1);
    while s.get(word::PAD) == 0 {
        sys::yield_now();
    }
    pad();
    s.add(word::PADDED, 1);
    let mut bad = false;
    while s.get(word::STOP) == 0 {
        if decline && reserve == 0 {
            // A cache page taken by force could not be faulted back in while memory is
            // full (the fault would find no frame): leave the cache alone until it is over.
            sys::yield_now();
            continue;
        }
        // A page at a time, yielding between: requests mostly arrive with no page pinned.
        for i in 0..pages {
            bad |= reclaim::pinned(|| {
                // A page the kernel takes by force mid-check comes back as zeros through a
                // fault: only a check no fault interrupted counts.
                let faults = reclaim::cache_faults();
                cache.resident(i) && !holds(&cache, w, i) && reclaim::cache_faults() == faults
            });
            sys::yield_now();
        }
        bad |= live.iter().enumerate().any(|(i, &v)| v != pattern(w, 1000, i as u64));
    }
    // The pressure is over: take stock, refill what went, and check it all.
    reclaim::poll();
    for i in 0..pages {
        if !reclaim::pinned(|| cache.resident(i)) {
            fill(&cache, w, i);
        }
    }
    bad |= reclaim::pinned(|| (0..pages).any(|i| !cache.resident(i) || !holds(&cache, w, i)));
    bad |= live.iter().enumerate().any(|(i, &v)| v != pattern(w, 1000, i as u64));
    let st = reclaim::stats();
    let at = word::STATS + 8 * w as usize;
    s.set(at + word::WORKER_CORE, 1 + vm::env_info(vm::me()).map_or(9, |e| u64::from(e.cpu)));
    let all = [st.given(), st.cache_pages, st.heap_pages, st.reserve_frames, st.repossessed, st.lost];
    for (k, v) in all.into_iter().chain([st.cache_repossessed]).enumerate() {
        s.set(at + k, v);
    }
    i32::from(bad)
}

/// Maps plain pages (the worker's working set: nothing it gives back of its own accord)
/// until memory is down to `LEFT` free frames, yielding now and then so that two workers on
/// one core fill it in turn and end up holding about as much as each other.
fn pad() {
    let va = vm::alloc_va(u64::from(vm::kinfo().free_frames));
    let mut i = 0;
    while vm::kinfo().free_frames > LEFT && vm::map_new(va + i * PAGE, vm::RW).is_ok() {
        i += 1;
        if i % 64 == 0 {
            sys::yield_now();
        }
    }
}

/// Allocates until the takers together have `WANTED` frames past the point memory ran
/// out. `placed`: (which taker, the core it pins itself to).
fn taker(s: &Shared, placed: Option<(usize, u8)>) -> i32 {
    if let Some((_, c)) = placed {
        let _ = sys::env_set_affinity(EnvId::SELF, 1 << c);
    }
    while s.get(word::FULL) == 0 {
        sys::yield_now();
    }
    let done = wait_for(20_000, || {
        if sys::frame_alloc(EnvId::SELF, None).is_ok() {
            s.add(word::GOT, 1);
        }
        s.get(word::GOT) >= s.get(word::WANT) + u64::from(LEFT)
    });
    if let Some((i, _)) = placed {
        let core = vm::env_info(vm::me()).map_or(9, |e| u64::from(e.cpu));
        s.word(word::TAKER_CORE).fetch_or((1 + core) << (8 * i), core::sync::atomic::Ordering::SeqCst);
    }
    s.set(word::DONE, 1 + u64::from(done));
    loop {
        sys::yield_now();
    }
}

/// Runs the scene with two workers; returns their exit statuses. `across`: the workers on
/// cores 1 and 2, two takers on cores 0 and 3; otherwise all of it on core 0 (the children
/// inherit the test's cores), where ticks are counted. A worker that answers is asked, and
/// answers, between two yields of the taker there; on cores of their own, a worker's vCPU
/// stalled by a loaded host for the 3 ticks of the deadline (30 ms) missed a request it
/// would have answered (the core suite once failed so, `give_back`).
fn scene(s: &Shared, decline: bool, reserve: usize, across: bool) -> Result<Vec<i32>, &'static str> {
    let mine = vm::env_info(vm::me()).map_or(0, |e| e.affinity);
    let pinned = !across && mine & 1 != 0 && sys::env_set_affinity(EnvId::SELF, 1).is_ok();
    let statuses = scene_here(s, decline, reserve, across);
    if pinned {
        let _ = sys::env_set_affinity(EnvId::SELF, mine);
    }
    statuses
}

fn scene_here(s: &Shared, decline: bool, reserve: usize, across: bool) -> Result<Vec<i32>, &'static str> {
    s.set(word::WANT, if decline { WANTED_UNANSWERED } else { WANTED });
    let core = |w: u64| across.then_some(1 + w as u8);
    let workers: Vec<EnvId> =
        (0..2).map(|w| spawn(|| worker(s, w, decline, reserve, core(w)))).collect::<Result<_, _>>()?;
    check(wait_for(10_000, || s.get(word::READY) == 2), "the workers never got ready")?;
    // The takers are forked while memory is free: one anywhere, or one pinned to each of
    // cores 0 and 3.
    let takers: Vec<EnvId> = match across {
        false => vec![spawn(|| taker(s, None))?],
        true => [0, 3]
            .into_iter()
            .enumerate()
            .map(|p| spawn(move || taker(s, Some(p))))
            .collect::<Result<_, _>>()?,
    };
    s.set(word::PAD, 1);
    let padded = wait_for(30_000, || s.get(word::PADDED) == 2);
    s.set(word::FULL, 1);
    let finished = padded && wait_for(30_000, || s.get(word::DONE) != 0);
    if across {
        // Both takers say where they ran before they go.
        wait_for(1_000, || s.get(word::TAKER_CORE) & 0xff != 0 && s.get(word::TAKER_CORE) >> 8 != 0);
    }
    for &t in &takers {
        let _ = sys::env_destroy(t);
        let _ = process::wait(t);
    }
    s.set(word::STOP, 1);
    let statuses: Vec<i32> = workers.iter().map(|&w| process::wait(w).unwrap_or(-1)).collect();
    check(padded, "the workers never filled memory")?;
    check(finished, "the taker never finished")?;
    println!(
        "pressure: taker got {} frames; workers gave {} and {}, lost {} and {}",
        s.get(word::GOT),
        s.get(word::STATS),
        s.get(word::STATS + 8),
        s.get(word::STATS + 5),
        s.get(word::STATS + 8 + 5)
    );
    Ok(statuses)
}

fn give_back() -> Result<(), &'static str> {
    let s = Shared::new()?;
    // A reserve as well: what the handler cannot give from its caches at the moment a
    // request arrives (a page pinned, or `vm` busy) comes from it, never from mapped pages.
    let statuses = scene(&s, false, 16, false)?;
    check(statuses == [0, 0], "a well-behaved worker died or saw wrong data")?;
    let sum = |k: usize| s.get(word::STATS + k) + s.get(word::STATS + 8 + k);
    check(s.get(word::DONE) == 2, "the taker did not get its frames")?;
    check(sum(1) > 0, "no cache page was given back")?;
    check(sum(2) > 0, "no free heap page was given back")?;
    check(sum(4) == 0 && sum(5) == 0, "the kernel had to repossess from a worker that answered")
}

fn reserve_taken() -> Result<(), &'static str> {
    let s = Shared::new()?;
    let statuses = scene(&s, true, 16, false)?;
    check(statuses == [0, 0], "a worker that kept a reserve died or saw wrong data")?;
    let sum = |k: usize| s.get(word::STATS + k) + s.get(word::STATS + 8 + k);
    check(sum(4) > 0, "nothing was repossessed from workers that did not answer")?;
    check(sum(5) == 0, "a repossession reached mapped memory despite the reserve")?;
    check(sum(0) == 0, "workers that declined gave frames anyway")
}

/// No reserve and no answer: the kernel takes mapped pages by force. The libOS maps its
/// cache-region pages marked droppable, so those go before anything else (the heap, the
/// stack), the workers refill them and survive, and nothing is lost.
fn droppable_first() -> Result<(), &'static str> {
    let s = Shared::new()?;
    let statuses = scene(&s, true, 0, false)?;
    check(statuses == [0, 0], "a worker lost more than its cache to a forced repossession")?;
    let sum = |k: usize| s.get(word::STATS + k) + s.get(word::STATS + 8 + k);
    check(sum(4) > 0, "nothing was repossessed from workers that did not answer")?;
    check(sum(6) == sum(4), "a forced repossession took something other than cache pages")?;
    check(sum(5) == 0, "a worker lost mapped memory that was not its cache")
}

/// Hostile: a child marks droppable its mapping of a frame it does not own (its parent's,
/// shared with it and no longer mapped by the parent, so mapped exactly once: in the child),
/// then hogs memory and ignores revocation. The kernel takes the child's own pages, never
/// the parent's frame.
pub fn mark_cannot_give_away_others_frames() -> Result<(), &'static str> {
    let s = Shared::new()?;
    let va = vm::alloc_va(1);
    let pa = sys::frame_alloc(EnvId::SELF, None).map_err(|_| "alloc")?;
    let pte = exo_libos::abi::pte::Pte::user_page(pa, vm::RW).0 | vm::SHARED | vm::DROPPABLE;
    vm::map(va, pte).map_err(|_| "map")?;
    // SAFETY: `va` maps `pa` read-write just above; nothing else uses it yet.
    unsafe { (va as *mut u64).write_volatile(0x600d_cafe) };
    let hog = spawn(|| {
        fn ignore(u: &Upcall) -> bool {
            u.kind == upcall::REVOKE
        }
        set_hook(Some(ignore));
        while s.get(word::READY) == 0 {
            sys::yield_now(); // until the parent has unmapped its own mapping
        }
        // Take all memory, each page mapped (and marked droppable: the kernel should take
        // these first, which keeps the hog's stack and so the hog alive).
        let base = vm::alloc_va(1 << 20);
        let mut i = 0;
        loop {
            if i < 1 << 20 && vm::map_new_marked(base + i * PAGE, vm::RW, vm::DROPPABLE).is_ok() {
                i += 1;
            } else {
                s.add(word::GOT, 1);
                sys::yield_now();
            }
        }
    })?;
    let unmapped = vm::unmap(va).is_ok();
    s.set(word::READY, 1);
    let taken =
        wait_for(20_000, || vm::env_info(hog).is_some_and(|i| i.repossessed > 16) && s.get(word::GOT) > 50);
    use exo_libos::abi::env_state::{BLOCKED, RUNNABLE};
    let alive = vm::env_info(hog).is_some_and(|i| i.state == RUNNABLE || i.state == BLOCKED);
    let _ = sys::env_destroy(hog);
    let _ = process::wait(hog);
    let still_mine = vm::frame_entry(pa).is_some_and(|f| f.owner == vm::me().0);
    let intact = still_mine && vm::map(va, exo_libos::abi::pte::Pte::user_page(pa, vm::RW).0).is_ok() && {
        // SAFETY: `va` maps `pa` again, read-write, and only this environment uses it now.
        unsafe { (va as *const u64).read_volatile() == 0x600d_cafe }
    };
    let _ = vm::unmap_free(va);
    check(unmapped, "unmap")?;
    check(taken, "the hog was never repossessed")?;
    check(alive, "the kernel took the hog's own unmarked pages before its marked ones")?;
    check(intact, "the droppable mark made the kernel take another environment's frame")
}

/// A hog asked for frames back cannot look as if it gave them by taking and freeing one
/// frame in turn: what it takes while asked counts against what it frees (`Kernel::charge`),
/// so it still misses its deadline and loses what it did not give back, 16 frames net. It
/// holds every frame, unmapped, then frees one and takes it back again and again; before
/// that rule each free counted as a frame given back, and the request ended with at most
/// the one frame given.
pub fn churn_is_not_giving_back() -> Result<(), &'static str> {
    let s = Shared::new()?;
    let hog = spawn(|| {
        fn ignore(u: &Upcall) -> bool {
            u.kind == upcall::REVOKE
        }
        set_hook(Some(ignore));
        let mut last = 0;
        while let Ok(pa) = sys::frame_alloc(EnvId::SELF, None) {
            last = pa; // every frame there is (the kernel asks this, the largest holder)
        }
        s.set(word::PEAK, vm::env_info(vm::me()).map_or(0, |i| i.frames as u64));
        s.set(word::FULL, 1);
        let _ = sys::frame_free(EnvId::SELF, last);
        loop {
            if let Ok(pa) = sys::frame_alloc(EnvId::SELF, None) {
                let _ = sys::frame_free(EnvId::SELF, pa);
                s.add(word::GOT, 1);
            }
            sys::yield_now();
        }
    })?;
    let full = wait_for(20_000, || s.get(word::FULL) == 1);
    // (Between the hog's take and its free it holds one more: it frees before it yields.)
    let peak = s.get(word::PEAK);
    let taken = full
        && wait_for(5_000, || {
            vm::env_info(hog).is_some_and(|i| i.repossessed > 0 && i.frames as u64 + 16 <= peak)
                && s.get(word::GOT) > 64
        });
    let _ = sys::env_destroy(hog);
    let _ = process::wait(hog);
    check(full, "the hog did not fill memory")?;
    check(taken, "taking and freeing a frame in turn passed for giving frames back")
}

/// The well-behaved scene spread over the cores: the workers on cores 1 and 2 are asked
/// for frames on behalf of two takers allocating at once on cores 0 and 3 (the smp suite).
pub fn across_cores() -> Result<(), &'static str> {
    let s = Shared::new()?;
    let statuses = scene(&s, false, 16, true)?;
    check(statuses == [0, 0], "a well-behaved worker died or saw wrong data")?;
    let sum = |k: usize| s.get(word::STATS + k) + s.get(word::STATS + 8 + k);
    check(s.get(word::DONE) == 2, "the takers did not get their frames")?;
    check(sum(0) > 0, "no worker gave anything back")?;
    check(sum(4) == 0 && sum(5) == 0, "the kernel had to repossess from a worker that answered")?;
    let worker_cores = [0, 1].map(|w| s.get(word::STATS + 8 * w + word::WORKER_CORE));
    check(worker_cores == [2, 3], "the workers did not run on cores 1 and 2")?;
    check(s.get(word::TAKER_CORE) == 1 | 4 << 8, "the takers did not run on cores 0 and 3")
}
