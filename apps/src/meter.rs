//! The benchmarks' clock and measuring loop (`bench`, `fsbench`, `smpbench`): the PMU
//! cycle counter, which counts guest instructions exactly under QEMU's `-icount`.

pub fn cycles() -> u64 {
    let c: u64;
    // SAFETY: EL0 may read the cycle counter (PMUSERENR_EL0.CR, set by the kernel); `isb`
    // keeps the read from moving across the measured code.
    unsafe { core::arch::asm!("isb", "mrs {}, pmccntr_el0", "isb", out(reg) c) };
    c
}

/// Cost of `f` per call, minus the measuring loop's own cost.
pub fn measure(n: u64, mut f: impl FnMut(u64)) -> u64 {
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
