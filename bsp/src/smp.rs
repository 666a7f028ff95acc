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
        // handshake alone; the waiting core polls it with its caches off, so the line is
        // cleaned to the point of coherency before the wake-up event.
        unsafe {
            slot.write_volatile(entry);
            #[cfg(target_arch = "aarch64")]
            core::arch::asm!("dc civac, {}", "dsb sy", "sev", in(reg) slot);
        }
        return Ok(());
    }
    match info.psci {
        Some(conduit) => psci_cpu_on(conduit, mpidr, entry),
        None => Err(StartError::NoMethod),
    }
}

#[cfg(target_arch = "aarch64")]
fn psci_cpu_on(conduit: PsciConduit, mpidr: u64, entry: u64) -> Result<(), StartError> {
    const CPU_ON: u64 = 0xc400_0003; // the SMC64 function id
    let mut r = CPU_ON;
    match conduit {
        // SAFETY: PSCI CPU_ON to the hypervisor the device tree names: it starts another core
        // at `entry` and changes nothing of this core's state but x0.
        PsciConduit::Hvc => unsafe {
            core::arch::asm!("hvc #0", inout("x0") r, in("x1") mpidr, in("x2") entry, in("x3") 0u64, clobber_abi("C"))
        },
        // SAFETY: the same call to the secure monitor.
        PsciConduit::Smc => unsafe {
            core::arch::asm!("smc #0", inout("x0") r, in("x1") mpidr, in("x2") entry, in("x3") 0u64, clobber_abi("C"))
        },
    }
    if r == 0 {
        Ok(())
    } else {
        Err(StartError::Psci(r as i64))
    }
}

#[cfg(not(target_arch = "aarch64"))]
fn psci_cpu_on(_: PsciConduit, _: u64, _: u64) -> Result<(), StartError> {
    Err(StartError::NoMethod)
}
