//! Building the kernel images: cargo for the bare-metal target, then ELF -> raw image.
//!
//! Two images come out of one build. The production image, `target/exo/kernel8.img`, is
//! what `build`, `qemu`, `image` and `chainboot` give people: its kernel has no self-test
//! modes and its init links no test suite. The test image, `target/exo/test/kernel8.img`,
//! adds both (the kernel's `test-modes` feature, init's `tests` feature) for `cargo xtask
//! test` and `cargo xtask bench`. Everything else — the apps, the shell, fsd, every library
//! crate — is built once and shared: only init and the kernel are compiled twice.

use std::path::{Path, PathBuf};
use std::sync::OnceLock;

use crate::util::{self, TARGET};

/// Which of the two kernel images.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Variant {
    /// What people boot: no test code.
    Production,
    /// The production image plus the kernel's self-test modes and init's test suites.
    Test,
}

impl Variant {
    /// Where this variant's kernel image, kernel ELF and init go.
    pub fn dir(self) -> PathBuf {
        match self {
            Variant::Production => util::out_dir(),
            Variant::Test => {
                let d = util::out_dir().join("test");
                let _ = std::fs::create_dir_all(&d);
                d
            }
        }
    }

    /// What a build of this variant makes (whether or not it has been built yet).
    pub fn artifacts(self) -> Artifacts {
        let d = self.dir();
        Artifacts {
            elf: d.join("exo-kernel.elf"),
            image: d.join("kernel8.img"),
            init: d.join("init"),
            init_elf: d.join("init.elf"),
        }
    }

    /// The `--test-image` flag's variant.
    pub fn chosen(test_image: bool) -> Variant {
        if test_image {
            Variant::Test
        } else {
            Variant::Production
        }
    }

    /// Builds this variant (once per xtask run).
    pub fn build(self) -> Result<Artifacts, String> {
        match self {
            Variant::Production => build_all(),
            Variant::Test => build_test(),
        }
    }

    /// The cargo arguments that make `package` (exo-kernel or exo-init) this variant.
    fn features(self, package: &str) -> Vec<String> {
        match (self, package) {
            (Variant::Test, "exo-kernel") => vec!["--features".into(), "exo-kernel/test-modes".into()],
            (Variant::Test, "exo-init") => vec!["--features".into(), "exo-init/tests".into()],
            _ => vec![],
        }
    }
}

/// What a build produced.
#[derive(Clone)]
pub struct Artifacts {
    /// The kernel ELF, with symbols (for gdb and symbolizing).
    pub elf: PathBuf,
    /// The raw image every board boots: `kernel8.img`.
    pub image: PathBuf,
    /// init as the kernel embeds it (stripped).
    pub init: PathBuf,
    /// init with its symbols.
    pub init_elf: PathBuf,
}

/// The programs, built for the board in three stages: the apps; the shell, with the apps
/// it can `run` embedded; init, with the shell embedded (init itself is embedded in the
/// kernel image).
pub const APPS: &[&str] = &[
    "hello", "crash", "fsd", "wc", "fbdemo", "cat", "grep", "head", "tail", "hexdump", "yes", "echo", "save",
    "exec",
];

/// Apps that are packages of their own (package, program), built beside `APPS` and put on
/// the card with them: the example apps that link one file-system libOS each.
pub const OWN_PACKAGE_APPS: &[(&str, &str)] = &[("exo-fatnote", "fatnote"), ("exo-lognote", "lognote")];
/// The networked programs (package `exo-httpd`, linking the `exo-net` stack).
pub const NET_APPS: &[&str] = &["httpd", "ping"];

/// Builds the production image and everything it holds; once per xtask run (later calls
/// get the same).
pub fn build_all() -> Result<Artifacts, String> {
    static BUILT: OnceLock<Result<Artifacts, String>> = OnceLock::new();
    BUILT.get_or_init(|| build(Variant::Production)).clone()
}

/// Builds the test image (after the production one, whose programs it shares); once per
/// xtask run.
pub fn build_test() -> Result<Artifacts, String> {
    static BUILT: OnceLock<Result<Artifacts, String>> = OnceLock::new();
    BUILT.get_or_init(|| build_all().and_then(|_| build(Variant::Test))).clone()
}

fn build(variant: Variant) -> Result<Artifacts, String> {
    util::ensure_toolchain()?;
    let objcopy = util::llvm_tool("llvm-objcopy")?;
    let release = util::release_dir();
    // What each program embeds. Every cargo run sees all three variables, so building one
    // stage never looks like a change to another's build script.
    let embeds: [(&str, &[&str]); 3] = [
        ("exo-apps", &[]),
        ("exo-shell", &["hello", "crash", "wc", "fbdemo", "ping"]),
        ("exo-init", &["shell", "fsd", "hello", "crash", "httpd"]),
    ];
    let embed_vars: Vec<(String, String)> = embeds
        .iter()
        .map(|(package, names)| {
            let list: Vec<String> =
                names.iter().map(|n| format!("{n}={}", util::out_dir().join(n).display())).collect();
            (format!("EXO_EMBED_{}", package.to_uppercase().replace('-', "_")), list.join(","))
        })
        .collect();
    let what = if variant == Variant::Test { " (test image)" } else { "" };
    let stage = |package: &str, bins: &[&str], to: &Path| -> Result<(), String> {
        eprintln!("xtask: building {package}{what} for {TARGET}");
        let features = variant.features(package);
        util::run(util::cargo_build(package).args(features).envs(embed_vars.iter().cloned()))?;
        for bin in bins {
            // Replace the stripped copy only when it changed: the next stage embeds it, and
            // a new timestamp alone would rebuild everything after it.
            let out = to.join(bin);
            let tmp = to.join(format!("{bin}.new"));
            let mut strip = std::process::Command::new(&objcopy);
            util::run(strip.arg("--strip-all").arg(release.join(bin)).arg(&tmp))?;
            let same = std::fs::read(&tmp).ok() == std::fs::read(&out).ok();
            if same {
                let _ = std::fs::remove_file(&tmp);
            } else {
                std::fs::rename(&tmp, &out).map_err(|e| format!("{}: {e}", out.display()))?;
            }
        }
        Ok(())
    };
    let art = variant.artifacts();
    if variant == Variant::Production {
        stage("exo-apps", APPS, &util::out_dir())?;
        for (package, program) in OWN_PACKAGE_APPS {
            stage(package, &[program], &util::out_dir())?;
        }
        stage("exo-httpd", NET_APPS, &util::out_dir())?;
        stage("exo-shell", &["shell"], &util::out_dir())?;
    }
    stage("exo-init", &["init"], &variant.dir())?;
    // Both variants' binaries land on the same path in cargo's directory: keep copies.
    copy(&release.join("init"), &art.init_elf)?;
    eprintln!("xtask: building the kernel{what} for {TARGET}");
    let features = variant.features("exo-kernel");
    util::run(util::cargo_build("exo-kernel").args(features).env("EXO_INIT", &art.init))?;
    copy(&release.join("exo-kernel"), &art.elf)?;
    util::elf_to_image(&art.elf, &art.image)?;
    Ok(art)
}

fn copy(from: &Path, to: &Path) -> Result<(), String> {
    std::fs::copy(from, to)
        .map(|_| ())
        .map_err(|e| format!("copying {} to {}: {e}", from.display(), to.display()))
}
