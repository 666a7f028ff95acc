//! # exo: an exokernel for 64-bit ARM
//!
//! This kernel protects and multiplexes hardware, and does nothing else. It binds physical
//! frames, translation-table pages and SD-card sectors to environments (exo's processes),
//! checks each use of a binding cheaply, and offers mechanisms — never policies — to the
//! library operating systems linked into applications at EL0. Address-space layout,
//! fork/exec, paging policy, scheduling order and file systems all live in those libOSes.
//!
//! What the kernel refuses to do: keep a buffer cache, interpret a file system, decide where
//! anything goes in an environment's address space, or trust a pointer, length, index or
//! frame number from EL0 before checking it.
//!
//! ## Where things live
//!
//! - `arch/`: boot assembly (arm64 Image header, EL2→EL1, MMU on, jump to the high half),
//!   exception vectors, trap entry; `arch/smp.rs`: the other cores.
//! - `mm/`: the kernel's address-space layout, its own tables (`kmap`), the physical memory
//!   map (`phys`) and the heap.
//! - `irq.rs`: GIC dispatch and the timer tick. `console.rs`: output and the logger.
//!   `panic.rs`: panics and backtraces. `exit.rs`: ending the machine with a status.
//! - `platform.rs`: the board (from `exo-bsp`, chosen from the device tree at run time)
//!   and the bootargs configuration.
//!
//! ## Who owns the kernel's state
//!
//! All state that changes after boot is the one `env::Kernel` value. Its `impl Kernel`
//! blocks are spread over six files, one per mechanism, and each file changes only what
//! it owns (the compiler holds the private fields to `env.rs`):
//!
//! - `env.rs`: environments' lives (create, start, block, wake, destroy), quotas, the
//!   runnable set and the public pages (`install`, `publish*`).
//! - `sched.rs`: which environment runs — `current`, `ticks`, and the `donate_to` that
//!   `YieldTo` and `pct.rs` leave for it.
//! - `syscall.rs`: every call's arguments checked, the fast calls, and the slow calls cut
//!   into one step each; frames and tables change through `ft`'s checked transitions
//!   (`mm/frames.rs`) and `mm/uvm.rs`'s `Space`. It moves the console input's holder
//!   (`console`), which `env.rs` hands up the tree when the holder dies.
//! - `pct.rs`: protected control transfers — an environment's `pct_*` fields, `grants`,
//!   `deadline`, and `call_waiters`.
//! - `upcall.rs`: upcalls in an environment's `Ctx::Upcall` context, its `pending` bits
//!   and the revocation fields (`frames_returned`).
//! - `disk.rs`: sector bindings (`Env::sectors`) and the disk's facts in the info page.
//! - `net.rs`: packet bindings (the table of `exo_format::netfilter`) and the NIC.
//!
//! The kernel runs on every core (`arch/smp.rs`) with interrupts masked: an interrupt can
//! only arrive while EL0 runs or while a core idles in `wfi`. Each trap holds the one big
//! kernel lock (`env::kernel`, `cell.rs`) for its whole stay; `docs/multicore.md` says what
//! is per core, what is shared, and what comes next. It is built for `aarch64-unknown-none-softfloat` and leaves FP/SIMD
//! trapped, so no trap path ever saves vector registers.
//!
//! Everything that is pure logic (descriptor encoding, table building, the memory map)
//! compiles on the host too and is unit-tested there with `cargo test`.
#![cfg_attr(target_os = "none", no_std, no_main)]
#![deny(unsafe_op_in_unsafe_fn)]
// On the host the crate is only a harness for the pure parts' unit tests.
#![cfg_attr(not(target_os = "none"), allow(dead_code))]

/// A refusal, in one line: returns `Err($err)` from the function if `$cond` holds.
macro_rules! refuse_if {
    ($cond:expr, $err:expr) => {
        if $cond {
            return Err($err);
        }
    };
}

#[cfg(target_os = "none")]
mod console; // not below: its `kprintln!` is exported, and a macro may not declare it
mod mm;
#[cfg(all(target_os = "none", feature = "test-modes"))]
mod selftests;

/// Declares the modules that exist on the board alone (the host compiles `mm` only).
macro_rules! on_the_board {
    ($($m:ident)*) => { $(#[cfg(target_os = "none")] mod $m;)* };
}
on_the_board!(arch cell disk env exit irq net panic pct platform sched start syscall uaccess upcall);

#[cfg(target_os = "none")]
mod boot {
    use exo_bsp::dt::{BoardInfo, Region};
    use exo_bsp::hwcheck::{self, Facts};
    use exo_bsp::memmap::MemoryMap;
    use exo_bsp::Board;

    use crate::env::kernel;
    use crate::{arch, console, disk, irq, kprintln, mm, platform, start};

    /// The kernel heap's size. The kernel keeps almost nothing variable-sized.
    const KERNEL_HEAP: u64 = 1 << 20;

    /// Rust entry from `boot.S`: MMU on, running at the link address, on the boot stack.
    /// Each step below needs the ones before it, but for the console's start, which waits
    /// until the disk's search has begun (panics before it still reach the UART).
    #[unsafe(no_mangle)]
    extern "C" fn kmain(dtb_pa: u64, phys_base: u64, entry_el: u64) -> ! {
        let (board, dtb) = wire_board(dtb_pa, phys_base);
        let mut map = take_memory(board, phys_base, dtb);
        let free_mib = map.total() >> 20;
        // SD cards need a millisecond to power up: the steps up to `attach_disk`, the
        // console's start among them, overlap it.
        let disk = map.take(exo_bsp::disk::DMA_BYTES as u64).map(|dma| start_disk(board, dma));
        start_console(board, entry_el, phys_base, dtb_pa);
        log::info!("memory: {} MiB RAM, {free_mib} MiB free", board.info.memory.total() >> 20);
        let net_dma = map.take(exo_bsp::drivers::virtio_net::DMA_BYTES as u64);
        kernel(|k| start::setup(k, &board.info, map));
        irq::init();
        arch::smp::start_secondaries(board); // early: a Pi's firmware stub spins until then
        if let Some(disk) = disk {
            attach_disk(board, disk);
        }
        if let Some(dma) = net_dma {
            crate::net::probe(&board.info, dma);
        }
        arch::configure_el0();
        assert!(arch::check_dc_zva(), "this CPU's dc zva block is not 64 bytes");
        #[cfg(feature = "test-modes")]
        crate::selftests::run(platform::config().test);
        log::info!("timer: ticking at {} Hz", irq::TICK_HZ);
        // Init, loaded, runs in the first environment; without it this core idles.
        if !kernel(start::load_init) {
            log::info!("nothing to run; idling (timer ticks continue)");
        }
        arch::start_user(arch::trap::idle())
    }

    /// Finds the board in the device tree, maps its devices and wires their drivers.
    /// Returns the board and where the device tree lies.
    fn wire_board(dtb_pa: u64, phys_base: u64) -> (&'static Board, Region) {
        let Some(dtb) = mm::boot_dtb(dtb_pa) else {
            no_device_tree(phys_base, "no device tree was passed in x0")
        };
        let dtb_region = Region { base: dtb_pa, size: dtb.len() as u64 };
        let Ok(info) = BoardInfo::parse(dtb) else {
            no_device_tree(phys_base, "the device tree is malformed or names no supported board")
        };
        if mm::finish_boot_map(phys_base, info.memory.as_slice(), info.device_regions().as_slice()).is_err() {
            no_device_tree(phys_base, "the kernel's table pool is too small for this memory map");
        }
        // SAFETY: `finish_boot_map` mapped every device region into the physmap.
        let board = unsafe { Board::new(info, |pa| mm::phys_to_virt(pa) as usize) };
        let board = board.unwrap_or_else(|e| no_device_tree(phys_base, e.why()));
        (platform::set_board(board), dtb_region)
    }

    /// Reads the bootargs, starts the logger at the level they ask for and says hello.
    fn start_console(board: &'static Board, entry_el: u64, phys_base: u64, dtb_pa: u64) {
        let config = platform::set_config(platform::Config::parse(board.info.bootargs()));
        console::init_logging(config.log_level);
        console::init_screen(&board.info);

        kprintln!("\nexo {} — an exokernel for 64-bit ARM", env!("CARGO_PKG_VERSION"));
        log::info!(
            "board {}, entered at EL{entry_el}, loaded at {phys_base:#x}, DTB at {dtb_pa:#x}",
            board.info.kind.name()
        );
        log::info!("bootargs: {:?}", board.info.bootargs());
    }

    /// The free memory map, with the kernel heap taken from it and set up.
    fn take_memory(board: &Board, phys_base: u64, dtb: Region) -> MemoryMap {
        let image = Region { base: phys_base, size: mm::image_size() };
        let mut map = MemoryMap::new(board.info.memory.as_slice(), board.info.taken(image, dtb).as_slice());
        let Some(heap) = map.take(KERNEL_HEAP) else { panic!("no room for the kernel heap") };
        // SAFETY: the range was just removed from the free map and is mapped in the physmap.
        unsafe { mm::heap::init(mm::phys_to_virt(heap.base), heap.size) };
        map
    }

    /// Probes for a disk with `dma` as its driver's DMA memory, and attaches what it finds.
    fn start_disk(board: &Board, dma: Region) -> exo_bsp::disk::Search {
        mm::heap::zero(mm::phys_to_virt(dma.base), dma.size);
        let dma = exo_bsp::disk::Dma { va: mm::phys_to_virt(dma.base) as *mut u8, pa: dma.base };
        let virt = |pa| mm::phys_to_virt(pa) as usize;
        // SAFETY: every device region is mapped in the physmap; the DMA pages were just
        // taken from free memory for the driver alone; `kva_to_pa` translates kernel
        // addresses back.
        unsafe { exo_bsp::disk::Disk::search(&board.info, virt, dma, mm::kva_to_pa) }
    }

    /// Attaches the disk the search found. `exo.test=hwcheck`, a boot mode of the production
    /// image for Raspberry Pi owners, stops here instead: the kernel hands what it learned at
    /// boot to `exo_bsp::hwcheck`, which reads and reports the rest, one `PASS`/`FAIL`/`INFO`
    /// line per fact (`docs/qemu-vs-pi4.md`), then ends the machine with its verdict under a
    /// test runner (semihosting) or idles so that a person can read the screen.
    fn attach_disk(board: &Board, search: exo_bsp::disk::Search) {
        let mut tried = exo_bsp::disk::ProbeLog::default();
        let mut found = search.finish(&mut tried);
        for p in tried.sd() {
            log::info!("disk: {p}");
        }
        if platform::config().hwcheck {
            let facts = Facts { board, probes: &tried, disk: found.as_mut(), framebuffer: console::screen() };
            // SAFETY: every device region is mapped in the physmap; the other cores only idle
            // (no environment exists yet), so nothing else makes property calls now;
            // `kva_to_pa` translates kernel addresses.
            unsafe { hwcheck::run(facts, |pa| mm::phys_to_virt(pa) as usize, mm::kva_to_pa, console::Out) }
        }
        let Some(d) = found else { return log::info!("disk: none found") };
        kernel(|k| disk::attach(k, d));
    }

    /// Without a usable device tree there is no console to report on — except that the only
    /// board that starts exo without one is a Raspberry Pi 4, so say it on the Pi's UART0.
    fn no_device_tree(phys_base: u64, why: &str) -> ! {
        use exo_bsp::board::RPI4_UART0;
        let _ = mm::finish_boot_map(phys_base, &[], &[Region { base: RPI4_UART0, size: 0x1000 }]);
        // SAFETY: the UART page was just mapped as device memory in the physmap.
        unsafe { exo_bsp::board::say_cannot_boot(mm::phys_to_virt(RPI4_UART0) as usize, why) }
    }
}

#[cfg(not(target_os = "none"))]
fn main() {
    eprintln!("exo-kernel runs on the board: build it with `cargo xtask build`.");
}
