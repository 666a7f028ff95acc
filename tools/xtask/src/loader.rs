//! Building the chainloader image, `target/exo/chainloader.img`.

use std::path::PathBuf;

use crate::util::{self, TARGET};

/// R_AARCH64_RELATIVE with no symbol: the only dynamic relocation `start.S` knows how to apply.
const RELATIVE: u64 = 1027;

pub fn build() -> Result<PathBuf, String> {
    util::ensure_toolchain()?;
    eprintln!("xtask: building the chainloader for {TARGET}");
    util::run(&mut util::cargo_build("exo-chainloader"))?;
    let elf = util::release_dir().join("exo-chainloader");
    check_relocations(&elf)?;
    let image = util::out_dir().join("chainloader.img");
    util::elf_to_image(&elf, &image)?;
    Ok(image)
}

/// The loader relocates itself; an entry it cannot apply would leave a wrong pointer behind.
fn check_relocations(elf: &std::path::Path) -> Result<(), String> {
    use object::{Object, ObjectSection};
    let data = std::fs::read(elf).map_err(|e| format!("{}: {e}", elf.display()))?;
    let file = object::File::parse(&*data).map_err(|e| format!("{}: {e}", elf.display()))?;
    let Some(rela) = file.section_by_name(".rela.dyn") else { return Ok(()) };
    let bytes = rela.data().map_err(|e| e.to_string())?;
    for (i, entry) in bytes.chunks_exact(24).enumerate() {
        let info = exo_format::le::get_u64(entry, 8);
        if info != RELATIVE {
            return Err(format!(
                "the chainloader has a dynamic relocation start.S cannot apply (entry {i}, r_info {info:#x}); \
                 only R_AARCH64_RELATIVE is supported"
            ));
        }
    }
    Ok(())
}
