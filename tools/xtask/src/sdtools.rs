//! dosfstools and mtools, which make and check the card's FAT32 boot partition.

use std::process::{Command, Stdio};

use crate::util;

const TOOLS: &[&str] = &["mkfs.fat", "fsck.fat", "mcopy", "mmd", "mdir"];

fn have(tool: &str) -> bool {
    Command::new(tool).arg("--version").stdout(Stdio::null()).stderr(Stdio::null()).status().is_ok()
        || ["/usr/sbin", "/sbin"].iter().any(|d| std::path::Path::new(d).join(tool).exists())
}

/// Installs dosfstools and mtools with `tools/install-sdtools.sh` when one is missing.
pub fn ensure() -> Result<(), String> {
    let missing: Vec<&str> = TOOLS.iter().copied().filter(|t| !have(t)).collect();
    if missing.is_empty() {
        return Ok(());
    }
    eprintln!("xtask: {} missing; running tools/install-sdtools.sh", missing.join(", "));
    util::run(Command::new("bash").arg(util::root().join("tools/install-sdtools.sh")))
        .map_err(|e| format!("{e}\n  install dosfstools and mtools yourself (Debian/Ubuntu: apt-get install dosfstools mtools)"))
}

/// Runs a tool with /sbin on the path (mkfs.fat lives there on Debian) and mtools' geometry
/// check off (an image partition has no real geometry); its output is shown only on failure.
pub fn run(cmd: &mut Command) -> Result<String, String> {
    let path = std::env::var("PATH").unwrap_or_default();
    cmd.env("PATH", format!("{path}:/usr/sbin:/sbin")).env("MTOOLS_SKIP_CHECK", "1");
    let out = cmd.output().map_err(|e| format!("could not start {:?}: {e}", cmd.get_program()))?;
    let text = String::from_utf8_lossy(&out.stdout).into_owned() + &String::from_utf8_lossy(&out.stderr);
    if out.status.success() {
        Ok(text)
    } else {
        let args: Vec<_> = cmd.get_args().map(|a| a.to_string_lossy().into_owned()).collect();
        Err(format!(
            "`{} {}` failed ({}):\n{text}",
            cmd.get_program().to_string_lossy(),
            args.join(" "),
            out.status
        ))
    }
}
