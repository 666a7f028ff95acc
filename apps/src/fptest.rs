//! FP/SIMD registers (hostile suite): each environment's are its own. The kernel loads them
//! at an environment's first use in its turn and saves them whenever a core leaves it
//! (`arch::FpState`, docs/abi.md), so what one environment leaves there must never show
//! in another's, and must be there again when it runs next: after a direct switch, a
//! preemption, a move to another core, a call and its reply, and the end of its life. And
//! the libOS's SIMD copy (`mem::copy`) must not use them inside an upcall handler, where
//! they belong to the code it interrupted.

use core::sync::atomic::{AtomicU64, Ordering::SeqCst};

use crate::runner::Shared;
use crate::runner::{check, run_suite};
use exo_libos::abi::{upcall, EnvId};
use exo_libos::ipc::{self, Call};
use exo_libos::process::{self, Fork};
use exo_libos::upcall::{set_hook, Upcall};
use exo_libos::vm::{self, PAGE, RW};
use exo_libos::{mem, sys};

type Test = (&'static str, fn() -> Result<(), &'static str>);

pub const TESTS: &[Test] = &[
    ("fp_registers_stay_with_their_environment_across_switches", across_switches),
    ("fp_registers_survive_preemption_and_a_move_to_another_core", preempted),
    ("fp_registers_go_with_an_environment_that_leaves_its_core_idle", leaves_idle),
    ("fp_registers_do_not_cross_a_call_or_its_reply", across_calls),
    ("fp_registers_of_a_destroyed_environment_reach_no_one", destroyed),
    ("simd_copy_in_an_upcall_handler_leaves_the_interrupted_copy_whole", copy_in_handler),
    ("simd_copy_moves_exactly_its_bytes_at_any_alignment", copy_bytes),
];

pub fn run(filter: &str) -> usize {
    run_suite("fp", TESTS, filter, |test| test())
}

/// v0-v31 (two words each), FPSR, FPCR.
type Regs = [u64; 66];

/// Marks: v_n = (mark + n, !(mark + n)), and FPSR and FPCR set to values of their own.
const PARENT: u64 = 0x9a3e_7100_0000_0000;
const CHILD: u64 = 0xc41d_0500_0000_0000;
const SERVER: u64 = 0x5e7e_f100_0000_0000;
const DOOMED: u64 = 0xd00d_ed00_0000_0000;

// `fp_fill(mark)`: every FP/SIMD register marked, FPSR's cumulative flags and QC set, FPCR
// rounding toward minus infinity with flush-to-zero and default NaN. `fp_dump(out)`: the
// registers into `out` (66 words). Neither touches any other memory or the stack.
core::arch::global_asm!(
    ".arch_extension fp",
    ".arch_extension simd",
    ".section .text.fp_fill, \"ax\"",
    ".global fp_fill",
    "fp_fill:",
    ".irp n, 0,1,2,3,4,5,6,7,8,9,10,11,12,13,14,15,16,17,18,19,20,21,22,23,24,25,26,27,28,29,30,31",
    "    add x1, x0, #\\n",
    "    mvn x2, x1",
    "    fmov d\\n, x1",
    "    mov v\\n\\().d[1], x2",
    ".endr",
    "    mov x1, #0x9f",
    "    movk x1, #0x0800, lsl #16",
    "    msr fpsr, x1",
    "    movz x1, #0x0380, lsl #16",
    "    msr fpcr, x1",
    "    ret",
    ".section .text.fp_dump, \"ax\"",
    ".global fp_dump",
    "fp_dump:",
    "    st1 {{v0.2d-v3.2d}}, [x0], #64",
    "    st1 {{v4.2d-v7.2d}}, [x0], #64",
    "    st1 {{v8.2d-v11.2d}}, [x0], #64",
    "    st1 {{v12.2d-v15.2d}}, [x0], #64",
    "    st1 {{v16.2d-v19.2d}}, [x0], #64",
    "    st1 {{v20.2d-v23.2d}}, [x0], #64",
    "    st1 {{v24.2d-v27.2d}}, [x0], #64",
    "    st1 {{v28.2d-v31.2d}}, [x0], #64",
    "    mrs x1, fpsr",
    "    mrs x2, fpcr",
    "    stp x1, x2, [x0]",
    "    ret",
);

unsafe extern "C" {
    fn fp_fill(mark: u64);
    fn fp_dump(out: *mut Regs);
}

/// Marks every FP/SIMD register with `mark`; returns what they then hold (FPSR and FPCR
/// as the CPU keeps them).
fn fill(mark: u64) -> Regs {
    // SAFETY: writes only FP/SIMD registers, which no code the compiler makes uses (every
    // program is built soft-float), and no memory.
    unsafe { fp_fill(mark) };
    dump()
}

fn dump() -> Regs {
    let mut r = [0; 66];
    // SAFETY: writes only the 66 words of `r`.
    unsafe { fp_dump(&mut r) };
    r
}

/// Whether `r` holds `mark` in every vector register, and `status` (FPSR, FPCR) after.
fn holds(r: &Regs, mark: u64, status: [u64; 2]) -> bool {
    (0..32).all(|n| r[2 * n] == mark + n as u64 && r[2 * n + 1] == !(mark + n as u64)) && r[64..] == status
}

fn status(r: &Regs) -> [u64; 2] {
    [r[64], r[65]]
}

/// Whether core `c` is up (it has taken a tick).
fn up(c: usize) -> bool {
    // SAFETY: a read of the kernel's public page, which the kernel updates at its ticks.
    unsafe { core::ptr::read_volatile(&vm::kinfo().cpu_ticks[c]) > 0 }
}

/// Keeps this environment on core 0 (every core may not be there: then it is core 0 alone
/// anyway); gives the affinity it had.
fn to_core0() -> u8 {
    let mine = vm::env_info(vm::me()).map_or(1, |e| e.affinity);
    let _ = sys::env_set_affinity(EnvId::SELF, 1);
    mine
}

/// A parent and its child on one core, each with its registers marked, switching to each
/// other directly (`YieldTo`, `el0_yield`) and through the scheduler (`yield_now`): the
/// child starts with all zeros (nothing of its parent's), and after every switch each
/// finds its own marks.
fn across_switches() -> Result<(), &'static str> {
    let mine = to_core0();
    let me = vm::me();
    let mine_regs = fill(PARENT);
    let child = match process::fork().map_err(|_| "fork")? {
        Fork::Child => {
            let fresh = dump().iter().all(|&w| w == 0);
            let set = fill(CHILD);
            let mut kept = true;
            for i in 0..8 {
                switch(i, me);
                kept &= holds(&dump(), CHILD, status(&set));
            }
            sys::exit(!fresh as i32 | (!kept as i32) << 1)
        }
        Fork::Parent(c) => c,
    };
    let mut kept = true;
    for i in 0..8 {
        switch(i, child);
        kept &= holds(&dump(), PARENT, status(&mine_regs));
    }
    let status = process::wait(child);
    let _ = sys::env_set_affinity(EnvId::SELF, mine);
    check(status.is_ok_and(|s| s & 1 == 0), "a new environment saw FP/SIMD registers it never set")?;
    check(status.is_ok_and(|s| s & 2 == 0), "the child lost its FP/SIMD registers at a switch")?;
    check(kept, "the parent lost its FP/SIMD registers at a switch")
}

/// Round `i` of a switch to `to`: a direct one (`YieldTo`) or one through the scheduler.
fn switch(i: usize, to: EnvId) {
    if i.is_multiple_of(2) {
        let _ = sys::yield_to(to);
    } else {
        sys::yield_now();
    }
}

/// Marks `mark`, then checks them again and again until told to stop; counts rounds in
/// word `2 * i` and rounds that found anything else in word `2 * i + 1`.
fn spin_checking(w: &Shared, i: usize, mark: u64) -> i32 {
    let set = fill(mark);
    while w.word(8).load(SeqCst) == 0 {
        if !holds(&dump(), mark, status(&set)) {
            w.word(2 * i + 1).fetch_add(1, SeqCst);
        }
        w.word(2 * i).fetch_add(1, SeqCst);
    }
    0
}

/// Two environments that never yield, on one core, each checking its marks: the timer
/// takes the core from one to the other many times, and neither ever finds the other's
/// registers (or anything but its own). Then one moves to another core (if there is one)
/// and keeps checking there: its registers went with it.
fn preempted() -> Result<(), &'static str> {
    let w = Shared::new()?;
    let spinner = |i: usize, mark: u64| match process::fork() {
        Ok(Fork::Child) => sys::exit(spin_checking(&w, i, mark)),
        Ok(Fork::Parent(c)) => Ok(c),
        Err(_) => Err("fork"),
    };
    let a = spinner(0, CHILD)?;
    let b = spinner(1, SERVER)?;
    let one = if up(1) { 2 } else { 1 };
    let pinned = sys::env_set_affinity(a, one).is_ok() && sys::env_set_affinity(b, one).is_ok();
    let hz = vm::kinfo().counter_hz;
    let wait = |ms: u64| {
        let end = sys::now() + hz / 1000 * ms;
        while sys::now() < end {
            sys::yield_now();
        }
    };
    let before = |i: usize| w.word(2 * i).load(SeqCst);
    wait(300);
    let (a_ran, b_ran) = (before(0), before(1));
    let moved = up(2) && sys::env_set_affinity(a, 4).is_ok();
    wait(100);
    let a_after_move = before(0);
    w.word(8).store(1, SeqCst);
    let (sa, sb) = (process::wait(a), process::wait(b));
    check(sa == Ok(0) && sb == Ok(0), "a spinner did not end well")?;
    check(pinned && a_ran > 10 && b_ran > 10, "the spinners did not both run on one core")?;
    check(!moved || a_after_move > a_ran, "the spinner moved to another core did not run there")?;
    check(
        w.word(1).load(SeqCst) == 0 && w.word(3).load(SeqCst) == 0,
        "a spinner's FP/SIMD registers changed under it",
    )
}

/// A child alone on core 1 marks its registers, then moves itself to core 2: core 1 has
/// nothing else to run as it leaves (the idle branch of `schedule` must save them), and
/// core 2 must give them back.
fn leaves_idle() -> Result<(), &'static str> {
    check(up(2), "needs three cores")?;
    let on = |c: u8| vm::env_info(vm::me()).is_some_and(|i| i.cpu == c);
    let child = match process::fork().map_err(|_| "fork")? {
        Fork::Child => {
            let _ = sys::env_set_affinity(EnvId::SELF, 2);
            while !on(1) {
                sys::yield_now();
            }
            let set = fill(CHILD);
            let _ = sys::env_set_affinity(EnvId::SELF, 4);
            let mut kept = true;
            for _ in 0..4 {
                kept &= holds(&dump(), CHILD, status(&set));
                sys::yield_now();
            }
            sys::exit(!kept as i32 | (!on(2) as i32) << 1)
        }
        Fork::Parent(c) => c,
    };
    let status = process::wait(child);
    check(status.is_ok_and(|s| s & 2 == 0), "the child did not move to core 2")?;
    check(status == Ok(0), "the child's FP/SIMD registers did not go with it to core 2")
}

/// The server's answer, with its own registers checked first: `args[0]` 0, the first call,
/// all zeros (nothing of the caller's); else its marks from the last call. Then it marks
/// them, and the reply is 1 if they were right.
fn fp_server(c: &Call) -> [u64; 4] {
    let r = dump();
    let ok =
        if c.args[0] == 0 { r.iter().all(|&w| w == 0) } else { holds(&r, SERVER, [c.args[1], c.args[2]]) };
    let set = fill(SERVER);
    [ok as u64, set[64], set[65], 0]
}

/// A call and its reply, switched directly (caller and server on core 0: `el0_call`,
/// `el0_reply`) and then through the general path (the server on core 1, if there is
/// one): the server sees none of the caller's registers, the caller none of the
/// server's, and each finds its own again.
fn across_calls() -> Result<(), &'static str> {
    let mine = to_core0();
    let s = match process::fork().map_err(|_| "fork")? {
        Fork::Child => sys::exit(-(ipc::serve(fp_server) as i32)),
        Fork::Parent(s) => s,
    };
    while vm::env_info(s).is_none_or(|i| i.state != exo_libos::abi::env_state::BLOCKED) {
        sys::yield_now();
    }
    let setup = sys::pct_allow(EnvId::SELF, s).is_ok() && sys::env_set_affinity(s, 1).is_ok();
    let set = fill(PARENT);
    let (mut replies, mut server_status, mut kept) = (0, [0, 0], true);
    for round in 0..6 {
        if round == 3 && up(1) {
            let _ = sys::env_set_affinity(s, 2);
        }
        let first = round == 0;
        let args = [!first as u64, server_status[0], server_status[1], 0];
        match sys::pct_call(s, args, 0) {
            Ok(r) => {
                replies += r[0];
                server_status = [r[1], r[2]];
            }
            Err(_) => break,
        }
        kept &= holds(&dump(), PARENT, status(&set));
    }
    let _ = sys::env_destroy(s);
    let _ = process::wait(s);
    let _ = sys::env_set_affinity(EnvId::SELF, mine);
    check(setup, "could not set the server up")?;
    check(replies == 6, "the server found FP/SIMD registers not its own")?;
    check(kept, "the caller lost its FP/SIMD registers over a call")
}

/// A child marks its registers and spins on core 1 (0 if alone), its registers live there,
/// until it is destroyed under it; then environments are made until one takes its slot,
/// and runs on the same core: it starts with all zeros.
fn destroyed() -> Result<(), &'static str> {
    let w = Shared::new()?;
    let core = if up(1) { 2 } else { 1 };
    let doomed = match process::fork().map_err(|_| "fork")? {
        Fork::Child => {
            fill(DOOMED);
            w.word(0).store(1, SeqCst);
            loop {
                core::hint::spin_loop();
            }
        }
        Fork::Parent(c) => c,
    };
    let _ = sys::env_set_affinity(doomed, core);
    let end = sys::now() + vm::kinfo().counter_hz;
    while w.word(0).load(SeqCst) == 0 && sys::now() < end {
        sys::yield_now();
    }
    let marked = w.word(0).load(SeqCst) == 1;
    let _ = sys::env_destroy(doomed);
    let _ = process::wait(doomed);
    let mut extra = [EnvId(0); 16];
    let mut reused = None;
    for e in extra.iter_mut() {
        let child = match process::fork().map_err(|_| "fork")? {
            Fork::Child => {
                // Waits to be told where it runs, then reports whether it started clean.
                while w.word(1).load(SeqCst) == 0 {
                    sys::yield_now();
                }
                let clean = dump().iter().all(|&x| x == 0);
                w.word(2).store(1 + clean as u64, SeqCst);
                sys::exit(0)
            }
            Fork::Parent(c) => c,
        };
        if child.slot() == doomed.slot() {
            reused = Some(child);
            break;
        }
        *e = child;
    }
    let clean = reused.is_some_and(|c| {
        let _ = sys::env_set_affinity(c, core);
        w.word(1).store(1, SeqCst);
        process::wait(c).is_ok() && w.word(2).load(SeqCst) == 2
    });
    for e in extra.into_iter().filter(|e| e.0 != 0) {
        let _ = sys::env_destroy(e);
        let _ = process::wait(e);
    }
    check(marked, "the doomed child never marked its registers")?;
    check(reused.is_some(), "no new environment took the destroyed one's slot")?;
    check(clean, "a new environment saw the FP/SIMD registers of the one before it in its slot")
}

/// Where `copy_in_handler`'s child keeps what its hook uses (statics a child may read but
/// not write from its handler): the page the hook maps, and its scratch page.
static HOLE: AtomicU64 = AtomicU64::new(0);
static SCRATCH: AtomicU64 = AtomicU64::new(0);

/// The hook: maps the page the copy faulted on, then copies 1 KiB with `mem::copy` itself
/// (which must not use the registers the interrupted copy holds its data in).
fn map_and_copy(u: &Upcall) -> bool {
    let hole = HOLE.load(SeqCst);
    if u.kind != upcall::DATA_ABORT || u.far & !(PAGE - 1) != hole {
        return false;
    }
    let scratch = SCRATCH.load(SeqCst);
    // SAFETY: the child's scratch page, mapped read-write: its two halves do not overlap.
    let dst = unsafe { core::slice::from_raw_parts_mut(scratch as *mut u8, 1024) };
    // SAFETY: as above.
    let src = unsafe { core::slice::from_raw_parts((scratch + 2048) as *const u8, 1024) };
    mem::copy(dst, src);
    vm::map_new(hole, RW).is_ok()
}

/// A SIMD copy of two pages whose second destination page is not mapped yet: the fault
/// comes with the copy's data in the registers, and the hook that maps the page makes a
/// copy of its own. The destination ends up exactly the source.
fn copy_in_handler() -> Result<(), &'static str> {
    let child = match process::fork().map_err(|_| "fork")? {
        Fork::Child => {
            let (src, dst, scratch) = (vm::alloc_va(2), vm::alloc_va(2), vm::alloc_va(1));
            let mapped = [src, src + PAGE, dst, scratch].iter().all(|&va| vm::map_new(va, RW).is_ok());
            if !mapped {
                sys::exit(2);
            }
            let pages = |va: u64, n: u64| {
                // SAFETY: pages just mapped, read-write, each range overlapping no other.
                unsafe { core::slice::from_raw_parts_mut(va as *mut u8, (n * PAGE) as usize) }
            };
            let (s, d, x) = (pages(src, 2), pages(dst, 2), pages(scratch, 1));
            s.iter_mut().enumerate().for_each(|(i, b)| *b = (i * 7 + i / 256) as u8);
            x.fill(0xee);
            HOLE.store(dst + PAGE, SeqCst);
            SCRATCH.store(scratch, SeqCst);
            set_hook(Some(map_and_copy));
            mem::copy(d, s);
            set_hook(None);
            sys::exit(if d == s { 0 } else { 1 })
        }
        Fork::Parent(c) => c,
    };
    let status = process::wait(child);
    check(status != Ok(2), "the child could not map its pages")?;
    check(status == Ok(0), "a copy in the upcall handler changed the copy it interrupted")
}

/// `mem::copy` at every offset and length around its 256-byte step: exactly the bytes
/// asked for change.
fn copy_bytes() -> Result<(), &'static str> {
    use core::hint::black_box;
    let src: [u8; 1400] = core::array::from_fn(|i| (i * 13 + 5 + i / 253) as u8);
    let mut buf = [0u8; 1400];
    for off in [0, 1, 3, 8, 15, 16, 17, 63, 64, 65] {
        for len in [0, 1, 255, 256, 257, 300, 511, 512, 513, 767, 768, 1000, 1024, 1300] {
            buf.fill(0xa5);
            mem::copy(black_box(&mut buf[off..off + len]), black_box(&src[3..3 + len]));
            let right = buf[..off].iter().all(|&b| b == 0xa5)
                && buf[off..off + len] == src[3..3 + len]
                && buf[off + len..].iter().all(|&b| b == 0xa5);
            check(right, "mem::copy did not move exactly its bytes")?;
        }
    }
    Ok(())
}
