//! From boot to the first environment: the public tables, and `init`.
//!
//! The frame table, the environment table and the kernel information page are carved from
//! free memory and marked PUBLIC, so every environment can map them read-only. Then the
//! `init` program embedded in the image is loaded the way a libOS would load a child:
//! frames owned by init, tables bound from them, entries checked like any other.

use exo_abi::pte::{Perm, Pte};
use exo_abi::{frame, EnvInfo, FrameEntry, KernelInfo, INIT_STACK_SIZE, INIT_STACK_TOP};
use exo_bsp::dt::BoardInfo;
use exo_format::elf::{Elf, ElfError, Page};

use crate::env::{Ctx, Kernel, MAX_ENVS, NONE};
use crate::mm::frames::FrameTable;
use crate::{cell::Aligned, mm::phys_to_virt};
use exo_bsp::memmap::MemoryMap;

/// The init program, embedded by `cargo xtask build` (empty when built without one). Page
/// aligned, so that its segments are copied a word at a time (`memcpy` goes byte by byte
/// from a misaligned source: 3 million instructions of the boot).
static INIT_ELF: &[u8] = &INIT_IMAGE.0;
static INIT_IMAGE: &Aligned<[u8]> = &Aligned(*include_bytes!(concat!(env!("OUT_DIR"), "/init.elf")));

/// `n` values of `T`, all zero, in whole pages taken from free memory, and where they lie.
fn take_public<T>(map: &mut MemoryMap, n: usize) -> (&'static mut [T], u64) {
    let bytes = (n * core::mem::size_of::<T>()).next_multiple_of(4096) as u64;
    let r = map.take(bytes).unwrap_or_else(|| panic!("no room for {bytes} bytes of kernel tables"));
    // The range was just removed from the free map, is RAM mapped in the physmap and used
    // for nothing else; `dc zva` zeroes it a cache line per instruction (a byte-wise memset
    // of the 4 MiB frame table was a sixth of raspi4b's boot).
    (0..r.size).step_by(4096).for_each(|off| crate::arch::zero_page(phys_to_virt(r.base + off)));
    // SAFETY: the same range, page-aligned and so aligned for `T`, holds `n` elements (it
    // is `bytes` long); it is all zero now, and every `T` here is plain data valid when all-zero.
    let slice = unsafe { core::slice::from_raw_parts_mut(phys_to_virt(r.base) as *mut T, n) };
    (slice, r.base)
}

/// Builds the frame table and the public pages, and fills in the kernel's state.
pub fn setup(k: &mut Kernel, info: &BoardInfo, mut map: MemoryMap) {
    let ram = info.memory.as_slice();
    let lo = ram.iter().map(|r| r.base).min().unwrap_or(0) & !0xfff;
    // The table covers the screen's framebuffer too, even where it lies beyond RAM.
    let fb =
        crate::console::screen().map_or((0, 0), |f| (f.pa & !0xfff, (f.size as u64).next_multiple_of(4096)));
    let hi = ram.iter().map(|r| r.end()).chain([fb.0 + fb.1]).max().unwrap_or(0);
    let frames = (hi - lo) / 4096;
    let env_bytes = (MAX_ENVS * core::mem::size_of::<EnvInfo>()) as u64;
    let (entries, ft_pa) = take_public::<FrameEntry>(&mut map, frames as usize);
    let (env_info, env_pa) = take_public::<EnvInfo>(&mut map, MAX_ENVS);
    let (kinfo, info_pa) = take_public::<KernelInfo>(&mut map, 1);

    let mut ft = FrameTable::new(entries, lo);
    for (pa, len, kind) in map.frame_marks(ram, lo, hi) {
        ft.set_range(pa, len, kind);
    }
    for (pa, len) in [(ft_pa, frames * 16), (env_pa, env_bytes), (info_pa, 4096)] {
        ft.set_range(pa, len, frame::PUBLIC);
    }
    ft.set_range(fb.0, fb.1, frame::DEVICE);
    let ki = &mut kinfo[0];
    *ki = KernelInfo {
        ram_base: lo,
        frames,
        frame_table: ft_pa,
        frame_table_bytes: frames * 16,
        env_table: env_pa,
        env_table_bytes: env_bytes,
        max_envs: MAX_ENVS as u64,
        counter_hz: exo_bsp::drivers::generic_timer::frequency(),
        tick_hz: crate::irq::TICK_HZ,
        board: info.kind.abi(),
        bootargs_len: info.bootargs().len() as u32,
        fb_base: fb.0,
        fb_bytes: fb.1,
        fb_size: crate::console::screen().map_or([0; 4], |f| [f.width, f.height, f.pitch, 0]),
        // The rest as `take_public` left it, zero: the free list's (`install` publishes
        // it), the bootargs' bytes (just below), the disk's (`disk::attach`).
        ..*ki
    };
    ki.bootargs[..info.bootargs().len()].copy_from_slice(info.bootargs().as_bytes());
    log::info!("frames: {} free of {frames} (frame table at {ft_pa:#x})", ft.free.count);
    k.install(ft, ki, env_info);
}

/// Loads the embedded init program as the first environment. Returns false if there is
/// none or it cannot be loaded (the reason is logged).
pub fn load_init(k: &mut Kernel) -> bool {
    if INIT_ELF.is_empty() {
        log::info!("no init program embedded in this image");
        return false;
    }
    load(k, INIT_ELF).inspect_err(|why| log::error!("cannot start init: {why}")).is_ok()
}

/// Loads `file` as the first environment, born with the whole disk and the screen, and
/// makes it runnable.
fn load(k: &mut Kernel, file: &[u8]) -> Result<(), &'static str> {
    let elf = Elf::parse(file).map_err(ElfError::why)?;
    let slot = k.create(NONE, 0, MAX_ENVS as u32 - 1).map_err(|_| "no environment slot")?;
    let root = new_frame(k, slot)?;
    let id = k.envs[slot].id;
    k.ft.bind_table(id, root, 0).map_err(|_| "bind root")?;
    k.envs[slot].root = root;
    let stack = (INIT_STACK_TOP - INIT_STACK_SIZE..INIT_STACK_TOP).step_by(4096);
    let rw = Perm { write: true, exec: false };
    for page in elf.pages().chain(stack.map(|va| Page { va, perm: rw, at: 0, bytes: &[] })) {
        let pa = map_new_page(k, slot, page.va, page.perm)?;
        let dst = phys_to_virt(pa + page.at as u64) as *mut u8;
        // SAFETY: `Elf::pages` keeps `at + bytes.len()` within the page (a stack page has no
        // bytes), and `pa` is the frame just allocated for init, mapped in the kernel only
        // by the physmap.
        unsafe { core::ptr::copy_nonoverlapping(page.bytes.as_ptr(), dst, page.bytes.len()) };
    }
    let disk = k.info().map_or(0, |i| i.disk_sectors);
    let _ = (disk > 0).then(|| k.bind_whole_disk(slot, disk));
    crate::net::table(|t| t.scope_everything(id.0));
    let fb = k.info().map_or(0..0, |i| i.fb_base..i.fb_base + i.fb_bytes);
    fb.step_by(4096).for_each(|pa| _ = k.ft.get_mut(pa).map(|e| e.owner = id.0)); // init's
    let info = k.info_pa().unwrap_or(0);
    let f = &mut k.envs[slot].frames[Ctx::Own as usize];
    (f.pc, f.sp, f.x[0]) = (elf.entry, INIT_STACK_TOP, info);
    log::info!("init is env {:#x}, {} frames", id.0, k.envs[slot].held);
    k.make_runnable(slot);
    Ok(())
}

fn new_frame(k: &mut Kernel, slot: usize) -> Result<u64, &'static str> {
    k.charge(slot).map_err(|_| "quota")?;
    let pa = k.ft.alloc(k.envs[slot].id, None, true).map_err(|_| "out of memory")?;
    k.owns(slot, pa);
    crate::arch::zero_page(phys_to_virt(pa)); // just taken from the free list
    Ok(pa)
}

/// Maps a fresh zeroed frame at `va` in `slot`'s space, adding tables as needed.
fn map_new_page(k: &mut Kernel, slot: usize, va: u64, perm: Perm) -> Result<u64, &'static str> {
    for level in 0..3 {
        if !k.space(slot).0.get(va, level).map_err(|_| "walk")?.is_valid() {
            let t = new_frame(k, slot)?;
            k.ft.bind_table(k.envs[slot].id, t, level as u8 + 1).map_err(|_| "bind table")?;
            let (mut s, may) = k.space(slot);
            s.set(va, level, Pte::table(t), may).map_err(|_| "link table")?;
        }
    }
    let pa = new_frame(k, slot)?;
    let (mut s, may) = k.space(slot);
    s.set(va, 3, Pte::user_page(pa, perm), may).map_err(|_| "map page")?;
    Ok(pa)
}
