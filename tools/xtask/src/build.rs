//! Building the kernel image: cargo for the bare-metal target, then ELF -> raw image.

use std::path::PathBuf;
use std::sync::OnceLock;

use crate::util::{self, TARGET};

/// What a build produced.
#[derive(Clone)]
pub struct Artifacts {
    /// The kernel ELF, with symbols (for gdb and symbolizing).
    pub elf: PathBuf,
    /// The raw image every board boots: `kernel8.img`.
    pub image: PathBuf,
}

/// The programs, built for the board in three stages: the apps; the shell, with the apps
/// it can `run` embedded; init, with the shell embedded (init itself is embedded in the
/// kernel image).
pub const APPS: &[&str] = &["hello", "crash", "fsd", "wc"];

/// Builds everything the kernel image holds; once per xtask run (later calls get the same).
pub fn build_all() -> Result<Artifacts, String> {
    static BUILT: OnceLock<Result<Artifacts, String>> = OnceLock::new();
    BUILT.get_or_init(build).clone()
}

fn build() -> Result<Artifacts, String> {
    util::ensure_toolchain()?;
    let objcopy = util::llvm_tool("llvm-objcopy")?;
    let release = util::release_dir();
    // What each program embeds. Every cargo run sees all three variables, so building one
    // stage never looks like a change to another's build script.
    let embeds: [(&str, &[&str]); 3] = [
        ("exo-apps", &[]),
        ("exo-shell", &["hello", "crash", "wc"]),
        ("exo-init", &["shell", "fsd", "hello", "crash"]),
    ];
    let embed_vars: Vec<(String, String)> = embeds
        .iter()
        .map(|(package, names)| {
            let list: Vec<String> =
                names.iter().map(|n| format!("{n}={}", util::out_dir().join(n).display())).collect();
            (format!("EXO_EMBED_{}", package.to_uppercase().replace('-', "_")), list.join(","))
        })
        .collect();
    let stage = |package: &str, bins: &[&str]| -> Result<(), String> {
        eprintln!("xtask: building {package} for {TARGET}");
        util::run(util::cargo_build(package).envs(embed_vars.iter().cloned()))?;
        for bin in bins {
            // Replace the stripped copy only when it changed: the next stage embeds it, and
            // a new timestamp alone would rebuild everything after it.
            let out = util::out_dir().join(bin);
            let tmp = util::out_dir().join(format!("{bin}.new"));
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
    stage("exo-apps", APPS)?;
    stage("exo-shell", &["shell"])?;
    stage("exo-init", &["init"])?;
    eprintln!("xtask: building the kernel for {TARGET}");
    util::run(util::cargo_build("exo-kernel").env("EXO_INIT", util::out_dir().join("init")))?;
    let elf = crate::qemu::kernel_elf();
    let image = util::out_dir().join("kernel8.img");
    util::elf_to_image(&elf, &image)?;
    Ok(Artifacts { elf, image })
}
