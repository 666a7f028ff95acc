//! The one board the kernel runs on, and the boot-time configuration (bootargs): each set
//! once at boot, then read from anywhere (the kernel's `platform` module names them).

use spin::Once;

use crate::bootargs::Config;
use crate::Board;

static BOARD: Once<Board> = Once::new();
static CONFIG: Once<Config> = Once::new();

/// Installs the board once its drivers are wired. Later calls are ignored.
pub fn set_board(board: Board) -> &'static Board {
    BOARD.call_once(|| board)
}

/// The board, once `set_board` has run.
pub fn board() -> Option<&'static Board> {
    BOARD.get()
}

/// Installs what `/chosen/bootargs` asks (once; later calls are ignored).
pub fn set_config(c: Config) -> &'static Config {
    CONFIG.call_once(|| c)
}

/// What `/chosen/bootargs` asks of the kernel: the defaults until `set_config` has run.
pub fn config() -> Config {
    CONFIG.get().copied().unwrap_or_else(|| Config::parse(""))
}
