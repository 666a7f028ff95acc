//! Building the kernel image: cargo for the bare-metal target, then ELF -> raw image.

use std::path::PathBuf;

use crate::util::{self, TARGET};

/// What a build produced.
pub struct Artifacts {
    /// The kernel ELF, with symbols (for gdb and symbolizing).
    pub elf: PathBuf,
    /// The raw image every board boots: `kernel8.img`.
    pub image: PathBuf,
}

/// The apps, built for the board (init is embedded in the kernel image).
pub const APPS: &[&str] = &["init"];

pub fn build_all() -> Result<Artifacts, String> {
    util::ensure_toolchain()?;
    let objcopy = util::llvm_tool("llvm-objcopy")?;
    let release = util::root().join("target").join(TARGET).join("release");
    eprintln!("xtask: building the apps for {TARGET}");
    util::run(util::cargo().args(["build", "--release", "--target", TARGET, "-p", "exo-apps"]))?;
    for app in APPS {
        let out = util::out_dir().join(app);
        util::run(
            std::process::Command::new(&objcopy).arg("--strip-debug").arg(release.join(app)).arg(&out),
        )?;
    }
    eprintln!("xtask: building the kernel for {TARGET}");
    util::run(
        util::cargo()
            .args(["build", "--release", "--target", TARGET, "-p", "exo-kernel"])
            .env("EXO_INIT", util::out_dir().join("init")),
    )?;
    let elf = release.join("exo-kernel");
    let image = util::out_dir().join("kernel8.img");
    util::run(std::process::Command::new(objcopy).arg("-O").arg("binary").arg(&elf).arg(&image))?;
    let size = std::fs::metadata(&image).map(|m| m.len()).unwrap_or(0);
    eprintln!("xtask: {} ({} KiB)", image.display(), size.div_ceil(1024));
    Ok(Artifacts { elf, image })
}
