//! Turning kernel addresses in a console log into function names, from the ELF's symbols.

use std::io::Read;
use std::path::Path;

use object::{Object, ObjectSection, ObjectSymbol, SectionKind, SymbolKind};

pub struct Symbols {
    /// (start, size, demangled name), sorted by start.
    funcs: Vec<(u64, u64, String)>,
}

impl Symbols {
    pub fn load(elf: &Path) -> Result<Symbols, String> {
        let data = std::fs::read(elf).map_err(|e| format!("{}: {e}", elf.display()))?;
        let file = object::File::parse(&*data).map_err(|e| format!("{}: {e}", elf.display()))?;
        // Labels in assembly (the vectors, the libOS's entry points) have no type: a symbol
        // of no type in an executable section counts too, but for the `$x`/`$d` markers and
        // the linker script's `__` symbols (`__image_start` is where `_start` is).
        let in_text = |s: &object::Symbol| {
            s.section_index()
                .and_then(|i| file.section_by_index(i).ok())
                .is_some_and(|x| x.kind() == SectionKind::Text)
        };
        let mut funcs: Vec<_> = file
            .symbols()
            .filter(|s| s.address() != 0)
            .filter(|s| {
                let label = !s.name().is_ok_and(|n| n.starts_with('$') || n.starts_with("__")) && in_text(s);
                s.kind() == SymbolKind::Text || s.kind() == SymbolKind::Unknown && label
            })
            .filter_map(|s| {
                let name = s.name().ok()?;
                Some((s.address(), s.size(), format!("{:#}", rustc_demangle::demangle(name))))
            })
            .collect();
        funcs.sort_by_key(|f| f.0);
        Ok(Symbols { funcs })
    }

    /// A table from (start, size, name) entries, in any order.
    #[cfg(test)]
    pub fn from_list(mut funcs: Vec<(u64, u64, String)>) -> Symbols {
        funcs.sort_by_key(|f| f.0);
        Symbols { funcs }
    }

    /// The name of the function holding `addr`.
    pub fn function(&self, addr: u64) -> Option<&str> {
        let i = self.funcs.partition_point(|f| f.0 <= addr).checked_sub(1)?;
        let (start, size, name) = &self.funcs[i];
        (addr - start < (*size).max(1) || *size == 0 && addr - start < 0x10000).then_some(name.as_str())
    }

    /// `name+0xoff` for an address inside a known function.
    pub fn lookup(&self, addr: u64) -> Option<String> {
        let i = self.funcs.partition_point(|f| f.0 <= addr).checked_sub(1)?;
        let (start, size, name) = &self.funcs[i];
        let inside = addr - start < (*size).max(1) || *size == 0 && addr - start < 0x10000;
        inside.then(|| format!("{name}+{:#x}", addr - start))
    }

    /// Appends ` <name+off>` after every kernel address in `text`.
    pub fn annotate(&self, text: &str) -> String {
        let mut out = String::with_capacity(text.len());
        for line in text.split_inclusive('\n') {
            let (body, nl) = line.strip_suffix('\n').map_or((line, ""), |b| (b, "\n"));
            out.push_str(body);
            let names: Vec<String> = body
                .split(|c: char| !c.is_ascii_alphanumeric())
                .filter_map(|w| w.strip_prefix("0x"))
                .filter(|h| h.len() == 16 && h.starts_with("ffffffff8"))
                .filter_map(|h| u64::from_str_radix(h, 16).ok())
                .filter_map(|a| self.lookup(a))
                .collect();
            if !names.is_empty() && (body.contains('#') || body.contains("ELR")) {
                out.push_str("  <");
                out.push_str(&names.join(", "));
                out.push('>');
            }
            out.push_str(nl);
        }
        out
    }
}

pub fn cmd_symbolize(args: &[String]) -> Result<(), String> {
    let test_image = args.first().is_some_and(|a| a == "--test-image");
    let args = &args[test_image as usize..];
    let elf = crate::build::Variant::chosen(test_image).artifacts().elf;
    let syms =
        Symbols::load(&elf).map_err(|e| format!("{e}\n  build the kernel first: `cargo xtask build`"))?;
    let mut text = String::new();
    match args.first() {
        Some(f) => text = std::fs::read_to_string(f).map_err(|e| format!("{f}: {e}"))?,
        None => {
            std::io::stdin().read_to_string(&mut text).map_err(|e| e.to_string())?;
        }
    }
    print!("{}", syms.annotate(&text));
    Ok(())
}
