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

fn cycles() -> u64 {
    let c: u64;
    // SAFETY: EL0 may read the cycle counter (PMUSERENR_EL0.CR, set by the kernel); `isb`
    // keeps the read from moving across the measured code.
    unsafe { core::arch::asm!("isb", "mrs {}, pmccntr_el0", "isb", out(reg) c) };
    c
}

/// Cost of `f` per call, minus the measuring loop's own cost.
fn measure(n: u64, mut f: impl FnMut(u64)) -> u64 {
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

static POOL: AtomicU64 = AtomicU64::new(0);
static NEXT: AtomicU64 = AtomicU64::new(0);

/// Maps the next pre-allocated frame at the faulting page and resumes.
fn map_on_fault(u: &Upcall) -> bool {
    if u.kind != upcall::DATA_ABORT {
        return false;
    }
    let i = NEXT.fetch_add(1, Relaxed);
    // SAFETY: POOL points at an array of frame addresses filled before the faults.
    let pa = unsafe { *(POOL.load(Relaxed) as *const u64).add(i as usize) };
    vm::map_frame(u.far & !(PAGE - 1), pa, RW).is_ok()
}

pub fn run() -> i32 {
    let n = 2000;
    report(
        "null_syscall",
        n,
        measure(n, |_| {
            let _ = sys::nop();
        }),
    );

    // Page-fault upcall: fault -> handler maps a ready frame -> resume.
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
    report("fault_upcall_map_resume", 512, per);
    for i in 0..512 {
        let _ = vm::unmap_free(base + i * PAGE);
    }

    // Frame allocate + map + unmap + free, through the system calls directly.
    let va = vm::alloc_va(1);
    vm::reserve(va).ok();
    let per = measure(n, |_| {
        if let Ok(pa) = sys::frame_alloc(EnvId::SELF, None) {
            let _ = sys::table_set(EnvId::SELF, va, 3, Pte::user_page(pa, RW).0);
            let _ = sys::table_set(EnvId::SELF, va, 3, 0);
            let _ = sys::frame_free(EnvId::SELF, pa);
        }
    });
    report("frame_alloc_map_unmap_free", n, per);

    // Environment switch: two environments yielding to each other.
    let me = vm::me();
    let child = match process::fork() {
        Ok(Fork::Child) => loop {
            let _ = sys::yield_to(me);
        },
        Ok(Fork::Parent(c)) => c,
        Err(_) => return 1,
    };
    let _ = sys::yield_to(child); // let the child reach its loop
    let per = measure(n, |_| {
        let _ = sys::yield_to(child);
    });
    report("env_switch", 2 * n, per / 2);
    let _ = sys::env_destroy(child);

    // Protected control transfer: call + reply to a server that answers at once.
    fn echo(c: &exo_libos::ipc::Call) -> [u64; 4] {
        c.args
    }
    let server = match process::fork() {
        Ok(Fork::Child) => {
            let e = exo_libos::ipc::serve(echo);
            sys::exit(-(e as i32))
        }
        Ok(Fork::Parent(s)) => s,
        Err(_) => return 1,
    };
    while vm::env_info(server).is_none_or(|i| i.state != exo_libos::abi::env_state::BLOCKED) {
        sys::yield_now();
    }
    let _ = sys::pct_allow(EnvId::SELF, server);
    let per = measure(n, |i| {
        let _ = sys::pct_call(server, [i, 0, 0, 0], 0);
    });
    report("pct_round_trip", n, per);
    let _ = sys::env_destroy(server);

    let per = measure(20, |_| match process::fork() {
        Ok(Fork::Child) => sys::exit(0),
        Ok(Fork::Parent(c)) => {
            let _ = sys::env_wait(c);
        }
        Err(_) => {}
    });
    report("fork_exit_wait", 20, per);
    process::reclaim();
    0
}
