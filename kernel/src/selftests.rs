//! The kernel's self-test modes, `exo.test=boot|el1-fault|panic`: built only into the test
//! image (`cargo xtask test` builds the kernel with the `test-modes` feature), never into
//! the `kernel8.img` that `cargo xtask build` makes. Each mode ends the machine; any other
//! `exo.test=` word is left for init's test suites.

use crate::{arch, exit, irq, kprintln};

/// Runs the self-test `mode` names, if it names one; returns otherwise.
pub fn run(mode: Option<&str>) {
    match mode {
        Some("el1-fault") => {
            log::info!("test: touching an unmapped kernel address");
            // SAFETY: deliberately unsound — this read must fault, and the fault report
            // and failure status are what the test checks.
            let v = unsafe { core::ptr::read_volatile(0xffff_8000_dead_0000 as *const u64) };
            kprintln!("read {v:#x}: the fault did not happen");
            exit::pass()
        }
        Some("panic") => panic!("test: a deliberate kernel panic"),
        Some("boot") => {
            // Ten of this core's timer interrupts (its events gather until taken: nothing
            // else takes them while the kernel waits here, before any environment runs).
            let mut ticks = 0;
            while ticks < 10 {
                arch::wait_for_interrupt();
                ticks += u32::from(irq::take_events() & irq::EVENT_TICK != 0);
            }
            log::info!("timer: {ticks} ticks at {} Hz", irq::TICK_HZ);
            log::info!("test: boot ok");
            exit::pass()
        }
        _ => {}
    }
}
