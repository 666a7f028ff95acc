//! Mounting a disk's partitions by their MBR type: FAT at `/fat`, the LFS at `/log`.

extern crate alloc;

use super::fat::{FatFs, FatOptions};
use super::lfs::{LfsFs, LfsOptions};
use super::{BlockDevice, Clock, Partition, Result, Vfs};
use alloc::boxed::Box;
use alloc::format;
use alloc::string::String;
use alloc::vec::Vec;
use exo_format::mbr;

/// MBR type bytes of FAT16 and FAT32 partitions.
pub const FAT_TYPES: [u8; 5] = [0x04, 0x06, 0x0b, 0x0c, 0x0e];

/// Where a partition of MBR type `kind` goes: `/fat`, `/fat1`, ... for FAT, `/log`, `/log1`,
/// ... for the LFS (`n` = how many of that kind came before); `None` for other types.
pub fn mount_point(kind: u8, n: usize) -> Option<String> {
    let base = if FAT_TYPES.contains(&kind) {
        "/fat"
    } else if kind == mbr::TYPE_EXO_LFS {
        "/log"
    } else {
        return None;
    };
    Some(if n == 0 { String::from(base) } else { format!("{base}{n}") })
}

/// What [`mount_partitions`] did with one partition: its table index, where it was to go,
/// and the back end's name or why it could not be mounted.
pub type Mounted = (u8, String, Result<&'static str>);

/// Mounts every partition of `table` a libOS back end knows, each over its own extent of
/// the device `io()` returns. Partitions of other types are left alone; a partition that
/// fails to mount is reported and skipped. Never formats.
pub fn mount_partitions<S: BlockDevice + 'static>(
    vfs: &mut Vfs,
    table: &[mbr::Partition],
    mut io: impl FnMut() -> S,
    clock: Clock,
) -> Vec<Mounted> {
    let mut out = Vec::new();
    let (mut fats, mut logs) = (0, 0);
    for p in table.iter().filter(|p| p.sectors != 0) {
        let is_fat = FAT_TYPES.contains(&p.kind);
        let n = if is_fat { &mut fats } else { &mut logs };
        let Some(at) = mount_point(p.kind, *n) else { continue };
        *n += 1;
        let part = Partition::new(io(), p.start, p.sectors);
        let fs: Result<Box<dyn super::FileSystem>> = if is_fat {
            FatFs::mount(part, FatOptions { read_only: false, clock }).map(|f| Box::new(f) as _)
        } else {
            LfsFs::mount(part, LfsOptions { read_only: false, clock }).map(|f| Box::new(f) as _)
        };
        let r = fs.and_then(|fs| {
            let name = fs.fs_type();
            vfs.mount(&at, fs).map(|_| name)
        });
        out.push((p.index, at, r));
    }
    out
}

/// Mounts the partitions the kernel found on the disk (see [`mount_partitions`]) over the
/// sector system calls, stamping files with [`super::time::uptime`]. The environment must
/// hold bindings for them (init holds the whole disk and grants partitions onward).
#[cfg(target_os = "none")]
pub fn mount_disk(vfs: &mut Vfs) -> Vec<Mounted> {
    let table = crate::vm::kinfo().partitions;
    mount_partitions(vfs, &table, || super::disk::SysSectors, super::time::uptime)
}
