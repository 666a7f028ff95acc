//! The boot sector, checked before `embedded-sdmmc` sees it, and the geometry it gives.
//!
//! The crate divides by the sectors-per-cluster field and subtracts sizes without checking
//! them, so a damaged boot sector must be refused here, with [`Error::Corrupt`] instead of a
//! panic. Everything the rest of the FAT libOS computes (cluster to sector, FAT entry
//! positions) stays inside the volume once these checks pass.

use exo_format::le;
use exo_libos::fs::{Error, Result};

/// FAT16 or FAT32 (FAT12 is not supported by the crate).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum FatType {
    Fat16,
    Fat32,
}

/// The volume's layout, in sectors relative to the start of the partition.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Geometry {
    pub fat_type: FatType,
    /// Sectors per cluster (a power of two, 1 to 128).
    pub spc: u32,
    /// First sector of the first FAT.
    pub fat_start: u32,
    /// Sectors per FAT.
    pub fat_size: u32,
    /// Number of FAT copies (1 or 2).
    pub nfats: u32,
    /// FAT16: the fixed root directory's first sector and length.
    pub root_start: u32,
    pub root_sectors: u32,
    /// FAT32: the root directory's first cluster.
    pub root_cluster: u32,
    /// First sector of cluster 2.
    pub data_start: u32,
    /// Number of data clusters: valid cluster numbers are `2 ..= clusters + 1`.
    pub clusters: u32,
    /// Sectors the volume occupies.
    pub total: u32,
    /// FAT32: the FSInfo sector, if the boot sector names one inside the reserved area.
    pub fsinfo: Option<u32>,
}

fn u16_at(b: &[u8], at: usize) -> u32 {
    u32::from(le::get_u16(b, at))
}

impl Geometry {
    /// Parses and checks boot sector `b` of a partition of `part_sectors` sectors.
    pub fn parse(b: &[u8; 512], part_sectors: u64) -> Result<Geometry> {
        if b[510] != 0x55 || b[511] != 0xaa {
            return Err(Error::Corrupt);
        }
        let bytes_per_sector = u16_at(b, 11);
        let spc = u32::from(b[13]);
        let reserved = u16_at(b, 14);
        let nfats = u32::from(b[16]);
        let root_entries = u16_at(b, 17);
        let total = match u16_at(b, 19) {
            0 => le::get_u32(b, 32),
            n => n,
        };
        let fat_size = match u16_at(b, 22) {
            0 => le::get_u32(b, 36),
            n => n,
        };
        if bytes_per_sector != 512 {
            return Err(Error::Unsupported);
        }
        if !spc.is_power_of_two() || reserved == 0 || !(1..=2).contains(&nfats) || fat_size == 0 {
            return Err(Error::Corrupt);
        }
        if u64::from(total) > part_sectors {
            return Err(Error::Corrupt);
        }
        let root_sectors = (root_entries * 32).div_ceil(512);
        let non_data = u64::from(reserved) + u64::from(nfats) * u64::from(fat_size) + u64::from(root_sectors);
        if non_data >= u64::from(total) {
            return Err(Error::Corrupt);
        }
        let data_start = non_data as u32;
        let clusters = (total - data_start) / spc;
        // The FAT type follows from the cluster count alone (Microsoft's rule, and the crate's).
        let fat_type = match clusters {
            0..4085 => return Err(Error::Unsupported),
            4085..65525 => FatType::Fat16,
            65525..0x0fff_fff5 => FatType::Fat32,
            _ => return Err(Error::Corrupt),
        };
        let entry_bytes = if fat_type == FatType::Fat16 { 2 } else { 4 };
        if u64::from(fat_size) * 512 < (u64::from(clusters) + 2) * entry_bytes {
            return Err(Error::Corrupt);
        }
        let mut g = Geometry {
            fat_type,
            spc,
            fat_start: reserved,
            fat_size,
            nfats,
            root_start: reserved + nfats * fat_size,
            root_sectors,
            root_cluster: 0,
            data_start,
            clusters,
            total,
            fsinfo: None,
        };
        match fat_type {
            FatType::Fat16 if root_entries == 0 => return Err(Error::Corrupt),
            FatType::Fat16 => {}
            FatType::Fat32 => {
                let (version, root, fsinfo) = (u16_at(b, 42), le::get_u32(b, 44), u16_at(b, 48));
                if version != 0 {
                    return Err(Error::Unsupported);
                }
                if root_entries != 0 || !g.valid_cluster(root) {
                    return Err(Error::Corrupt);
                }
                // The crate reads the sector this field names as FSInfo; it must not be the
                // boot sector or outside the reserved area.
                if fsinfo == 0 || fsinfo >= reserved {
                    return Err(Error::Corrupt);
                }
                g.root_cluster = root;
                g.fsinfo = Some(fsinfo);
            }
        }
        Ok(g)
    }

    /// Whether `c` is a data cluster of this volume.
    pub fn valid_cluster(&self, c: u32) -> bool {
        c >= 2 && c - 2 < self.clusters
    }

    /// First sector of data cluster `c` (which must be valid).
    pub fn cluster_sector(&self, c: u32) -> u32 {
        self.data_start + (c - 2) * self.spc
    }

    /// Bytes per cluster.
    pub fn cluster_bytes(&self) -> u32 {
        self.spc * 512
    }

    /// Bytes per FAT entry.
    pub fn entry_bytes(&self) -> u32 {
        match self.fat_type {
            FatType::Fat16 => 2,
            FatType::Fat32 => 4,
        }
    }

    pub fn name(&self) -> &'static str {
        match self.fat_type {
            FatType::Fat16 => "fat16",
            FatType::Fat32 => "fat32",
        }
    }
}
