//! Interrupts: acknowledge at the GIC, turn each into an event bit of this core, end. The
//! scheduler consumes the events (`take_events`) the next time it runs on this core, with
//! kernel state in hand; the handler itself touches nothing but the devices — and, for an
//! SGI, carries out a kick (`arch::smp`) without the kernel lock.

use core::sync::atomic::{AtomicU32, AtomicU64, Ordering};

use exo_bsp::drivers::generic_timer;
use exo_bsp::IrqController;

use crate::arch::smp::{self, MAX_CPUS};
use crate::{console, platform};

/// Length of a time slice: 10 ms.
pub const TICK_HZ: u64 = 100;

/// A timer tick happened.
pub const EVENT_TICK: u32 = 1;
/// Console input arrived.
pub const EVENT_CONSOLE: u32 = 2;
/// The disk's interrupt, or the clock's tick: `SectorWait` sleepers look again.
pub const EVENT_DISK: u32 = 4;

static EVENTS: [AtomicU32; MAX_CPUS] = [const { AtomicU32::new(0) }; MAX_CPUS];
/// SGIs each core has taken (published at its tick as `KernelInfo::cpu_signals`).
pub static SIGNALS: [AtomicU64; MAX_CPUS] = [const { AtomicU64::new(0) }; MAX_CPUS];

/// The events raised on this core since the last call.
pub fn take_events() -> u32 {
    EVENTS[smp::cpu()].swap(0, Ordering::Relaxed)
}

/// Sets up the interrupt controller, console input, and starts the periodic tick.
pub fn init() {
    let Some(board) = platform::board() else { return };
    board.gic.init();
    init_cpu();
    if let Some(id) = board.info.uart_intid {
        board.uart.enable_rx_interrupt();
        board.gic.enable(id);
    }
}

/// Sets up this core's own part of the GIC and its tick.
pub fn init_cpu() {
    let Some(board) = platform::board() else { return };
    board.gic.init_cpu(smp::cpu());
    board.gic.enable(board.info.timer_intid);
    generic_timer::arm(generic_timer::frequency() / TICK_HZ);
}

/// Handles every pending interrupt (called from the vectors with interrupts masked).
pub fn handle() {
    let Some(board) = platform::board() else { return };
    let events = &EVENTS[smp::cpu()];
    while let Some(id) = board.gic.acknowledge() {
        let disk = id == crate::disk::INTID.load(Ordering::Relaxed);
        if disk || id == board.info.timer_intid && smp::cpu() == 0 {
            crate::disk::complete(); // and at the clock's tick: a lost interrupt, or a timeout
            events.fetch_or(EVENT_DISK, Ordering::Relaxed);
        }
        if id & 0x3ff < 16 {
            smp::take_kick(); // an SGI: a kick, or just a wake-up from wfi
            SIGNALS[smp::cpu()].fetch_add(1, Ordering::Relaxed);
        } else if id == board.info.timer_intid {
            events.fetch_or(EVENT_TICK, Ordering::Relaxed);
            generic_timer::arm(generic_timer::frequency() / TICK_HZ);
        } else if Some(id) == board.info.uart_intid {
            console::drain_input();
            events.fetch_or(EVENT_CONSOLE, Ordering::Relaxed);
        } else if !disk {
            log::warn!("unexpected interrupt {id}; disabling it");
            board.gic.disable(id);
        }
        board.gic.end(id);
    }
}
