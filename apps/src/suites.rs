//! What init's test build runs instead of a normal boot: the mode that `exo.test=NAME`
//! names, looked up in `MODES`. Only the test image's init links this crate (its `tests`
//! feature); the init in `kernel8.img` knows none of these modes.
//!
//! ## Adding a suite
//!
//! 1. Write `apps/src/NAME.rs`: a `TESTS` table of `(name, fn)` and a `run(filter) -> usize`
//!    that hands it to [`runner::run_suite`](crate::runner::run_suite) (`ipctest.rs` is a
//!    short model). Use [`runner::check`](crate::runner::check) for the verdicts.
//! 2. Declare it in `lib.rs`: `pub mod NAME;`.
//! 3. Register it here: a line in `MODES`, e.g.
//!    `("mine", Run::Suite("my", |c| crate::mine::run(c.filter)))`.
//! 4. Have `cargo xtask test` boot it: a `BootTest` in `tools/xtask/src/test.rs` with
//!    `bootargs: "exo.test=mine"` and `suite: true` (each `test NAME ... ok` line then
//!    counts as one test), modelled on the `ipc` entry there.

use exo_libos::{println, sys};

use crate::{bench, disktest, fstest, fuzz, ipctest, ktest, logcrash, nettest, smptest};

/// What a mode is given.
pub struct Context<'a> {
    /// The whole bootargs, for modes with options of their own (`exo.fuzz.calls=N`).
    pub args: &'a str,
    /// `exo.filter=TEXT`: run only the tests whose names contain it (empty: all).
    pub filter: &'a str,
    /// The programs built into init, (name, ELF): fsd, shell, hello, crash.
    pub programs: &'a [(&'a str, &'a [u8])],
}

impl Context<'_> {
    /// The value of the bootarg `key=value`, if it is there.
    pub fn arg(&self, key: &str) -> Option<&str> {
        arg(self.args, key)
    }
}

/// How a mode runs, and what its result means.
pub enum Run {
    /// A suite, with its title for init's banner: returns how many tests failed; init
    /// exits with 0 only if none did.
    Suite(&'static str, fn(&Context) -> usize),
    /// Anything else: returns init's exit status (and so the machine's).
    Status(fn(&Context) -> i32),
}

/// Every mode, by its `exo.test=` name. (`boot`, `el1-fault` and `panic` are the kernel's
/// own, in `kernel/src/selftests.rs`: init never sees them.)
pub const MODES: &[(&str, Run)] = &[
    ("core", Run::Suite("exokernel core", |c| ktest::run(c.filter))),
    ("disk", Run::Suite("disk", |c| disktest::run(c.filter))),
    ("ipc", Run::Suite("protected control transfer", |c| ipctest::run(c.filter))),
    ("smp", Run::Suite("multicore", |c| smptest::run(c.filter))),
    ("fs", Run::Suite("file-system", |c| fstest::run(c.filter, c.programs))),
    ("net", Run::Suite("network", |c| nettest::run(c.filter))),
    ("holes", Run::Suite("known open holes", |c| crate::hostile::run_open(c.filter))),
    ("webcrash", Run::Status(|c| crate::webcrash::run(c.programs))),
    ("fuzz", Run::Status(|c| fuzz::run(c.args))),
    ("bench", Run::Status(|c| bench::run(c.programs))),
    ("logcrash", Run::Status(|_| logcrash::crash())),
    (
        "logcheck",
        Run::Status(|c| {
            logcrash::check(c.arg("exo.logcheck.upto").and_then(|n| n.parse().ok()).unwrap_or(0))
        }),
    ),
    ("hang", Run::Status(|_| hang())),
];

/// Runs the mode the bootargs name, if it is one of `MODES`, and returns init's exit
/// status; `None` means boot normally.
pub fn run(args: &str, programs: &[(&str, &[u8])]) -> Option<i32> {
    let name = arg(args, "exo.test")?;
    let (_, mode) = MODES.iter().find(|(n, _)| *n == name)?;
    let context = Context { args, filter: arg(args, "exo.filter").unwrap_or(""), programs };
    Some(match mode {
        Run::Suite(title, suite) => {
            println!("init: running the {title} tests");
            (suite(&context) != 0) as i32
        }
        Run::Status(run) => run(&context),
    })
}

fn arg<'a>(args: &'a str, key: &str) -> Option<&'a str> {
    args.split_ascii_whitespace().find_map(|w| w.strip_prefix(key)?.strip_prefix('='))
}

/// Idles forever, for the test runner's hang detection to catch.
fn hang() -> i32 {
    println!("init: idling forever (for the test runner's hang detection)");
    loop {
        sys::yield_now();
    }
}
