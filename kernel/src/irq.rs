//! Interrupts: acknowledge at the GIC, turn each into an event bit, end. The scheduler
//! consumes the events (`take_events`) the next time it runs, with kernel state in hand;
//! the handler itself touches nothing but the devices.

use core::sync::atomic::{AtomicU32, AtomicU64, Ordering};

use exo_bsp::drivers::generic_timer;
use exo_bsp::IrqController;

use crate::{console, platform};

/// Length of a time slice: 10 ms.
pub const TICK_HZ: u64 = 100;

/// A timer tick happened.
pub const EVENT_TICK: u32 = 1;
/// Console input arrived.
pub const EVENT_CONSOLE: u32 = 2;

static EVENTS: AtomicU32 = AtomicU32::new(0);
static TICKS: AtomicU64 = AtomicU64::new(0);

/// Timer interrupts taken since boot (the boot self-test counts them).
#[cfg(feature = "test-modes")]
pub fn ticks() -> u64 {
    TICKS.load(Ordering::Relaxed)
}

/// The events raised since the last call. (Plain load and store: only the kernel touches
/// EVENTS, with interrupts masked, so nothing can slip in between.)
pub fn take_events() -> u32 {
    let e = EVENTS.load(Ordering::Relaxed);
    if e != 0 {
        EVENTS.store(0, Ordering::Relaxed);
    }
    e
}

/// Sets up the interrupt controller, console input, and starts the periodic tick.
pub fn init() {
    let Some(board) = platform::board() else { return };
    board.gic.init();
    board.gic.enable(board.info.timer_intid);
    if let Some(id) = board.info.uart_intid {
        board.uart.enable_rx_interrupt();
        board.gic.enable(id);
    }
    generic_timer::arm(generic_timer::frequency() / TICK_HZ);
}

/// Handles every pending interrupt (called from the vectors with interrupts masked).
pub fn handle() {
    let Some(board) = platform::board() else { return };
    while let Some(id) = board.gic.acknowledge() {
        if id == board.info.timer_intid {
            TICKS.fetch_add(1, Ordering::Relaxed);
            EVENTS.fetch_or(EVENT_TICK, Ordering::Relaxed);
            generic_timer::arm(generic_timer::frequency() / TICK_HZ);
        } else if Some(id) == board.info.uart_intid {
            console::drain_input();
            EVENTS.fetch_or(EVENT_CONSOLE, Ordering::Relaxed);
        } else {
            log::warn!("unexpected interrupt {id}; disabling it");
            board.gic.disable(id);
        }
        board.gic.end(id);
    }
}
