//! Links the loader with its own script when it is built for the board: at address 0, as a
//! position-independent executable whose relocations `start.S` applies to itself.

fn main() {
    let dir = std::env::var("CARGO_MANIFEST_DIR").unwrap();
    if std::env::var("CARGO_CFG_TARGET_OS").as_deref() == Ok("none") {
        println!("cargo:rustc-link-arg-bins=-T{dir}/link.ld");
        // Code is PC-relative (static relocation model, small code model); pointers stored
        // in data become R_AARCH64_RELATIVE entries, applied at run time.
        println!("cargo:rustc-link-arg-bins=-pie");
        println!("cargo:rustc-link-arg-bins=-znotext");
        println!("cargo:rustc-link-arg-bins=--no-dynamic-linker");
    }
    println!("cargo:rerun-if-changed=link.ld");
    println!("cargo:rerun-if-changed=src/start.S");
}
