//! Small helpers: where things are, running tools, making sure the toolchain and QEMU exist.

use std::path::{Path, PathBuf};
use std::process::Command;

pub const TARGET: &str = "aarch64-unknown-none-softfloat";

/// The workspace root (xtask lives in tools/xtask).
pub fn root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).ancestors().nth(2).unwrap().to_path_buf()
}

/// Where xtask puts what it makes: target/exo.
pub fn out_dir() -> PathBuf {
    let d = root().join("target").join("exo");
    let _ = std::fs::create_dir_all(&d);
    d
}

/// Where cargo puts the bare-metal release builds.
pub fn release_dir() -> PathBuf {
    root().join("target").join(TARGET).join("release")
}

/// `cargo build --release` of `package` for the board.
pub fn cargo_build(package: &str) -> Command {
    let mut c = cargo();
    c.args(["build", "--release", "--target", TARGET, "-p", package]);
    c
}

/// ELF -> the raw image a board or loader jumps into, and says how big it came out.
pub fn elf_to_image(elf: &Path, image: &Path) -> Result<(), String> {
    let objcopy = llvm_tool("llvm-objcopy")?;
    run(Command::new(objcopy).arg("-O").arg("binary").arg(elf).arg(image))?;
    let size = std::fs::metadata(image).map(|m| m.len()).unwrap_or(0);
    eprintln!("xtask: {} ({} KiB)", image.display(), size.div_ceil(1024));
    Ok(())
}

pub fn cargo() -> Command {
    let mut c = Command::new(std::env::var("CARGO").unwrap_or_else(|_| "cargo".into()));
    c.current_dir(root());
    c
}

/// Runs a command to completion; an error names the command.
pub fn run(cmd: &mut Command) -> Result<(), String> {
    let status = cmd.status().map_err(|e| format!("could not start {:?}: {e}", cmd.get_program()))?;
    if status.success() {
        Ok(())
    } else {
        Err(format!("{:?} failed ({status})", cmd.get_program()))
    }
}

fn rustc_output(args: &[&str]) -> Result<String, String> {
    let out = Command::new("rustc")
        .args(args)
        .current_dir(root())
        .output()
        .map_err(|e| format!("could not run rustc: {e} (install Rust with rustup: https://rustup.rs)"))?;
    Ok(String::from_utf8_lossy(&out.stdout).trim().to_string())
}

/// Makes sure the bare-metal target and llvm-tools named in rust-toolchain.toml are there;
/// rustup installs them on request.
pub fn ensure_toolchain() -> Result<(), String> {
    let libdir = rustc_output(&["--print", "target-libdir", "--target", TARGET])?;
    if has_core(&libdir) && llvm_tool("llvm-objcopy").is_ok() {
        return Ok(());
    }
    eprintln!(
        "xtask: installing the toolchain pinned in rust-toolchain.toml (target {TARGET}, llvm-tools)..."
    );
    run(Command::new("rustup").arg("toolchain").arg("install").current_dir(root()))
        .map_err(|e| format!("{e}\n  run `rustup toolchain install` in {}", root().display()))
}

fn has_core(libdir: &str) -> bool {
    std::fs::read_dir(libdir)
        .map(|d| d.flatten().any(|e| e.file_name().to_string_lossy().starts_with("libcore-")))
        .unwrap_or(false)
}

/// A tool from the `llvm-tools` component (llvm-objcopy, ...).
pub fn llvm_tool(name: &str) -> Result<PathBuf, String> {
    let sysroot = rustc_output(&["--print", "sysroot"])?;
    let host = rustc_output(&["--print", "host-tuple"])?;
    let p = Path::new(&sysroot).join("lib/rustlib").join(host).join("bin").join(name);
    if p.exists() {
        Ok(p)
    } else {
        Err(format!("{name} not found: run `rustup component add llvm-tools`"))
    }
}

/// Makes sure qemu-system-aarch64 >= 9 is installed, installing it where we can.
pub fn ensure_qemu() -> Result<(), String> {
    if qemu_major().is_some_and(|v| v >= 9) {
        return Ok(());
    }
    eprintln!("xtask: QEMU >= 9 (qemu-system-aarch64) is needed; running tools/install-qemu.sh");
    run(Command::new("bash").arg(root().join("tools/install-qemu.sh")))
        .map_err(|e| format!("{e}\n  install QEMU >= 9 yourself: see README.md, 'Requirements'"))
}

fn qemu_major() -> Option<u32> {
    let out = Command::new("qemu-system-aarch64").arg("--version").output().ok()?;
    let text = String::from_utf8_lossy(&out.stdout);
    let v = text.split("version ").nth(1)?;
    v.split('.').next()?.trim().parse().ok()
}
