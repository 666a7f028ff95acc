//! Device-tree discovery against real DTBs: QEMU's own and the Raspberry Pi 4's.
// An integration test sees every dependency of its package; the library target is the
// one that must use them all (see `[workspace.lints]` in the root Cargo.toml).
#![allow(unused_crate_dependencies)]

use exo_bsp::dt::{BoardInfo, BoardKind, DtError, Gic, PsciConduit, Region};

fn parse(name: &str) -> BoardInfo {
    let path = format!("{}/testdata/{name}", env!("CARGO_MANIFEST_DIR"));
    let mut bytes = std::fs::read(&path).unwrap_or_else(|e| panic!("{path}: {e}"));
    BoardInfo::parse(&mut bytes).unwrap_or_else(|e| panic!("{name}: {e:?}"))
}

#[test]
fn qemu_virt_gicv2() {
    let b = parse("qemu-virt.dtb"); // -M virt -m 256M
    assert_eq!(b.kind, BoardKind::Virt);
    assert_eq!(b.memory.as_slice(), &[Region { base: 0x4000_0000, size: 256 << 20 }]);
    assert_eq!(b.uart, Some(Region { base: 0x0900_0000, size: 0x1000 }));
    assert_eq!(b.uart_intid, Some(33));
    assert_eq!(b.gic, Some(Gic::V2 { dist: 0x0800_0000, cpu: 0x0801_0000 }));
    assert_eq!(b.timer_intid, 27);
    assert_eq!(b.psci, Some(PsciConduit::Hvc));
    assert_eq!(b.virtio_mmio.as_slice().len(), 32);
    assert_eq!(b.virtio_mmio.as_slice()[0], Region { base: 0x0a00_0000, size: 0x200 });
    // Each slot's interrupt, by the same index: slot n at 0x0a00_0000 + 0x200 n is SPI 16 + n.
    for (i, r) in b.virtio_mmio.as_slice().iter().enumerate() {
        assert_eq!(b.virtio_intids[i], 48 + ((r.base - 0x0a00_0000) / 0x200) as u32, "slot {i}");
    }
    assert!(b.sdhci_emmc2.is_none() && b.mailbox.is_none());
    assert!(b.spin_table.as_slice().is_empty()); // virt starts cores through PSCI
}

#[test]
fn qemu_virt_gicv3_smp4() {
    let b = parse("qemu-virt-gicv3-smp4.dtb"); // -M virt,gic-version=3 -smp 4 -m 1G
    assert_eq!(b.memory.total(), 1 << 30);
    assert_eq!(b.gic, Some(Gic::V3 { dist: 0x0800_0000, redist: 0x080a_0000 }));
}

#[test]
fn raspberry_pi_4() {
    // bcm2711-rpi-4-b.dtb as QEMU -M raspi4b -dtb passes it: /memory filled in, NOPs left
    // behind by the edit. The real firmware edits the tree the same way.
    let b = parse("qemu-raspi4b.dtb");
    assert_eq!(b.kind, BoardKind::Rpi4);
    assert_eq!(b.memory.as_slice(), &[Region { base: 0, size: 0x3c00_0000 }]);
    // Bus addresses 0x7e...... under /soc become 0xfe......: the ranges were applied.
    assert_eq!(b.uart, Some(Region { base: 0xfe20_1000, size: 0x200 }));
    assert_eq!(b.uart_intid, Some(32 + 0x79));
    assert_eq!(b.gic, Some(Gic::V2 { dist: 0xff84_1000, cpu: 0xff84_2000 }));
    assert_eq!(b.sdhci_legacy.map(|r| r.base), Some(0xfe30_0000));
    // EMMC2 sits on its own bus, /emmc2bus, with its own ranges.
    assert_eq!(b.sdhci_emmc2.map(|r| r.base), Some(0xfe34_0000));
    assert_eq!(b.mailbox.map(|r| r.base), Some(0xfe00_b880));
    assert_eq!(b.watchdog.map(|r| r.base), Some(0xfe10_0000));
    assert_eq!(b.timer_intid, 27);
    assert!(b.psci.is_none());
    // Cores 1-3 wait in the firmware's stub, polling their release addresses.
    let release: Vec<u64> = b.spin_table.as_slice().iter().map(|r| r.base).collect();
    assert_eq!(release, [0xe0, 0xe8, 0xf0]);
    // The spin-table page the firmware's stub lives in is reserved.
    assert!(b.reserved.as_slice().contains(&Region { base: 0, size: 0x1000 }));
}

#[test]
fn raspberry_pi_4_as_shipped_has_no_memory_until_the_firmware_fills_it() {
    let path = format!("{}/testdata/bcm2711-rpi-4-b.dtb", env!("CARGO_MANIFEST_DIR"));
    let mut bytes = std::fs::read(path).unwrap();
    assert_eq!(BoardInfo::parse(&mut bytes).err(), Some(DtError::NoMemory));
}

#[test]
fn refuses_what_is_not_a_supported_dtb() {
    assert_eq!(BoardInfo::parse(&mut [0u8; 64]).err(), Some(DtError::NotADtb));
    assert_eq!(BoardInfo::parse(&mut []).err(), Some(DtError::NotADtb));
    // A real tree whose structure block claims to run past the end of the blob.
    let mut virt = std::fs::read(format!("{}/testdata/qemu-virt.dtb", env!("CARGO_MANIFEST_DIR"))).unwrap();
    virt[36..40].copy_from_slice(&u32::MAX.to_be_bytes());
    assert_eq!(BoardInfo::parse(&mut virt).err(), Some(DtError::NotADtb));
    // Every truncation of a real tree is refused or parsed, never a panic.
    let pi = std::fs::read(format!("{}/testdata/qemu-raspi4b.dtb", env!("CARGO_MANIFEST_DIR"))).unwrap();
    for cut in (0..pi.len()).step_by(97) {
        let mut t = pi[..cut].to_vec();
        assert!(BoardInfo::parse(&mut t).is_err());
    }
}

/// Damaged trees: a bit flipped anywhere in the blob (3,000 places, the same each run) and
/// each bit of the header and of the reservation block's start, one at a time. Each is
/// refused with an error or read as some tree; none panics (the `fdt` crate's node
/// iterators panicked on 289 of the 3,000 flips in the structure block, before the walk
/// was exo's own).
#[test]
fn a_damaged_tree_is_refused_or_read_never_a_panic() {
    for name in ["qemu-raspi4b.dtb", "qemu-virt.dtb"] {
        let path = format!("{}/testdata/{name}", env!("CARGO_MANIFEST_DIR"));
        let good = std::fs::read(&path).unwrap();
        let rsv = u32::from_be_bytes(good[16..20].try_into().unwrap()) as usize;
        let mut x = 0x2545_f491_4f6c_dd1du64; // xorshift64
        let random = std::iter::repeat_with(|| {
            x ^= x << 13;
            x ^= x >> 7;
            x ^= x << 17;
            (x as usize % good.len(), (x >> 32) as u8 % 8)
        });
        let header = (0..64 * 8).map(|bit| (bit / 8, (bit % 8) as u8));
        let rsv = (0..32 * 8).map(|bit| (rsv + bit / 8, (bit % 8) as u8));
        let (mut refused, mut read) = (0, 0);
        for (at, bit) in random.take(3000).chain(header).chain(rsv) {
            let mut bytes = good.clone();
            bytes[at] ^= 1 << bit;
            match std::panic::catch_unwind(move || BoardInfo::parse(&mut bytes).is_ok()) {
                Ok(true) => read += 1,
                Ok(false) => refused += 1,
                Err(_) => panic!("{name}: bit {bit} of byte {at} flipped: the parse panicked"),
            }
        }
        assert!(refused > 0 && read > 0, "{name}: {refused} refused, {read} read");
    }
}
