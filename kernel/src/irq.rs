//! Interrupts: acknowledge at the GIC, dispatch, end. The timer tick is the only source so
//! far; device interrupts join it as drivers need them.

use core::sync::atomic::{AtomicU64, Ordering};

use exo_bsp::drivers::generic_timer;
use exo_bsp::IrqController;

use crate::platform;

/// Length of a time slice: 10 ms.
pub const TICK_HZ: u64 = 100;

static TICKS: AtomicU64 = AtomicU64::new(0);

/// Timer interrupts taken since boot.
pub fn ticks() -> u64 {
    TICKS.load(Ordering::Relaxed)
}

/// Sets up the interrupt controller and starts the periodic tick.
pub fn init() {
    let Some(board) = platform::board() else {
        return;
    };
    board.gic.init();
    board.gic.enable(board.info.timer_intid);
    generic_timer::arm(generic_timer::frequency() / TICK_HZ);
}

/// Handles every pending interrupt (called from the vectors with interrupts masked).
pub fn handle() {
    let Some(board) = platform::board() else {
        return;
    };
    while let Some(id) = board.gic.acknowledge() {
        if id == board.info.timer_intid {
            TICKS.fetch_add(1, Ordering::Relaxed);
            generic_timer::arm(generic_timer::frequency() / TICK_HZ);
        } else {
            log::warn!("unexpected interrupt {id}; disabling it");
            board.gic.disable(id);
        }
        board.gic.end(id);
    }
}
