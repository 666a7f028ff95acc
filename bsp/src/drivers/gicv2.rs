//! GICv2 (QEMU `virt`'s default, the Pi 4's GIC-400): distributor plus CPU interface.
//!
//! Shared interrupts are routed to CPU 0 in group 0; each core sets up its own banked part
//! (SGIs, PPIs, its CPU interface) with `init_cpu`, and cores signal each other with SGIs. On a GIC without security extensions (QEMU) that
//! is what the CPU interface signals as IRQ; where firmware has made the non-secure view the
//! only one we can see (a real Pi 4), the group writes are ignored and the same enable bits
//! turn on group 1 instead.

use core::sync::atomic::{AtomicU8, Ordering};

use tock_registers::interfaces::{Readable, Writeable};
use tock_registers::register_structs;
use tock_registers::registers::{ReadOnly, ReadWrite, WriteOnly};

use crate::IrqController;

register_structs! {
    DistRegs {
        (0x000 => ctlr: ReadWrite<u32>),
        (0x004 => typer: ReadOnly<u32>),
        (0x008 => _r0),
        (0x080 => igroupr: [ReadWrite<u32>; 32]),
        (0x100 => isenabler: [ReadWrite<u32>; 32]),
        (0x180 => icenabler: [ReadWrite<u32>; 32]),
        (0x200 => _r1),
        (0x280 => icpendr: [ReadWrite<u32>; 32]),
        (0x300 => _r2),
        (0x400 => ipriorityr: [ReadWrite<u32>; 255]),
        (0x7fc => _r3),
        (0x800 => itargetsr: [ReadWrite<u32>; 255]),
        (0xbfc => _r4),
        (0xf00 => sgir: WriteOnly<u32>),
        (0xf04 => @END),
    }
}

register_structs! {
    CpuRegs {
        (0x00 => ctlr: ReadWrite<u32>),
        (0x04 => pmr: ReadWrite<u32>),
        (0x08 => bpr: ReadWrite<u32>),
        (0x0c => iar: ReadOnly<u32>),
        (0x10 => eoir: WriteOnly<u32>),
        (0x14 => @END),
    }
}

pub struct GicV2 {
    dist: *const DistRegs,
    cpu: *const CpuRegs,
    /// Each core's CPU-interface bit, by core index (0: that core has not set up yet).
    cores: [AtomicU8; 8],
}

// SAFETY: MMIO reached only through volatile register accesses.
unsafe impl Send for GicV2 {}
// SAFETY: `&GicV2` only reaches the distributor and CPU interface through volatile
// single-register accesses: the CPU interface is banked per core, and of the distributor
// the cores share, after `init` only the set/clear-enable and SGI registers are written,
// each write complete in itself.
unsafe impl Sync for GicV2 {}

impl GicV2 {
    /// # Safety
    /// Both addresses must be mapped GICv2 register frames, valid for the program's life.
    pub const unsafe fn new(dist: usize, cpu: usize) -> Self {
        Self {
            dist: dist as *const DistRegs,
            cpu: cpu as *const CpuRegs,
            cores: [const { AtomicU8::new(0) }; 8],
        }
    }

    fn d(&self) -> &DistRegs {
        // SAFETY: `new` was given the mapped distributor frame, valid for the program's life;
        // its registers are only reached through volatile accesses.
        unsafe { &*self.dist }
    }

    fn c(&self) -> &CpuRegs {
        // SAFETY: `new` was given the mapped CPU-interface frame, valid for the program's
        // life; its registers are only reached through volatile accesses.
        unsafe { &*self.cpu }
    }

    /// Number of interrupt lines the distributor implements (a multiple of 32).
    pub fn lines(&self) -> usize {
        (((self.d().typer.get() & 0x1f) as usize) + 1) * 32
    }

    /// The distributor: everything off, every line group 0, equal priority, targeted at
    /// CPU 0; then on. Each core then sets up its own part with `init_cpu`.
    pub fn init(&self) {
        let d = self.d();
        d.ctlr.set(0);
        let words = (self.lines() / 32).min(32);
        for i in 0..words {
            d.icenabler[i].set(!0);
            d.icpendr[i].set(!0);
            d.igroupr[i].set(0);
        }
        for i in 0..(self.lines() / 4).min(255) {
            d.ipriorityr[i].set(0xa0a0_a0a0);
            if i >= 8 {
                d.itargetsr[i].set(0x0101_0101); // SPIs to CPU 0 (SGI/PPI targets are fixed)
            }
        }
        d.ctlr.set(0b11); // enable group 0 and group 1 forwarding
    }

    /// The calling core's banked part: its SGIs and PPIs group 0 at the common priority, and
    /// its CPU interface on. From then on core `core` (its index) counts as up.
    pub fn init_cpu(&self, core: usize) {
        let d = self.d();
        d.igroupr[0].set(0);
        for i in 0..8 {
            d.ipriorityr[i].set(0xa0a0_a0a0);
        }
        d.isenabler[0].set(0xffff); // SGIs (the PPIs are enabled one by one)
        let c = self.c();
        c.pmr.set(0xff);
        c.bpr.set(0);
        c.ctlr.set(0b111); // EnableGrp0 | EnableGrp1 | AckCtl
                           // ITARGETSR0 reads as the core's own bit (GICv2 banks it; 0 on a one-core GIC).
        let bit = (d.itargetsr[0].get() as u8).max(1 << (core % 8));
        self.cores[core % 8].store(bit, Ordering::Release);
    }

    /// The cores that have set up their CPU interface, as a mask by core index.
    pub fn cores_up(&self) -> u8 {
        (0..8).filter(|&c| self.cores[c].load(Ordering::Acquire) != 0).fold(0, |m, c| m | 1 << c)
    }

    /// Raises SGI `id` (0..16) on the cores in `cores` (a mask by core index) that are up.
    pub fn send_sgi(&self, cores: u8, id: u32) {
        let bits =
            (0..8).filter(|c| cores & 1 << c != 0).fold(0, |m, c| m | self.cores[c].load(Ordering::Relaxed));
        if bits != 0 {
            self.d().sgir.set(((bits as u32) << 16) | (id & 0xf));
        }
    }
}

impl IrqController for GicV2 {
    fn enable(&self, intid: u32) {
        self.d().isenabler[(intid / 32) as usize % 32].set(1 << (intid % 32));
    }

    fn disable(&self, intid: u32) {
        self.d().icenabler[(intid / 32) as usize % 32].set(1 << (intid % 32));
    }

    /// For an SGI the value also holds the sending core (bits 10..13), which `end` needs.
    fn acknowledge(&self) -> Option<u32> {
        let iar = self.c().iar.get() & 0x1fff;
        (iar & 0x3ff < 1020).then_some(iar)
    }

    fn end(&self, intid: u32) {
        self.c().eoir.set(intid);
    }
}
