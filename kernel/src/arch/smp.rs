//! The other cores: starting them, telling cores apart, and the one cross-core request —
//! a kick (SGI) that makes a core load a new TTBR0 before another core frees or reuses
//! what the old one pointed at. `docs/multicore.md` has the whole design.

use core::sync::atomic::{AtomicU64, Ordering};

use aarch64_cpu::registers::{Readable, Writeable, MPIDR_EL1, TCR_EL1, TPIDR_EL1, TTBR0_EL1};

use super::trap::TrapFrame;

/// Cores exo runs on; a core's index is its MPIDR Aff0 (0..4 on every board exo knows).
pub const MAX_CPUS: usize = exo_abi::MAX_CPUS;
/// The SGI every cross-core signal uses: it wakes an idle core and carries out a kick.
const SGI: u32 = 0;
/// In a kick: the core's environment is gone; its next context save goes to a scratch frame.
pub const GONE: u64 = 1;

/// A pending kick per core: the TTBR0 value to load, | `GONE` (0: none).
static KICK: [AtomicU64; MAX_CPUS] = [const { AtomicU64::new(0) }; MAX_CPUS];
/// Where a core whose environment was destroyed under it saves EL0 state until it schedules.
static mut SCRATCH: [TrapFrame; MAX_CPUS] = [TrapFrame::ZERO; MAX_CPUS];

unsafe extern "C" {
    /// `boot.S`: TTBR1 root, boot identity root, TCR_EL1, stack top (read with the MMU off).
    static mut secondary_boot: [u64; 8];
    fn secondary_entry();
    static __stack_top: u8;
}

/// The index of the core running this.
pub fn cpu() -> usize {
    (MPIDR_EL1.get() & 0xff) as usize % MAX_CPUS
}

/// The cores that are up (their GIC CPU interface set up), as a mask by index.
pub fn up_mask() -> u8 {
    crate::platform::board().map_or(1, |b| b.gic.cores_up())
}

/// Wakes the cores in `cores` (a mask by index) out of `wfi`.
pub fn signal(cores: u8) {
    if let Some(b) = crate::platform::board().filter(|_| cores != 0) {
        b.gic.send_sgi(cores, SGI);
    }
}

/// Makes core `c` load `ttbr0` (| [`GONE`]) and waits until it has: from then on it walks
/// nothing the old value named. Called with the kernel lock held: `c` answers from its
/// interrupt path or from its spin on the lock (`take_kick`), never needing the lock.
pub fn kick(c: usize, ttbr0: u64) {
    KICK[c].store(ttbr0, Ordering::Release);
    signal(1 << c);
    aarch64_cpu::asm::sev(); // a core waiting for a lock in `wfe` wakes up too
    while KICK[c].load(Ordering::Acquire) != 0 {
        aarch64_cpu::asm::wfe();
    }
}

/// Carries out a kick aimed at this core, if there is one.
pub fn take_kick() {
    let c = cpu();
    let v = KICK[c].load(Ordering::Acquire);
    if v == 0 {
        return;
    }
    if v & GONE != 0 {
        // SAFETY: only the address is taken; only this core's vectors write its scratch frame.
        TPIDR_EL1.set(unsafe { &raw mut SCRATCH[c] } as u64);
    }
    TTBR0_EL1.set(v & !GONE);
    aarch64_cpu::asm::barrier::isb(aarch64_cpu::asm::barrier::SY);
    KICK[c].store(0, Ordering::Release);
    aarch64_cpu::asm::sev(); // the kicker waits in `wfe`
}

/// Core `c`'s kernel stack top (`link.ld` lays them out from `__stack_top` up).
pub fn stack_top(c: usize) -> u64 {
    &raw const __stack_top as u64 + c as u64 * crate::mm::STACK_STRIDE
}

/// Starts every other core the device tree lists, one at a time, each waited for.
pub fn start_secondaries(board: &exo_bsp::Board) {
    let entry = crate::mm::image_pa(secondary_entry as *const () as u64);
    let prepare = |c| {
        // SAFETY: only this core touches `secondary_boot` (the others wait or are not started).
        unsafe { secondary_boot[2..4].copy_from_slice(&[TCR_EL1.get(), stack_top(c)]) };
        let line = &raw const secondary_boot;
        // SAFETY: cleaning the line to memory changes no data; the core started next reads it
        // with the MMU off.
        unsafe { core::arch::asm!("dc cvac, {}", "dsb sy", in(reg) line) };
    };
    let virt = |pa| crate::mm::phys_to_virt(pa) as usize;
    // SAFETY: `secondary_entry` runs MMU off at EL1 or EL2; the physmap maps the release
    // addresses, which lie in RAM.
    unsafe { exo_bsp::smp::start_cores(board, cpu(), MAX_CPUS, entry, virt, prepare) };
    log::info!("cores: {} of {} up", up_mask().count_ones(), board.info.cpus.len().max(1));
}

/// A started core's first Rust code (`boot.S`): MMU on, on its own stack.
#[unsafe(no_mangle)]
extern "C" fn secondary_main() -> ! {
    super::drop_identity_map();
    super::configure_el0();
    crate::irq::init_cpu();
    super::start_user(super::trap::idle())
}
