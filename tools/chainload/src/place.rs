//! Where the loader moves itself, and how much room that leaves the kernel.
//!
//! The kernel goes where the loader was loaded (`load`): every exo board boots an image
//! from there. So the loader first copies itself out of the way, to `dest`, the first
//! 2 MiB-aligned address at least [`KERNEL_ROOM`] above `load` where its whole span fits
//! in the same RAM bank without touching the device tree or reserved memory. The kernel
//! may then use `[load, load + capacity)`, which stops short of the loader's new home, the
//! device tree and any reserved range.

/// A physical address range.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Span {
    pub base: u64,
    pub size: u64,
}

impl Span {
    pub const fn end(&self) -> u64 {
        self.base.saturating_add(self.size)
    }
    fn overlaps(&self, o: &Span) -> bool {
        self.base < o.end() && o.base < self.end()
    }
}

/// Room the loader tries to leave for the kernel (image, BSS and stack).
pub const KERNEL_ROOM: u64 = 32 << 20;
const ALIGN: u64 = 2 << 20;
/// Smallest room worth offering.
pub const MIN_CAPACITY: u64 = 64 << 10;

/// What the loader knows about memory.
pub struct Layout<'a> {
    /// Where the loader was loaded (and the kernel will go).
    pub load: u64,
    /// Bytes the loader occupies from its start (image, BSS, stack, scratch).
    pub span: u64,
    /// RAM banks and ranges that must not be touched (the DTB, reservations).
    pub memory: &'a [Span],
    pub avoid: &'a [Span],
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Plan {
    /// Where the loader moves itself.
    pub dest: u64,
    /// Bytes from `load` the kernel may use.
    pub capacity: u64,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum PlaceError {
    /// The load address is in no RAM bank the device tree lists.
    LoadNotInRam,
    /// The RAM bank has no room for the loader above the kernel's room.
    NoRoom,
}

pub fn plan(l: &Layout) -> Result<Plan, PlaceError> {
    let bank =
        *l.memory.iter().find(|m| m.base <= l.load && l.load < m.end()).ok_or(PlaceError::LoadNotInRam)?;
    let mut dest = (l.load + KERNEL_ROOM).next_multiple_of(ALIGN);
    'search: loop {
        let me = Span { base: dest, size: l.span };
        if me.end() > bank.end() {
            return Err(PlaceError::NoRoom);
        }
        for a in l.avoid {
            if a.overlaps(&me) {
                dest = a.end().next_multiple_of(ALIGN);
                continue 'search;
            }
        }
        break;
    }
    let mut end = dest;
    for a in l.avoid {
        if a.end() > l.load && a.base < end {
            end = end.min(a.base);
        }
    }
    let capacity = end.saturating_sub(l.load);
    if capacity < MIN_CAPACITY {
        return Err(PlaceError::NoRoom);
    }
    Ok(Plan { dest, capacity })
}

/// Bytes of a flattened device tree that hold data (header, reservations, structure and
/// strings), from its header; `None` when `header` is not an FDT header. Loaders often
/// leave `totalsize` much larger (QEMU `virt`: 1 MiB).
pub fn dtb_used(header: &[u8]) -> Option<u64> {
    let w = |i: usize| -> Option<u64> {
        let b = header.get(4 * i..4 * i + 4)?;
        Some(u32::from_be_bytes([b[0], b[1], b[2], b[3]]) as u64)
    };
    if w(0)? != 0xd00d_feed {
        return None;
    }
    let total = w(1)?;
    let (struct_end, strings_end) = (w(2)? + w(9)?, w(3)? + w(8)?);
    // The reservation map sits before the structure block in every tree we know; when it
    // does not, keep everything.
    let used = if w(4)? < w(2)?.min(w(3)?) { struct_end.max(strings_end) } else { total };
    Some(used.min(total))
}

#[cfg(test)]
mod tests {
    use super::*;

    const MIB: u64 = 1 << 20;

    fn s(base: u64, size: u64) -> Span {
        Span { base, size }
    }

    #[test]
    fn qemu_virt_and_raspi4b() {
        // virt -m 256M: loaded at 0x40080000, DTB at 0x48000000.
        let virt = Layout {
            load: 0x4008_0000,
            span: MIB,
            memory: &[s(0x4000_0000, 256 * MIB)],
            avoid: &[s(0x4800_0000, MIB)],
        };
        assert_eq!(plan(&virt), Ok(Plan { dest: 0x4220_0000, capacity: 0x4220_0000 - 0x4008_0000 }));
        // raspi4b: loaded at 0x80000, DTB at 0x08000000, the spin tables reserved at 0.
        let pi = Layout {
            load: 0x8_0000,
            span: MIB,
            memory: &[s(0, 0x3c00_0000)],
            avoid: &[s(0, 0x1000), s(0x0800_0000, 0x1_2414)],
        };
        assert_eq!(plan(&pi), Ok(Plan { dest: 0x0220_0000, capacity: 0x0220_0000 - 0x8_0000 }));
    }

    #[test]
    fn steps_over_the_dtb_and_stops_the_kernel_short_of_it() {
        let l = Layout {
            load: 0x8_0000,
            span: 3 * MIB,
            memory: &[s(0, 1 << 30)],
            avoid: &[s(0x0210_0000, 64 << 10)],
        };
        let p = plan(&l).unwrap();
        assert_eq!(p.dest, 0x0220_0000);
        assert_eq!(p.capacity, 0x0210_0000 - 0x8_0000);
    }

    #[test]
    fn refuses_what_cannot_work() {
        let no_ram = Layout { load: 0x8_0000, span: MIB, memory: &[s(0x4000_0000, MIB)], avoid: &[] };
        assert_eq!(plan(&no_ram), Err(PlaceError::LoadNotInRam));
        let small = Layout { load: 0x8_0000, span: MIB, memory: &[s(0, 16 * MIB)], avoid: &[] };
        assert_eq!(plan(&small), Err(PlaceError::NoRoom));
        let dtb_at_load =
            Layout { load: 0x8_0000, span: MIB, memory: &[s(0, 1 << 30)], avoid: &[s(0x8_0000, 4096)] };
        assert_eq!(plan(&dtb_at_load), Err(PlaceError::NoRoom));
    }

    #[test]
    fn dtb_used_ignores_padding() {
        let raspi =
            std::fs::read(concat!(env!("CARGO_MANIFEST_DIR"), "/../../bsp/testdata/qemu-raspi4b.dtb"))
                .unwrap();
        assert_eq!(dtb_used(&raspi), Some(0x6534 + 0x606));
        let mut padded = raspi.clone();
        padded[4..8].copy_from_slice(&(1u32 << 20).to_be_bytes());
        assert_eq!(dtb_used(&padded), Some(0x6534 + 0x606));
        assert_eq!(dtb_used(b"not a device tree at all, not even close to one...."), None);
        assert_eq!(dtb_used(&[0xd0, 0x0d]), None);
    }
}
