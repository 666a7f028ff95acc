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

/// What `/chosen/bootargs` asks of the kernel. Words it does not know are left for init.
#[derive(Clone, Copy, Debug)]
pub struct Config {
    /// `exo.exit=semihosting`: end the machine with a status through semihosting (QEMU with
    /// `-semihosting`); otherwise PSCI or the watchdog, which carry no status.
    pub semihosting: bool,
    /// `exo.log=error|warn|info|debug|trace`.
    pub log_level: log::LevelFilter,
    /// `exo.test=hwcheck`: report every board fact instead of booting (`hwcheck.rs`); the
    /// one test mode of the production image, for Pi 4 owners.
    pub hwcheck: bool,
    /// `exo.test=NAME`: a kernel self-test to run after boot (`boot`, `el1-fault`,
    /// `panic`); only the test image has them (`selftests.rs`).
    #[cfg(feature = "test-modes")]
    pub test: Option<&'static str>,
}

impl Config {
    pub fn parse(args: &'static str) -> Config {
        let mut c = Config {
            semihosting: false,
            log_level: log::LevelFilter::Info,
            hwcheck: false,
            #[cfg(feature = "test-modes")]
            test: None,
        };
        for word in args.split_ascii_whitespace() {
            match word.split_once('=') {
                Some(("exo.exit", "semihosting")) => c.semihosting = true,
                Some(("exo.log", level)) => c.log_level = level.parse().unwrap_or(c.log_level),
                Some(("exo.test", "hwcheck")) => c.hwcheck = true,
                #[cfg(feature = "test-modes")]
                Some(("exo.test", name)) => c.test = Some(name),
                _ => {}
            }
        }
        c
    }
}

pub fn set_config(c: Config) -> &'static Config {
    CONFIG.call_once(|| c)
}

pub fn config() -> Config {
    CONFIG.get().copied().unwrap_or_else(|| Config::parse(""))
}
