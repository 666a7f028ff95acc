//! Partitions by name, as `/init.cfg` binds them to programs.
// An integration test sees every dependency of its package; the library target is the
// one that must use them all (see `[workspace.lints]` in the root Cargo.toml).
#![allow(unused_crate_dependencies)]

use exo_libos::abi::{Partition, SECTOR_READ, SECTOR_WRITE};
use exo_libos::fs::parts::{name, resolve};

fn table() -> [Partition; 4] {
    let p = |index, kind, start, sectors| Partition { start, sectors, kind, index, ..Default::default() };
    // FAT32, exo-lfs, Linux, another FAT16.
    [p(0, 0x0c, 2048, 4096), p(1, 0x7f, 6144, 8192), p(2, 0x83, 14336, 100), p(3, 0x06, 20000, 50)]
}

#[test]
fn partitions_are_named_like_their_mount_points() {
    let t = table();
    let names: Vec<Option<String>> = (0..5).map(|i| name(&t, i)).collect();
    let want = [Some("fat"), Some("log"), Some("p2"), Some("fat1"), None];
    assert_eq!(names, want.map(|n| n.map(String::from)));
}

#[test]
fn a_spec_grants_exactly_the_partitions_it_names() {
    let t = table();
    assert_eq!(resolve("fat", &t), Ok(vec![(2048, 4096, SECTOR_READ | SECTOR_WRITE)]));
    assert_eq!(resolve("log:ro", &t), Ok(vec![(6144, 8192, SECTOR_READ)]));
    assert_eq!(
        resolve("fat1,p2:ro", &t),
        Ok(vec![(20000, 50, SECTOR_READ | SECTOR_WRITE), (14336, 100, SECTOR_READ)])
    );
    assert_eq!(resolve("log:ro,log", &t), Ok(vec![(6144, 8192, SECTOR_READ | SECTOR_WRITE)]));
}

#[test]
fn a_spec_naming_nothing_real_is_refused() {
    let t = table();
    for bad in ["", "log2", "p7", "fat:rw", "fat,,log", "/fat", "p"] {
        assert!(resolve(bad, &t).is_err(), "{bad:?} was accepted");
    }
    let mut empty = table();
    empty[1].sectors = 0;
    assert!(resolve("log", &empty).is_err());
    assert!(resolve("p1", &empty).is_err());
}
