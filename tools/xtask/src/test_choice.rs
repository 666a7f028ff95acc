//! Tests that an app's file system is chosen at link time and that `/init.cfg` binds each
//! program to its own partitions: the FAT-only and LFS-only example apps (`apps/fatnote`,
//! `apps/lognote`) contain none of the other file system's code, and run on their own
//! partitions with no `fsd`, unable to read the other's sectors; a program started `quiet`
//! writes nothing to the console.

use std::path::Path;
use std::process::Command;
use std::time::Duration;

use object::{Object, ObjectSymbol};

use crate::card;
use crate::qemu::{tail, Board, End, RunSpec, Session};
use crate::test_image::{built, card_copy, ensure, fsck_fat, lfs_clean, mread, Extra};

pub fn tests(boards: &[Board], out: &mut Vec<Extra>) {
    out.push(Extra::new("apps::fat_only_and_lfs_only_apps_link_nothing_of_the_other".into(), link_choice));
    for &b in boards {
        out.push(Extra::new(
            format!("{}::apps_run_on_their_own_partitions_with_no_fsd_and_reach_no_other", b.name()),
            move || own_partitions(b),
        ));
    }
}

/// Symbol-name pieces of each file system's code (crate paths, demangled).
const FAT_CODE: &[&str] = &["exo_fat::", "embedded_sdmmc::"];
const LFS_CODE: &[&str] = &["exo_lfs::", "exo_logfs::"];

/// How many of `elf`'s defined symbols name one of `needles` (and one such name).
fn count_symbols(elf: &Path, needles: &[&str]) -> Result<(usize, Option<String>), String> {
    let data = std::fs::read(elf).map_err(|e| format!("{}: {e}", elf.display()))?;
    let file = object::File::parse(&*data).map_err(|e| format!("{}: {e}", elf.display()))?;
    let names: Vec<String> = file
        .symbols()
        .filter(|s| s.is_definition())
        .filter_map(|s| s.name().ok().map(|n| format!("{:#}", rustc_demangle::demangle(n))))
        .filter(|n| needles.iter().any(|x| n.contains(x)))
        .collect();
    Ok((names.len(), names.into_iter().next()))
}

fn link_choice() -> Result<(), String> {
    built()?;
    let release = crate::util::release_dir();
    for (app, own, other) in [("fatnote", FAT_CODE, LFS_CODE), ("lognote", LFS_CODE, FAT_CODE)] {
        let elf = release.join(app);
        let (mine, _) = count_symbols(&elf, own)?;
        // The check could pass vacuously on a stripped or empty ELF: its own file system must show.
        ensure(mine > 10, || format!("{app}: only {mine} symbols of its own file system ({own:?})"))?;
        let (theirs, example) = count_symbols(&elf, other)?;
        ensure(theirs == 0, || {
            format!("{app} links {theirs} symbols of the other file system, e.g. {example:?}")
        })?;
    }
    Ok(())
}

/// The configuration the test puts on the card: `hello` kept off the console, the FAT app
/// (init waits for both), then the LFS app in the foreground; no `fsd`.
const INIT_CFG: &str = "# written by the test\n\
wait quiet hello kept quiet\n\
wait disk=fat /fat/apps/fatnote demo parts\n\
disk=log /fat/apps/lognote demo parts\n";

fn own_partitions(board: Board) -> Result<(), String> {
    let card = card_copy(&format!("own-partitions-{}", board.name()))?;
    let cfg = crate::test_image::scratch().join(format!("init-{}.cfg", board.name()));
    std::fs::write(&cfg, INIT_CFG).map_err(|e| e.to_string())?;
    let ok = Command::new("mcopy")
        .env("MTOOLS_SKIP_CHECK", "1")
        .args(["-o", "-i"])
        .arg(card::fat(&card))
        .arg(&cfg)
        .arg("::/init.cfg")
        .status()
        .map_err(|e| format!("mcopy: {e}"))?;
    ensure(ok.success(), || "mcopy init.cfg onto the card failed".into())?;
    let spec = RunSpec {
        board,
        image: &built()?.kernel,
        bootargs: String::new(),
        timeout: Duration::from_secs(120),
        extra: board.disk_args(&card),
    };
    let (end, out) = Session::start(&spec)?.finish();
    let fail = |why: &str| format!("{why}:\n{}", tail(&out, 30));
    let denied = exo_abi::Error::Denied as i32;
    for want in [
        "fatnote: wrote and read back /fat/notes/note0.txt".to_string(),
        "fatnote: partition 0 (type 0x0c): readable".into(),
        format!("fatnote: partition 1 (type 0x7f): refused, error {denied}"),
        "init: hello exited with status 0".into(),
        "init: /fat/apps/fatnote exited with status 0".into(),
        "lognote: wrote and read back /log/notes/note0.txt".into(),
        "lognote: partition 1 (type 0x7f): readable".into(),
        format!("lognote: partition 0 (type 0x0c): refused, error {denied}"),
    ] {
        ensure(out.contains(&want), || fail(&format!("no `{want}`")))?;
    }
    ensure(!out.contains("fsd:"), || fail("fsd ran"))?;
    ensure(!out.contains("hello from env"), || fail("a program init started `quiet` wrote to the console"))?;
    // Each app mounted only its own file system.
    ensure(!out.contains("fatnote: mounted lfs") && !out.contains("lognote: mounted fat"), || {
        fail("an app mounted the other file system")
    })?;
    ensure(end == End::Exited(0), || fail(&format!("ended {end:?}")))?;
    // The host reads what each wrote, and both file systems are clean.
    fsck_fat(&card)?;
    lfs_clean(&card)?;
    let note = mread(&card, "notes/note0.txt")?;
    ensure(note.starts_with(b"note 0, written by fatnote"), || "/fat/notes/note0.txt differs".into())?;
    let note = crate::test_fs::lfs_read(&card, "/notes/note0.txt")?;
    ensure(note.starts_with(b"note 0, written by lognote"), || "/log/notes/note0.txt differs".into())?;
    let _ = std::fs::remove_file(&card);
    Ok(())
}
