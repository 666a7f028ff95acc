//! A board: the drivers one device tree asks for, wired together.

use crate::drivers::bcm2835_wdt::Watchdog;
use crate::drivers::gicv2::GicV2;
use crate::drivers::pl011::Pl011;
pub use crate::dt::RPI4_UART_CLOCK;
use crate::dt::{BoardInfo, Gic, Region, Regions};

/// The Pi 4's UART0: where to say that there is no device tree, since a Pi (real or QEMU
/// `raspi4b` without `-dtb`) is the only board that can start exo without one.
pub const RPI4_UART0: u64 = 0xfe20_1000;
pub const CONSOLE_BAUD: u32 = 115_200;

pub struct Board {
    pub info: BoardInfo,
    pub uart: Pl011,
    pub gic: GicV2,
    pub watchdog: Option<Watchdog>,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum BoardError {
    NoConsole,
    NoInterruptController,
    /// GICv3 is described, and exo drives only GICv2 (QEMU virt's default, the Pi's GIC-400).
    UnsupportedGic,
}

impl BoardError {
    /// What to tell the person at the console.
    pub fn why(self) -> &'static str {
        match self {
            BoardError::NoConsole => "the device tree names no PL011 UART",
            BoardError::NoInterruptController => "the device tree names no GIC",
            BoardError::UnsupportedGic => "only GICv2 is supported (QEMU: gic-version=2)",
        }
    }
}

/// Says on the Pi 4's UART0 why exo cannot boot, then parks the core: the last word when
/// there is no usable device tree, so nothing else is known about the board.
///
/// # Safety
/// [`RPI4_UART0`] must be mapped as device memory at `va`.
pub unsafe fn say_cannot_boot(va: usize, why: &str) -> ! {
    use crate::Console;
    // SAFETY: the caller mapped the Pi's UART0 at `va`.
    let uart = unsafe { Pl011::new(va) };
    uart.init(Some(RPI4_UART_CLOCK), CONSOLE_BAUD);
    for s in ["\nexo: cannot boot: ", why, "\n(QEMU raspi4b needs -dtb bcm2711-rpi-4-b.dtb)\n"] {
        uart.write_bytes(s.as_bytes());
    }
    loop {
        aarch64_cpu::asm::wfe();
    }
}

impl BoardInfo {
    /// RAM the kernel must not hand out: its own image, the device tree, an initrd, and
    /// what the device tree reserves.
    pub fn taken(&self, image: Region, dtb: Region) -> Regions<24> {
        let mut taken = Regions::default();
        for r in [image, dtb].iter().chain(&self.initrd).chain(self.reserved.as_slice()) {
            taken.push(*r);
        }
        taken
    }

    /// MMIO the kernel must map (Device memory) before calling [`Board::new`].
    pub fn device_regions(&self) -> Regions<48> {
        let mut out = Regions::default();
        let mut add = |r: Option<Region>| {
            if let Some(r) = r {
                out.push(r);
            }
        };
        add(self.uart);
        match self.gic {
            Some(Gic::V2 { dist, cpu }) => {
                add(Some(Region { base: dist, size: 0x1000 }));
                add(Some(Region { base: cpu, size: 0x2000 }));
            }
            Some(Gic::V3 { dist, redist }) => {
                add(Some(Region { base: dist, size: 0x10000 }));
                add(Some(Region { base: redist, size: 0x20000 }));
            }
            None => {}
        }
        for r in self.virtio_mmio.as_slice() {
            add(Some(*r));
        }
        add(self.sdhci_legacy);
        add(self.sdhci_emmc2);
        add(self.mailbox);
        add(self.videocore_memory());
        add(self.watchdog);
        out
    }
}

impl Board {
    /// Wires the drivers. `virt` maps a physical MMIO address to where the kernel mapped it.
    ///
    /// # Safety
    /// Every region of [`BoardInfo::device_regions`] must be mapped as device memory at
    /// `virt(base)` for the rest of the program.
    pub unsafe fn new(info: BoardInfo, virt: impl Fn(u64) -> usize) -> Result<Board, BoardError> {
        let uart = info.uart.ok_or(BoardError::NoConsole)?;
        let (dist, cpu) = match info.gic {
            Some(Gic::V2 { dist, cpu }) => (dist, cpu),
            Some(Gic::V3 { .. }) => return Err(BoardError::UnsupportedGic),
            None => return Err(BoardError::NoInterruptController),
        };
        // SAFETY: the UART is one of the device regions the caller mapped at `virt(base)`.
        let console = unsafe { Pl011::new(virt(uart.base)) };
        // SAFETY: the distributor and the CPU interface are device regions the caller mapped.
        let gic = unsafe { GicV2::new(virt(dist), virt(cpu)) };
        let watchdog = info.watchdog.map(|w| {
            // SAFETY: the PM block is a device region the caller mapped at `virt(w.base)`.
            unsafe { Watchdog::new(virt(w.base)) }
        });
        let board = Board { info, uart: console, gic, watchdog };
        let clock = info.kind.uart_clock();
        board.uart.init(clock, CONSOLE_BAUD);
        Ok(board)
    }
}

impl Board {
    /// Switches the machine off: with `status` through semihosting `SYS_EXIT` if
    /// `semihosting` (only when a host is attached — QEMU with `-semihosting` — or `hlt` is
    /// an undefined instruction); else the board's way, PSCI `SYSTEM_OFF` where the device
    /// tree names PSCI (QEMU virt), else a watchdog reset (a Pi). Returns if nothing worked.
    pub fn power_off(&self, semihosting: bool, status: u32) {
        #[cfg(target_arch = "aarch64")]
        if semihosting {
            let block: [u64; 2] = [0x20026, status as u64]; // ADP_Stopped_ApplicationExit
                                                            // SAFETY: SYS_EXIT reads the two-word block through x1 and does not return when
                                                            // a host is attached (the caller says one is); the block outlives the call.
            unsafe {
                core::arch::asm!("hlt #0xf000", in("x0") 0x18u64, in("x1") &block as *const _ as u64, options(nostack));
            }
        }
        let _ = (semihosting, status);
        if let Some(conduit) = self.info.psci {
            crate::smp::psci_system_off(conduit);
        }
        if let Some(wdt) = &self.watchdog {
            wdt.reset(true);
            for _ in 0..10_000_000 {
                core::hint::spin_loop();
            }
        }
    }
}
