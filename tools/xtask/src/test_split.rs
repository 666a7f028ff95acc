//! Tests that the image people run holds no test code, and runs: the production
//! `kernel8.img` (and the init inside it) against the test image that `cargo xtask test`
//! boots for everything else (see `build.rs`).

use std::path::Path;
use std::time::Duration;

use object::{Object, ObjectSymbol};

use crate::build::Variant;
use crate::qemu::{tail, Board, End, RunSpec, Session};
use crate::test_image::{ensure, Extra};

pub fn tests(boards: &[Board], out: &mut Vec<Extra>) {
    out.push(Extra::new("images::production_image_holds_no_test_code".into(), no_test_code));
    for &b in boards {
        out.push(Extra::new(
            format!("{}::production_image_ignores_test_modes_and_boots_to_the_shell", b.name()),
            move || ignores_test_modes(b),
        ));
    }
}

/// Strings only test code prints: the kernel's self-tests, init's suite runner and modes.
const NEEDLES: &[&str] = &[
    "test: a deliberate kernel panic",
    "test: touching an unmapped kernel address",
    "test: boot ok",
    "init: running the ",
    " ... FAILED: ",
    "idling forever",
    "logcrash: fsynced",
];

/// Every test's and benchmark's name from the suites' tables in `apps/src/*.rs` (lines
/// like `("cow_fork_gives_parent_and_child_separate_copies", cow_fork),`), so a new suite
/// is checked too. Short names are left out: they could be part of any string.
fn suite_test_names() -> Result<Vec<String>, String> {
    let dir = crate::util::root().join("apps/src");
    let mut names = vec![];
    for entry in std::fs::read_dir(&dir).map_err(|e| format!("{}: {e}", dir.display()))? {
        let path = entry.map_err(|e| e.to_string())?.path();
        if path.extension().is_none_or(|e| e != "rs") {
            continue;
        }
        let text = std::fs::read_to_string(&path).map_err(|e| format!("{}: {e}", path.display()))?;
        for line in text.lines() {
            let Some(rest) = line.trim().strip_prefix("(\"") else { continue };
            let Some((name, _)) = rest.split_once("\",") else { continue };
            if name.len() >= 12
                && name.contains('_')
                && name.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'_')
            {
                names.push(name.to_string());
            }
        }
    }
    ensure(names.len() >= 20, || format!("only {} test names found in {}", names.len(), dir.display()))?;
    Ok(names)
}

fn read(p: &Path) -> Result<Vec<u8>, String> {
    std::fs::read(p).map_err(|e| format!("{}: {e}", p.display()))
}

/// A binary file as text to search for ASCII strings in (the lossy conversion replaces only
/// bytes that are not UTF-8, never an ASCII one).
fn text(p: &Path) -> Result<String, String> {
    Ok(String::from_utf8_lossy(&read(p)?).into_owned())
}

/// Symbols of the suites' crate (`exo_apps::...`) in an ELF with its symbols.
fn suite_symbols(elf: &Path) -> Result<usize, String> {
    let data = read(elf)?;
    let file = object::File::parse(&*data).map_err(|e| format!("{}: {e}", elf.display()))?;
    Ok(file
        .symbols()
        .filter_map(|s| s.name().ok().map(|n| format!("{:#}", rustc_demangle::demangle(n))))
        .filter(|n| n.starts_with("exo_apps::"))
        .count())
}

/// Every string only test code prints, and every suite test's name, is in the test image
/// (so the check looks for something real) and in neither the production `kernel8.img` nor
/// its init; and the production init has no symbol of the suites' crate.
fn no_test_code() -> Result<(), String> {
    let production = Variant::Production.build()?;
    let test = Variant::Test.build()?;
    let (image, init, test_image) = (text(&production.image)?, text(&production.init)?, text(&test.image)?);
    let mut needles: Vec<String> = NEEDLES.iter().map(|s| s.to_string()).collect();
    needles.extend(suite_test_names()?);
    for n in &needles {
        ensure(test_image.contains(n.as_str()), || {
            format!("the test image lacks {n:?}: this check looks for the wrong thing")
        })?;
        ensure(!image.contains(n.as_str()), || format!("the production kernel8.img holds {n:?}"))?;
        ensure(!init.contains(n.as_str()), || format!("the production init holds {n:?}"))?;
    }
    let in_test = suite_symbols(&test.init_elf)?;
    ensure(in_test > 0, || "the test image's init has no exo_apps symbol: this check is broken".into())?;
    let in_production = suite_symbols(&production.init_elf)?;
    ensure(in_production == 0, || format!("the production init has {in_production} exo_apps symbol(s)"))
}

/// The production image, asked for a kernel self-test that would panic in the test image,
/// says it needs the test image, boots to the shell's prompt, and ends cleanly.
fn ignores_test_modes(board: Board) -> Result<(), String> {
    let image = Variant::Production.build()?.image;
    let spec = RunSpec {
        board,
        image: &image,
        bootargs: "exo.test=panic".into(),
        timeout: Duration::from_secs(60),
        extra: vec![],
    };
    let mut s = Session::start(&spec)?;
    s.script(&[("exo.test=panic needs the test image", ""), ("exo> ", "exit 0\r")])?;
    let (end, out) = s.finish();
    ensure(end == End::Exited(0) && out.contains("init: shell exited with status 0"), || {
        format!("ended {end:?}:\n{}", tail(&out, 20))
    })?;
    ensure(!out.contains("KERNEL PANIC"), || format!("the production kernel panicked:\n{}", tail(&out, 20)))
}
