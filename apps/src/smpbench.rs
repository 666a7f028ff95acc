//! Benchmarks of exo on several cores: a protected control transfer to a server on the
//! same core and on another, and a scaling table — four environments doing the same
//! independent work placed on one, two and four cores — read as work per unit of guest
//! time. Run by init's benchmark mode (`bench.rs` lists them); each needs four cores up.
//!
//! Under QEMU's `-icount` guest time (`CNTVCT`, and each core's cycle counter) advances
//! with the instructions of *every* vCPU (QEMU runs them one after another on one host
//! thread and keeps one instruction count). So here a scaling row measures the total
//! instructions the machine spent per operation, and perfect scaling shows as a flat row
//! (no extra instructions when cores are added), not as a shorter time. The `scale_spin`
//! rows, pure EL0 work that scales perfectly on silicon, show the effect: see
//! `docs/multicore.md`. Spans across cores are stamped with `CNTVCT`, which the cores
//! share; each core's cycle counter starts when that core enables it. A benchmark that needs four cores and finds fewer returns 0
//! operations (reported as skipped).

use core::sync::atomic::{AtomicU64, Ordering::SeqCst};

use exo_libos::abi::pte::Pte;
use exo_libos::abi::EnvId;
use exo_libos::process::{self, Fork};
use exo_libos::vm::{self, RW};
use exo_libos::{println, sys};

use crate::meter::measure;

/// Environments in every scaling row.
const WORKERS: usize = 4;

/// Words of the shared page: the start signal, then per worker its start and end stamps
/// (rows of eight).
const GO: usize = 0;
const START: usize = 8;
const END: usize = 16;

fn mine() -> u8 {
    vm::env_info(vm::me()).map_or(0, |e| e.affinity)
}

/// This module's page shared with its forked children, zeroed ([`crate::runner::shared_page`]).
fn shared() -> &'static [AtomicU64; 512] {
    static VA: AtomicU64 = AtomicU64::new(0);
    crate::runner::shared_page(&VA)
}

/// A PCT round trip to an echo server, the client on core 0 and the server on `server_core`.
pub fn pct_pinned(server_core: u8) -> (u64, u64) {
    fn echo(c: &exo_libos::ipc::Call) -> [u64; 4] {
        c.args
    }
    let all = mine();
    if all != 0xf {
        return skipped();
    }
    let Ok(server) = crate::ipctest::server(echo) else { return (1, 0) };
    let placed = sys::env_set_affinity(server, 1 << server_core).is_ok()
        && sys::env_set_affinity(EnvId::SELF, 1).is_ok();
    sys::yield_now(); // from here on this runs on core 0
    let _ = sys::pct_call(server, [0; 4], 0); // the server's first run on its core
    let n = 1000;
    let per = measure(n, |i| {
        let _ = sys::pct_call(server, [i, 0, 0, 0], 0);
    });
    let where_ = vm::env_info(server).map_or(9, |e| e.cpu);
    let _ = sys::env_destroy(server);
    let _ = sys::env_set_affinity(EnvId::SELF, all);
    if !placed || where_ != server_core {
        println!("bench pct_pinned: the server did not run on core {server_core}");
        return (1, 0);
    }
    (n, per)
}

/// A directed yield across cores: the caller on core 0 yields to a partner kept to core 1,
/// where a spinner runs; the figure is the guest time (machine instructions, under
/// `-icount`) from just before the `YieldTo` to the partner's first stamp on core 1; the
/// caller then sleeps (`NetWait`), so that core 0 idles meanwhile, as a PCT's caller's does
/// in `pct_round_trip_cross_core` (a caller spinning would be counted too). Core 1
/// takes one such hand-off per tick at most (`docs/multicore.md`), so each operation waits
/// for a fresh tick of core 1, the partner's round-robin turn in it, and the spinner's
/// return (a yield to the partner while it still runs would hand nothing over).
pub fn yield_cross_core() -> (u64, u64) {
    let all = mine();
    if all != 0xf {
        return skipped();
    }
    let s = shared();
    let ticks = |c: usize| {
        // SAFETY: a plain read of the kernel information page, which stays mapped; volatile
        // because the kernel updates it behind the compiler's back.
        unsafe { core::ptr::read_volatile(&vm::kinfo().cpu_ticks[c]) }
    };
    let mut kids = [EnvId(0); 2];
    for (i, kid) in kids.iter_mut().enumerate() {
        *kid = match process::fork() {
            Ok(Fork::Child) if i == 0 => loop {
                s[0].fetch_add(1, SeqCst);
            },
            Ok(Fork::Child) => loop {
                // The partner: the tick of its latest turn; at the first turn after a request
                // (s[4] = 1) the time and the tick, answered (s[4] = 2).
                s[6].store(ticks(1), SeqCst);
                if s[4].load(SeqCst) == 1 {
                    s[2].store(clock_ns(), SeqCst);
                    s[3].store(ticks(1), SeqCst);
                    s[4].store(2, SeqCst);
                }
                sys::yield_now();
            },
            Ok(Fork::Parent(c)) => c,
            Err(_) => return (1, 0),
        };
        let _ = sys::env_set_affinity(*kid, 0b10);
    }
    let _ = sys::env_set_affinity(EnvId::SELF, 1);
    let wait = |done: &dyn Fn() -> bool| {
        let end = sys::now() + vm::kinfo().counter_hz / 10; // ten ticks
        while !done() && sys::now() < end {
            sys::yield_now();
        }
    };
    let (n, mut total, mut prompt) = (20, 0, 0);
    for _ in 0..n {
        let t = ticks(1);
        wait(&|| ticks(1) > t && s[6].load(SeqCst) == ticks(1));
        let spun = s[0].load(SeqCst);
        wait(&|| s[0].load(SeqCst) > spun); // the partner has yielded: the spinner runs
        let tick = ticks(1);
        s[4].store(1, SeqCst);
        let start = clock_ns();
        let _ = sys::yield_to(kids[1]);
        let _ = sys::net_wait(); // core 0 idles (a spinning wait would count too) until its tick
        wait(&|| s[4].load(SeqCst) == 2);
        total += s[2].load(SeqCst).saturating_sub(start);
        prompt += (s[4].load(SeqCst) == 2 && s[3].load(SeqCst) == tick) as u64;
    }
    for kid in kids {
        let _ = sys::env_destroy(kid);
    }
    let _ = sys::env_set_affinity(EnvId::SELF, all);
    if prompt != n {
        println!("bench env_switch_cross_core: {} of {n} yields waited for core 1's tick", n - prompt);
        return (1, 0);
    }
    (n, total / n)
}

/// The work of a scaling row, `n` times.
#[derive(Clone, Copy)]
pub enum Work {
    /// A loop at EL0 that makes no system call.
    Spin,
    /// `Nop`: a trap, nothing else (it takes no lock).
    NullSyscall,
    /// [`locked_nop`]: a trap and the big lock.
    LockedSyscall,
    /// Frame allocate + map + unmap + free (the frame table and TLB maintenance).
    FrameCycle,
    /// A 4 KiB read of `/log/svc.bin` through the file server `fsd` (one PCT with a frame
    /// grant per read): the server is one environment, so its clients take turns.
    FsdRead(EnvId),
}

/// Words of the shared page for set-up: the workers may prepare; how many are ready; how
/// many are done; the sentinel's id; then each worker's core (a row of eight).
const SETUP: usize = 1;
const READY: usize = 2;
const DONE: usize = 3;
const SENTINEL: usize = 4;
const CORE: usize = 24;

fn work(what: Work, n: u64, s: &[AtomicU64; 512]) {
    if let Work::FsdRead(fsd) = what {
        while s[SETUP].load(SeqCst) == 0 {
            sys::yield_now();
        }
        let mut vfs = exo_libos::fs::Vfs::new();
        let mut buf = [0u8; 4096];
        let fd = exo_libos::fs::service::mount_remote(&mut vfs, fsd)
            .ok()
            .and_then(|_| vfs.open("/log/svc.bin", exo_libos::fs::OpenFlags::READ).ok());
        let Some(fd) = fd else { sys::exit(1) };
        wait_go(s);
        stamp(s, START);
        for i in 0..n {
            let _ = vfs.seek(fd, exo_libos::fs::SeekFrom::Start((i % 16) * 4096));
            let _ = vfs.read(fd, &mut buf);
        }
        stamp(s, END);
        let _ = vfs.close(fd);
        return;
    }
    wait_go(s);
    stamp(s, START);
    match what {
        Work::Spin => {
            for i in 0..n * 100 {
                core::hint::black_box(i);
            }
        }
        Work::NullSyscall => {
            for _ in 0..n {
                let _ = sys::nop();
            }
        }
        Work::LockedSyscall => {
            for _ in 0..n {
                locked_nop();
            }
        }
        Work::FrameCycle => {
            let va = vm::alloc_va(1);
            let _ = vm::ensure_tables(EnvId::SELF, va);
            for _ in 0..n {
                if let Ok(pa) = sys::frame_alloc(EnvId::SELF, None) {
                    let _ = sys::table_set(EnvId::SELF, va, 3, Pte::user_page(pa, RW).0);
                    let _ = sys::table_set(EnvId::SELF, va, 3, 0);
                    let _ = sys::frame_free(EnvId::SELF, pa);
                }
            }
        }
        Work::FsdRead(_) => {}
    }
    stamp(s, END);
}

/// Waits until this worker runs on its core (its affinity moves it at that core's next
/// scheduling decision), says it is ready, and waits for the start.
fn wait_go(s: &[AtomicU64; 512]) {
    let core = s[CORE + ME.load(SeqCst) as usize].load(SeqCst);
    let end = sys::now() + vm::kinfo().counter_hz;
    while vm::env_info(vm::me()).is_none_or(|e| u64::from(e.cpu) != core) && sys::now() < end {
        sys::yield_now();
    }
    s[READY].fetch_add(1, SeqCst);
    while s[GO].load(SeqCst) == 0 {
        sys::yield_now();
    }
}

/// After the end stamp: the last worker to finish calls the sentinel (whose exit wakes the
/// parent); every worker then parks for good, spending nothing, until it is destroyed.
fn finish(s: &[AtomicU64; 512]) -> ! {
    if s[DONE].fetch_add(1, SeqCst) + 1 == WORKERS as u64 {
        let _ = sys::pct_call(EnvId(s[SENTINEL].load(SeqCst) as u32), [0; 4], 0);
    }
    let _ = sys::pct_register(0x1000, 0x2000); // never called: nobody may
    let _ = sys::pct_wait();
    sys::exit(1)
}

/// Records the counter in this worker's word of the row `at` (`START` or `END`).
fn stamp(s: &[AtomicU64; 512], at: usize) {
    s[at + ME.load(SeqCst) as usize].store(clock_ns(), SeqCst);
}

/// Guest time in ns from the generic timer's virtual count, which every core shares. (Each
/// core's PMU cycle counter starts when that core enables it, so stamps taken on different
/// cores with it cannot be compared: on raspi4b they differed by millions.)
fn clock_ns() -> u64 {
    let hz = vm::kinfo().counter_hz.max(1);
    (u128::from(sys::now()) * 1_000_000_000 / u128::from(hz)) as u64
}

/// This worker's index (each worker is a forked copy with its own statics).
/// Says a several-core bench cannot run here (fewer than four cores), as `bench::run`
/// expects of a bench that reports no operations.
fn skipped() -> (u64, u64) {
    println!("bench skipped: it needs four cores");
    (0, 0)
}

static ME: AtomicU64 = AtomicU64::new(0);

/// Four environments each doing `n` operations of `what`, placed round-robin on the first
/// `cores` cores (each pinned to one). Returns (operations, guest time per operation in
/// ns): the span from the first worker's start to the last one's end, over all the
/// operations.
pub fn scale(what: Work, cores: u8, n: u64) -> (u64, u64) {
    let all = mine();
    if all != 0xf {
        return skipped();
    }
    let s = shared();
    // The sentinel: a server whose only call ends it, which wakes this environment from
    // `EnvWait` without its polling (under -icount every core's instructions count).
    fn quit(_: &exo_libos::ipc::Call) -> [u64; 4] {
        sys::exit(0)
    }
    let Ok(sentinel) = crate::ipctest::server(quit) else { return (1, 0) };
    s[SENTINEL].store(u64::from(sentinel.0), SeqCst);
    let mut kids = [EnvId(0); WORKERS];
    for (k, kid) in kids.iter_mut().enumerate() {
        let core = k as u8 % cores;
        s[CORE + k].store(u64::from(core), SeqCst);
        match process::fork() {
            Ok(Fork::Child) => {
                ME.store(k as u64, SeqCst);
                work(what, n, s);
                finish(s)
            }
            Ok(Fork::Parent(c)) => {
                *kid = c;
                let _ = sys::pct_allow(c, sentinel);
                let _ = sys::env_set_affinity(c, 1 << core);
                if let Work::FsdRead(fsd) = what {
                    let _ = sys::pct_allow(c, fsd);
                }
            }
            Err(_) => return (1, 0),
        }
    }
    s[SETUP].store(1, SeqCst);
    let end = sys::now() + vm::kinfo().counter_hz;
    while s[READY].load(SeqCst) < WORKERS as u64 && sys::now() < end {
        sys::yield_now();
    }
    let ready = s[READY].load(SeqCst) == WORKERS as u64;
    s[GO].store(1, SeqCst);
    let ok = ready && process::wait(sentinel) == Ok(0) && s[DONE].load(SeqCst) == WORKERS as u64;
    for kid in kids {
        let _ = sys::env_destroy(kid);
    }
    process::reclaim();
    let first = (0..WORKERS).map(|k| s[START + k].load(SeqCst)).min().unwrap_or(0);
    let last = (0..WORKERS).map(|k| s[END + k].load(SeqCst)).max().unwrap_or(0);
    let ops = n * WORKERS as u64;
    // Each worker's own start-to-end, from the first start: on silicon a worker's span is its
    // work; under -icount it stretches with what the other cores do meanwhile.
    let at = |row: usize, k: usize| s[row + k].load(SeqCst).saturating_sub(first);
    let spans: [(u64, u64); WORKERS] = core::array::from_fn(|k| (at(START, k), at(END, k)));
    println!("smpbench: cores {cores}: workers' (start, end) {spans:?}");
    if !ok || first == 0 || last <= first {
        return (1, 0);
    }
    (ops, (last - first) / ops)
}

/// The scaling rows of `fsd`: four clients reading a cached 4 KiB block at a time through
/// the server `fsd` (which this environment may call), on 1, 2 and 4 cores.
/// The caller may keep to one core (`bench::run` does): these rows ask for all four.
pub fn fsd_rows(fsd: EnvId) {
    let before = mine();
    let _ = sys::env_set_affinity(EnvId::SELF, 0xf);
    for cores in [1, 2, 4] {
        let (ops, per) = scale(Work::FsdRead(fsd), cores, 100);
        let s = if cores == 1 { "" } else { "s" };
        match ops {
            0 => println!("bench scale_fsd_read_4k_{cores}_core{s} skipped: it needs four cores"),
            _ => println!("bench scale_fsd_read_4k_{cores}_core{s} ops={ops} per_op={per}"),
        }
    }
    let _ = sys::env_set_affinity(EnvId::SELF, before);
}

/// The cheapest call that takes the big kernel lock: `FrameFree` with an environment id
/// that does not fit 32 bits, refused with `Invalid` inside the lock (fast path).
pub fn locked_nop() {
    let _ = sys::raw(exo_libos::abi::Sys::FrameFree as u64, [u64::MAX, 0, 0, 0, 0, 0]);
}
