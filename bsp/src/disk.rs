//! The board's disk: whichever block controller the device tree and a probe find.

use crate::drivers::bcm2835_mbox::{self, Mailbox, MboxBuffer, MboxError};
use crate::drivers::sdhci::{self, Controller, Sdhci};
use crate::drivers::virtio_blk::VirtioBlk;
use crate::dt::BoardInfo;
use crate::{BlockDevice, BlockError};

/// Memory a disk driver may use for DMA: physically contiguous, zeroed — [`DMA_BYTES`] of
/// it, owned by the driver for good. Cache-coherent with the device on QEMU's virtio; on a
/// Raspberry Pi it may be ordinary cacheable RAM (the mailbox cleans and invalidates the
/// lines it hands to the VideoCore itself).
pub struct Dma {
    pub va: *mut u8,
    pub pa: u64,
}

pub const DMA_BYTES: usize = crate::drivers::virtio_blk::DMA_BYTES;
const _: () = assert!(DMA_BYTES >= bcm2835_mbox::BUFFER_BYTES);

pub enum Disk {
    Virtio(VirtioBlk),
    /// An SD card behind one of the Pi's SDHCI controllers (PIO; no DMA).
    Sdhci(Sdhci),
}

/// What [`Disk::partitions`] found, as the boot log says it: "virtio-blk (64 MiB), 2
/// partition(s)".
pub struct Summary {
    name: &'static str,
    mib: u64,
    table: Result<usize, &'static str>,
}

impl core::fmt::Display for Summary {
    fn fmt(&self, f: &mut core::fmt::Formatter) -> core::fmt::Result {
        match self.table {
            Ok(n) => write!(f, "{} ({} MiB), {n} partition(s)", self.name, self.mib),
            Err(why) => write!(f, "{} ({} MiB), partition table: {why}", self.name, self.mib),
        }
    }
}

/// What [`Search::finish`] tried on the SD controllers, for the boot log: one entry
/// per controller probed, in order (EMMC2, then the legacy EMMC).
#[derive(Clone, Copy, Debug, Default)]
pub struct ProbeLog {
    sd: [Option<sdhci::Probe>; 2],
}

impl ProbeLog {
    pub fn sd(&self) -> impl Iterator<Item = &sdhci::Probe> {
        self.sd.iter().flatten()
    }
}

impl Search {
    /// Ends the search: the virtio device, or the first SD controller (in [`Disk::search`]'s
    /// order) whose card initialises, once its power has ramped up. `log` records what each
    /// SD controller tried said (the bsp has no logger; the kernel prints the entries).
    pub fn finish(self, log: &mut ProbeLog) -> Option<Disk> {
        if let Some(d) = self.virtio {
            return Some(Disk::Virtio(d));
        }
        let mut found = None;
        for (i, s) in self.sd.into_iter().enumerate() {
            match s {
                Some(s) if found.is_some() => s.abandon(),
                Some(s) => {
                    let (probe, sd) = s.finish();
                    log.sd[i] = Some(probe);
                    found = sd.map(Disk::Sdhci);
                }
                None => {}
            }
        }
        found
    }
}

/// A search for the disk begun by [`Disk::search`]: a virtio block device found, or the SD
/// controllers' cards powered up and ramping (each needs a millisecond before its first
/// command), so that the kernel can do other work until [`Search::finish`].
pub struct Search {
    virtio: Option<VirtioBlk>,
    sd: [Option<sdhci::Starting>; 2],
}

impl Disk {
    /// Begins to find the disk: the first virtio block device on `virt`; on a Raspberry
    /// Pi, an SD card on EMMC2 (the slot of a real Pi 4), else on the legacy EMMC (where
    /// QEMU `raspi4b` attaches `-drive if=sd`). Both SD controllers are reset and their
    /// cards powered now, whichever will hold the card; the one not chosen is turned off
    /// again by [`Search::finish`]. `virt` maps a physical MMIO address to where the kernel
    /// mapped it; `virt_to_phys` turns a kernel address of RAM into a physical one (for
    /// DMA).
    ///
    /// # Safety
    /// Every region of [`BoardInfo::device_regions`] must be mapped at `virt(base)`; `dma`
    /// must satisfy [`Dma`]'s description; `virt_to_phys` must be right for every buffer
    /// later passed to the disk.
    pub unsafe fn search(
        info: &BoardInfo,
        virt: impl Fn(u64) -> usize,
        dma: Dma,
        virt_to_phys: fn(usize) -> u64,
    ) -> Search {
        let mut search = Search { virtio: None, sd: [None, None] };
        for (slot, &intid) in info.virtio_mmio.as_slice().iter().zip(&info.virtio_intids) {
            // SAFETY: virtio-mmio slots are device regions, which the caller mapped at
            // `virt(base)`; the DMA memory is ours, as `Dma` describes.
            if let Some(mut d) = unsafe { VirtioBlk::probe(virt(slot.base), dma.va, dma.pa, virt_to_phys) } {
                d.intid = (intid != 0).then_some(intid);
                search.virtio = Some(d);
                return search;
            }
        }
        // SAFETY: the mailbox is a device region, which the caller mapped at `virt(base)`.
        let mailbox = info.mailbox.map(|m| unsafe { Mailbox::new(virt(m.base)) });
        let bus = info.soc_dma.and_then(|w| w.to_bus(dma.pa, bcm2835_mbox::BUFFER_BYTES as u64));
        let firmware_hz = |c: Controller| {
            let mailbox = mailbox.as_ref()?;
            let Some(bus) = bus.and_then(|b| u32::try_from(b).ok()) else {
                return Some(Err(MboxError::BadBuffer));
            };
            let buf = MboxBuffer { va: dma.va as *mut u32, bus };
            // SAFETY: the DMA memory is ours and unused by anything else on this path (no
            // virtio device was found), and `bus` is its VideoCore address.
            Some(unsafe { mailbox.get_clock_rate(buf, c.firmware_clock()) })
        };
        let controllers = [(Controller::Emmc2, info.sdhci_emmc2), (Controller::Legacy, info.sdhci_legacy)];
        for (i, (c, region)) in controllers.into_iter().enumerate() {
            // SAFETY: the controller is a device region, which the caller mapped at
            // `virt(base)`, and nothing else drives its registers.
            search.sd[i] = region.map(|r| unsafe { Sdhci::start(virt(r.base), c, firmware_hz(c)) });
        }
        search
    }

    /// Reads sector 0 and parses its MBR: the four primary partitions, or why not (for the
    /// boot log).
    pub fn partition_table(&mut self) -> Result<[Option<exo_abi::Partition>; 4], &'static str> {
        let mut sector0 = [0u8; 512];
        self.read(0, &mut [&mut sector0[..]]).map_err(|_| "unreadable")?;
        exo_format::mbr::parse(&sector0, Some(self.sectors())).map_err(|_| "no valid MBR")
    }

    /// The partitions as the kernel publishes them (empty entries where there are none, or
    /// no readable table), and the boot log's line about the disk.
    pub fn partitions(&mut self) -> ([exo_abi::Partition; 4], Summary) {
        let table = self.partition_table();
        let parts = table.unwrap_or_default().map(|p| p.unwrap_or_default());
        let table = table.map(|t| t.iter().flatten().count());
        (parts, Summary { name: self.name(), mib: self.sectors() >> 11, table })
    }

    /// Reads into `bufs` in order from `lba`, or (`write`) writes them there.
    pub fn transfer(&mut self, lba: u64, bufs: &mut [&mut [u8]], write: bool) -> Result<(), BlockError> {
        if write {
            // SAFETY: `&mut [u8]` and `&[u8]` have the same layout; the data is only read.
            self.write(lba, unsafe { core::slice::from_raw_parts(bufs.as_ptr() as *const &[u8], bufs.len()) })
        } else {
            self.read(lba, bufs)
        }
    }

    /// Starts moving `bufs` as [`Disk::transfer`] does. `Ok(true)`: the device goes on in
    /// the background, and [`Disk::poll`] gives the outcome once it is done (virtio-blk);
    /// the buffers must stay put until then. `Ok(false)`: done already (the SD
    /// controllers' PIO, which only the CPU moves; a virtio device without an interrupt).
    pub fn start(&mut self, lba: u64, bufs: &mut [&mut [u8]], write: bool) -> Result<bool, BlockError> {
        match self {
            Disk::Virtio(d) if d.intid.is_some() => d.start(lba, bufs, write).map(|_| true),
            _ => self.transfer(lba, bufs, write).map(|_| false),
        }
    }

    /// The outcome of the transfer [`Disk::start`] left in the background, once it has
    /// ended; `None` before that, or if there is none.
    pub fn poll(&mut self) -> Option<Result<(), BlockError>> {
        match self {
            Disk::Virtio(d) => d.poll(),
            Disk::Sdhci(_) => None,
        }
    }

    /// The interrupt that says a background transfer may have ended, if there is one.
    pub fn intid(&self) -> Option<u32> {
        match self {
            Disk::Virtio(d) => d.intid,
            Disk::Sdhci(_) => None,
        }
    }

    /// What kind of controller this is, for the boot log.
    pub fn name(&self) -> &'static str {
        match self {
            Disk::Virtio(d) if d.legacy() => "virtio-blk (legacy transport)",
            Disk::Virtio(_) => "virtio-blk",
            Disk::Sdhci(d) => match d.controller() {
                Controller::Emmc2 => "sdhci (emmc2)",
                Controller::Legacy => "sdhci (legacy emmc)",
            },
        }
    }
}

impl BlockDevice for Disk {
    fn sectors(&self) -> u64 {
        match self {
            Disk::Virtio(d) => d.sectors(),
            Disk::Sdhci(d) => d.sectors(),
        }
    }

    fn read(&mut self, lba: u64, bufs: &mut [&mut [u8]]) -> Result<(), BlockError> {
        match self {
            Disk::Virtio(d) => d.read(lba, bufs),
            Disk::Sdhci(d) => d.read(lba, bufs),
        }
    }

    fn write(&mut self, lba: u64, bufs: &[&[u8]]) -> Result<(), BlockError> {
        match self {
            Disk::Virtio(d) => d.write(lba, bufs),
            Disk::Sdhci(d) => d.write(lba, bufs),
        }
    }

    fn flush(&mut self) -> Result<(), BlockError> {
        match self {
            Disk::Virtio(d) => d.flush(),
            Disk::Sdhci(d) => d.flush(),
        }
    }
}
