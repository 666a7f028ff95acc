//! The one board this kernel is running on, and the boot-time configuration (bootargs):
//! kept by the bsp (`exo_bsp::platform`), set once at boot by `main.rs`.

pub use exo_bsp::bootargs::Config;
pub use exo_bsp::platform::{board, config, set_board, set_config};
