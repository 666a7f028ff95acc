//! The kernel's own translation tables: built before the MMU is on, extended once after.
//!
//! Table pages come from a small pool inside the kernel image, so building needs no
//! allocator and the same code runs at two addresses: before the MMU (where an address in
//! the image *is* its physical address) and after it (where `offset` converts the physical
//! addresses stored in descriptors back to pointers). Nothing here may panic or format
//! before the MMU is on: every error is a `Result`.

use exo_abi::pte::{attr, bits, index, span};

/// A 4 KiB translation table.
#[repr(C, align(4096))]
pub struct Table(pub [u64; 512]);

/// Kinds of kernel mapping.
#[derive(Clone, Copy, PartialEq, Eq, Debug)]
pub enum Kind {
    /// Kernel text: EL1 read + execute.
    Text,
    /// Read-only data.
    ReadOnly,
    /// Read-write data, never executable.
    Data,
    /// MMIO registers: Device-nGnRE, never executable.
    Device,
    /// The identity map used for the MMU switch-over: read-write-execute RAM.
    Boot,
}

impl Kind {
    const fn bits(self) -> u64 {
        let normal = (attr::NORMAL << bits::ATTR_SHIFT) | bits::SH_INNER;
        bits::AF
            | bits::UXN
            | match self {
                Kind::Text => normal | bits::AP_RO,
                Kind::ReadOnly => normal | bits::AP_RO | bits::PXN,
                Kind::Data => normal | bits::PXN,
                Kind::Device => (attr::DEVICE << bits::ATTR_SHIFT) | bits::PXN,
                Kind::Boot => normal,
            }
    }
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum MapError {
    /// The table pool is used up.
    OutOfTables,
    /// A different mapping is already there.
    Conflict,
    /// Addresses or size not 4 KiB aligned.
    Unaligned,
}

/// A table builder over a caller-provided pool of table pages.
pub struct Builder<'p> {
    pool: &'p mut [Table],
    used: usize,
    /// Pointer value of a table minus its physical address.
    offset: u64,
}

impl<'p> Builder<'p> {
    /// `offset`: what to add to a physical address in the pool to get a usable pointer.
    pub fn new(pool: &'p mut [Table], used: usize, offset: u64) -> Self {
        Self { pool, used, offset }
    }

    /// How many pool pages are in use (to resume building later).
    pub fn used(&self) -> usize {
        self.used
    }

    /// Takes a zeroed table from the pool and returns its physical address.
    pub fn new_table(&mut self) -> Result<u64, MapError> {
        let t = self.pool.get_mut(self.used).ok_or(MapError::OutOfTables)?;
        t.0.iter_mut().for_each(|e| *e = 0);
        self.used += 1;
        Ok(t as *mut Table as u64 - self.offset)
    }

    fn table_at(&mut self, pa: u64) -> &mut Table {
        // SAFETY: every table address stored in a descriptor by this builder came from
        // `new_table`, i.e. from `self.pool`, which we borrow mutably for `'p`.
        unsafe { &mut *((pa + self.offset) as *mut Table) }
    }

    /// Maps `[va, va + size)` to `[pa, pa + size)`, using the largest blocks (1 GiB, 2 MiB)
    /// that alignment allows, down to pages; `pages_only` forces 4 KiB pages (for
    /// fine-grained permissions). Re-mapping an identical entry is allowed.
    pub fn map(
        &mut self,
        root: u64,
        va: u64,
        pa: u64,
        size: u64,
        kind: Kind,
        pages_only: bool,
    ) -> Result<(), MapError> {
        if (va | pa | size) & 0xfff != 0 {
            return Err(MapError::Unaligned);
        }
        let mut done = 0;
        while done < size {
            let (v, p, left) = (va + done, pa + done, size - done);
            let level = if pages_only {
                3
            } else {
                (1..=3).find(|&l| (v | p) & (span(l) - 1) == 0 && left >= span(l)).unwrap_or(3)
            };
            self.map_one(root, v, p, level, kind)?;
            done += span(level);
        }
        Ok(())
    }

    fn map_one(&mut self, root: u64, va: u64, pa: u64, level: u32, kind: Kind) -> Result<(), MapError> {
        let mut table = root;
        for l in 0..level {
            let i = index(va, l);
            let e = self.table_at(table).0[i];
            table = if e & bits::VALID == 0 {
                let t = self.new_table()?;
                self.table_at(table).0[i] = t | bits::VALID | bits::TABLE_OR_PAGE;
                t
            } else if e & bits::TABLE_OR_PAGE != 0 {
                e & bits::ADDR_MASK
            } else {
                return Err(MapError::Conflict); // a block already covers this address
            };
        }
        let leaf = pa | kind.bits() | bits::VALID | if level == 3 { bits::TABLE_OR_PAGE } else { 0 };
        let slot = &mut self.table_at(table).0[index(va, level)];
        if *slot != 0 && *slot != leaf {
            return Err(MapError::Conflict);
        }
        *slot = leaf;
        Ok(())
    }

    /// Looks up the descriptor that maps `va`, if any.
    #[cfg(test)]
    pub fn lookup(&mut self, root: u64, va: u64) -> Option<(u64, u32)> {
        let mut table = root;
        for l in 0..=3 {
            let e = self.table_at(table).0[index(va, l)];
            if e & bits::VALID == 0 {
                return None;
            }
            if l == 3 || e & bits::TABLE_OR_PAGE == 0 {
                return Some((e, l));
            }
            table = e & bits::ADDR_MASK;
        }
        None
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn pool(n: usize) -> Vec<Table> {
        (0..n).map(|_| Table([0; 512])).collect()
    }

    #[test]
    fn picks_the_largest_blocks_alignment_allows() {
        let mut p = pool(8);
        let mut b = Builder::new(&mut p, 0, 0);
        let root = b.new_table().unwrap();
        // 1 GiB + 2 MiB + 4 KiB, all aligned: one block of each size.
        let size = (1 << 30) + (2 << 20) + 4096;
        b.map(root, 0x4000_0000, 0x4000_0000, size, Kind::Data, false).unwrap();
        assert_eq!(b.lookup(root, 0x4000_0000).unwrap().1, 1);
        assert_eq!(b.lookup(root, 0x8000_0000).unwrap().1, 2);
        let (e, l) = b.lookup(root, 0x8020_0000).unwrap();
        assert_eq!((l, e & bits::ADDR_MASK), (3, 0x8020_0000));
        assert!(b.lookup(root, 0x8020_1000).is_none());
        assert_eq!(b.used(), 4); // root, L1, L2, L3
    }

    #[test]
    fn permissions_follow_the_kind() {
        let mut p = pool(8);
        let mut b = Builder::new(&mut p, 0, 0);
        let root = b.new_table().unwrap();
        let va = 0xffff_ffff_8000_0000;
        b.map(root, va, 0x80000, 0x1000, Kind::Text, true).unwrap();
        b.map(root, va + 0x1000, 0x81000, 0x1000, Kind::Data, true).unwrap();
        b.map(root, 0xffff_0000_0900_0000, 0x0900_0000, 0x1000, Kind::Device, true).unwrap();
        let text = b.lookup(root, va).unwrap().0;
        assert!(text & bits::AP_RO != 0 && text & bits::PXN == 0 && text & bits::UXN != 0);
        let data = b.lookup(root, va + 0x1000).unwrap().0;
        assert!(data & bits::AP_RO == 0 && data & bits::PXN != 0);
        let dev = b.lookup(root, 0xffff_0000_0900_0000).unwrap().0;
        assert_eq!((dev & bits::ATTR_MASK) >> bits::ATTR_SHIFT, attr::DEVICE);
        // No mapping is ever reachable from EL0.
        for e in [text, data, dev] {
            assert_eq!(e & bits::AP_EL0, 0);
        }
    }

    #[test]
    fn conflicts_and_exhaustion_are_errors() {
        let mut p = pool(3);
        let mut b = Builder::new(&mut p, 0, 0);
        let root = b.new_table().unwrap();
        b.map(root, 0, 0, 2 << 20, Kind::Data, false).unwrap();
        b.map(root, 0, 0, 2 << 20, Kind::Data, false).unwrap(); // identical: fine
        assert_eq!(b.map(root, 0, 0, 2 << 20, Kind::Device, false), Err(MapError::Conflict));
        assert_eq!(b.map(root, 0x1000, 0, 4096, Kind::Data, true), Err(MapError::Conflict));
        assert_eq!(b.map(root, 1 << 39, 0, 4096, Kind::Data, true), Err(MapError::OutOfTables));
        assert_eq!(b.map(root, 1, 0, 4096, Kind::Data, true), Err(MapError::Unaligned));
    }
}
