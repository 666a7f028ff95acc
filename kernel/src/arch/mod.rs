//! The AArch64 specifics: boot and vector assembly, trap entry, and a few CPU operations.

use core::arch::{asm, global_asm};
use core::mem::offset_of;

use aarch64_cpu::asm::barrier;
use aarch64_cpu::registers::*;

use crate::env::{Ctx, Env, Kernel, Wait};

pub mod smp;
pub mod trap;

global_asm!(
    include_str!("boot.S"),
    BOOT_TCR = const BOOT_TCR,
    MMU_ON = const MMU_ON,
    FP_OFF = const FPEN_EL0_TRAPPED,
);
// The libOS's `memcpy` and `memset` (256 and 64 bytes a turn), in place of the compiler's.
global_asm!(include_str!("../../abi/src/mem.S"));
global_asm!(
    include_str!("vectors.S"),
    SYS_FAST_COUNT = const exo_abi::Sys::FAST_COUNT,
    SYS_UPCALL_RESUME = const exo_abi::Sys::UpcallResume as u64,
    SYS_YIELD_TO = const exo_abi::Sys::YieldTo as u64,
    SYS_PCT_REPLY = const exo_abi::Sys::PctReply as u64,
    SYS_PCT_CALL = const exo_abi::Sys::PctCall as u64,
    // `el0_yield`'s, `el0_reply`'s and `el0_call`'s view of the kernel state, from the Rust layouts.
    KERNEL = sym crate::env::KERNEL,
    K_VALUE = const crate::cell::Global::<Kernel>::VALUE,
    K_ON = const offset_of!(Kernel, on),
    K_EXCLUDED = const offset_of!(Kernel, excluded),
    K_ENVS = const offset_of!(Kernel, envs),
    K_ENV_INFO = const Kernel::ENV_INFO,
    K_RUNNABLE = const Kernel::RUNNABLE,
    K_CALL_WAITERS = const offset_of!(Kernel, call_waiters),
    ENV_SHIFT = const size_of::<Env>().trailing_zeros(),
    E_ID = const offset_of!(Env, id),
    E_STATE = const offset_of!(Env, state),
    E_PENDING = const offset_of!(Env, pending),
    E_ROOT = const offset_of!(Env, root),
    E_ACTIVE = const offset_of!(Env, active),
    E_LAST_CPU = const offset_of!(Env, last_cpu),
    E_FRAMES = const offset_of!(Env, frames),
    E_WAIT = const offset_of!(Env, wait),
    E_CALLER = const offset_of!(Env, pct_caller.0),
    E_CALLER_ID = const offset_of!(Env, pct_caller.1),
    E_RIGHTS = const offset_of!(Env, pct_rights),
    E_ENTRY = const offset_of!(Env, pct_entry),
    E_STACK = const offset_of!(Env, pct_stack),
    E_DEADLINE = const offset_of!(Env, deadline),
    E_FP = const offset_of!(Env, fp),
    FP_OFF = const FPEN_EL0_TRAPPED,
    FP_ON = const FPEN_ON,
    W_SLOT = const align_of::<usize>(),
    W_NONE = const Wait::None.tag(),
    W_SERVE = const Wait::Serve.tag(),
    W_REPLY = const Wait::Reply(0).tag(),
    CTX_OWN = const Ctx::Own as u8,
    CTX_CALL = const Ctx::Call as u8,
    FRAME_SIZE = const size_of::<trap::TrapFrame>(),
    INFO_SIZE = const size_of::<exo_abi::EnvInfo>(),
    I_CPU = const offset_of!(exo_abi::EnvInfo, cpu),
    I_STATE = const offset_of!(exo_abi::EnvInfo, state),
    RUNNABLE = const exo_abi::EnvState::Runnable as u8,
    BLOCKED = const exo_abi::EnvState::Blocked as u8,
    MAX_ENVS = const crate::env::MAX_ENVS,
    PCT_GRANT_RW = const exo_abi::PCT_GRANT_RW,
    PCT_TIMEOUT_SHIFT = const exo_abi::PCT_TIMEOUT_SHIFT,
    // `el0_abort`'s and `el0_resume`'s: the upcall state, the frame table (through the
    // public information page) and what a page entry must be.
    K_INFO = const Kernel::INFO,
    E_INTERRUPTED = const offset_of!(Env, interrupted),
    E_UPCALL_ENTRY = const offset_of!(Env, upcall_entry),
    E_UPCALL_STACK = const offset_of!(Env, upcall_stack),
    UPCALL_FAULT = const exo_abi::upcall::FAULT,
    CTX_UPCALL = const Ctx::Upcall as u8,
    KI_RAM_BASE = const offset_of!(exo_abi::KernelInfo, ram_base),
    KI_FRAMES = const offset_of!(exo_abi::KernelInfo, frames),
    KI_FRAME_TABLE = const offset_of!(exo_abi::KernelInfo, frame_table),
    PHYSMAP_TOP16 = const crate::mm::PHYSMAP_BASE >> 48,
    F_OWNER = const offset_of!(exo_abi::FrameEntry, owner),
    F_KIND = const offset_of!(exo_abi::FrameEntry, kind),
    F_LEVEL = const offset_of!(exo_abi::FrameEntry, level),
    F_FLAGS = const offset_of!(exo_abi::FrameEntry, flags),
    F_MAPS = const offset_of!(exo_abi::FrameEntry, maps),
    F_ENTRIES = const offset_of!(exo_abi::FrameEntry, entries),
    FRAME_DATA = const exo_abi::frame::DATA,
    FRAME_TABLE = const exo_abi::frame::TABLE,
    FLAG_LINKED_BIT = const exo_abi::frame::LINKED.trailing_zeros(),
    FLAG_FROZEN_BIT = const exo_abi::frame::FROZEN.trailing_zeros(),
    FLAG_SHARED = const exo_abi::frame::SHARED_RO | exo_abi::frame::SHARED_RW,
    FLAG_ZEROED = const exo_abi::frame::ZEROED,
    PTE_AP_RO_BIT = const exo_abi::pte::bits::AP_RO.trailing_zeros(),
    PTE_UXN_BIT = const exo_abi::pte::bits::UXN.trailing_zeros(),
);
/// What `el0_resume` checks a page entry against, `(entry & [0]) == [1]`: `check_user_page`'s
/// required and allowed bits, and the attribute normal cacheable (a non-cacheable page
/// needs a clean first, which only `Space::set_at` makes: `el0_resume` leaves it to it).
#[unsafe(no_mangle)]
static RESUME_PTE_RULE: [u64; 2] = {
    use exo_abi::pte::{attr, bits, USER_ALLOWED, USER_REQUIRED};
    [USER_REQUIRED | !USER_ALLOWED | bits::ATTR_MASK, USER_REQUIRED | attr::NORMAL << bits::ATTR_SHIFT]
};
// `el0_yield` reads on[] unrolled (four cores); boot.S sets TPIDRRO_EL0 to `cpu()`, MPIDR & 3
const _: () = assert!(smp::MAX_CPUS == 4 && size_of::<Env>().is_power_of_two());
// `el0_resume` indexes the frame table by shifting, and tests one bit of each permission.
const _: () = assert!(size_of::<exo_abi::FrameEntry>() == 16 && crate::mm::PHYSMAP_BASE << 16 == 0);
const _: () = assert!(exo_abi::pte::bits::AP_RO.count_ones() == 1 && exo_abi::pte::bits::UXN.count_ones() == 1);
const _: () = assert!(exo_abi::frame::LINKED.count_ones() == 1 && exo_abi::frame::FROZEN.count_ones() == 1);

/// An environment's FP/SIMD registers while they are not live on a core: v0-v31, then FPSR
/// and FPCR (`FP_SAVE` and `FP_LOAD` in `vectors.S`). All zero, the reset state, until it
/// first uses them. Word 66 is its TPIDR_EL0 (`TLS_SWITCH`, `fp_leave`), which EL0 writes at
/// will and no trap reveals: every switch saves the leaving environment's and loads the
/// coming one's, lazily or not at all would show one environment's value to the next.
///
/// The kernel is built soft-float and never touches these registers itself. EL0's access
/// is off (CPACR_EL1.FPEN = 0b01: EL0 traps, EL1 does not) whenever a core changes
/// environments, so an environment's first FP/SIMD instruction in its turn traps: `el0_fp`
/// loads its registers and turns access on. From then until the core leaves it the
/// registers are the environment's own, and every path that leaves it (`Kernel::run`,
/// `schedule`'s idle branch, `el0_yield`, `el0_reply`, `el0_call`) saves them here and
/// turns access off. So no
/// environment ever reads another's, an environment that never uses them costs one test
/// per switch, and the state is in memory whenever the environment is not running
/// (another core may run it next).
#[repr(C, align(16))]
pub struct FpState([u64; 67]);

/// CPACR_EL1 with EL0's FP/SIMD access off (it traps, EL1's does not: only `vectors.S`
/// touches the registers at EL1) and on; `boot.S` starts each core off.
const FPEN_EL0_TRAPPED: u64 = 1 << 20;
const FPEN_ON: u64 = 3 << 20;

unsafe extern "C" {
    /// The core leaves the environment whose state is at `state` (null: one destroyed
    /// meanwhile, or none) for the one at `next` (null: none, it idles): TPIDR_EL0 is saved
    /// to `state` and loaded from `next`; the FP/SIMD registers, if live here (EL0's access
    /// on), are saved to `state`, and the access goes off, so that the next environment's
    /// first use loads its own (`vectors.S`).
    pub fn fp_leave(state: *mut FpState, next: *const FpState);
    /// The running environment's first FP/SIMD instruction of its turn, when `el0_fp`
    /// missed: its registers loaded from `state`, EL0's access on.
    pub fn fp_enter(state: *const FpState);
}

/// TCR_EL1 as `boot.S` switches the MMU on (it adds IPS, the CPU's physical range): 48-bit
/// addresses and 4 KiB pages in both halves, walks inner-shareable and write-back cached.
const BOOT_TCR: u64 = TCR_EL1::T0SZ.val(16).value
    | TCR_EL1::T1SZ.val(16).value
    | TCR_EL1::TG0::KiB_4.value
    | TCR_EL1::TG1::KiB_4.value
    | TCR_EL1::SH0::Inner.value
    | TCR_EL1::SH1::Inner.value
    | TCR_EL1::IRGN0::WriteBack_ReadAlloc_WriteAlloc_Cacheable.value
    | TCR_EL1::ORGN0::WriteBack_ReadAlloc_WriteAlloc_Cacheable.value
    | TCR_EL1::IRGN1::WriteBack_ReadAlloc_WriteAlloc_Cacheable.value
    | TCR_EL1::ORGN1::WriteBack_ReadAlloc_WriteAlloc_Cacheable.value;
/// The SCTLR_EL1 bits `boot.S` sets with the tables in place: MMU, data and instruction caches.
const MMU_ON: u64 =
    SCTLR_EL1::M::Enable.value | SCTLR_EL1::C::Cacheable.value | SCTLR_EL1::I::Cacheable.value;

/// Replaces the boot identity map in TTBR0 with an empty table and flushes the TLB. From
/// here on the low half holds only environments' mappings. Also switches to 16-bit ASIDs
/// where the CPU has them.
pub fn drop_identity_map() {
    if ID_AA64MMFR0_EL1.matches_all(ID_AA64MMFR0_EL1::ASIDBits::Bits_16) {
        TCR_EL1.modify(TCR_EL1::AS::ASID16Bits);
    }
    // SAFETY: after `finish_boot_map` nothing the kernel runs or touches lives in the low
    // half, so replacing its tables (and widening ASIDs while no EL0 entry is live) cannot
    // pull anything out from under us.
    unsafe {
        asm!(
            "msr ttbr0_el1, {empty}",
            "isb",
            "tlbi vmalle1",
            "dsb nsh",
            "isb",
            empty = in(reg) ttbr0(0, Env::asid(crate::env::NONE)),
        );
    }
}

/// Points TTBR0 at an environment's root table (0: none, an empty table) tagged with its
/// ASID. No TLB flush: translations are tagged, and each ASID belongs to one slot.
#[inline]
pub fn set_user_table(root: u64, asid: u16) {
    TTBR0_EL1.set(ttbr0(root, asid));
    barrier::isb(barrier::SY);
}

/// The TTBR0 value for `root` (0: the empty table) and `asid`.
pub fn ttbr0(root: u64, asid: u16) -> u64 {
    let root = if root == 0 { crate::mm::empty_root() } else { root };
    (TTBR0_EL1::ASID.val(asid as u64) + TTBR0_EL1::BADDR.val(root >> 1)).value
}

/// What EL0 may do without trapping: read the virtual counter and the PMU cycle counter,
/// zero cache lines (`dc zva`), read CTR_EL0; unaligned stack pointers and wfi/wfe do trap.
/// The cycle counter runs (under QEMU's `-icount` it counts instructions), for benchmarks;
/// EL0 may only read it — not reset, stop or reprogram it, nor touch the event counters —
/// so no environment can disturb another's measurements (it tells no more than CNTVCT).
pub fn configure_el0() {
    use SCTLR_EL1::{DZE, SA, SA0, UCT};
    SCTLR_EL1.modify(SA::Enable + SA0::Enable + DZE::DontTrap + UCT::DontTrap);
    CNTKCTL_EL1.write(CNTKCTL_EL1::EL0PCTEN::TrappedNone + CNTKCTL_EL1::EL0VCTEN::TrappedNone);
    // SAFETY: the PMU registers (which `aarch64-cpu` does not describe) only let EL0 read the
    // cycle counter, which the kernel starts; none exposes kernel state.
    unsafe {
        asm!(
            "msr pmuserenr_el0, {cr}", // CR (read the cycle counter) only
            "msr pmcr_el0, {e_c}",     // E | C (cycle counter on, from zero)
            "msr pmcntenset_el0, {c}", // C
            "isb",
            cr = in(reg) 4u64, e_c = in(reg) 5u64, c = in(reg) 0x8000_0000u64,
        )
    };
}

unsafe extern "C" {
    fn enter_user(frame: *mut trap::TrapFrame, stack_top: u64) -> !;
}

/// Leaves the kernel for EL0 the first time on this core, resuming `frame`.
pub fn start_user(frame: *mut trap::TrapFrame) -> ! {
    // SAFETY: `frame` is the active context of the environment the scheduler just made
    // current (TTBR0 points at its tables); this core's kernel stack starts over, abandoned
    // on purpose.
    unsafe { enter_user(frame, smp::stack_top(smp::cpu())) }
}

/// Runs one cache operation on each 64-byte block of the 4 KiB page at kernel address `va`
/// (`dc zva`'s block size on every ARMv8-A core exo runs on; checked at boot by
/// `check_dc_zva`), then waits for them to finish.
macro_rules! each_block {
    ($op:literal, $va:expr) => {
        // SAFETY: callers pass a page-aligned kernel mapping of a frame the kernel may write
        // (zeroing) or of any RAM (cleaning, which changes no data); the operation touches
        // exactly the 64 blocks of that page.
        unsafe {
            asm!(
                concat!("2: ", $op, ", {p}"), "add {p}, {p}, #64",
                concat!($op, ", {p}"), "add {p}, {p}, #64",
                concat!($op, ", {p}"), "add {p}, {p}, #64",
                concat!($op, ", {p}"), "add {p}, {p}, #64",
                "cmp {p}, {end}", "b.lo 2b", "dsb ish",
                p = inout(reg) $va => _, end = in(reg) $va + 4096, options(nostack),
            )
        }
    };
}

/// Zeroes the page at kernel address `va` with `dc zva`, 64 bytes per instruction. The zeros
/// may sit in the cache for a while: a frame mapped non-cacheable is cleaned then (`clean_page`).
pub fn zero_page(va: u64) {
    each_block!("dc zva", va);
}

/// Cleans the page at kernel address `va` to the point of coherency, so that a view that
/// bypasses the cache (a non-cacheable mapping) reads what the cache holds — the zeros its
/// owner was given, never an earlier owner's data still in memory.
pub fn clean_page(va: u64) {
    each_block!("dc cvac", va);
}

/// `dc zva` must be allowed and zero 64-byte blocks for `zero_page` to be right.
pub fn check_dc_zva() -> bool {
    let dczid: u64;
    // SAFETY: reading an ID register.
    unsafe { asm!("mrs {}, dczid_el0", out(reg) dczid) };
    dczid & 0x1f == 4 // DZP clear, BS = log2(16 words)
}

/// Sleeps until an interrupt arrives, lets it be taken, and masks interrupts again. (An
/// SGI taken between the unmask and the `wfi` leaves the core asleep until its next tick:
/// sleeping masked would close that gap, but QEMU's raspi4b does not wake from it.)
pub fn wait_for_interrupt() {
    // SAFETY: interrupts are only ever unmasked here, where the kernel holds no state that
    // an interrupt handler could touch (the idle loop owns nothing).
    unsafe { asm!("msr daifclr, #2", "wfi", "msr daifset, #2") };
}
