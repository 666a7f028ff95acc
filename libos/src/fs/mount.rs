//! Mounting a disk's partitions by their MBR type, with the file systems the app links.
//!
//! The runtime knows no file system. A file-system crate offers a [`Backend`] (which MBR
//! types it takes, where it mounts, how); an app passes the ones it links to
//! [`mount_disk`], e.g. `&[exo_fat::backend(), exo_logfs::backend()]` for both, or one
//! of them alone. So which file systems an app contains is decided by its dependencies, at
//! link time (`docs/libos.md`).

extern crate alloc;

use super::{BlockDevice, Clock, FileSystem, Partition, Result, Vfs};
use alloc::boxed::Box;
use alloc::format;
use alloc::string::String;
use alloc::vec::Vec;
use exo_format::mbr;

/// MBR type bytes of FAT16 and FAT32 partitions.
pub const FAT_TYPES: [u8; 5] = [0x04, 0x06, 0x0b, 0x0c, 0x0e];

/// Whether an MBR type is a file system some exo libOS knows (FAT or exo-lfs): what init
/// grants `fsd` by default.
pub fn is_file_system(kind: u8) -> bool {
    FAT_TYPES.contains(&kind) || kind == mbr::TYPE_EXO_LFS
}

/// A file system as the mount layer sees it: the partitions it takes and how to mount one.
pub struct Backend<S> {
    /// The first mount point (`/fat`); later partitions of its kinds get `/fat1`, `/fat2`, ...
    pub at: &'static str,
    /// The MBR type bytes it mounts.
    pub kinds: &'static [u8],
    /// Mounts one partition, never formatting it.
    pub mount: fn(Partition<S>, Clock) -> Result<Box<dyn FileSystem>>,
}

impl<S> Backend<S> {
    /// Where the `n`th partition of this back end's kinds goes (counting from 0).
    pub fn mount_point(&self, n: usize) -> String {
        if n == 0 {
            String::from(self.at)
        } else {
            format!("{}{n}", self.at)
        }
    }
}

/// What [`mount_partitions`] did with one partition: its table index, where it was to go,
/// and the back end's name or why it could not be mounted.
pub type Mounted = (u8, String, Result<&'static str>);

/// Mounts every partition of `table` one of `backends` takes (the first that does), each
/// over its own extent of the device `io()` returns. Partitions of other types are left
/// alone; a partition that fails to mount (a damaged volume, or one this environment holds
/// no binding for) is reported and skipped. Never formats.
pub fn mount_partitions<S: BlockDevice + 'static>(
    vfs: &mut Vfs,
    table: &[mbr::Partition],
    mut io: impl FnMut() -> S,
    clock: Clock,
    backends: &[Backend<S>],
) -> Vec<Mounted> {
    let mut out = Vec::new();
    let mut seen = alloc::vec![0usize; backends.len()];
    for p in table.iter().filter(|p| p.sectors != 0) {
        let Some(b) = backends.iter().position(|b| b.kinds.contains(&p.kind)) else { continue };
        let at = backends[b].mount_point(seen[b]);
        seen[b] += 1;
        let part = Partition::new(io(), p.start, p.sectors);
        let r = (backends[b].mount)(part, clock).and_then(|fs| {
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
pub fn mount_disk(vfs: &mut Vfs, backends: &[Backend<super::disk::SysSectors>]) -> Vec<Mounted> {
    let table = crate::vm::kinfo().partitions;
    mount_partitions(vfs, &table, || super::disk::SysSectors, super::time::uptime, backends)
}
