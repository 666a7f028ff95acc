//! Starting the other cores the way the device tree says: PSCI `CPU_ON` through the
//! conduit of its `psci` node (QEMU `virt`), or a write to the core's `cpu-release-addr`
//! followed by `sev` for a core parked in the firmware's spin table (a Raspberry Pi 4,
//! QEMU `raspi4b`). Either way the core arrives at `entry` with its MMU off — at EL1 from
//! PSCI, at EL2 from the Pi's stub — and the kernel's boot code takes it from there.

use crate::dt::{BoardInfo, PsciConduit};

/// Why a core did not start.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum StartError {
    /// The device tree gives the core neither PSCI nor a spin-table release address.
    NoMethod,
    /// PSCI refused, with this status (`ALREADY_ON` is -4, `INVALID_PARAMETERS` -2).
    Psci(i64),
}

/// Starts the core whose MPIDR affinity is `mpidr` at physical address `entry`.
///
/// # Safety
/// `entry` must be code that can run with the MMU off at EL1 or EL2; `virt` must map a
/// spin-table release address to a kernel mapping of that RAM.
pub unsafe fn start_core(
    info: &BoardInfo,
    mpidr: u64,
    entry: u64,
    virt: impl Fn(u64) -> usize,
) -> Result<(), StartError> {
    let release = info.cpus.iter().find(|c| c.0 == mpidr).map_or(0, |c| c.1);
    if release != 0 {
        let slot = virt(release) as *mut u64;
        // SAFETY: the caller maps the release address, RAM the device tree names for this
        // handshake alone.
        unsafe { slot.write_volatile(entry) };
        // SAFETY: the waiting core polls the slot with its caches off, so the line is cleaned
        // to the point of coherency (which changes no data) before the wake-up event.
        #[cfg(target_arch = "aarch64")]
        unsafe {
            core::arch::asm!("dc civac, {}", "dsb sy", "sev", in(reg) slot)
        };
        return Ok(());
    }
    match info.psci {
        Some(conduit) => psci_cpu_on(conduit, mpidr, entry),
        None => Err(StartError::NoMethod),
    }
}

/// Starts every core of the device tree whose MPIDR is an Aff0 below `max` other than
/// `me`, one at a time: `prepare(core)` first (the kernel leaves it a stack), then the
/// start, then a bounded wait for the core to set up its GIC CPU interface
/// ([`GicV2::cores_up`](crate::drivers::gicv2::GicV2::cores_up)).
///
/// # Safety
/// As for [`start_core`].
pub unsafe fn start_cores(
    board: &crate::Board,
    me: usize,
    max: usize,
    entry: u64,
    virt: impl Fn(u64) -> usize + Copy,
    mut prepare: impl FnMut(usize),
) {
    let info = &board.info;
    for (mpidr, _) in info.cpus.iter() {
        let core = mpidr as usize;
        if mpidr > 0xff || core >= max || core == me {
            continue;
        }
        prepare(core);
        // SAFETY: as the caller guarantees.
        if unsafe { start_core(info, mpidr, entry, virt) }.is_ok() {
            for _ in 0..(1u32 << 26) {
                if board.gic.cores_up() & 1 << core != 0 {
                    break;
                }
                relax();
            }
        }
    }
}

/// One turn of a wait for another core: `yield`, a hint that a real core ignores, but on
/// which QEMU (running the cores in turn on one host thread under `-icount`) moves on to
/// the next core at once, instead of spinning out this core's turn before the core waited
/// for can run (three such turns were 6.5 million instructions of raspi4b's boot). Also
/// each turn of a wait for virtio-blk (`drivers::virtio_blk`, `disk::sector_wait` in the
/// kernel).
pub fn relax() {
    // SAFETY: a hint instruction: it touches no memory, register or flag.
    #[cfg(target_arch = "aarch64")]
    unsafe {
        core::arch::asm!("yield", options(nomem, nostack, preserves_flags))
    };
    #[cfg(not(target_arch = "aarch64"))]
    core::hint::spin_loop();
}

/// [`relax`] out of line: a turn of a wait in code that should not change around it (the
/// kernel's `SectorWait`, among the system calls' dispatch: inline, it cost raspi4b's
/// boot, which never waits there, 64 instructions).
#[cold]
#[inline(never)]
pub fn relax_cold() {
    relax()
}

/// PSCI `SYSTEM_OFF` through `conduit`; returns only if it failed.
pub fn psci_system_off(conduit: PsciConduit) {
    let _ = psci(conduit, 0x8400_0008, 0, 0);
}

fn psci_cpu_on(conduit: PsciConduit, mpidr: u64, entry: u64) -> Result<(), StartError> {
    const CPU_ON: u64 = 0xc400_0003; // the SMC64 function id
    match psci(conduit, CPU_ON, mpidr, entry) {
        0 => Ok(()),
        r => Err(StartError::Psci(r as i64)),
    }
}

/// A PSCI call (SMC calling convention) with two arguments and a zero context id.
#[cfg(target_arch = "aarch64")]
fn psci(conduit: PsciConduit, function: u64, a1: u64, a2: u64) -> u64 {
    let mut r = function;
    match conduit {
        // SAFETY: a PSCI call to the hypervisor the device tree names as the conduit: it
        // changes nothing of this core's state but the registers the convention clobbers.
        PsciConduit::Hvc => unsafe {
            core::arch::asm!("hvc #0", inout("x0") r, in("x1") a1, in("x2") a2, in("x3") 0u64, clobber_abi("C"))
        },
        // SAFETY: the same call to the secure monitor.
        PsciConduit::Smc => unsafe {
            core::arch::asm!("smc #0", inout("x0") r, in("x1") a1, in("x2") a2, in("x3") 0u64, clobber_abi("C"))
        },
    }
    r
}

#[cfg(not(target_arch = "aarch64"))]
fn psci(_: PsciConduit, _: u64, _: u64, _: u64) -> u64 {
    u64::MAX // NOT_SUPPORTED
}
