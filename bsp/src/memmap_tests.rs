//! Host tests of `memmap.rs`.

use super::*;

fn reg(base: u64, size: u64) -> Region {
    Region { base, size }
}

#[test]
fn carves_out_image_dtb_and_reservations() {
    // The Pi 4 as QEMU raspi4b describes it, with the image at 0x80000.
    let ram = [reg(0, 0x3c00_0000)];
    let taken = [reg(0, 0x1000), reg(0x80000, 0x4_2345), reg(0x0800_0000, 0x1_2470)];
    let m = MemoryMap::new(&ram, &taken);
    assert_eq!(
        m.ranges(),
        &[
            reg(0x1000, 0x7f000),
            reg(0xc3000, 0x0800_0000 - 0xc3000),
            reg(0x0801_3000, 0x3c00_0000 - 0x0801_3000)
        ]
    );
    assert_eq!(m.total(), 0x3c00_0000 - 0x1000 - 0x43000 - 0x13000);
}

#[test]
fn keeps_ranges_sorted_and_ignores_outside_reservations() {
    let ram = [reg(0x8000_0000, 0x1000_0000), reg(0x4000_0000, 0x1000_0000)];
    let m = MemoryMap::new(&ram, &[reg(0x1_0000_0000, 4096), reg(0x4fff_f000, 0x2000)]);
    assert_eq!(m.ranges(), &[reg(0x4000_0000, 0x0fff_f000), reg(0x8000_0000, 0x1000_0000)]);
}

#[test]
fn take_carves_from_the_first_range_that_fits() {
    let mut m = MemoryMap::new(&[reg(0, 0x2000), reg(0x10000, 0x10000)], &[]);
    assert_eq!(m.take(0x3000), Some(reg(0x10000, 0x3000)));
    assert_eq!(m.take(0x2000), Some(reg(0, 0x2000)));
    assert_eq!(m.ranges(), &[reg(0x13000, 0xd000)]);
    assert_eq!(m.take(0xe000), None);
}

#[test]
fn unaligned_ram_edges_are_trimmed() {
    let m = MemoryMap::new(&[reg(0x1234, 0x10000)], &[]);
    assert_eq!(m.ranges(), &[reg(0x2000, 0xf000)]);
}

#[test]
fn frame_marks_give_the_kernel_the_gaps_hide_the_holes_and_free_the_rest() {
    // Two RAM regions with a hole between them; the image taken from the first.
    let ram = [reg(0, 0x10_0000), reg(0x20_0000, 0x10_0000)];
    let m = MemoryMap::new(&ram, &[reg(0x8_0000, 0x1_0000)]);
    let marks: Vec<_> = m.frame_marks(&ram, 0, 0x30_0000).collect();
    use exo_abi::frame::{ABSENT, FREE, KERNEL};
    assert_eq!(
        marks,
        [
            (0, 0, KERNEL),
            (0x8_0000, 0x1_0000, KERNEL), // the image
            (0x10_0000, 0x10_0000, KERNEL),
            (0x30_0000, 0, KERNEL),
            (0x10_0000, 0x10_0000, ABSENT), // the hole, after the kernel's mark over it
            (0x30_0000, 0, ABSENT),
            (0, 0x8_0000, FREE),
            (0x9_0000, 0x7_0000, FREE),
            (0x20_0000, 0x10_0000, FREE),
        ]
    );
}

/// The kernel's frame table threads a FREE mark onto its free list without writing inside
/// it (`FrameTable::set_range`): every page of a FREE mark must be one no earlier mark
/// touched, whatever the alignment of what was taken.
#[test]
fn free_marks_fall_on_pages_no_earlier_mark_touched() {
    let pages = |(base, len, _): (u64, u64, u8)| (base >> 12)..(base + len).div_ceil(4096);
    let ram = [reg(0, 0x10_0000), reg(0x20_0000, 0x10_0000)];
    let taken = [reg(0x8_0123, 0x1_0000), reg(0x20_0fff, 2), reg(0x2f_f000, 0x800), reg(0x4_0000, 0x1000)];
    for n in 0..=taken.len() {
        let m = MemoryMap::new(&ram, &taken[..n]);
        let marks: Vec<_> = m.frame_marks(&ram, 0, 0x30_0000).collect();
        for (i, &mark) in marks.iter().enumerate().filter(|(_, m)| m.2 == exo_abi::frame::FREE) {
            for &earlier in &marks[..i] {
                let (a, b) = (pages(mark), pages(earlier));
                assert!(a.end <= b.start || b.end <= a.start, "{mark:x?} overlaps {earlier:x?}");
            }
        }
    }
}
