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

/// Makes sure the toolchain in use has what `rust-toolchain.toml` names: the bare-metal
/// target and the components (llvm-tools, rustfmt, clippy).
///
/// `rustup toolchain install` alone is not enough: cargo runs xtask with `RUSTUP_TOOLCHAIN`
/// set, and with it set rustup ignores the file's targets and components. So the missing
/// pieces are named to rustup explicitly, for the toolchain cargo is running.
pub fn ensure_toolchain() -> Result<(), String> {
    let file = std::fs::read_to_string(root().join("rust-toolchain.toml"))
        .map_err(|e| format!("rust-toolchain.toml: {e}"))?;
    let pinned = Pinned::parse(&file);
    let toolchain =
        std::env::var("RUSTUP_TOOLCHAIN").ok().filter(|t| !t.is_empty()).or(pinned.channel.clone());
    let Some(toolchain) = toolchain else {
        return Err("rust-toolchain.toml names no channel".into());
    };
    let installed = |what: &str| -> Result<Vec<String>, String> {
        let out = rustup().args([what, "list", "--installed", "--toolchain", &toolchain]).output().map_err(
            |e| format!("could not run rustup: {e} (install Rust with rustup: https://rustup.rs)"),
        )?;
        if !out.status.success() {
            return Err(format!(
                "`rustup {what} list --toolchain {toolchain}` failed: {}",
                String::from_utf8_lossy(&out.stderr).trim()
            ));
        }
        Ok(String::from_utf8_lossy(&out.stdout).lines().map(str::to_string).collect())
    };
    let targets = installed("target")?;
    let components = installed("component")?;
    // Installed components are listed with the host triple: `llvm-tools-x86_64-unknown-linux-gnu`.
    let has_component = |c: &str| components.iter().any(|l| l == c || l.starts_with(&format!("{c}-")));
    let missing_targets: Vec<&str> =
        pinned.targets.iter().map(String::as_str).filter(|t| !targets.iter().any(|l| l == t)).collect();
    let missing_components: Vec<&str> =
        pinned.components.iter().map(String::as_str).filter(|c| !has_component(c)).collect();
    if !missing_targets.is_empty() {
        eprintln!("xtask: adding target {} to toolchain {toolchain} (once)", missing_targets.join(", "));
        run(rustup().args(["target", "add", "--toolchain", &toolchain]).args(&missing_targets)).map_err(
            |e| {
                format!(
                    "{e}\n  run `rustup target add --toolchain {toolchain} {}`",
                    missing_targets.join(" ")
                )
            },
        )?;
    }
    if !missing_components.is_empty() {
        eprintln!(
            "xtask: adding component {} to toolchain {toolchain} (once)",
            missing_components.join(", ")
        );
        run(rustup().args(["component", "add", "--toolchain", &toolchain]).args(&missing_components))
            .map_err(|e| {
                format!(
                    "{e}\n  run `rustup component add --toolchain {toolchain} {}`",
                    missing_components.join(" ")
                )
            })?;
    }
    Ok(())
}

/// rustup, told nothing by the environment cargo gave us: the toolchain is always named.
fn rustup() -> Command {
    let mut c = Command::new("rustup");
    c.current_dir(root()).env_remove("RUSTUP_TOOLCHAIN");
    c
}

/// What `rust-toolchain.toml` pins: enough of TOML for its three keys.
#[derive(Debug, Default, PartialEq)]
struct Pinned {
    channel: Option<String>,
    targets: Vec<String>,
    components: Vec<String>,
}

impl Pinned {
    fn parse(text: &str) -> Pinned {
        let mut p = Pinned::default();
        for line in text.lines() {
            let Some((key, value)) = line.split_once('=') else { continue };
            let strings: Vec<String> = value.split('"').skip(1).step_by(2).map(str::to_string).collect();
            match key.trim() {
                "channel" => p.channel = strings.into_iter().next(),
                "targets" => p.targets = strings,
                "components" => p.components = strings,
                _ => {}
            }
        }
        p
    }
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
        .map_err(|e| format!("{e}\n  install QEMU >= 9 yourself: see README.md, 'Two commands'"))
}

fn qemu_major() -> Option<u32> {
    let out = Command::new("qemu-system-aarch64").arg("--version").output().ok()?;
    let text = String::from_utf8_lossy(&out.stdout);
    let v = text.split("version ").nth(1)?;
    v.split('.').next()?.trim().parse().ok()
}

#[cfg(test)]
mod tests {
    use super::Pinned;

    #[test]
    fn reads_the_pinned_toolchain() {
        let p = Pinned::parse(
            "[toolchain]\nchannel = \"1.95.0\"\ntargets = [\"aarch64-unknown-none-softfloat\"]\n\
             components = [\"llvm-tools\", \"rustfmt\", \"clippy\"]\nprofile = \"minimal\"\n",
        );
        assert_eq!(p.channel.as_deref(), Some("1.95.0"));
        assert_eq!(p.targets, ["aarch64-unknown-none-softfloat"]);
        assert_eq!(p.components, ["llvm-tools", "rustfmt", "clippy"]);
    }

    #[test]
    fn the_repository_pins_what_the_build_needs() {
        let file = std::fs::read_to_string(super::root().join("rust-toolchain.toml")).unwrap();
        let p = Pinned::parse(&file);
        assert!(p.targets.iter().any(|t| t == super::TARGET));
        for c in ["llvm-tools", "rustfmt", "clippy"] {
            assert!(p.components.iter().any(|x| x == c), "{c} is not pinned");
        }
    }
}
