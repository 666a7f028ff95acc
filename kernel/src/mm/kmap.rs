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
    /// How many pool pages are in use (to resume building later).
    pub used: usize,
    /// Pointer value of a table minus its physical address.
    offset: u64,
}

impl<'p> Builder<'p> {
    /// `offset`: what to add to a physical address in the pool to get a usable pointer.
    pub fn new(pool: &'p mut [Table], used: usize, offset: u64) -> Self {
        Self { pool, used, offset }
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
    /// that alignment allows, down to pages. A block never reaches past the range, so each
    /// range keeps its own permissions. Re-mapping an identical entry is allowed.
    pub fn map(&mut self, root: u64, va: u64, pa: u64, size: u64, kind: Kind) -> Result<(), MapError> {
        if (va | pa | size) & 0xfff != 0 {
            return Err(MapError::Unaligned);
        }
        let mut done = 0;
        while done < size {
            let (v, p, left) = (va + done, pa + done, size - done);
            let level = (1..=3).find(|&l| (v | p) & (span(l) - 1) == 0 && left >= span(l)).unwrap_or(3);
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
}

#[cfg(test)]
#[path = "kmap_tests.rs"]
mod tests;
