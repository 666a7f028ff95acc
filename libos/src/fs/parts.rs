//! Partitions by name, the way `/init.cfg` gives a program the ones it may touch.
//!
//! A partition's name is where the mount layer puts it: `fat`, `fat1`, ... for FAT
//! partitions and `log`, `log1`, ... for exo-lfs ones, counted in table order (see
//! [`super::mount::Backend::mount_point`]); `pN` names table slot `N` whatever its type. A
//! spec is a comma-separated list of names, each optionally followed by `:ro` for a
//! read-only binding: `fat`, `log:ro`, `fat,log`. [`resolve`] turns one into the sector
//! grants `spawn::Options::sectors` takes; the kernel then refuses the program every
//! sector outside them.

extern crate alloc;

use super::mount::FAT_TYPES;
use alloc::format;
use alloc::string::String;
use alloc::vec::Vec;
use exo_abi::{Partition, SECTOR_READ, SECTOR_WRITE};
use exo_format::mbr::TYPE_EXO_LFS;

/// One grant: (first sector, sector count, `SECTOR_READ | SECTOR_WRITE` rights).
pub type Grant = (u64, u64, u32);

/// The name of the used partition in table slot `index` (`None` for an empty slot).
pub fn name(table: &[Partition], index: usize) -> Option<String> {
    let p = table.get(index).filter(|p| p.sectors != 0)?;
    let family = |q: &Partition| -> Option<&str> {
        if FAT_TYPES.contains(&q.kind) {
            Some("fat")
        } else if q.kind == TYPE_EXO_LFS {
            Some("log")
        } else {
            None
        }
    };
    let Some(base) = family(p) else { return Some(format!("p{index}")) };
    let n = table[..index].iter().filter(|q| q.sectors != 0 && family(q) == Some(base)).count();
    Some(if n == 0 { String::from(base) } else { format!("{base}{n}") })
}

/// The grants a spec names, in the spec's order; an error names the first word that is
/// not a used partition or has an unknown suffix. A partition named twice is granted once,
/// with the wider rights.
pub fn resolve(spec: &str, table: &[Partition]) -> Result<Vec<Grant>, String> {
    let mut out: Vec<(usize, Grant)> = Vec::new();
    for word in spec.split(',') {
        let (part, rights) = match word.split_once(':') {
            None => (word, SECTOR_READ | SECTOR_WRITE),
            Some((part, "ro")) => (part, SECTOR_READ),
            Some(_) => return Err(format!("{word}: the only suffix is :ro")),
        };
        let by_slot = part.strip_prefix('p').and_then(|n| n.parse::<usize>().ok());
        let index = (0..table.len())
            .find(|&i| {
                by_slot.map_or_else(
                    || name(table, i).as_deref() == Some(part),
                    |n| n == i && table[i].sectors != 0,
                )
            })
            .ok_or_else(|| format!("{part}: no such partition"))?;
        let p = table[index];
        match out.iter_mut().find(|(i, _)| *i == index) {
            Some((_, g)) => g.2 |= rights,
            None => out.push((index, (p.start, p.sectors, rights))),
        }
    }
    Ok(out.into_iter().map(|(_, g)| g).collect())
}
