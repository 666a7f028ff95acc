//! The AArch64 specifics: boot and vector assembly, trap entry, and a few CPU operations.

use core::arch::{asm, global_asm};

pub mod power;
pub mod trap;

global_asm!(include_str!("boot.S"));
global_asm!(
    include_str!("vectors.S"),
    SYS_FAST_COUNT = const exo_abi::Sys::FAST_COUNT,
    SYS_UPCALL_RESUME = const exo_abi::Sys::UpcallResume as u64,
    ERR_INVALID = const exo_abi::Error::Invalid as i64,
);

/// Replaces the boot identity map in TTBR0 with an empty table and flushes the TLB. From
/// here on the low half holds only environments' mappings. Also switches to 16-bit ASIDs
/// where the CPU has them.
pub fn drop_identity_map() {
    let empty = crate::mm::empty_root();
    // SAFETY: after `finish_boot_map` nothing the kernel runs or touches lives in the low
    // half, so replacing its tables cannot pull anything out from under us.
    unsafe {
        let mut tcr: u64;
        let mmfr0: u64;
        asm!("mrs {}, tcr_el1", out(reg) tcr);
        asm!("mrs {}, id_aa64mmfr0_el1", out(reg) mmfr0);
        if (mmfr0 >> 4) & 0xf == 2 {
            tcr |= 1 << 36; // AS: 16-bit ASIDs
        }
        asm!(
            "msr tcr_el1, {tcr}",
            "msr ttbr0_el1, {empty}",
            "isb",
            "tlbi vmalle1",
            "dsb nsh",
            "isb",
            tcr = in(reg) tcr,
            empty = in(reg) empty,
        );
    }
}

/// Points TTBR0 at an environment's root table (0: none, an empty table) tagged with its
/// ASID. No TLB flush: translations are tagged, and each ASID belongs to one slot.
#[inline]
pub fn set_user_table(root: u64, asid: u16) {
    let root = if root == 0 { crate::mm::empty_root() } else { root };
    // SAFETY: `root` is a table the frame table records as this environment's root (or the
    // kernel's empty table); TTBR0 only translates EL0's half.
    unsafe { asm!("msr ttbr0_el1, {}", "isb", in(reg) root | (asid as u64) << 48) };
}

/// What EL0 may do without trapping: read the virtual counter and the PMU cycle counter,
/// zero cache lines (`dc zva`), read CTR_EL0; unaligned stack pointers and wfi/wfe do trap.
/// The cycle counter runs (under QEMU's `-icount` it counts instructions), for benchmarks;
/// EL0 may only read it — not reset, stop or reprogram it, nor touch the event counters —
/// so no environment can disturb another's measurements (it tells no more than CNTVCT).
pub fn configure_el0() {
    // SAFETY: these registers only widen what EL0 may read (counters, cache geometry) and
    // turn on SP alignment checks; none exposes kernel state.
    unsafe {
        asm!(
            "mrs {t}, sctlr_el1",
            "orr {t}, {t}, {bits}",
            "msr sctlr_el1, {t}",
            "mov {t}, #3",          // CNTKCTL_EL1: EL0PCTEN | EL0VCTEN
            "msr cntkctl_el1, {t}",
            "mov {t}, #4",          // PMUSERENR_EL0: CR (read the cycle counter) only
            "msr pmuserenr_el0, {t}",
            "mov {t}, #5",          // PMCR_EL0: E | C (cycle counter on, from zero)
            "msr pmcr_el0, {t}",
            "mov {t}, #0x80000000", // PMCNTENSET_EL0: C
            "msr pmcntenset_el0, {t}",
            "isb",
            t = out(reg) _,
            bits = in(reg) (1u64 << 3) | (1 << 4) | (1 << 14) | (1 << 15),
        )
    };
}

unsafe extern "C" {
    fn enter_user(frame: *mut trap::TrapFrame) -> !;
}

/// Leaves the kernel for EL0 the first time, resuming `frame`.
pub fn start_user(frame: *mut trap::TrapFrame) -> ! {
    // SAFETY: `frame` is the active context of the environment the scheduler just made
    // current (TTBR0 points at its tables); the kernel stack is abandoned on purpose.
    unsafe { enter_user(frame) }
}

/// Zeroes the 4 KiB page at kernel address `va` with `dc zva`, 64 bytes per instruction
/// (the block size of every ARMv8-A core exo runs on; checked at boot by `check_dc_zva`),
/// then cleans it to the point of coherency: the new owner may map it non-cacheable, and
/// must then read the zeros, not an earlier owner's data still in memory.
pub fn zero_page(va: u64) {
    // SAFETY: the caller passes a page-aligned kernel mapping of a frame it owns; `dc zva`
    // writes zeros to exactly the 64-byte blocks named, 64 of them here, and `dc cvac` only
    // writes those same lines back to memory.
    unsafe {
        asm!(
            "2: dc zva, {p}",
            "add {p}, {p}, #64",
            "dc zva, {p}",
            "add {p}, {p}, #64",
            "dc zva, {p}",
            "add {p}, {p}, #64",
            "dc zva, {p}",
            "add {p}, {p}, #64",
            "cmp {p}, {end}",
            "b.lo 2b",
            "sub {p}, {p}, #4096",
            "3: dc cvac, {p}",
            "add {p}, {p}, #64",
            "dc cvac, {p}",
            "add {p}, {p}, #64",
            "dc cvac, {p}",
            "add {p}, {p}, #64",
            "dc cvac, {p}",
            "add {p}, {p}, #64",
            "cmp {p}, {end}",
            "b.lo 3b",
            "dsb ish",
            p = inout(reg) va => _,
            end = in(reg) va + 4096,
            options(nostack),
        )
    };
}

/// `dc zva` must be allowed and zero 64-byte blocks for `zero_page` to be right.
pub fn check_dc_zva() -> bool {
    let dczid: u64;
    // SAFETY: reading an ID register.
    unsafe { asm!("mrs {}, dczid_el0", out(reg) dczid) };
    dczid & 0x1f == 4 // DZP clear, BS = log2(16 words)
}

/// Sleeps until an interrupt arrives, lets it be taken, and masks interrupts again.
pub fn wait_for_interrupt() {
    // SAFETY: interrupts are only ever unmasked here, where the kernel holds no state that
    // an interrupt handler could touch (the idle loop owns nothing).
    unsafe { asm!("msr daifclr, #2", "wfi", "msr daifset, #2") };
}

/// The syndrome (ESR_EL1) and fault address (FAR_EL1) of the exception being handled.
pub fn fault_registers() -> (u64, u64) {
    let (esr, far): (u64, u64);
    // SAFETY: reading EL1 syndrome registers has no side effects.
    unsafe { asm!("mrs {}, esr_el1", "mrs {}, far_el1", out(reg) esr, out(reg) far) };
    (esr, far)
}

unsafe extern "C" {
    fn secondary_park();
}

/// Moves the cores waiting in the firmware's spin table (Pi) into `secondary_park`, where
/// they sleep in `wfi` instead of polling memory.
pub fn park_secondaries(release: &[exo_bsp::dt::Region]) {
    let entry = crate::mm::image_pa(secondary_park as *const () as u64);
    for r in release {
        let slot = crate::mm::phys_to_virt(r.base) as *mut u64;
        // SAFETY: release addresses are RAM the device tree names for exactly this
        // handshake, mapped in the physmap. The core polls it with its caches off, so the
        // line is cleaned to the point of coherency before the wake-up event.
        unsafe {
            slot.write_volatile(entry);
            asm!("dc civac, {}", "dsb sy", "sev", in(reg) slot);
        }
    }
}
