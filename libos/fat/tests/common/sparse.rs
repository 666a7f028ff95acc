//! Hand-built volumes in memory (no host tools): a sparse disk and directory slots.

use exo_libos::fs::disk::{BlockDevice, IoError};
use std::collections::HashMap;

/// A volume held as the sectors written to it, every other sector reading as zeros: a
/// FAT32 volume needs at least 65,525 clusters, and this keeps only the few in use.
#[derive(Default)]
pub struct Sparse {
    pub sectors: HashMap<u64, [u8; 512]>,
    pub total: u64,
}

impl Sparse {
    pub fn sector(&mut self, s: u64) -> &mut [u8; 512] {
        self.sectors.entry(s).or_insert([0; 512])
    }
}

impl BlockDevice for Sparse {
    fn read(&mut self, sector: u64, buf: &mut [u8]) -> Result<(), IoError> {
        for (i, b) in buf.chunks_mut(512).enumerate() {
            let s = sector + i as u64;
            if s >= self.total {
                return Err(IoError { code: -1 });
            }
            b.copy_from_slice(self.sectors.get(&s).map_or(&[0; 512], |x| x));
        }
        Ok(())
    }
    fn write(&mut self, sector: u64, buf: &[u8]) -> Result<(), IoError> {
        for (i, b) in buf.chunks(512).enumerate() {
            if sector + i as u64 >= self.total {
                return Err(IoError { code: -1 });
            }
            self.sector(sector + i as u64).copy_from_slice(b);
        }
        Ok(())
    }
    fn flush(&mut self) -> Result<(), IoError> {
        Ok(())
    }
    fn sectors(&self) -> u64 {
        self.total
    }
}

/// A 32-byte directory entry: a plain file named by its 8.3 bytes.
pub fn file_slot(sfn: &[u8; 11], cluster: u32, size: u32) -> [u8; 32] {
    let mut e = [0u8; 32];
    e[..11].copy_from_slice(sfn);
    e[11] = 0x20;
    e[20..22].copy_from_slice(&((cluster >> 16) as u16).to_le_bytes());
    e[26..28].copy_from_slice(&(cluster as u16).to_le_bytes());
    e[28..32].copy_from_slice(&size.to_le_bytes());
    e
}
