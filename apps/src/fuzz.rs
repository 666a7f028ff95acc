//! The system-call fuzzer: several environments at once throw a seeded random stream of
//! system calls at the kernel, with arguments that are random or half-valid (real frames,
//! real ids, real addresses, nearly-right descriptors), mixed with hostile patterns the
//! random stream rarely hits (giving to the parent, taking every environment slot it can,
//! mapping one page over and over). The
//! kernel must stay up; every `exo.fuzz.check=N` calls (default 20000) and at the end the
//! workers are paused and the isolation oracle (`oracle.rs`) walks every environment's
//! tables; at the end the whole frame table must balance (see `runner::audit`).
//!
//! Run by init with `exo.test=fuzz`; `exo.fuzz.calls=N` (default 100000) and
//! `exo.fuzz.seed=S` choose the length and the stream (`cargo xtask fuzz` runs long ones).
//! The same seed gives the same stream of calls. With four cores up, worker i starts pinned
//! to core i (the workers may move themselves: `EnvSetAffinity` is in the stream).

use core::sync::atomic::{AtomicU64, Ordering::Relaxed};

use crate::oracle::Oracle;

use exo_libos::abi::net::{NetBind, NetFilter, NetTerm, NET_SHARED};
use exo_libos::abi::pte::{Perm, Pte};
use exo_libos::abi::{env_state, EnvId, Sys, ANY_FRAME};
use exo_libos::format::rng::Rng;
use exo_libos::process::Fork;
use exo_libos::vm::{self, PAGE, RO, RW, SHARED};
use exo_libos::{println, process, sys};

/// Fuzzing environments running at any time.
const WORKERS: usize = 4;
/// Frames a worker may hold (so workers cannot starve the fuzzer itself).
const WORKER_QUOTA: u32 = 2048;
/// A worker whose count has not moved for this long (blocked, or spinning) is replaced.
const STALL_MS: u64 = 200;

/// What a worker knows that makes arguments half-valid.
struct Pool {
    frames: [u64; 32],
    envs: [u64; 8],
    vas: [u64; 8],
    /// A mapped page of the worker's for pointer arguments (`NetBind`'s, a frame to send),
    /// followed by [`RING_PAGES`] mapped pages a binding's ring may use.
    buf: u64,
}

/// Mapped pages after `Pool::buf` for network receive rings (two slots a page).
const RING_PAGES: u64 = 4;

impl Pool {
    fn frame(&self, r: &mut Rng) -> u64 {
        let k = vm::kinfo();
        match r.below(6) {
            0..=2 => r.pick(&self.frames),
            3 => k.ram_base + r.below(k.frames) * PAGE,
            4 => k.frame_table + r.below(4) * PAGE,
            _ => r.pick(&[0, ANY_FRAME, 0xfe20_1000, 0x0900_0000, u64::MAX, k.ram_base + 8]),
        }
    }
    fn env(&self, r: &mut Rng) -> u64 {
        match r.below(4) {
            0..=2 => r.pick(&self.envs),
            _ => r.next_u64() & 0xffff_ffff,
        }
    }
    fn va(&self, r: &mut Rng) -> u64 {
        match r.below(4) {
            0 | 1 => r.pick(&self.vas) + r.below(512) * PAGE,
            2 => r.next_u64() & 0x0000_ffff_ffff_f000,
            _ => r.pick(&[0, exo_libos::abi::USER_VA_LIMIT, 0xffff_ffff_8000_0000, u64::MAX, 0x40_0000]),
        }
    }
    /// A pointer argument: into the worker's own mapped page most of the time.
    fn ptr(&self, r: &mut Rng) -> u64 {
        match r.below(4) {
            0..=2 => self.buf + r.below(PAGE / 8) * 8,
            _ => self.va(r),
        }
    }
    /// Fills `buf` with a half-valid `NetBind`: filters with plausible offsets and sizes, a
    /// ring in the worker's ring pages (or anywhere), a slot count around the limit.
    fn net_bind(&self, r: &mut Rng) -> u64 {
        let term = |r: &mut Rng| NetTerm {
            offset: r.pick(&[0, 6, 12, 14, 23, 34, 36, 62, 63, 64, 1000]) as u16,
            size: r.pick(&[1, 2, 4, 3, 0, 8]) as u8,
            _pad: 0,
            mask: or_random(r, &[0xff, 0xffff, u32::MAX as u64]) as u32,
            value: r.next_u64() as u32,
        };
        let filter = |r: &mut Rng| {
            let mut f = NetFilter { count: r.below(10) as u32, ..NetFilter::default() };
            f.terms.iter_mut().for_each(|t| *t = term(r));
            f
        };
        let b = NetBind {
            rx: filter(r),
            tx: filter(r),
            ring: match r.below(3) {
                0 | 1 => self.buf + PAGE * (1 + r.below(RING_PAGES)) + r.pick(&[0, 8, 2048]),
                _ => self.va(r),
            },
            slots: or_random(r, &[0, 1, 2, 8, 9, 64, 65]) as u32,
            flags: or_random(r, &[0, NET_SHARED as u64]) as u32,
        };
        // SAFETY: `buf` is the worker's own mapped read-write page, larger than a `NetBind`.
        unsafe { (self.buf as *mut NetBind).write(b) };
        self.buf
    }
    fn pte(&self, r: &mut Rng) -> u64 {
        let perm = Perm { write: r.below(2) == 0, exec: r.below(2) == 0 };
        match r.below(5) {
            0 => Pte::user_page(self.frame(r), perm).0,
            1 => Pte::table(self.frame(r)).0,
            2 => Pte::user_page(self.frame(r), perm).0 ^ (1 << r.below(64)),
            3 => 0,
            _ => r.next_u64(),
        }
    }
}

/// One of `xs`, or now and then any number at all.
fn or_random(r: &mut Rng, xs: &[u64]) -> u64 {
    let any = r.next_u64();
    if r.below(xs.len() as u64 + 1) == 0 {
        any
    } else {
        r.pick(xs)
    }
}

/// The page the fuzzer and its workers share: a call count per worker, then these.
const PAUSE: usize = 8;
const PAUSED: usize = 9; // + worker index: the worker is parked
const BROKEN: usize = 16; // a hostile pattern succeeded: which one

/// Once in a while, an attack the random stream would almost never put together.
fn hostile(r: &mut Rng, pool: &Pool, ctl: &[AtomicU64; 512]) {
    let me = vm::env_info(vm::me());
    match r.below(3) {
        0 => {
            // Give a fresh frame to the parent, beyond this worker's quota's reach.
            let Ok(pa) = sys::frame_alloc(EnvId::SELF, None) else { return };
            if sys::frame_give(pa, EnvId(me.map_or(0, |e| e.parent))).is_ok() {
                ctl[BROKEN].store(1, Relaxed);
            } else {
                let _ = sys::frame_free(EnvId::SELF, pa);
            }
        }
        1 => {
            // Take environment slots until refused, then give them back.
            let mut made = [EnvId(0); 64];
            let mut n = 0;
            while let (Some(slot), Ok(e)) = (made.get_mut(n), sys::env_create(0)) {
                *slot = e;
                n += 1;
            }
            for e in &made[..n] {
                let _ = sys::env_destroy(*e);
            }
        }
        _ => {
            // Map one public page into a whole region at once, then take it away again.
            let va = pool.vas[1 + r.below(7) as usize];
            let public = vm::kinfo().frame_table;
            for p in 0..512 {
                let _ = sys::table_set(EnvId::SELF, va + p * PAGE, 3, Pte::user_page(public, RO).0);
            }
            for p in 0..512 {
                let _ = sys::table_set(EnvId::SELF, va + p * PAGE, 3, 0);
            }
        }
    }
}

/// One worker (number `i`): random system calls, counting each in `ctl[i]`, parking
/// whenever the fuzzer asks.
fn worker(seed: u64, i: usize, ctl: &[AtomicU64; 512]) -> ! {
    let counter = &ctl[i];
    let mut r = Rng::from_state(seed | 1);
    let me = vm::me().0 as u64;
    let mut pool = Pool { frames: [0; 32], envs: [0, me, 1, 0x1000, 0, 0, 0, 0], vas: [0; 8], buf: 0 };
    pool.buf = vm::alloc_va(1 + RING_PAGES);
    for p in 0..1 + RING_PAGES {
        let _ = vm::map_new(pool.buf + p * PAGE, RW);
    }
    for f in pool.frames.iter_mut() {
        *f = sys::frame_alloc(EnvId::SELF, None).unwrap_or(0);
    }
    for v in pool.vas.iter_mut() {
        *v = vm::alloc_va(512);
    }
    pool.vas[0] = 0x40_0000; // its own program image: mapping over it is fair game
    for v in pool.vas[1..].iter() {
        let _ = vm::ensure_tables(EnvId::SELF, *v); // so the mapping loops reach their pages
    }
    loop {
        if ctl[PAUSE].load(Relaxed) != 0 {
            ctl[PAUSED + i].store(1, Relaxed);
            while ctl[PAUSE].load(Relaxed) != 0 {
                sys::yield_now();
            }
            ctl[PAUSED + i].store(0, Relaxed);
        }
        if r.below(2000) == 0 {
            hostile(&mut r, &pool, ctl);
        }
        let num = match r.below(10) {
            0 => r.below(64),
            _ => r.pick(&[
                2, 3, 4, 5, 6, 7, 7, 7, 27, 27, 8, 9, 10, 11, 12, 13, 15, 16, 17, 18, 19, 20, 21, 22, 23, 24,
                25, 32, 26, 33, 35, 36, 37, 38, 40, 41, 48, 49, 50, 51, 52, 53, 54, 28,
            ]),
        };
        let mut a = [0u64; 6];
        match num {
            n if n == Sys::FrameAlloc as u64 => {
                a[..2].copy_from_slice(&[pool.env(&mut r), pool.frame(&mut r)])
            }
            n if n == Sys::FrameFree as u64 || n == Sys::TableUnbind as u64 => {
                a[..2].copy_from_slice(&[pool.env(&mut r), pool.frame(&mut r)])
            }
            n if n == Sys::FrameGive as u64 => {
                a[..2].copy_from_slice(&[pool.frame(&mut r), pool.env(&mut r)])
            }
            n if n == Sys::TableBind as u64 => {
                a[..3].copy_from_slice(&[pool.env(&mut r), pool.frame(&mut r), r.below(6)])
            }
            n if n == Sys::TableSet as u64 => {
                a[..4].copy_from_slice(&[pool.env(&mut r), pool.va(&mut r), r.below(5), pool.pte(&mut r)])
            }
            n if n == Sys::TableSetAt as u64 => {
                // A level-3 table of the worker's own most of the time (the one at a pool
                // address), else any frame; indexes around the table's end.
                let va = pool.va(&mut r);
                let table = match r.below(3) {
                    0 | 1 => sys::table_get(EnvId::SELF, va, 2).map_or(0, |e| Pte(e).addr()),
                    _ => pool.frame(&mut r),
                };
                a[..4].copy_from_slice(&[pool.env(&mut r), table, r.below(520), pool.pte(&mut r)])
            }
            n if n == Sys::TableSetBatch as u64 => {
                a[..3].copy_from_slice(&[pool.env(&mut r), pool.va(&mut r), r.below(600)])
            }
            n if n == Sys::TableGet as u64 => {
                a[..3].copy_from_slice(&[pool.env(&mut r), pool.va(&mut r), r.below(5)])
            }
            n if n == Sys::EnvSetAffinity as u64 => {
                let cores = or_random(&mut r, &[1, 2, 4, 8, 0xf, 0x3, 0, 0x10, 0xff, 0x1ff]);
                a[..2].copy_from_slice(&[pool.env(&mut r), cores])
            }
            n if n == Sys::NetBind as u64 => {
                a[0] = if r.below(4) == 0 { pool.ptr(&mut r) } else { pool.net_bind(&mut r) }
            }
            n if n == Sys::NetGrant as u64 || n == Sys::NetRevoke as u64 => {
                // (A `NetBind` begins with the two filters of a `NetScope`.)
                let scope = match r.below(3) {
                    0 => 0,
                    1 => pool.ptr(&mut r),
                    _ => pool.net_bind(&mut r),
                };
                a[..2].copy_from_slice(&[pool.env(&mut r), scope])
            }
            n if n == Sys::ConsoleAllow as u64 => a[..2].copy_from_slice(&[pool.env(&mut r), r.below(2)]),
            n if n == Sys::NetUnbind as u64 => a[0] = or_random(&mut r, &[0, 1, 2, 3, 4, 7]),
            n if n == Sys::NetSend as u64 => {
                let len = or_random(&mut r, &[0, 13, 14, 60, 1514, 1515, PAGE, u64::MAX]) % (2 * PAGE);
                a[..2].copy_from_slice(&[pool.ptr(&mut r), len])
            }
            n if n == Sys::NetPoll as u64 => {
                a[0] = if r.below(2) == 0 { r.pick(&[0, pool.buf]) } else { pool.ptr(&mut r) }
            }
            n if n == Sys::ConsoleRead as u64 => a[0] = 0, // never block on input
            // The word to sleep on: none, the worker's own page, a page it may not have, the
            // top of the address space; the value it must hold, right or not.
            n if n == Sys::NetWait as u64 => {
                let any = r.next_u64();
                let word = r.pick(&[0, pool.buf, pool.vas[1], u64::MAX - 3, any]);
                a[..2].copy_from_slice(&[word, r.below(2)]);
            }
            n if n == Sys::Exit as u64 && r.below(20) != 0 => continue, // exit only now and then
            _ => {
                for (i, x) in a.iter_mut().enumerate() {
                    *x = match (i, r.below(3)) {
                        (0, 0) => pool.env(&mut r),
                        (_, 0) => pool.frame(&mut r),
                        (_, 1) => pool.va(&mut r),
                        _ => r.next_u64(),
                    };
                }
            }
        }
        if num == Sys::ConsoleWrite as u64 {
            a[1] = r.pick(&[0, 1 << 20]); // nothing, or too long: keep the console readable
        }
        let ret = sys::raw(num, a);
        if num == Sys::EnvCreate as u64 && (ret as i64) > 0 {
            pool.envs[4 + r.below(4) as usize] = ret;
        }
        if num == Sys::FrameAlloc as u64 && (ret as i64) > 0 {
            let i = r.below(32) as usize;
            pool.frames[i] = ret;
        }
        counter.fetch_add(1, Relaxed);
    }
}

fn now_ms() -> u64 {
    sys::now() / (vm::kinfo().counter_hz / 1000).max(1)
}

/// Runs the fuzzer; returns 0 if the kernel survived and the frame table balances.
pub fn run(args: &str) -> i32 {
    let word = |key: &str| args.split_ascii_whitespace().find_map(|w| w.strip_prefix(key));
    let calls: u64 = word("exo.fuzz.calls=").and_then(|v| v.parse().ok()).unwrap_or(100_000);
    let seed: u64 = word("exo.fuzz.seed=").and_then(|v| v.parse().ok()).unwrap_or(0x5eed);
    let every: u64 = word("exo.fuzz.check=").and_then(|v| v.parse().ok()).unwrap_or(20_000);
    println!("fuzz: {calls} calls, seed {seed}, {WORKERS} environments at a time, oracle every {every}");
    let mut oracle = Oracle::new(1 << 15);
    let mut next_check = every;
    let va = vm::alloc_va(1);
    let Ok(pa) = sys::frame_alloc(EnvId::SELF, None) else { return 1 };
    if vm::map(va, Pte::user_page(pa, RW).0 | SHARED).is_err() {
        return 1;
    }
    // SAFETY: `va` is a shared read-write page for the rest of the run.
    let counters = unsafe { &*(va as *const [AtomicU64; 512]) };
    let mut rng = Rng::from_state(seed | 1);
    let cores = vm::env_info(vm::me()).map_or(1, |e| e.affinity);
    let mut ran_on = 0u8; // the cores the workers were seen running on
    let mut workers = [(EnvId(0), 0u64, 0u64); WORKERS]; // (id, last count, last progress ms)
    let (mut started, mut done) = (0u64, 0u64);
    while done < calls {
        for (i, w) in workers.iter_mut().enumerate() {
            let state = vm::env_info(w.0).filter(|e| e.id == w.0 .0).map(|e| e.state);
            let count = counters[i].load(Relaxed);
            let stalled = count == w.1 && now_ms() > w.2 + STALL_MS;
            if count != w.1 {
                *w = (w.0, count, now_ms());
            }
            let alive = matches!(state, Some(env_state::RUNNABLE) | Some(env_state::BLOCKED));
            if alive && !stalled {
                continue;
            }
            if alive {
                let _ = sys::env_destroy(w.0);
            } else if state == Some(env_state::ZOMBIE) {
                let _ = sys::env_wait(w.0);
            }
            done += count;
            counters[i].store(0, Relaxed);
            let worker_seed = rng.next_u64();
            match process::fork_with_quota(WORKER_QUOTA) {
                Ok(Fork::Child) => worker(worker_seed, i, counters),
                Ok(Fork::Parent(id)) => {
                    // One worker per core when four are ours: worker i starts on core i.
                    if cores == 0xf {
                        let _ = sys::env_set_affinity(id, 1 << i);
                    }
                    *w = (id, 0, now_ms())
                }
                Err(e) => {
                    println!("fuzz: fork failed: {e:?}");
                    return 1;
                }
            }
            started += 1;
        }
        for w in workers.iter() {
            let e = vm::env_info(w.0).filter(|e| e.id == w.0 .0 && e.state == env_state::RUNNABLE);
            ran_on |= e.map_or(0, |e| 1 << (e.cpu & 7));
        }
        let progress = done + counters[..WORKERS].iter().map(|c| c.load(Relaxed)).sum::<u64>();
        if progress >= next_check {
            next_check = progress + every;
            if let Err(why) = isolation(counters, &mut workers, &mut oracle) {
                println!("fuzz: ISOLATION BROKEN after {progress} calls: {why}");
                return 1;
            }
            println!("fuzz: {progress} calls, oracle pass {} clean", oracle.passes);
        }
        sys::yield_now();
    }
    if let Err(why) = isolation(counters, &mut workers, &mut oracle) {
        println!("fuzz: ISOLATION BROKEN at the end: {why}");
        return 1;
    }
    for (i, w) in workers.iter().enumerate() {
        done += counters[i].load(Relaxed);
        let _ = sys::env_destroy(w.0);
    }
    process::reclaim();
    let verdict = crate::runner::audit();
    println!("fuzz: workers ran on {} cores (mask {ran_on:#x})", ran_on.count_ones());
    println!(
        "fuzz: {done} calls from {started} environments; {} oracle passes; frame table {}",
        oracle.passes,
        verdict.map_or("UNBALANCED", |_| "balanced")
    );
    verdict.is_err() as i32
}

/// Parks every worker (one that does not park in time is destroyed), runs the oracle over
/// all of them, and lets them go on.
fn isolation(
    ctl: &[AtomicU64; 512],
    workers: &mut [(EnvId, u64, u64); WORKERS],
    oracle: &mut Oracle,
) -> Result<(), &'static str> {
    ctl[PAUSE].store(1, Relaxed);
    let deadline = now_ms() + STALL_MS;
    for (i, w) in workers.iter().enumerate() {
        let running = || vm::env_info(w.0).is_some_and(|e| e.id == w.0 .0 && e.state == env_state::RUNNABLE);
        while running() && ctl[PAUSED + i].load(Relaxed) == 0 && now_ms() < deadline {
            sys::yield_now();
        }
        if running() && ctl[PAUSED + i].load(Relaxed) == 0 {
            let _ = sys::env_destroy(w.0); // replaced by the main loop
        }
    }
    let verdict = match ctl[BROKEN].load(Relaxed) {
        0 => oracle.check().map(drop),
        _ => Err("a worker gave a frame to its parent"),
    };
    ctl[PAUSE].store(0, Relaxed);
    for w in workers.iter_mut() {
        w.2 = now_ms(); // parked time is not a stall
    }
    verdict
}
