//! Program start and end: the entry point, the runtime's set-up, printing, panics.

use core::fmt;

use crate::{sys, upcall, vm};

/// `x1` at entry when a libOS parent started the program; `x0` then points at its
/// [`StartInfo`]. The kernel starts init with `x0` = the kernel information page and
/// `x1` = 0.
pub const START_MAGIC: u64 = 0x6578_6f5f_7374_6172; // "exo_star"
/// `x1` at entry of a forked child; `x0` points at the parent's saved registers.
pub const FORK_MAGIC: u64 = 0x6578_6f5f_666f_726b; // "exo_fork"

/// What a parent hands a program it starts (placed on the child's stack).
#[repr(C)]
#[derive(Clone, Copy)]
pub struct StartInfo {
    pub kinfo_pa: u64,
    pub args_len: u64,
    pub args: [u8; 1024],
    /// The standard descriptors' kinds (`fd::kind`; zero: the console).
    pub fds: [u32; crate::fd::COUNT],
    /// Pages `exec` left at `exec::AREA` for the new program to free (0: not exec'd).
    pub exec_pages: u64,
}

unsafe extern "C" {
    static __image_start: u8;
    static __private_end: u8;
}

unsafe extern "Rust" {
    /// The program's `main`, named by [`crate::entry!`].
    fn __exo_main(args: &str) -> i32;
}

#[cfg(target_os = "none")]
core::arch::global_asm!(
    ".section .text.entry, \"ax\"",
    ".global _start",
    "_start:",
    "    mov x29, xzr",
    "    mov x30, xzr",
    "    bl exo_rt_start",
    "    brk #1",
);

#[unsafe(no_mangle)]
extern "C" fn exo_rt_start(x0: u64, x1: u64) -> ! {
    if x1 == FORK_MAGIC {
        crate::process::child_start(x0);
    }
    let (kinfo_pa, args, fds, exec_pages) = if x1 == START_MAGIC {
        // SAFETY: a libOS parent (or `exec`) put a StartInfo at x0, in this environment's
        // memory.
        let si = unsafe { &*(x0 as *const StartInfo) };
        let n = (si.args_len as usize).min(si.args.len());
        (si.kinfo_pa, core::str::from_utf8(&si.args[..n]).unwrap_or(""), si.fds, si.exec_pages)
    } else {
        (x0, "", [crate::fd::kind::CONSOLE; crate::fd::COUNT], 0)
    };
    let image = (&raw const __image_start as u64, &raw const __private_end as u64);
    let set_up = vm::init(kinfo_pa, image)
        .and_then(|_| upcall::register())
        .and_then(|_| crate::fd::adopt(fds))
        .and_then(|_| crate::exec::finish(exec_pages));
    if let Err(e) = set_up {
        let _ = sys::console_write(b"libOS: cannot set up the address space\n");
        sys::exit(-(e as i32));
    }
    let args = if x1 == START_MAGIC { args } else { vm::kinfo().bootargs() };
    // SAFETY: `__exo_main` is defined by the program through `entry!`.
    let status = unsafe { __exo_main(args) };
    exit(status)
}

/// Ends the program with `status`, its descriptors closed first, so that the programs at
/// the other ends of its pipes learn at once (`fd::close`) rather than at their next tick.
pub fn exit(status: i32) -> ! {
    crate::fd::close_all();
    sys::exit(status)
}

/// Names the program's `main(args: &str) -> i32`.
#[macro_export]
macro_rules! entry {
    ($main:path) => {
        #[unsafe(no_mangle)]
        fn __exo_main(args: &str) -> i32 {
            $main(args)
        }
    };
}

/// Formats into a small buffer and writes it to stdout (the console: one system call per
/// 512 bytes, so lines from different environments do not interleave mid-line).
pub fn print(args: fmt::Arguments) {
    let _ = crate::fd::write_fmt(crate::fd::STDOUT, args);
}

/// Like [`print`], to stderr.
pub fn eprint(args: fmt::Arguments) {
    let _ = crate::fd::write_fmt(crate::fd::STDERR, args);
}

#[macro_export]
macro_rules! print {
    ($($arg:tt)*) => { $crate::rt::print(format_args!($($arg)*)) };
}

#[macro_export]
macro_rules! println {
    () => { $crate::rt::print(format_args!("\n")) };
    ($($arg:tt)*) => { $crate::rt::print(format_args!("{}\n", format_args!($($arg)*))) };
}

#[macro_export]
macro_rules! eprint {
    ($($arg:tt)*) => { $crate::rt::eprint(format_args!($($arg)*)) };
}

#[macro_export]
macro_rules! eprintln {
    () => { $crate::rt::eprint(format_args!("\n")) };
    ($($arg:tt)*) => { $crate::rt::eprint(format_args!("{}\n", format_args!($($arg)*))) };
}

/// Exit status of a program that panicked.
pub const PANIC_STATUS: i32 = 101;

#[cfg(target_os = "none")]
#[panic_handler]
fn panic(info: &core::panic::PanicInfo) -> ! {
    crate::eprintln!("panic in env {:#x}: {}", sys::env_self().0, info);
    sys::exit(PANIC_STATUS)
}
