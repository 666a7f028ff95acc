//! File-system benchmarks: the same workloads on the FAT libOS and the log-structured one,
//! each linked directly and mounted on its partition of the card, counting instructions
//! (the PMU counter: exact under `-icount`) and sectors written per operation. Also a 4 KiB
//! read through the file service against the same read through a linked libOS.

use alloc::boxed::Box;
use alloc::format;
use alloc::vec::Vec;
use core::sync::atomic::{AtomicU64, Ordering::Relaxed};

use exo_fat::{FatFs, FatOptions};
use exo_libos::abi::{EnvId, SECTOR_READ, SECTOR_WRITE};
use exo_libos::format::mbr;
use exo_libos::fs::disk::{BlockDevice, IoError, Partition, SysSectors};
use exo_libos::fs::{mount, service, FileSystem, OpenFlags, Vfs};
use exo_libos::{println, process, spawn, sys, vm};
use exo_logfs::{LfsFs, LfsOptions};

use crate::meter::{cycles, measure};

static WRITTEN: AtomicU64 = AtomicU64::new(0);
static READ: AtomicU64 = AtomicU64::new(0);

/// The sector calls, counted.
#[derive(Clone, Copy, Default)]
struct Counted;

impl BlockDevice for Counted {
    fn read(&mut self, sector: u64, buf: &mut [u8]) -> Result<(), IoError> {
        READ.fetch_add(buf.len() as u64 / 512, Relaxed);
        SysSectors.read(sector, buf)
    }
    fn write(&mut self, sector: u64, buf: &[u8]) -> Result<(), IoError> {
        WRITTEN.fetch_add(buf.len() as u64 / 512, Relaxed);
        SysSectors.write(sector, buf)
    }
    fn flush(&mut self) -> Result<(), IoError> {
        SysSectors.flush()
    }
    fn sectors(&self) -> u64 {
        SysSectors.sectors()
    }
    fn reads_any_buffer(&self, len: usize) -> bool {
        SysSectors.reads_any_buffer(len)
    }
}

fn partition(fat: bool) -> Option<Partition<Counted>> {
    let p = vm::kinfo().partitions.into_iter().find(|p| {
        p.sectors > 0 && if fat { mount::FAT_TYPES.contains(&p.kind) } else { p.kind == mbr::TYPE_EXO_LFS }
    })?;
    Some(Partition::new(Counted, p.start, p.sectors))
}

fn open(fat: bool) -> Option<Box<dyn FileSystem>> {
    let part = partition(fat)?;
    if fat {
        FatFs::mount(part, FatOptions::default()).ok().map(|f| Box::new(f) as Box<dyn FileSystem>)
    } else {
        LfsFs::mount(part, LfsOptions::default()).ok().map(|f| Box::new(f) as Box<dyn FileSystem>)
    }
}

/// Runs `f` once, reporting instructions and sectors written per operation (`ops` of them).
fn timed(name: &str, ops: u64, f: impl FnOnce() -> bool) {
    let w0 = WRITTEN.load(Relaxed);
    let t0 = cycles();
    let ok = f();
    let t = cycles() - t0;
    let w = WRITTEN.load(Relaxed) - w0;
    if ok {
        // Hundredths of a sector, so small per-file figures keep their precision.
        println!("bench {name} ops={ops} per_op={} sectors_written_x100={}", t / ops, w * 100 / ops);
    } else {
        println!("bench {name} failed");
    }
}

/// A count from the bootargs' `exo.KEY=N` (`cargo xtask profile` shortens runs with
/// `exo.files=` and `exo.mib=`), else `default`.
fn bootarg(key: &str, default: u64) -> u64 {
    let arg = vm::kinfo().bootargs().split_ascii_whitespace().find_map(|w| w.strip_prefix(key));
    arg.and_then(|v| v.parse().ok()).filter(|n| *n > 0).unwrap_or(default)
}

fn name(fat: bool, i: u64) -> alloc::string::String {
    if fat {
        format!("/bench/F{i:05}.DAT")
    } else {
        format!("/bench/f{i}")
    }
}

/// Create + write 1 KiB + close, `files` times, then one sync; read them all back after a
/// remount (cold); delete them all; a 16 MiB file written and read sequentially.
pub fn workloads(fat: bool) {
    let kind = if fat { "fat" } else { "lfs" };
    let (files, mib) = (bootarg("exo.files=", 1000), bootarg("exo.mib=", 16));
    let Some(mut fs) = open(fat) else {
        println!("bench fs_{kind} skipped: no such partition");
        return;
    };
    let data = [0x5au8; 1024];
    let _ = fs.mkdir("/bench");
    timed(&format!("fs_{kind}_create_1k"), files, || {
        (0..files).all(|i| {
            let Ok(h) = fs.open(&name(fat, i), OpenFlags::WRITE | OpenFlags::CREATE | OpenFlags::TRUNCATE)
            else {
                return false;
            };
            fs.write(h, 0, &data).is_ok() && fs.close(h).is_ok()
        }) && fs.sync().is_ok()
    });
    drop(fs);
    let Some(mut fs) = open(fat) else { return };
    let mut buf = [0u8; 1024];
    timed(&format!("fs_{kind}_read_1k_cold"), files, || {
        (0..files).all(|i| {
            let Ok(h) = fs.open(&name(fat, i), OpenFlags::READ) else { return false };
            fs.read(h, 0, &mut buf).is_ok_and(|n| n == 1024) && fs.close(h).is_ok()
        })
    });
    timed(&format!("fs_{kind}_delete"), files, || {
        (0..files).all(|i| fs.remove(&name(fat, i)).is_ok()) && fs.sync().is_ok()
    });
    let chunk: Vec<u8> = (0..64 * 1024).map(|i| i as u8).collect();
    timed(&format!("fs_{kind}_seq_write_per_mib"), mib, || {
        let Ok(h) = fs.open("/bench/big.bin", OpenFlags::WRITE | OpenFlags::CREATE | OpenFlags::TRUNCATE)
        else {
            return false;
        };
        let ok = (0..mib * 16).all(|i| fs.write(h, i * 65536, &chunk).is_ok_and(|n| n == chunk.len()));
        ok && fs.close(h).is_ok() && fs.sync().is_ok()
    });
    drop(fs);
    let Some(mut fs) = open(fat) else { return };
    let mut big = alloc::vec![0u8; 64 * 1024];
    timed(&format!("fs_{kind}_seq_read_per_mib"), mib, || {
        let Ok(h) = fs.open("/bench/big.bin", OpenFlags::READ) else { return false };
        let ok = (0..mib * 16).all(|i| fs.read(h, i * 65536, &mut big).is_ok_and(|n| n == big.len()));
        ok && fs.close(h).is_ok()
    });
    let _ = fs.remove("/bench/big.bin");
    let _ = fs.remove("/bench");
    let _ = fs.sync();
}

/// A 4 KiB read: through `fsd` (a protected control transfer with a frame grant per call)
/// against the same read through the LFS linked into this program.
pub fn service_read(fsd_elf: &[u8]) {
    let grants: Vec<(u64, u64, u32)> = vm::kinfo()
        .partitions
        .iter()
        .filter(|p| p.sectors > 0 && (mount::FAT_TYPES.contains(&p.kind) || p.kind == mbr::TYPE_EXO_LFS))
        .map(|p| (p.start, p.sectors, SECTOR_READ | SECTOR_WRITE))
        .collect();
    {
        let Some(mut fs) = open(false) else { return };
        let h = fs.open("/svc.bin", OpenFlags::WRITE | OpenFlags::CREATE | OpenFlags::TRUNCATE);
        let Ok(h) = h else { return };
        let _ = fs.write(h, 0, &[7u8; 65536]);
        let _ = fs.close(h);
        let _ = fs.sync();
    }
    let mut buf = [0u8; 4096];
    {
        let Some(mut fs) = open(false) else { return };
        let Ok(h) = fs.open("/svc.bin", OpenFlags::READ) else { return };
        // The row is a read of a *cached* file: one pass over its 16 blocks first, so that
        // every timed read is served from memory (as Linux's page cache serves its figure).
        for b in 0..16 {
            let _ = fs.read(h, b * 4096, &mut buf);
        }
        let n = 200;
        let per = measure(n, |i| {
            let _ = fs.read(h, (i % 16) * 4096, &mut buf);
        });
        println!("bench read_4k_linked_lfs ops={n} per_op={per}");
        let _ = fs.close(h);
    }
    let Ok(fsd) = spawn::spawn(fsd_elf, "", spawn::Options { sectors: &grants, ..spawn::Options::default() })
    else {
        return;
    };
    while vm::env_info(fsd)
        .is_some_and(|i| i.state == exo_libos::abi::env_state::RUNNABLE || i.disk_wait != 0)
    {
        sys::yield_now();
    }
    let _ = sys::pct_allow(EnvId::SELF, fsd);
    let mut vfs = Vfs::new();
    if service::mount_remote(&mut vfs, fsd).is_ok() {
        if let Ok(fd) = vfs.open("/log/svc.bin", OpenFlags::READ) {
            // Warm as above: the server's block cache holds the whole file before timing.
            for _ in 0..16 {
                let _ = vfs.read(fd, &mut buf);
            }
            let n = 200;
            let per = measure(n, |i| {
                let _ = vfs.seek(fd, exo_libos::fs::SeekFrom::Start((i % 16) * 4096));
                let _ = vfs.read(fd, &mut buf);
            });
            println!("bench read_4k_through_fsd ops={n} per_op={per}");
            let _ = vfs.close(fd);
            crate::smpbench::fsd_rows(fsd);
        }
        let _ = vfs.remove("/log/svc.bin");
        let _ = vfs.sync();
    }
    drop(vfs);
    let _ = sys::env_destroy(fsd);
    process::reclaim();
}
