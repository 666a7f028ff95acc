//! Host tests of `kmap.rs`.

use super::*;

impl Builder<'_> {
    /// Looks up the descriptor that maps `va`, if any.
    fn lookup(&mut self, root: u64, va: u64) -> Option<(u64, u32)> {
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
    b.map(root, 0x4000_0000, 0x4000_0000, size, Kind::Data).unwrap();
    assert_eq!(b.lookup(root, 0x4000_0000).unwrap().1, 1);
    assert_eq!(b.lookup(root, 0x8000_0000).unwrap().1, 2);
    let (e, l) = b.lookup(root, 0x8020_0000).unwrap();
    assert_eq!((l, e & bits::ADDR_MASK), (3, 0x8020_0000));
    assert!(b.lookup(root, 0x8020_1000).is_none());
    assert_eq!(b.used, 4); // root, L1, L2, L3
}

#[test]
fn permissions_follow_the_kind() {
    let mut p = pool(8);
    let mut b = Builder::new(&mut p, 0, 0);
    let root = b.new_table().unwrap();
    let va = 0xffff_ffff_8000_0000;
    b.map(root, va, 0x80000, 0x1000, Kind::Text).unwrap();
    b.map(root, va + 0x1000, 0x81000, 0x1000, Kind::Data).unwrap();
    b.map(root, 0xffff_0000_0900_0000, 0x0900_0000, 0x1000, Kind::Device).unwrap();
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
    b.map(root, 0, 0, 2 << 20, Kind::Data).unwrap();
    b.map(root, 0, 0, 2 << 20, Kind::Data).unwrap(); // identical: fine
    assert_eq!(b.map(root, 0, 0, 2 << 20, Kind::Device), Err(MapError::Conflict));
    assert_eq!(b.map(root, 0x1000, 0, 4096, Kind::Data), Err(MapError::Conflict));
    assert_eq!(b.map(root, 1 << 39, 0, 4096, Kind::Data), Err(MapError::OutOfTables));
    assert_eq!(b.map(root, 1, 0, 4096, Kind::Data), Err(MapError::Unaligned));
}
