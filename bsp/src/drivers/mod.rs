//! One driver per piece of silicon, each implementing one of the crate's interface traits.

pub mod bcm2835_mbox;
pub mod bcm2835_wdt;
pub mod generic_timer;
pub mod genet;
pub mod gicv2;
pub mod pl011;
pub mod sdhci;
pub mod virtio_blk;
pub mod virtio_mmio;
pub mod virtio_net;
