//! Emulator tests of the file systems on a real card image: the EL0 file-system suite, the
//! shell editing files (long FAT names among them) that the host then checks with its own
//! tools (mtools, fsck.fat, the LFS's fsck), and a power cut in the middle of LFS writes.

use std::path::Path;
use std::time::Duration;

use crate::card::LfsPart;
use crate::qemu::{tail, Board, RunSpec, Session};
use crate::test_image::{built, card_copy, ensure, fsck_fat, lfs_clean, mread, Extra};

pub fn tests(boards: &[Board], out: &mut Vec<Extra>) {
    for &b in boards {
        out.push(Extra::new(format!("{}::fs_suite_on_the_card", b.name()), move || suite(b)));
        out.push(Extra::new(
            format!("{}::shell_edits_files_then_the_host_checks_them", b.name()),
            move || shell_files(b),
        ));
        out.push(Extra::new(format!("{}::lfs_survives_a_power_cut_mid_write", b.name()), move || {
            power_cut(b)
        }));
    }
}

/// Boots `board` with `card` as its disk: the test image when `bootargs` name a test mode,
/// else the production image.
fn session(board: Board, card: &Path, bootargs: &str, timeout: u64) -> Result<Session, String> {
    let image = &if bootargs.contains("exo.test=") {
        crate::build::build_test()?.image
    } else {
        built()?.kernel.clone()
    };
    let spec = RunSpec {
        board,
        image,
        bootargs: bootargs.to_string(),
        timeout: Duration::from_secs(timeout),
        extra: board.disk_args(card),
    };
    Session::start(&spec)
}

fn suite(board: Board) -> Result<(), String> {
    let card = card_copy(&format!("fs-suite-{}", board.name()))?;
    let (end, out) = session(board, &card, "exo.test=fs", 180)?.finish();
    let failed: Vec<&str> = out.lines().filter(|l| l.starts_with("test ") && l.contains("FAILED")).collect();
    ensure(failed.is_empty(), || failed.join("\n"))?;
    ensure(out.contains("fstest: 12 passed, 0 failed"), || {
        format!("the suite did not finish:\n{}", tail(&out, 20))
    })?;
    ensure(end == crate::qemu::End::Exited(0), || format!("ended {end:?}"))?;
    fsck_fat(&card)?;
    lfs_clean(&card)?;
    let _ = std::fs::remove_file(&card);
    Ok(())
}

/// A file of the LFS partition, read on the host with the LFS library.
pub(crate) fn lfs_read(img: &Path, path: &str) -> Result<Vec<u8>, String> {
    let f = std::fs::File::open(img).map_err(|e| e.to_string())?;
    let mut fs = exo_lfs::Fs::mount(LfsPart::of(&f)?, exo_lfs::MountOptions { read_only: true, clock: None })
        .map_err(|e| format!("mount: {e:?}"))?;
    let h = fs.open(path).map_err(|e| format!("{path}: {e:?}"))?;
    let size = fs.fstat(h).map_err(|e| format!("{e:?}"))?.size as usize;
    let mut buf = vec![0u8; size];
    let n = fs.read(h, 0, &mut buf).map_err(|e| format!("{e:?}"))?;
    buf.truncate(n);
    Ok(buf)
}

fn shell_files(board: Board) -> Result<(), String> {
    let card = card_copy(&format!("shell-files-{}", board.name()))?;
    let kernel = std::fs::read(&built()?.kernel).map_err(|e| e.to_string())?;
    let want_sum = format!("{:08x} {} /fat/kernel8.img", exo_format::crc32::crc32(&kernel), kernel.len());
    let mut s = session(board, &card, "", 120)?;
    let steps: &[(&str, &str)] = &[
        ("exo> ", "ls /fat\r"),
        ("kernel8.img", ""),
        ("exo> ", "sum /fat/kernel8.img\r"),
        (&want_sum, ""),
        ("exo> ", "write /fat/notes.txt hello from exo\r"),
        ("exo> ", "mkdir /fat/dir\r"),
        ("exo> ", "cp /fat/notes.txt /fat/dir/copy.txt\r"),
        ("exo> ", "echo kept on the log > /log/l.txt\r"),
        ("exo> ", "cp /log/l.txt /fat/l.txt\r"),
        ("exo> ", "mkdir /fat/Long-Directory-Name\r"),
        ("exo> ", "cp /log/l.txt /fat/Long-Directory-Name/kept-on-the-log.text\r"),
        ("exo> ", "mv /fat/l.txt /fat/Long-Directory-Name/moved-and-renamed.text\r"),
        ("exo> ", "mv /fat/notes.txt /log/moved.txt\r"),
        ("exo> ", "cat /log/moved.txt\r"),
        ("hello from exo", ""),
        ("exo> ", "run /fat/apps/wc /log/moved.txt\r"),
        ("1 3 15 /log/moved.txt", ""),
        ("exo> ", "cat /fat/nonexistent\r"),
        ("not found", ""),
        // Into a directory that exists, `cp` keeps the name; `rm` takes several paths and
        // goes on past one it cannot remove.
        ("exo> ", "cp /log/l.txt /fat/dir\r"),
        ("exo> ", "write /log/gone1 a\r"),
        ("exo> ", "write /log/gone2 b\r"),
        ("exo> ", "rm /log/gone1 /log/nope /log/gone2\r"),
        ("rm: /log/nope: not found", ""),
        ("exo> ", "sync\r"),
        ("exo> ", "exit 0\r"),
    ];
    s.script(steps)?;
    let (end, out) = s.finish();
    ensure(end == crate::qemu::End::Exited(0), || format!("ended {end:?}:\n{}", tail(&out, 20)))?;
    // Now the host's own tools read what the shell wrote.
    fsck_fat(&card)?;
    lfs_clean(&card)?;
    ensure(mread(&card, "dir/copy.txt")? == b"hello from exo\n", || "/fat/dir/copy.txt differs".into())?;
    ensure(mread(&card, "dir/l.txt")? == b"kept on the log\n", || "/fat/dir/l.txt differs".into())?;
    for gone in ["/gone1", "/gone2"] {
        ensure(lfs_read(&card, gone).is_err(), || format!("/log{gone} was removed but is still there"))?;
    }
    // Long names (no 8.3 form), made through fsd, by a copy and by a move and rename:
    // mtools finds them by those names.
    for name in ["kept-on-the-log.text", "moved-and-renamed.text"] {
        let long = mread(&card, &format!("Long-Directory-Name/{name}"))?;
        ensure(long == b"kept on the log\n", || format!("/fat/Long-Directory-Name/{name} differs"))?;
    }
    ensure(mread(&card, "l.txt").is_err(), || "/fat/l.txt was moved but is still there".into())?;
    ensure(mread(&card, "notes.txt").is_err(), || "/fat/notes.txt was moved but is still there".into())?;
    ensure(lfs_read(&card, "/moved.txt")? == b"hello from exo\n", || "/log/moved.txt differs".into())?;
    ensure(lfs_read(&card, "/l.txt")? == b"kept on the log\n", || "/log/l.txt differs".into())?;
    let _ = std::fs::remove_file(&card);
    Ok(())
}

/// The file `k` the crash writer fsyncs (same as `apps/src/logcrash.rs`).
fn contents(k: u64) -> Vec<u8> {
    let len = 12 * 1024 + (k % 7) as usize * 4096;
    (0..len).map(|i| ((i as u64).wrapping_mul(2654435761).wrapping_add(k * 97) >> 7) as u8).collect()
}

fn power_cut(board: Board) -> Result<(), String> {
    let card = card_copy(&format!("power-cut-{}", board.name()))?;
    let mut s = session(board, &card, "exo.test=logcrash", 120)?;
    s.expect("logcrash: fsynced f40")?;
    let out = s.kill(); // mid-write: the writer never stops on its own
    let last = out
        .lines()
        .filter_map(|l| l.strip_prefix("logcrash: fsynced f"))
        .filter_map(|n| n.trim().parse::<u64>().ok())
        .max()
        .ok_or("no file was reported fsynced")?;
    // Boot again on the same card: mount (rolling forward), fsck, every fsynced file intact.
    let args = format!("exo.test=logcheck exo.logcheck.upto={}", last + 1);
    let (end, out) = session(board, &card, &args, 120)?.finish();
    ensure(end == crate::qemu::End::Exited(0), || format!("the check failed:\n{}", tail(&out, 20)))?;
    lfs_clean(&card)?;
    for k in [0, last / 2, last] {
        ensure(lfs_read(&card, &format!("/crash/f{k}"))? == contents(k), || {
            format!("/crash/f{k} differs on the host")
        })?;
    }
    let _ = std::fs::remove_file(&card);
    Ok(())
}
