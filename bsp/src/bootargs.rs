//! What `/chosen/bootargs` asks of the kernel. Words it does not know are left for init.

/// The kernel's boot-time configuration, parsed from the bootargs.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Config {
    /// `exo.exit=semihosting`: end the machine with a status through semihosting (QEMU with
    /// `-semihosting`); otherwise PSCI or the watchdog, which carry no status.
    pub semihosting: bool,
    /// `exo.log=error|warn|info|debug|trace` (an unknown level keeps `info`).
    pub log_level: log::LevelFilter,
    /// `exo.test=hwcheck`: report every board fact instead of booting; the one test mode of
    /// the production image, for Pi 4 owners.
    pub hwcheck: bool,
    /// `exo.test=NAME` for any other name: a kernel self-test to run after boot. Only the
    /// test image has self-tests; the production kernel ignores this.
    pub test: Option<&'static str>,
}

impl Config {
    pub fn parse(args: &'static str) -> Config {
        let mut c =
            Config { semihosting: false, log_level: log::LevelFilter::Info, hwcheck: false, test: None };
        for word in args.split_ascii_whitespace() {
            match word.split_once('=') {
                Some(("exo.exit", "semihosting")) => c.semihosting = true,
                Some(("exo.log", level)) => c.log_level = level.parse().unwrap_or(c.log_level),
                Some(("exo.test", "hwcheck")) => c.hwcheck = true,
                Some(("exo.test", name)) => c.test = Some(name),
                _ => {}
            }
        }
        c
    }
}

#[cfg(test)]
mod tests {
    use super::Config;

    #[test]
    fn known_words_set_their_fields_and_the_rest_are_left_alone() {
        let c = Config::parse("console=ttyAMA0 exo.log=debug exo.exit=semihosting exo.test=panic init=x");
        assert!(c.semihosting && !c.hwcheck);
        assert_eq!(c.log_level, log::LevelFilter::Debug);
        assert_eq!(c.test, Some("panic"));
    }

    #[test]
    fn hwcheck_is_its_own_mode_and_a_bad_level_keeps_info() {
        let c = Config::parse("exo.test=hwcheck exo.log=loud");
        assert!(c.hwcheck && c.test.is_none() && !c.semihosting);
        assert_eq!(c.log_level, log::LevelFilter::Info);
        assert_eq!(Config::parse(""), Config::parse("   "));
    }
}
