//! Micro-benchmarks of the kernel's paths, run at EL0 through the real system calls.
//!
//! Each one times N operations with the PMU cycle counter, which under QEMU's `-icount`
//! counts guest instructions exactly (on a real Pi 4 it counts cycles), subtracts the cost
//! of the empty measurement loop, and prints `bench NAME ops=N per_op=X` for
//! `cargo xtask bench` to collect. Run by init with `exo.test=bench`.

use core::sync::atomic::{
    AtomicU64,
    Ordering::{Relaxed, SeqCst},
};

use exo_libos::abi::pte::Pte;
use exo_libos::abi::{upcall, EnvId};
use exo_libos::pipe::{End, Mapped, Pipe, END_PAGES};
use exo_libos::process::{self, Fork};
use exo_libos::upcall::{set_hook, Upcall};
use exo_libos::vm::{self, PAGE, RW, SHARED};
use exo_libos::{println, sys};

use crate::meter::{cycles, measure};
use crate::smpbench::{self, Work};

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
    // A group by its name or by one of its rows' (`read_4k_through_fsd` runs `read_4k`).
    !micro && filter().is_some_and(|f| f.split(',').any(|p| name.contains(p) || p.starts_with(name)))
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
    vm::map_and_resume(u.far & !(PAGE - 1), Pte::user_page(pa, RW).0);
    false // not mapped
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
    ("env_switch_cross_core", smpbench::yield_cross_core),
    ("pct_round_trip", pct_round_trip),
    ("pct_call", || pct_leg(false)),
    ("pct_reply", || pct_leg(true)),
    ("fork_exit_wait", fork_exit_wait),
    ("net_demux_frame_64_bindings", net_demux),
    ("net_copy_frame_into_ring_slot", net_put),
    ("env_switch_fp", env_switch_fp),
    ("pipe_round_trip", pipe_round_trip),
    ("pipe_stream_1m", pipe_stream),
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
    ("sector_write_1m_with_calls_elsewhere", write_1m_with_calls_elsewhere),
];

/// Runs the benchmarks the bootargs' `exo.filter=` picks; `programs` are the ELF files
/// init carries (the file-service benchmark starts `fsd`).
pub fn run(programs: &[(&str, &[u8])]) -> i32 {
    let disk = vm::kinfo().disk_sectors > 0;
    // The write benchmarks overwrite sectors 4096..12288: only on a scratch disk, never on
    // a card with partitions (a Pi 4's boot card, say).
    let partitioned = vm::kinfo().partitions.iter().any(|p| p.sectors > 0);
    // Everything runs on core 0, children included (they inherit it): with the cores free
    // to pick them up, `YieldTo`'s partner would be running on another core, and the
    // figure would be two cores contending for the kernel lock instead of a switch. The
    // several-core benchmarks (`smpbench.rs`, the stream with calls elsewhere) get every
    // core this environment was given, and place their workers themselves.
    let all = vm::env_info(vm::me()).map_or(1, |e| e.affinity);
    if sys::env_set_affinity(EnvId::SELF, 1).is_err() {
        println!("bench: cannot keep to core 0; the figures may include other cores' doings");
    }
    for (name, bench) in BENCHES.iter().filter(|(n, _)| wanted(n)) {
        let spread = name.starts_with("scale_") || name.ends_with("_core") || name.ends_with("_elsewhere");
        let _ = sys::env_set_affinity(EnvId::SELF, if spread { all } else { 1 });
        // The cycle counter is per core, so a benchmark must not start on the core the
        // last one left it on (sector_read_1 once began on another core than it ended, and
        // its figure wrapped below zero, when a new affinity took effect only at the next
        // pass of the scheduler): wait until the kernel says this runs on core 0.
        for _ in 0..100 {
            if spread || vm::env_info(vm::me()).is_none_or(|e| e.cpu == 0) {
                break;
            }
            sys::yield_now();
        }
        if name.starts_with("sector") && !disk {
            continue;
        }
        if name.starts_with("sector_write") && partitioned {
            println!("bench {name} skipped: the disk is partitioned and would be overwritten");
            continue;
        }
        let (ops, per) = bench();
        if ops > 0 {
            report(name, ops, per); // 0: it reported itself, or said why it was skipped
        }
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
    if asked_for("http_get") {
        http_get(programs);
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

/// Touches the FP/SIMD registers (one `fmov`): the first use in a turn traps for the
/// kernel to load this environment's registers (docs/abi.md).
fn touch_fp(x: u64) {
    // SAFETY: writes d0 only, which no compiled code uses (every program is soft-float).
    unsafe { core::arch::asm!(".arch_extension fp", "fmov d0, {x}", x = in(reg) x, options(nomem, nostack)) };
}

/// `env_switch` with both sides using the FP/SIMD registers after each switch: per switch,
/// the first use's trap and load, and the save when the core leaves the environment.
fn env_switch_fp() -> (u64, u64) {
    let me = vm::me();
    let cores = vm::env_info(me).map_or(1, |e| e.affinity);
    let Ok(Fork::Parent(child)) = process::fork() else {
        loop {
            touch_fp(1);
            let _ = sys::yield_to(me);
        }
    };
    let _ = sys::env_set_affinity(child, 1);
    let _ = sys::env_set_affinity(EnvId::SELF, 1);
    let _ = sys::yield_to(child); // let the child reach its loop
    let per = measure(N, |i| {
        touch_fp(i);
        let _ = sys::yield_to(child);
    });
    let _ = sys::env_destroy(child);
    let _ = sys::env_set_affinity(EnvId::SELF, cores);
    (2 * N, per / 2)
}

/// Both ends of pipe `p`, mapped here (as the shell maps its type-ahead pipe: the tables
/// made first, so that a fork carries the shared pages).
fn pipe_ends(p: &Pipe) -> Option<[Mapped; 2]> {
    let mut m = [Mapped { va: 0 }; 2];
    for (i, end) in [End::Read, End::Write].into_iter().enumerate() {
        let va = vm::alloc_va(END_PAGES);
        vm::reserve(va).ok()?;
        vm::reserve(va + (END_PAGES - 1) * PAGE).ok()?;
        p.attach(EnvId::SELF, va, end).ok()?;
        m[i] = Mapped { va };
    }
    Some(m)
}

/// Unmaps the pipe ends and frees the pipes' frames.
fn pipes_gone(ends: &[Mapped], pipes: &[Pipe]) {
    for end in ends {
        for p in 0..END_PAGES {
            let _ = vm::unmap(end.va + p * PAGE);
        }
    }
    pipes.iter().for_each(Pipe::free);
}

/// Pipe ping-pong, as Linux's figure in docs/performance.md is measured: one byte each way
/// between two environments on core 0 through two of the libOS's pipes (`pipe.rs`), the
/// parent writing to one and reading the other, a forked child echoing. Each end waits
/// for the other by `YieldTo` (a round trip never lasts `pipe::SPIN_US`, so nobody sleeps).
fn pipe_round_trip() -> (u64, u64) {
    let (Ok(there), Ok(back)) = (Pipe::new(), Pipe::new()) else { return (1, 0) };
    let (Some([there_r, there_w]), Some([back_r, back_w])) = (pipe_ends(&there), pipe_ends(&back)) else {
        return (1, 0);
    };
    let cores = vm::env_info(vm::me()).map_or(1, |e| e.affinity);
    let mut byte = [0u8];
    let Ok(Fork::Parent(child)) = process::fork() else {
        while there_r.read(&mut byte) == 1 && back_w.write(&byte).is_ok() {}
        sys::exit(0)
    };
    let _ = sys::env_set_affinity(child, 1);
    let _ = sys::env_set_affinity(EnvId::SELF, 1);
    let mut ok = true;
    let mut trip = |i: u64| {
        ok &= there_w.write(&[i as u8]).is_ok() && back_r.read(&mut byte) == 1 && byte[0] == i as u8;
    };
    trip(0); // both ends have used both pipes: each knows whom to yield to
    let per = measure(N, &mut trip);
    let _ = sys::env_destroy(child);
    let _ = sys::env_set_affinity(EnvId::SELF, cores);
    pipes_gone(&[there_r, there_w, back_r, back_w], &[there, back]);
    if !ok {
        println!("bench pipe_round_trip failed: a byte did not come back");
        return (0, 0);
    }
    (N, per)
}

/// A stream through a pipe, as a pipeline of programs moves data: 1 MiB in 16 KiB writes
/// (the tools' chunk) from a forked child to the parent, which reads 16 KiB at a time, both
/// on core 0. Instructions per MiB, both sides and the kernel counted.
fn pipe_stream() -> (u64, u64) {
    const CHUNK: usize = 16 * 1024;
    const MIB: u64 = 1 << 20;
    const PERIOD: usize = 251; // the stream's i-th byte is i % 251: a chunk's place shows
    let Ok(p) = Pipe::new() else { return (1, 0) };
    let Some([r, w]) = pipe_ends(&p) else { return (1, 0) };
    let cores = vm::env_info(vm::me()).map_or(1, |e| e.affinity);
    let _ = sys::env_set_affinity(EnvId::SELF, 1);
    let Ok(Fork::Parent(child)) = process::fork() else {
        let bytes: alloc::vec::Vec<u8> = (0..CHUNK + PERIOD).map(|i| (i % PERIOD) as u8).collect();
        for sent in (0..MIB as usize).step_by(CHUNK) {
            let at = sent % PERIOD;
            if w.write(&bytes[at..at + CHUNK]).is_err() {
                break;
            }
        }
        sys::exit(0)
    };
    let mut buf = alloc::vec![0u8; CHUNK];
    let (mut got, mut ok) = (0, true);
    let start = cycles();
    while got < MIB as usize {
        let n = r.read(&mut buf);
        // Each read's first and last byte in their places (a check of every byte would
        // cost more than the pipe).
        let at = |i: usize| ((got + i) % PERIOD) as u8;
        ok &= n > 0 && buf[0] == at(0) && buf[n - 1] == at(n - 1);
        got += n;
        if n == 0 {
            break;
        }
    }
    let spent = cycles() - start;
    let _ = sys::env_destroy(child);
    let _ = sys::env_set_affinity(EnvId::SELF, cores);
    pipes_gone(&[r, w], &[p]);
    if !ok || got != MIB as usize {
        println!("bench pipe_stream_1m failed: {got} bytes came, in their places: {ok}");
        return (0, 0);
    }
    (1, spent)
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
            let _ = process::wait(c);
        }
        Err(_) => {}
    });
    (20, per)
}

/// httpd's own benchmark (`apps/httpd/src/bench.rs`: the plain path against prepared
/// responses), run by httpd itself with the file service, since only httpd links the
/// TCP/IP stack.
fn http_get(programs: &[(&str, &[u8])]) {
    let (Ok(fsd), Ok(httpd)) =
        (crate::fstest::start_fsd(programs), crate::runner::built_in(programs, "httpd"))
    else {
        return println!("bench http_get failed: no fsd or httpd");
    };
    let opts = exo_libos::spawn::Options {
        calls: &[fsd],
        net: exo_libos::spawn::Net::All,
        ..exo_libos::spawn::Options::default()
    };
    match exo_libos::spawn::spawn(httpd, &alloc::format!("bench fsd={:#x}", fsd.0), opts) {
        Ok(child) => {
            let _ = process::wait(child);
        }
        Err(_) => println!("bench http_get failed: cannot start httpd"),
    }
    let _ = sys::env_destroy(fsd);
}

/// The kernel's demultiplexer (`exo_format::netfilter::Table::receive`, the code the
/// kernel runs, here at EL0) on a full-size TCP frame, with a full table of 64 bindings
/// of 16 environments (the kernel's has room for 256; a free entry costs a compare) and
/// the frame matching the last: the filters a frame is run through, not the copy into the
/// ring (next) nor the device.
fn net_demux() -> (u64, u64) {
    use exo_libos::abi::net::NetBind;
    use exo_libos::format::netfilter::{Delivery, Table};
    use exo_libos::nic::{ipv4_port, IP_TCP};
    // On the heap (the stack is 64 KiB), with rows of scopes for owners 1 to 16 only.
    const EMPTY: Table<64, 17> = Table::new();
    let mut t = alloc::boxed::Box::new(EMPTY);
    (1..=16).for_each(|o| t.scope_everything(o));
    for i in 0..64u32 {
        let port = 1000 + i as u16;
        let b = NetBind {
            rx: ipv4_port(IP_TCP, port, true),
            tx: ipv4_port(IP_TCP, port, false),
            ring: 0x10_0000,
            slots: 4,
            flags: 0,
        };
        assert!(t.bind(1 + i / 4, &b, 4, |_| true).is_ok(), "a binding of the benchmark's table");
    }
    let mut frame = [0u8; 1514];
    frame[12..14].copy_from_slice(&[0x08, 0x00]);
    frame[14] = 0x45;
    frame[23] = 6;
    frame[36..38].copy_from_slice(&1063u16.to_be_bytes());
    let mut got = 0;
    let per = measure(N, |_| got += t.receive(core::hint::black_box(&frame), |_, _| Delivery::Delivered));
    assert_eq!(got, N, "the frame matched its binding every time");
    (N, per)
}

/// The copy of a full-size frame into a ring slot (`netfilter::put`, as the kernel does
/// through the binder's tables), the slot handed back each time.
fn net_put() -> (u64, u64) {
    use exo_libos::abi::net::NET_SLOT;
    use exo_libos::format::netfilter::put;
    let frame = [0x5au8; 1514];
    let mut slot = alloc::vec![0u8; NET_SLOT];
    let per = measure(N, |_| {
        put(core::hint::black_box(&mut slot), &frame);
        slot[..4].fill(0);
    });
    (N, per)
}

/// 1 MiB writes on core 1 while a forked child on core 2 makes system calls that take the
/// kernel lock: instructions per write, and (`calls=`) how many calls the other core
/// completed inside each write on average — what the write leaves the rest of the machine.
fn write_1m_with_calls_elsewhere() -> (u64, u64) {
    let mine = vm::env_info(vm::me()).map_or(0, |e| e.affinity);
    if mine & 0b110 != 0b110 {
        return (0, 0);
    }
    let va = vm::alloc_va(1);
    let Ok(pa) = sys::frame_alloc(EnvId::SELF, None) else { return (0, 0) };
    if vm::map(va, Pte::user_page(pa, RW).0 | SHARED).is_err() {
        return (0, 0);
    }
    // SAFETY: `va` maps a zeroed page shared read-write with the child forked below.
    let w = unsafe { &*(va as *const [AtomicU64; 2]) };
    let caller = match process::fork() {
        Ok(Fork::Child) => loop {
            let before = w[0].load(SeqCst);
            let _ = sys::env_self(); // takes the kernel lock
            let inside = before & 1 == 1 && w[0].load(SeqCst) == before;
            w[1].fetch_add(inside as u64, SeqCst);
        },
        Ok(Fork::Parent(c)) => c,
        Err(_) => return (0, 0),
    };
    let placed =
        sys::env_set_affinity(caller, 0b100).is_ok() && sys::env_set_affinity(EnvId::SELF, 0b10).is_ok();
    let pages = 256;
    let buf_va = vm::alloc_va(pages);
    let mapped = (0..pages).all(|p| vm::map_new(buf_va + p * PAGE, RW).is_ok());
    // SAFETY: mapped read-write just above (or not used: `mapped` is checked first).
    let buf = unsafe { core::slice::from_raw_parts(buf_va as *const u8, (pages * PAGE) as usize) };
    let n = 8;
    let per = if placed && mapped {
        measure(n, |i| {
            w[0].fetch_add(1, SeqCst); // odd: a write in progress
            let _ = sys::sector_write(4096 + (i * 2048) % 8192, buf);
            w[0].fetch_add(1, SeqCst);
        })
    } else {
        0
    };
    let calls = w[1].load(SeqCst) / n;
    let _ = sys::env_destroy(caller);
    let _ = sys::env_set_affinity(EnvId::SELF, mine);
    for p in 0..pages {
        let _ = vm::unmap_free(buf_va + p * PAGE);
    }
    let _ = vm::unmap(va);
    let _ = sys::frame_free(EnvId::SELF, pa);
    println!("bench sector_write_1m_with_calls_elsewhere ops={n} per_op={per} calls={calls}");
    (0, 0)
}
