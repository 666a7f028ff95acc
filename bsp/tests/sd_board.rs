//! What the SD driver learns from the Pi 4's device tree: where its controllers and the
//! mailbox are, and how the VideoCore addresses RAM for mailbox messages.
// An integration test sees every dependency of its package; the library target is the
// one that must use them all (see `[workspace.lints]` in the root Cargo.toml).
#![allow(unused_crate_dependencies)]

use exo_bsp::dt::{BoardInfo, DmaWindow};

fn parse(name: &str) -> BoardInfo {
    let path = format!("{}/testdata/{name}", env!("CARGO_MANIFEST_DIR"));
    let mut bytes = std::fs::read(&path).unwrap_or_else(|e| panic!("{path}: {e}"));
    BoardInfo::parse(&mut bytes).unwrap_or_else(|e| panic!("{name}: {e:?}"))
}

#[test]
fn pi4_videocore_sees_the_first_gib_at_0xc0000000() {
    let b = parse("qemu-raspi4b.dtb");
    let w = b.soc_dma.expect("/soc has dma-ranges");
    assert_eq!(w, DmaWindow { bus: 0xc000_0000, cpu: 0, size: 0x4000_0000 });
    assert_eq!(w.to_bus(0x0123_4560, 64), Some(0xc123_4560));
    // The last bytes of the window, and the first ones past it.
    assert_eq!(w.to_bus(0x3fff_ffc0, 64), Some(0xffff_ffc0));
    assert_eq!(w.to_bus(0x3fff_ffe0, 64), None);
    assert_eq!(w.to_bus(0x4000_0000, 16), None);
    assert_eq!(w.to_bus(u64::MAX - 8, 64), None);
}

#[test]
fn virt_has_no_videocore_window() {
    let b = parse("qemu-virt.dtb");
    assert!(b.soc_dma.is_none());
}

#[test]
fn pi4_sd_controllers_are_inside_the_regions_the_kernel_maps() {
    let b = parse("qemu-raspi4b.dtb");
    let regions = b.device_regions();
    for r in [b.sdhci_emmc2, b.sdhci_legacy, b.mailbox] {
        let r = r.expect("present on the Pi 4");
        // The driver touches registers up to 0xff (SDHCI) and 0x3f (mailbox).
        let need = if r.base == 0xfe00_b880 { 0x40 } else { 0x100 };
        assert!(r.size >= need, "{r:?} is too small");
        assert!(regions.as_slice().iter().any(|m| m.base <= r.base && r.base + need <= m.end()), "{r:?}");
    }
}
