//! Power loss in the middle of writing, for the log-structured file system: `crash` writes
//! file after file, fsyncing each and saying so, until the test runner kills the machine;
//! `check`, on the next boot, mounts (rolling forward from the last checkpoint), runs the
//! file system's own fsck, and checks every file reported fsynced is there, byte for byte.

use alloc::format;
use alloc::vec::Vec;

use exo_libos::fs::{disk, FileSystem, OpenFlags};
use exo_libos::{println, vm};
use exo_logfs::{LfsFs, LfsOptions};

/// File `k`'s contents: 12 KiB to 36 KiB of a pattern only `k` determines.
pub fn contents(k: u64) -> Vec<u8> {
    let len = 12 * 1024 + (k % 7) as usize * 4096;
    (0..len).map(|i| ((i as u64).wrapping_mul(2654435761).wrapping_add(k * 97) >> 7) as u8).collect()
}

fn mount() -> Option<LfsFs<disk::Partition<disk::SysSectors>>> {
    let i = vm::kinfo()
        .partitions
        .iter()
        .position(|p| p.kind == exo_libos::format::mbr::TYPE_EXO_LFS && p.sectors > 0)?;
    LfsFs::mount(disk::open_partition(i)?, LfsOptions::default()).ok()
}

/// Writes and fsyncs `/crash/f0`, `/crash/f1`, ... forever, interleaved with writes that
/// are never synced (they may or may not survive; they must never corrupt anything).
pub fn crash() -> i32 {
    let Some(mut fs) = mount() else {
        println!("logcrash: no log-structured partition");
        return 1;
    };
    let _ = fs.mkdir("/crash");
    let junk = fs.open("/crash/junk", OpenFlags::RW | OpenFlags::CREATE).ok();
    for k in 0.. {
        let path = format!("/crash/f{k}");
        let Ok(h) = fs.open(&path, OpenFlags::RW | OpenFlags::CREATE | OpenFlags::TRUNCATE) else { return 1 };
        let data = contents(k);
        if fs.write(h, 0, &data).is_err() || fs.fsync(h).is_err() {
            println!("logcrash: writing {path} failed");
            return 1;
        }
        let _ = fs.close(h);
        println!("logcrash: fsynced f{k}");
        if let Some(j) = junk {
            let _ = fs.write(j, k * 8192, &data[..8192]);
        }
    }
    0
}

/// After the crash: fsck, then files `0..upto` exactly as written.
pub fn check(upto: u64) -> i32 {
    let Some(mut fs) = mount() else {
        println!("logcheck: the file system does not mount");
        return 1;
    };
    let report = fs.inner().check();
    if !report.is_clean() {
        println!("logcheck: fsck found problems: {report:?}");
        return 1;
    }
    for k in 0..upto {
        let path = format!("/crash/f{k}");
        let ok = fs.open(&path, OpenFlags::READ).is_ok_and(|h| {
            let want = contents(k);
            let mut got = alloc::vec![0u8; want.len() + 1];
            let n = fs.read(h, 0, &mut got).unwrap_or(0);
            let _ = fs.close(h);
            n == want.len() && got[..n] == want[..]
        });
        if !ok {
            println!("logcheck: {path} was fsynced but is missing or different");
            return 1;
        }
    }
    println!("logcheck: mounted, fsck clean, {upto} fsynced files intact");
    0
}
