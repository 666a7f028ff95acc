// Shared by the build scripts of exo's programs (included with `include!`): links the
// program with the libOS's layout, and embeds the programs named by `EXO_EMBED_<PACKAGE>`
// (e.g. EXO_EMBED_EXO_SHELL="name=path,name=path", set by `cargo xtask build`) as
// `EMBEDDED: &[(&str, &[u8])]`. One variable per package, so that changing what one
// program embeds rebuilds only that program.

fn exo_program_build() {
    let dir = std::env::var("CARGO_MANIFEST_DIR").unwrap();
    let libos = std::path::Path::new(&dir).ancestors().find(|p| p.join("libos/link.ld").exists()).unwrap();
    if std::env::var("CARGO_CFG_TARGET_OS").as_deref() == Ok("none") {
        println!("cargo:rustc-link-arg-bins=-T{}", libos.join("libos/link.ld").display());
        println!("cargo:rustc-link-arg-bins=--no-pie");
        // Pages are 4 KiB: without this, lld pads each segment in the file to 64 KiB.
        println!("cargo:rustc-link-arg-bins=-zmax-page-size=4096");
    }
    println!("cargo:rerun-if-changed={}", libos.join("libos/link.ld").display());
    let var = format!("EXO_EMBED_{}", std::env::var("CARGO_PKG_NAME").unwrap().to_uppercase().replace('-', "_"));
    println!("cargo:rerun-if-env-changed={var}");
    // Each ELF is page aligned, so that loading copies its segments a word at a time
    // (`memcpy` goes byte by byte from a misaligned source).
    let mut code = String::new();
    let mut list = String::from("/// Programs embedded at build time (name, ELF).\npub static EMBEDDED: &[(&str, &[u8])] = &[\n");
    let items = std::env::var(&var).unwrap_or_default();
    for (i, item) in items.split(',').filter(|s| !s.is_empty()).enumerate() {
        let (name, path) = item.split_once('=').expect("EXO_EMBED items are name=path");
        println!("cargo:rerun-if-changed={path}");
        code += &format!("static ELF_{i}: &Aligned<[u8]> = &Aligned(*include_bytes!({path:?}));\n");
        list += &format!("    ({name:?}, &ELF_{i}.0),\n");
    }
    if !code.is_empty() {
        code += "#[repr(C, align(4096))]\nstruct Aligned<T: ?Sized>(T);\n";
    }
    code += &list;
    code += "];\n";
    let out = std::path::PathBuf::from(std::env::var("OUT_DIR").unwrap()).join("embedded.rs");
    std::fs::write(out, code).unwrap();
}
