//! Kernel panics and frame-pointer backtraces.
//!
//! The kernel is built with frame pointers, so x29 always heads a chain of {previous x29,
//! return address} records on the kernel stack. Addresses are printed raw; `cargo xtask`
//! turns them into function names with the kernel ELF's symbols.

use core::panic::PanicInfo;

use crate::kprintln;

#[panic_handler]
fn panic(info: &PanicInfo) -> ! {
    kprintln!("\n*** KERNEL PANIC: {}", info.message());
    if let Some(loc) = info.location() {
        kprintln!("    at {}:{}:{}", loc.file(), loc.line(), loc.column());
    }
    let fp: u64;
    // SAFETY: reading the frame-pointer register has no side effects.
    unsafe { core::arch::asm!("mov {}, x29", out(reg) fp) };
    backtrace(fp, None);
    crate::exit::fail()
}

/// Prints the return addresses of the frame chain that starts at `fp` (after `pc`, the
/// faulting instruction, when there is one). Stops at the first record outside the kernel
/// stack, so a corrupt chain cannot take the walk anywhere else.
pub fn backtrace(mut fp: u64, pc: Option<u64>) {
    let hi = crate::arch::smp::stack_top(crate::arch::smp::cpu()); // this core's stack
    let lo = hi - crate::mm::STACK_STRIDE + 4096;
    kprintln!("backtrace:");
    let mut n = 0;
    if let Some(pc) = pc {
        kprintln!("  #{n:<2} {pc:#018x}");
        n += 1;
    }
    while n < 32 && fp >= lo && fp + 16 <= hi && fp.is_multiple_of(16) {
        // SAFETY: `fp` is 16-byte aligned and `fp + 16 <= hi`, so the whole frame record
        // {previous x29, return address} lies inside the kernel stack, which is mapped.
        let [next, lr] = unsafe { *(fp as *const [u64; 2]) };
        if lr == 0 {
            break;
        }
        // The return address is the instruction after the call: point at the call itself.
        kprintln!("  #{n:<2} {:#018x}", lr - 4);
        n += 1;
        fp = next;
    }
}
