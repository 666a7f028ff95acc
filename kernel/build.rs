//! Links the kernel with its own script when it is built for the board, and embeds the
//! init program named by `EXO_INIT` (set by `cargo xtask build`; empty otherwise).
use std::path::PathBuf;

fn main() {
    let dir = std::env::var("CARGO_MANIFEST_DIR").unwrap();
    if std::env::var("CARGO_CFG_TARGET_OS").as_deref() == Ok("none") {
        println!("cargo:rustc-link-arg-bins=-T{dir}/link.ld");
        println!("cargo:rustc-link-arg-bins=--no-pie");
    }
    println!("cargo:rerun-if-changed=link.ld");
    println!("cargo:rerun-if-env-changed=EXO_INIT");
    let out = PathBuf::from(std::env::var("OUT_DIR").unwrap()).join("init.elf");
    let init = match std::env::var("EXO_INIT") {
        Ok(path) if !path.is_empty() => {
            println!("cargo:rerun-if-changed={path}");
            std::fs::read(&path).unwrap_or_else(|e| panic!("EXO_INIT={path}: {e}"))
        }
        _ => Vec::new(),
    };
    std::fs::write(out, init).unwrap();
}
