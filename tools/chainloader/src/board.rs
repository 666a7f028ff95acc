//! The loader proper: read the device tree, plan, announce, serve transfers, boot.

use core::fmt::Write;

use aarch64_cpu::registers::CurrentEL;
use exo_bsp::board::{RPI4_UART0, RPI4_UART_CLOCK};
use exo_bsp::dt::BoardInfo;
use exo_chainload::place::{self, Layout, Plan, Span};
use exo_chainload::target::{self, Timing};
use tock_registers::interfaces::Readable;

use crate::uart::Uart;

core::arch::global_asm!(include_str!("start.S"));

extern "C" {
    static _start: u8;
    static __scratch_start: u8;
    static __scratch_end: u8;
    static __span: u8;
    fn boot_kernel(entry: usize, dtb: usize, size: usize) -> !;
}

fn addr(sym: &u8) -> usize {
    sym as *const u8 as usize
}

/// What the device tree told us, and where everything goes.
struct Setup {
    info: BoardInfo,
    plan: Plan,
}

/// Reads the DTB at `dtb` (a copy of it, in the scratch area) and plans the move.
fn read_setup(dtb: usize, load: usize) -> Result<Setup, &'static str> {
    let info = read_dtb(dtb)?;
    plan_for(&info, dtb, load).map(|plan| Setup { info, plan })
}

fn read_dtb(dtb: usize) -> Result<BoardInfo, &'static str> {
    if dtb == 0 || !dtb.is_multiple_of(8) {
        return Err("no device tree: x0 does not point at one");
    }
    // SAFETY: the linker script reserves the scratch area inside our span.
    let (scratch, scratch_end) = unsafe { (addr(&__scratch_start), addr(&__scratch_end)) };
    // SAFETY: x0 points at RAM at least 40 bytes long, per the boot protocol; when it is
    // not a DTB, `dtb_used` refuses the magic.
    let header = unsafe { core::slice::from_raw_parts(dtb as *const u8, 40) };
    let used = place::dtb_used(header).ok_or("no device tree: bad magic at x0")? as usize;
    if used > scratch_end - scratch || used < 40 {
        return Err("the device tree is larger than the loader's 512 KiB scratch area");
    }
    // SAFETY: `used` bytes fit the scratch area, which nothing else uses; the source is the
    // DTB's own extent, which does not overlap our image.
    unsafe { core::ptr::copy_nonoverlapping(dtb as *const u8, scratch as *mut u8, used) };
    // SAFETY: the scratch area's first `used` bytes, now holding the copy; nothing else
    // refers to them while `copy` lives.
    let copy = unsafe { core::slice::from_raw_parts_mut(scratch as *mut u8, used) };
    copy[4..8].copy_from_slice(&(used as u32).to_be_bytes());
    BoardInfo::parse(copy).map_err(|_| "the device tree names no board exo knows")
}

/// Where the loader moves, and the kernel's room (see `exo_chainload::place`).
fn plan_for(info: &BoardInfo, dtb: usize, load: usize) -> Result<Plan, &'static str> {
    // SAFETY: linker-script symbols; only their addresses are taken.
    let (start, span) = unsafe { (addr(&_start), addr(&__span)) };
    // SAFETY: read_dtb checked that a DTB header is there; `totalsize` is its second word.
    let total = unsafe { u32::from_be(((dtb + 4) as *const u32).read_volatile()) } as u64;
    let memory: [Span; 8] = core::array::from_fn(|i| {
        info.memory.as_slice().get(i).map_or(Span::default(), |r| Span { base: r.base, size: r.size })
    });
    let mut avoid = [Span::default(); 18];
    avoid[0] = Span { base: dtb as u64, size: total };
    if let Some(r) = info.initrd {
        avoid[1] = Span { base: r.base, size: r.size };
    }
    for (slot, r) in avoid[2..].iter_mut().zip(info.reserved.as_slice()) {
        *slot = Span { base: r.base, size: r.size };
    }
    let layout = Layout {
        load: load as u64,
        span: (span - start) as u64,
        memory: &memory[..info.memory.as_slice().len()],
        avoid: &avoid,
    };
    place::plan(&layout).map_err(|e| match e {
        place::PlaceError::LoadNotInRam => "the load address is in no RAM bank of the device tree",
        place::PlaceError::NoRoom => "no room above the load address for the loader and a kernel",
    })
}

fn open_uart(info: &BoardInfo) -> Option<Uart> {
    let base = info.uart?.base as usize;
    let clock = info.kind.uart_clock();
    // SAFETY: the device tree names a PL011 there, and the MMU is off (physical addresses).
    Some(unsafe { Uart::new(base, clock) })
}

/// Says why the loader stops, on the UART the device tree names or, without a readable
/// device tree, the Pi's UART0.
fn give_up(info: Option<&BoardInfo>, why: &str) -> usize {
    let uart = match info {
        Some(i) => open_uart(i),
        // SAFETY: only a Pi starts us without a device tree, and UART0 is there.
        None => Some(unsafe { Uart::new(RPI4_UART0 as usize, Some(RPI4_UART_CLOCK)) }),
    };
    if let Some(mut u) = uart {
        let _ = write!(u, "\nexo chainloader: {why}; stopping.\n");
        u.flush();
    }
    0
}

/// Stage 1, at the load address: where should the loader move? 0 means stop.
#[no_mangle]
extern "C" fn loader_stage1(dtb: usize, load: usize) -> usize {
    match read_setup(dtb, load) {
        Ok(s) => s.plan.dest as usize,
        Err(why) => give_up(read_dtb(dtb).ok().as_ref(), why),
    }
}

/// Stage 2, moved to `here`: serve transfers until one checks out, then boot it.
#[no_mangle]
extern "C" fn loader_main(dtb: usize, load: usize, here: usize) -> ! {
    let setup = match read_setup(dtb, load) {
        Ok(s) if s.plan.dest as usize == here => s,
        Ok(s) => {
            give_up(Some(&s.info), "the memory plan changed between the two stages");
            park()
        }
        Err(why) => {
            give_up(read_dtb(dtb).ok().as_ref(), why);
            park()
        }
    };
    let Some(mut uart) = open_uart(&setup.info) else {
        park() // no UART in the device tree: nobody to talk to
    };
    let capacity = setup.plan.capacity as usize;
    let _ = write!(
        uart,
        "\nexo chainloader {} on {}, EL{}: the kernel goes to {load:#x} (up to {} KiB); \
         waiting for `cargo xtask chainboot`\n",
        env!("CARGO_PKG_VERSION"),
        setup.info.kind.name(),
        CurrentEL.read(CurrentEL::EL),
        capacity >> 10
    );
    // SAFETY: the plan keeps [load, load + capacity) clear of the loader (moved to `here`),
    // the DTB, the initrd and every reserved range, and inside one RAM bank.
    let dest = unsafe { core::slice::from_raw_parts_mut(load as *mut u8, capacity) };
    loop {
        match target::serve(&mut uart, dest, &Timing::DEFAULT) {
            Ok(k) => {
                let _ = writeln!(uart, "exo chainloader: booting {} bytes (CRC-32 {:#010x})", k.size, k.crc);
                uart.flush();
                // SAFETY: a complete image whose CRC-32 matched sits at `load`; x0 gets
                // the DTB we were given.
                unsafe { boot_kernel(load, dtb, k.size) }
            }
            Err(e) => {
                let _ = writeln!(uart, "exo chainloader: transfer refused: {e}; waiting again");
            }
        }
    }
}

fn park() -> ! {
    loop {
        aarch64_cpu::asm::wfe();
    }
}

#[panic_handler]
fn panic(info: &core::panic::PanicInfo) -> ! {
    if let Some(mut u) = Uart::existing() {
        let _ = write!(u, "\nexo chainloader: panic: {info}\n");
        u.flush();
    }
    park()
}
