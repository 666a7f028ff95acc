//! Memory: the kernel's address-space layout, its own tables and the kernel heap (the
//! physical memory map is `exo_bsp::memmap`).
//!
//! Kernel virtual layout (TTBR1, 48-bit):
//!
//! | range                               | what                                         |
//! |-------------------------------------|----------------------------------------------|
//! | `0xffff_0000_0000_0000 + PA`        | physmap: all RAM (normal) and MMIO (device)  |
//! | `0xffff_ffff_8000_0000 ..`          | the kernel image at its link address         |
//!
//! The low half (TTBR0) belongs to environments. During boot it briefly holds an identity
//! map of the image and the DTB so the MMU can be switched on under the running code.

pub mod frames;
pub mod kmap;
pub mod uvm;

#[cfg(target_os = "none")]
pub mod heap;

pub const PAGE_SIZE: u64 = 4096;
/// Where physical address 0 appears in the kernel's address space.
pub const PHYSMAP_BASE: u64 = 0xffff_0000_0000_0000;
/// The kernel's link address (see `link.ld`).
pub const KERNEL_VMA: u64 = 0xffff_ffff_8000_0000;

/// The kernel's view of physical address `pa` (RAM or mapped MMIO). Host unit tests use
/// host memory as "physical" memory: there addresses map to themselves.
#[inline]
pub const fn phys_to_virt(pa: u64) -> u64 {
    pa + if cfg!(test) { 0 } else { PHYSMAP_BASE }
}

/// The physical address of a kernel address in the physmap or the image (for DMA).
#[cfg(target_os = "none")]
pub fn kva_to_pa(va: usize) -> u64 {
    let va = va as u64;
    if va >= KERNEL_VMA {
        image_pa(va)
    } else {
        va - PHYSMAP_BASE
    }
}

#[cfg(target_os = "none")]
pub use boot::*;

#[cfg(target_os = "none")]
mod boot {
    use super::kmap::{Builder, Kind, MapError, Table};
    use super::{phys_to_virt, KERNEL_VMA, PAGE_SIZE};
    use crate::cell::Global;

    /// From one core's kernel stack to the next: a guard page and 64 KiB (see `link.ld`).
    pub const STACK_STRIDE: u64 = PAGE_SIZE + (64 << 10);

    /// Table pages for the kernel's own tables; enough for the image, the boot identity
    /// map, and a physmap of several GiB in 1 GiB / 2 MiB blocks with ragged edges.
    const POOL_PAGES: usize = 24;

    struct Pool {
        pages: [Table; POOL_PAGES],
        used: usize,
        ttbr1: u64,
    }

    static POOL: Global<Pool> =
        Global::new(Pool { pages: [const { Table([0; 512]) }; POOL_PAGES], used: 0, ttbr1: 0 });

    unsafe extern "C" {
        static __image_start: u8;
        static __text_end: u8;
        static __rodata_end: u8;
        static __stack_guard: u8;
        static __stack_bottom: u8;
        static __image_end: u8;
    }

    /// Addresses of the image's parts, as the running code sees them (physical before the
    /// MMU is on, virtual after): start, end of text, end of rodata, guard, stack, end.
    fn image_marks() -> [u64; 6] {
        [
            &raw const __image_start as u64,
            &raw const __text_end as u64,
            &raw const __rodata_end as u64,
            &raw const __stack_guard as u64,
            &raw const __stack_bottom as u64,
            &raw const __image_end as u64,
        ]
    }

    /// Bytes of the image in memory, BSS and stack included.
    pub fn image_size() -> u64 {
        let m = image_marks();
        m[5] - m[0]
    }

    #[repr(C)]
    pub struct EarlyTables {
        ttbr1: u64,
        ttbr0: u64,
    }

    /// Called from `boot.S` with the MMU off, at the physical load address. Builds TTBR1
    /// (the image at `KERNEL_VMA`, with per-section permissions and an unmapped stack guard)
    /// and TTBR0 (identity: the image and the DTB, for the switch-over). Returns zeros on
    /// failure, which parks the core: nothing can be printed yet.
    #[unsafe(no_mangle)]
    extern "C" fn early_map(phys_base: u64, dtb: u64) -> EarlyTables {
        // SAFETY: only core 0 runs yet, MMU off (no exclusive accesses: see `unlocked`).
        early_map_inner(unsafe { POOL.unlocked() }, phys_base, dtb)
            .unwrap_or(EarlyTables { ttbr1: 0, ttbr0: 0 })
    }

    fn early_map_inner(p: &mut Pool, phys: u64, dtb: u64) -> Result<EarlyTables, MapError> {
        let [start, text, ro, guard, stack, end] = image_marks();
        let mut b = Builder::new(&mut p.pages, 0, 0);
        let ttbr1 = b.new_table()?;
        let va = |a: u64| KERNEL_VMA + (a - start);
        let pa = |a: u64| phys + (a - start);
        b.map(ttbr1, va(start), pa(start), text - start, Kind::Text)?;
        b.map(ttbr1, va(text), pa(text), ro - text, Kind::ReadOnly)?;
        b.map(ttbr1, va(ro), pa(ro), guard - ro, Kind::Data)?;
        for s in (stack..end).step_by(STACK_STRIDE as usize) {
            b.map(ttbr1, va(s), pa(s), STACK_STRIDE - PAGE_SIZE, Kind::Data)?;
            // guards between
        }

        let ttbr0 = b.new_table()?;
        const BLOCK: u64 = 2 << 20;
        let block_range = |from: u64, to: u64| (from & !(BLOCK - 1), to.next_multiple_of(BLOCK));
        let (lo, hi) = block_range(phys, phys + (end - start));
        b.map(ttbr0, lo, lo, hi - lo, Kind::Boot)?;
        if let Some(len) = dtb_size(dtb) {
            let (lo, hi) = block_range(dtb, dtb + len);
            b.map(ttbr0, lo, lo, hi - lo, Kind::Boot)?;
        }
        p.used = b.used;
        p.ttbr1 = ttbr1;
        Ok(EarlyTables { ttbr1, ttbr0 })
    }

    /// The DTB's `totalsize`, when `pa` holds a DTB. Only aligned 4-byte reads: with the MMU
    /// off, memory is Device memory and an unaligned access faults.
    fn dtb_size(pa: u64) -> Option<u64> {
        if pa == 0 || !pa.is_multiple_of(8) {
            return None;
        }
        // SAFETY: the loader hands over a DTB pointer in x0 or nothing useful; reading a
        // header word of RAM at an 8-byte aligned address is harmless either way.
        let magic = u32::from_be(unsafe { (pa as *const u32).read_volatile() });
        // SAFETY: the second header word, in the same aligned 8 bytes.
        let size = u32::from_be(unsafe { ((pa + 4) as *const u32).read_volatile() });
        (magic == 0xd00d_feed && size <= (16 << 20)).then_some(size as u64)
    }

    /// The DTB the loader passed, read through the boot identity map (call before
    /// [`finish_boot_map`]).
    pub fn boot_dtb(dtb: u64) -> Option<&'static mut [u8]> {
        let size = dtb_size(dtb)?;
        // SAFETY: `early_map` identity-mapped these bytes read-write, they are RAM the
        // loader gave us, and nothing else refers to them.
        Some(unsafe { core::slice::from_raw_parts_mut(dtb as *mut u8, size as usize) })
    }

    /// Adds the physmap to the kernel's tables: every RAM region as normal memory and every
    /// device region as Device memory; then drops the boot identity map (TTBR0 walks off
    /// until an environment runs).
    pub fn finish_boot_map(
        phys_base: u64,
        ram: &[exo_bsp::dt::Region],
        devices: &[exo_bsp::dt::Region],
    ) -> Result<(), MapError> {
        let offset = KERNEL_VMA - phys_base;
        IMAGE_OFFSET.store(offset, core::sync::atomic::Ordering::Relaxed);
        POOL.with(|p| {
            let mut b = Builder::new(&mut p.pages, p.used, offset);
            for r in ram {
                // Its whole pages (maybe none); a device region's partial ones are mapped whole.
                let base = r.base.next_multiple_of(PAGE_SIZE);
                let size = ((r.base + r.size) & !(PAGE_SIZE - 1)).saturating_sub(base);
                b.map(p.ttbr1, phys_to_virt(base), base, size, Kind::Data)?;
            }
            for r in devices {
                let base = r.base & !(PAGE_SIZE - 1);
                let end = (r.base + r.size).next_multiple_of(PAGE_SIZE);
                b.map(p.ttbr1, phys_to_virt(base), base, end - base, Kind::Device)?;
            }
            p.used = b.used;
            Ok(())
        })?;
        crate::arch::drop_identity_map();
        Ok(())
    }

    /// An all-invalid root table: TTBR0 while no environment (or one without tables) runs.
    static EMPTY_ROOT: Table = Table([0; 512]);
    static IMAGE_OFFSET: core::sync::atomic::AtomicU64 = core::sync::atomic::AtomicU64::new(0);

    /// Physical address of something in the kernel image.
    pub fn image_pa(va: u64) -> u64 {
        va - IMAGE_OFFSET.load(core::sync::atomic::Ordering::Relaxed)
    }

    /// Physical address of [`EMPTY_ROOT`].
    pub fn empty_root() -> u64 {
        image_pa(&EMPTY_ROOT as *const Table as u64)
    }
}
