//! Micro-benchmarks of the kernel's paths, run at EL0 through the real system calls.
//!
//! Each one times N operations with the PMU cycle counter, which under QEMU's `-icount`
//! counts guest instructions exactly (on a real Pi 4 it counts cycles), subtracts the cost
//! of the empty measurement loop, and prints `bench NAME ops=N per_op=X` for
//! `cargo xtask bench` to collect. Run by init with `exo.test=bench`.

use core::sync::atomic::{AtomicU64, Ordering::Relaxed};

use exo_libos::abi::pte::Pte;
use exo_libos::abi::{upcall, EnvId};
use exo_libos::process::{self, Fork};
use exo_libos::upcall::{set_hook, Upcall};
use exo_libos::vm::{self, PAGE, RW};
use exo_libos::{println, sys};

use crate::smpbench::{self, Work};

pub(crate) fn cycles() -> u64 {
    let c: u64;
    // SAFETY: EL0 may read the cycle counter (PMUSERENR_EL0.CR, set by the kernel); `isb`
    // keeps the read from moving across the measured code.
    unsafe { core::arch::asm!("isb", "mrs {}, pmccntr_el0", "isb", out(reg) c) };
    c
}

/// Cost of `f` per call, minus the measuring loop's own cost.
pub(crate) fn measure(n: u64, mut f: impl FnMut(u64)) -> u64 {
    let t0 = cycles();
    for i in 0..n {
        f(i);
    }
    let t1 = cycles();
    let e0 = cycles();
    for i in 0..n {
        core::hint::black_box(i);
    }
    let e1 = cycles();
    ((t1 - t0).saturating_sub(e1 - e0)) / n
}

fn report(name: &str, n: u64, per_op: u64) {
    println!("bench {name} ops={n} per_op={per_op}");
}

/// The `exo.filter=` of the bootargs: comma-separated pieces of names.
fn filter() -> Option<&'static str> {
    vm::kinfo().bootargs().split_ascii_whitespace().find_map(|w| w.strip_prefix("exo.filter="))
}

/// Whether `name` passes the filter (everything does without one).
fn wanted(name: &str) -> bool {
    filter().is_none_or(|f| f.split(',').any(|p| name.contains(p)))
}

/// Whether the filter names `name` (for benchmarks that need a prepared card; never in the
/// `exo.bench=micro` boot).
fn asked_for(name: &str) -> bool {
    let micro = vm::kinfo().bootargs().contains("exo.bench=micro");
    !micro && filter().is_some_and(|f| f.split(',').any(|p| name.contains(p)))
}

static POOL: AtomicU64 = AtomicU64::new(0);
static NEXT: AtomicU64 = AtomicU64::new(0);

/// Maps the next pre-allocated frame at the faulting page and resumes.
fn map_on_fault(u: &Upcall) -> bool {
    if u.kind != upcall::DATA_ABORT {
        return false;
    }
    let i = NEXT.fetch_add(1, Relaxed);
    // SAFETY: POOL points at the 512 frame addresses `fault_upcall` filled, and it touches
    // 512 pages, each faulting once, so `i` stays below 512.
    let slot = unsafe { (POOL.load(Relaxed) as *const u64).add(i as usize) };
    // SAFETY: `slot` is inside that array, which lives on `fault_upcall`'s stack until the
    // faults are over.
    let pa = unsafe { *slot };
    vm::map_frame(u.far & !(PAGE - 1), pa, RW).is_ok()
}

const N: u64 = 2000;

/// A benchmark returns (operations, instructions per operation).
type Bench = fn() -> (u64, u64);

/// The benchmarks, in the order they run.
const BENCHES: &[(&str, Bench)] = &[
    ("null_syscall", null_syscall),
    ("locked_null_syscall", || (N, measure(N, |_| smpbench::locked_nop()))),
    ("fault_upcall_map_resume", fault_upcall),
    ("frame_alloc_map_unmap_free", frame_cycle),
    ("env_switch", env_switch),
    ("pct_round_trip", pct_round_trip),
    ("pct_call", || pct_leg(false)),
    ("pct_reply", || pct_leg(true)),
    ("fork_exit_wait", fork_exit_wait),
    // Several cores (`smpbench.rs`): guest time per operation, all cores counted.
    ("pct_round_trip_same_core", || smpbench::pct_pinned(0)),
    ("pct_round_trip_cross_core", || smpbench::pct_pinned(1)),
    ("scale_spin_1_core", || smpbench::scale(Work::Spin, 1, 2000)),
    ("scale_spin_2_cores", || smpbench::scale(Work::Spin, 2, 2000)),
    ("scale_spin_4_cores", || smpbench::scale(Work::Spin, 4, 2000)),
    ("scale_null_syscall_1_core", || smpbench::scale(Work::NullSyscall, 1, 4000)),
    ("scale_null_syscall_2_cores", || smpbench::scale(Work::NullSyscall, 2, 4000)),
    ("scale_null_syscall_4_cores", || smpbench::scale(Work::NullSyscall, 4, 4000)),
    ("scale_locked_syscall_1_core", || smpbench::scale(Work::LockedSyscall, 1, 4000)),
    ("scale_locked_syscall_2_cores", || smpbench::scale(Work::LockedSyscall, 2, 4000)),
    ("scale_locked_syscall_4_cores", || smpbench::scale(Work::LockedSyscall, 4, 4000)),
    ("scale_frame_cycle_1_core", || smpbench::scale(Work::FrameCycle, 1, 500)),
    ("scale_frame_cycle_2_cores", || smpbench::scale(Work::FrameCycle, 2, 500)),
    ("scale_frame_cycle_4_cores", || smpbench::scale(Work::FrameCycle, 4, 500)),
    ("sector_read_1", || sector_io(false, 1)),
    ("sector_read_64k", || sector_io(false, 128)),
    ("sector_read_1m", || sector_io(false, 2048)),
    ("sector_write_1", || sector_io(true, 1)),
    ("sector_write_64k", || sector_io(true, 128)),
    ("sector_write_1m", || sector_io(true, 2048)),
];

/// Runs the benchmarks the bootargs' `exo.filter=` picks; `programs` are the ELF files
/// init carries (the file-service benchmark starts `fsd`).
pub fn run(programs: &[(&str, &[u8])]) -> i32 {
    let disk = vm::kinfo().disk_sectors > 0;
    // The write benchmarks overwrite sectors 4096..12288: only on a scratch disk, never on
    // a card with partitions (a Pi 4's boot card, say).
    let partitioned = vm::kinfo().partitions.iter().any(|p| p.sectors > 0);
    for (name, bench) in BENCHES.iter().filter(|(n, _)| wanted(n)) {
        if name.starts_with("sector") && !disk {
            continue;
        }
        if name.starts_with("sector_write") && partitioned {
            println!("bench {name} skipped: the disk is partitioned and would be overwritten");
            continue;
        }
        let (ops, per) = bench();
        if ops == 0 {
            println!("bench {name} skipped: it needs four cores");
            continue;
        }
        report(name, ops, per);
    }
    // These need a card with formatted FAT and LFS partitions: only when asked for by name.
    for fat in [true, false] {
        if asked_for(if fat { "fs_fat" } else { "fs_lfs" }) {
            crate::fsbench::workloads(fat);
        }
    }
    if let Some((_, fsd)) = programs.iter().find(|(n, _)| *n == "fsd").filter(|_| asked_for("read_4k")) {
        crate::fsbench::service_read(fsd);
    }
    process::reclaim();
    0
}

fn null_syscall() -> (u64, u64) {
    (
        N,
        measure(N, |_| {
            let _ = sys::nop();
        }),
    )
}

/// Page-fault upcall: fault -> the handler maps a ready frame -> resume.
fn fault_upcall() -> (u64, u64) {
    let frames: &mut [u64] = &mut [0; 512];
    for f in frames.iter_mut() {
        *f = sys::frame_alloc(EnvId::SELF, None).unwrap_or(0);
    }
    POOL.store(frames.as_ptr() as u64, Relaxed);
    NEXT.store(0, Relaxed);
    let base = vm::alloc_va(512);
    vm::reserve(base).ok();
    set_hook(Some(map_on_fault));
    let per = measure(512, |i| {
        // SAFETY: unmapped until the handler maps it; reading faults once.
        unsafe { ((base + i * PAGE) as *const u64).read_volatile() };
    });
    set_hook(None);
    for i in 0..512 {
        let _ = vm::unmap_free(base + i * PAGE);
    }
    (512, per)
}

/// Frame allocate + map + unmap + free, through the system calls directly.
fn frame_cycle() -> (u64, u64) {
    let va = vm::alloc_va(1);
    vm::reserve(va).ok();
    let per = measure(N, |_| {
        if let Ok(pa) = sys::frame_alloc(EnvId::SELF, None) {
            let _ = sys::table_set(EnvId::SELF, va, 3, Pte::user_page(pa, RW).0);
            let _ = sys::table_set(EnvId::SELF, va, 3, 0);
            let _ = sys::frame_free(EnvId::SELF, pa);
        }
    });
    (N, per)
}

/// Environment switch: two environments yielding to each other, both on core 0 (on another
/// core the child would spin through its own yields instead of being switched to).
fn env_switch() -> (u64, u64) {
    let me = vm::me();
    let cores = vm::env_info(me).map_or(1, |e| e.affinity);
    let Ok(Fork::Parent(child)) = process::fork() else {
        loop {
            let _ = sys::yield_to(me);
        }
    };
    let _ = sys::env_set_affinity(child, 1);
    let _ = sys::env_set_affinity(EnvId::SELF, 1);
    let _ = sys::yield_to(child); // let the child reach its loop
    let per = measure(N, |_| {
        let _ = sys::yield_to(child);
    });
    let _ = sys::env_destroy(child);
    let _ = sys::env_set_affinity(EnvId::SELF, cores);
    (2 * N, per / 2)
}

/// Protected control transfer: call + reply to a server that answers at once.
fn pct_round_trip() -> (u64, u64) {
    fn echo(c: &exo_libos::ipc::Call) -> [u64; 4] {
        c.args
    }
    let Ok(server) = crate::ipctest::server(echo) else { return (1, 0) };
    let per = measure(N, |i| {
        let _ = sys::pct_call(server, [i, 0, 0, 0], 0);
    });
    let _ = sys::env_destroy(server);
    (N, per)
}

/// One leg of a call, timed across the two environments (the cycle counter is the CPU's,
/// not the environment's): the call from the caller's `svc` to the first instruction of the
/// server's handler, or the reply from the handler's last instruction until the caller runs
/// again. The server stamps both ends and sends the stamps back in its reply.
fn pct_leg(reply: bool) -> (u64, u64) {
    fn stamp(_: &exo_libos::ipc::Call) -> [u64; 4] {
        let entered = cycles();
        [entered, cycles(), 0, 0]
    }
    let Ok(server) = crate::ipctest::server(stamp) else { return (1, 0) };
    let mut total = 0;
    for _ in 0..N {
        let t0 = cycles();
        let Ok([entered, leaving, ..]) = sys::pct_call(server, [0; 4], 0) else { break };
        let t3 = cycles();
        total += if reply { t3 - leaving } else { entered - t0 };
    }
    let _ = sys::env_destroy(server);
    (N, total / N)
}

/// One `SectorRead`/`SectorWrite` of `count` sectors through the binding check, into or
/// from an already-mapped buffer (sectors 4096.. of the benchmark disk).
fn sector_io(write: bool, count: u64) -> (u64, u64) {
    let pages = (count * 512).div_ceil(PAGE);
    let va = vm::alloc_va(pages);
    for p in 0..pages {
        if vm::map_new(va + p * PAGE, RW).is_err() {
            return (1, 0);
        }
    }
    // SAFETY: mapped read-write just above, used by nothing else.
    let buf = unsafe { core::slice::from_raw_parts_mut(va as *mut u8, (count * 512) as usize) };
    let n = if count == 1 { 200 } else { 20 };
    let per = measure(n, |i| {
        let lba = 4096 + (i * count) % 8192;
        let _ = if write { sys::sector_write(lba, buf) } else { sys::sector_read(lba, buf) };
    });
    for p in 0..pages {
        let _ = vm::unmap_free(va + p * PAGE);
    }
    (n, per)
}

fn fork_exit_wait() -> (u64, u64) {
    let per = measure(20, |_| match process::fork() {
        Ok(Fork::Child) => sys::exit(0),
        Ok(Fork::Parent(c)) => {
            let _ = sys::env_wait(c);
        }
        Err(_) => {}
    });
    (20, per)
}
