//! `exo.test=hwcheck`: a boot mode of the production image for Raspberry Pi owners. The
//! kernel only gathers what it learned at boot; `exo_bsp::hwcheck` reads and reports the
//! rest, one `PASS`/`FAIL`/`INFO` line per fact (`docs/qemu-vs-pi4.md`).

use exo_bsp::{disk::Disk, disk::ProbeLog, hwcheck::Facts, Board};

use crate::{console, mm};

/// Prints the report, then ends the machine with its verdict under a test runner
/// (semihosting), or idles so that a person can read the screen.
pub fn run(board: &Board, probes: &ProbeLog, disk: Option<&mut Disk>) -> ! {
    let facts = Facts { board, probes, disk, framebuffer: console::screen() };
    // SAFETY: every device region is mapped in the physmap; the other cores only idle (no
    // environment exists yet), so nothing else makes property calls now; `kva_to_pa`
    // translates kernel addresses.
    unsafe { exo_bsp::hwcheck::run(facts, |pa| mm::phys_to_virt(pa) as usize, mm::kva_to_pa, console::Out) }
}
