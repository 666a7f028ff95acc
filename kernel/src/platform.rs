//! The one board this kernel is running on, and the boot-time configuration (bootargs).

use exo_bsp::Board;
use spin::Once;

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

/// What `/chosen/bootargs` asks of the kernel (`exo_bsp::bootargs`).
pub use exo_bsp::bootargs::Config;

pub fn set_config(c: Config) -> &'static Config {
    CONFIG.call_once(|| c)
}

pub fn config() -> Config {
    CONFIG.get().copied().unwrap_or_else(|| Config::parse(""))
}
