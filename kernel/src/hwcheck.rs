//! `exo.test=hwcheck`: a boot mode of the production image for Raspberry Pi owners. The
//! kernel only gathers what it learned at boot; `exo_bsp::hwcheck` reads and reports the
//! rest, one `PASS`/`FAIL`/`INFO` line per fact (`docs/qemu-vs-pi4.md`).

extern crate alloc;

use exo_bsp::disk::{Disk, ProbeLog};
use exo_bsp::drivers::bcm2835_mbox::BUFFER_BYTES;
use exo_bsp::hwcheck::{Facts, Report};
use exo_bsp::{BlockDevice, Board};

use crate::{arch, console, exit, mm, platform};

/// Prints the report, then ends the machine with its verdict under a test runner
/// (semihosting), or idles so that a person can read the screen.
pub fn run(board: &Board, probes: &ProbeLog, disk: Option<&Disk>) -> ! {
    let layout = core::alloc::Layout::from_size_align(BUFFER_BYTES, 64).expect("a valid layout");
    // SAFETY: the layout has a non-zero size.
    let va = unsafe { alloc::alloc::alloc_zeroed(layout) }.cast::<u32>();
    let mbox = (!va.is_null()).then(|| (va, mm::kva_to_pa(va as usize)));
    let facts = Facts { board, probes, disk: disk.map(|d| (d.name(), d.sectors())), framebuffer: None };
    let mut r = Report::new(console::Out);
    // SAFETY: every device region is mapped in the physmap; the buffer was just allocated
    // for this report alone, and `kva_to_pa` gives its physical address.
    unsafe { exo_bsp::hwcheck::report(&facts, |pa| mm::phys_to_virt(pa) as usize, mbox, &mut r) };
    r.finish();
    if platform::config().semihosting {
        exit::power_off(u32::from(r.fails() > 0));
    }
    loop {
        arch::wait_for_interrupt();
    }
}
