//! VMSAv8-64 translation-table descriptors (4 KiB granule, 48-bit addresses).
//!
//! Shared because both sides build them: a libOS writes descriptors into its own tables
//! through `ttbl_set`, and the kernel checks every one against what the caller may map.

/// One 64-bit descriptor.
#[repr(transparent)]
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Hash)]
pub struct Pte(pub u64);

/// Bits of a descriptor. Names follow the Arm ARM (D8.3).
pub mod bits {
    pub const VALID: u64 = 1 << 0;
    /// At levels 0–2: next-level table (set) or block (clear). At level 3 it must be set.
    pub const TABLE_OR_PAGE: u64 = 1 << 1;
    pub const ATTR_SHIFT: u32 = 2;
    pub const ATTR_MASK: u64 = 0b111 << ATTR_SHIFT;
    /// `AP[1]`: accessible from EL0.
    pub const AP_EL0: u64 = 1 << 6;
    /// `AP[2]`: read-only.
    pub const AP_RO: u64 = 1 << 7;
    pub const SH_INNER: u64 = 0b11 << 8;
    pub const SH_MASK: u64 = 0b11 << 8;
    /// Access flag; a descriptor without it faults on first use.
    pub const AF: u64 = 1 << 10;
    /// Not global: the entry is tagged with the current ASID.
    pub const NG: u64 = 1 << 11;
    pub const PXN: u64 = 1 << 53;
    pub const UXN: u64 = 1 << 54;
    /// Bits 55..=58 are ignored by hardware and left to software.
    pub const SW_MASK: u64 = 0b1111 << 55;
    /// Software bit 58, the one the kernel reads: the owner says this page can be dropped
    /// (its contents can be made again). A forced repossession takes such pages before any
    /// other mapped page. It only orders the owner's own frames: a frame the environment does
    /// not own, or maps more than once, is never taken, marked or not.
    pub const DROPPABLE: u64 = 1 << 58;
    /// Software bit 57 of a level-2 table descriptor, the kernel's: the level-3 table it
    /// links is frozen (`frame::FROZEN`), so the kernel refuses every change in it without
    /// looking the table up. In a descriptor given to `TableSet`, the owner's request to
    /// freeze the table already linked there.
    pub const FROZEN_LINK: u64 = 1 << 57;
    /// Output address, bits 12..=47.
    pub const ADDR_MASK: u64 = 0x0000_ffff_ffff_f000;
}

/// Memory attribute indexes into MAIR_EL1, as the kernel programs it.
pub mod attr {
    /// Device-nGnRE: MMIO.
    pub const DEVICE: u64 = 0;
    /// Normal, write-back cacheable: RAM.
    pub const NORMAL: u64 = 1;
    /// Normal, non-cacheable.
    pub const NORMAL_NC: u64 = 2;
    /// The MAIR_EL1 value that gives the indexes above their meaning.
    pub const MAIR: u64 = 0x04 | (0xff << 8) | (0x44 << 16);
}

/// What an EL0 mapping allows.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Perm {
    pub write: bool,
    pub exec: bool,
}

/// Bits a page descriptor from EL0 must have: valid page, EL0-accessible, access flag set,
/// not global (ASID-tagged), never executable at EL1, inner shareable.
pub const USER_REQUIRED: u64 =
    bits::VALID | bits::TABLE_OR_PAGE | bits::AP_EL0 | bits::AF | bits::NG | bits::PXN | bits::SH_INNER;
/// Bits it may have besides: read-only, not executable, the software bits, the address,
/// and the memory attribute (normal cacheable or normal non-cacheable only).
pub const USER_OPTIONAL: u64 = bits::AP_RO | bits::UXN | bits::SW_MASK | bits::ADDR_MASK | bits::ATTR_MASK;
/// Everything a user page descriptor may contain.
pub const USER_ALLOWED: u64 = USER_REQUIRED | USER_OPTIONAL;

/// Why a descriptor from EL0 is refused.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum PteError {
    /// Reserved, missing or forbidden bits (device memory, EL1 access, global, no AF...).
    Malformed,
    /// Writable and executable at once.
    WriteExec,
}

impl From<PteError> for crate::Error {
    fn from(e: PteError) -> crate::Error {
        match e {
            PteError::Malformed => crate::Error::Invalid,
            PteError::WriteExec => crate::Error::Denied,
        }
    }
}

impl Pte {
    /// Checks a level-3 descriptor an environment asks for. On success returns the frame it
    /// points at and its permissions.
    #[inline(always)]
    pub fn check_user_page(self) -> Result<(u64, Perm), PteError> {
        let v = self.0;
        let attr = self.attr_index();
        if v & USER_REQUIRED != USER_REQUIRED
            || v & !USER_ALLOWED != 0
            || (attr != attr::NORMAL && attr != attr::NORMAL_NC)
        {
            return Err(PteError::Malformed);
        }
        let perm = Perm { write: v & bits::AP_RO == 0, exec: v & bits::UXN == 0 };
        if perm.write && perm.exec {
            return Err(PteError::WriteExec);
        }
        Ok((self.addr(), perm))
    }

    /// Checks a table descriptor an environment asks for; returns the table's address.
    pub fn check_user_table(self) -> Result<u64, PteError> {
        // Only valid + table + address: no hierarchical permission bits (APTable, XNTable).
        if self.0 & !(bits::ADDR_MASK | bits::VALID | bits::TABLE_OR_PAGE) != 0 || !self.is_table_or_page() {
            return Err(PteError::Malformed);
        }
        Ok(self.addr())
    }

    pub const EMPTY: Pte = Pte(0);

    /// A level-3 page descriptor for EL0: normal memory, not global, never EL1-executable.
    pub const fn user_page(pa: u64, perm: Perm) -> Pte {
        let mut v = (pa & bits::ADDR_MASK)
            | bits::VALID
            | bits::TABLE_OR_PAGE
            | (attr::NORMAL << bits::ATTR_SHIFT)
            | bits::AP_EL0
            | bits::SH_INNER
            | bits::AF
            | bits::NG
            | bits::PXN;
        if !perm.write {
            v |= bits::AP_RO;
        }
        if !perm.exec {
            v |= bits::UXN;
        }
        Pte(v)
    }

    /// A table descriptor pointing at the next-level table page `pa`.
    pub const fn table(pa: u64) -> Pte {
        Pte((pa & bits::ADDR_MASK) | bits::VALID | bits::TABLE_OR_PAGE)
    }

    pub const fn is_valid(self) -> bool {
        self.0 & bits::VALID != 0
    }

    /// Table (levels 0–2) or page (level 3), as opposed to a block.
    pub const fn is_table_or_page(self) -> bool {
        self.0 & bits::TABLE_OR_PAGE != 0
    }

    pub const fn addr(self) -> u64 {
        self.0 & bits::ADDR_MASK
    }

    pub const fn attr_index(self) -> u64 {
        (self.0 & bits::ATTR_MASK) >> bits::ATTR_SHIFT
    }
}

/// Index into the table at `level` (0..=3) for virtual address `va`.
pub const fn index(va: u64, level: u32) -> usize {
    ((va >> (39 - 9 * level)) & 0x1ff) as usize
}

/// Bytes one entry at `level` covers: 512 GiB, 1 GiB, 2 MiB, 4 KiB.
pub const fn span(level: u32) -> u64 {
    1 << (39 - 9 * level)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn user_page_bits() {
        let p = Pte::user_page(0x4012_3000, Perm { write: false, exec: true });
        assert!(p.is_valid() && p.is_table_or_page());
        assert_eq!(p.addr(), 0x4012_3000);
        assert_eq!(p.attr_index(), attr::NORMAL);
        assert!(p.0 & bits::AP_RO != 0 && p.0 & bits::AP_EL0 != 0);
        assert!(p.0 & bits::UXN == 0 && p.0 & bits::PXN != 0 && p.0 & bits::NG != 0);
        let w = Pte::user_page(0x1000, Perm { write: true, exec: false });
        assert!(w.0 & bits::AP_RO == 0 && w.0 & bits::UXN != 0);
    }

    #[test]
    fn user_page_checks() {
        let ro = Pte::user_page(0x5000, Perm { write: false, exec: true });
        assert_eq!(ro.check_user_page(), Ok((0x5000, Perm { write: false, exec: true })));
        let mut wx = Pte::user_page(0x5000, Perm { write: true, exec: false });
        wx.0 &= !bits::UXN;
        assert_eq!(wx.check_user_page(), Err(PteError::WriteExec));
        let rw = Pte::user_page(0x5000, Perm { write: true, exec: false });
        for bad in [bits::AF, bits::NG, bits::PXN, bits::AP_EL0, bits::VALID] {
            assert_eq!(Pte(rw.0 & !bad).check_user_page(), Err(PteError::Malformed), "without {bad:#x}");
        }
        let device = Pte((rw.0 & !bits::ATTR_MASK) | (attr::DEVICE << bits::ATTR_SHIFT));
        assert_eq!(device.check_user_page(), Err(PteError::Malformed));
        assert_eq!(Pte(rw.0 | (1 << 48)).check_user_page(), Err(PteError::Malformed));
        assert_eq!(Pte(rw.0 | (1 << 60)).check_user_page(), Err(PteError::Malformed));
        assert_eq!(Pte::table(0x7000).check_user_table(), Ok(0x7000));
        assert_eq!(Pte(Pte::table(0x7000).0 | (1 << 63)).check_user_table(), Err(PteError::Malformed));
        assert_eq!(Pte(0x7001).check_user_table(), Err(PteError::Malformed));
    }

    #[test]
    fn indexes_and_spans() {
        let va = 0x0000_7fff_ffff_f000u64;
        assert_eq!(index(va, 0), 255);
        assert_eq!(index(va, 3), 511);
        assert_eq!(index(0xffff_ffff_8000_0000, 0), 511);
        assert_eq!(index(0xffff_ffff_8000_0000, 1), 510);
        assert_eq!(span(1), 1 << 30);
        assert_eq!(span(3), 4096);
    }
}
