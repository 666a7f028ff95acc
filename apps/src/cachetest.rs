//! The program's block cache (`exo_libos::fs::bcache`) under the file systems: what it gives
//! back when the program trims its memory (as on a `REVOKE`) is read again from the disk,
//! and reads stay right. Part of the file-system suite (`fstest`).

use alloc::format;
use alloc::vec::Vec;

use crate::runner::check;
use exo_libos::fs::{self, bcache, OpenFlags, Vfs};
use exo_libos::reclaim;

/// Reads `path` 4 KiB at a time (each read small enough for the cache).
fn read_in_blocks(vfs: &mut Vfs, path: &str) -> Option<Vec<u8>> {
    let fd = vfs.open(path, OpenFlags::READ).ok()?;
    let mut out = Vec::new();
    let mut buf = [0u8; 4096];
    loop {
        match vfs.read(fd, &mut buf) {
            Ok(0) => break,
            Ok(n) => out.extend_from_slice(&buf[..n]),
            Err(_) => return None,
        }
    }
    vfs.close(fd).ok()?;
    Some(out)
}

pub fn given_back(_: &[(&str, &[u8])]) -> Result<(), &'static str> {
    let data: Vec<u8> = (0..96 * 1024u32).map(|i| (i * 13 + i / 509) as u8).collect();
    {
        let mut vfs = Vfs::new();
        fs::mount::mount_disk(&mut vfs, &[exo_fat::backend(), exo_logfs::backend()]);
        for dir in ["/fat", "/log"] {
            vfs.write_file(&format!("{dir}/cached.bin"), &data).map_err(|_| "write")?;
        }
        vfs.sync().map_err(|_| "sync")?;
    }
    // A fresh mount: the cache starts empty and fills as the files are read.
    let mut vfs = Vfs::new();
    fs::mount::mount_disk(&mut vfs, &[exo_fat::backend(), exo_logfs::backend()]);
    let mut ok = true;
    let mut same = |vfs: &mut Vfs, dir: &str, pass: u32| {
        let v = read_in_blocks(vfs, &format!("{dir}/cached.bin"));
        let first_bad = v.as_ref().map(|v| v.iter().zip(&data).position(|(a, b)| a != b));
        if v.as_ref().is_none_or(|v| *v != data) {
            exo_libos::println!(
                "cachetest: {dir} pass {pass}: {:?} bytes, first difference at {first_bad:?}",
                v.as_ref().map(|v| v.len())
            );
            ok = false;
        }
    };
    for dir in ["/fat", "/log"] {
        same(&mut vfs, dir, 1);
    }
    let filled = bcache::stats();
    for dir in ["/fat", "/log"] {
        same(&mut vfs, dir, 2);
    }
    let warm = bcache::stats();
    let before = reclaim::stats().cache_pages;
    let given = reclaim::trim(bcache::PAGES);
    let dropped = reclaim::stats().cache_pages - before;
    // Pass 3: a page given back still has its tag; reading it faults in a zero page, which
    // the fault count catches, so the read goes to the disk instead (a bypass) and the tag
    // is dropped. Pass 4 fills those pages again.
    for dir in ["/fat", "/log"] {
        same(&mut vfs, dir, 3);
    }
    let third = bcache::stats();
    for dir in ["/fat", "/log"] {
        same(&mut vfs, dir, 4);
        let _ = vfs.remove(&format!("{dir}/cached.bin"));
    }
    let fourth = bcache::stats();
    let _ = vfs.sync();
    check(ok, "a file read back wrong through the block cache")?;
    check(filled.misses > 0, "small reads did not go through the block cache")?;
    check(warm.hits > filled.hits, "a second read found nothing in the block cache")?;
    check(given >= dropped && dropped >= 16, "trimming gave back no cache page")?;
    let bypassed = |a: bcache::Stats, b: bcache::Stats| b.bypassed - a.bypassed;
    check(bypassed(warm, third) > bypassed(filled, warm), "a page given back was read as if cached")?;
    check(fourth.misses > third.misses, "pages given back were not filled again from the disk")
}
