//! The system calls, one safe function each. The kernel checks every argument, so none of
//! these can harm the kernel or another environment; each returns the kernel's verdict.
//! Also [`now`], the counter the kernel lets EL0 read.
//!
//! The kernel reads and writes a call's buffers only where pages are mapped; a forked
//! child's stack pages are mapped on first touch (`owed`), so each call that passes the
//! kernel a buffer first touches the owed pages under it (`owed::touch`).

use core::sync::atomic::AtomicU64;

use exo_abi::{result, Context, EnvId, Error, Sys, TableOp};

use crate::owed;

#[cfg(target_os = "none")]
#[inline(always)]
fn call(num: u64, a: [u64; 6]) -> u64 {
    let r: u64;
    // SAFETY: `svc #0` enters the kernel, which reads only x0-x5 and x8, writes x0, and
    // clobbers x1-x18 (exo's calling convention); memory arguments are checked by it.
    unsafe {
        core::arch::asm!(
            "svc #0",
            inlateout("x0") a[0] => r,
            inlateout("x1") a[1] => _, inlateout("x2") a[2] => _, inlateout("x3") a[3] => _,
            inlateout("x4") a[4] => _, inlateout("x5") a[5] => _,
            inlateout("x8") num => _,
            out("x6") _, out("x7") _, out("x9") _, out("x10") _, out("x11") _, out("x12") _,
            out("x13") _, out("x14") _, out("x15") _, out("x16") _, out("x17") _, out("x18") _,
            options(nostack),
        );
    }
    r
}

/// A call that takes no arguments: x1-x5 go in as they are (the kernel reads none of them
/// for these calls), which spares the wrapper setting them.
#[cfg(target_os = "none")]
#[inline(always)]
fn call0(num: u64) -> u64 {
    let r: u64;
    // SAFETY: as in `call`; the calls made through this one read no argument register.
    unsafe {
        core::arch::asm!(
            "svc #0",
            inlateout("x0") 0u64 => r,
            inlateout("x8") num => _,
            out("x1") _, out("x2") _, out("x3") _, out("x4") _, out("x5") _, out("x6") _,
            out("x7") _, out("x9") _, out("x10") _, out("x11") _, out("x12") _, out("x13") _,
            out("x14") _, out("x15") _, out("x16") _, out("x17") _, out("x18") _,
            options(nostack),
        );
    }
    r
}
#[cfg(not(target_os = "none"))]
fn call0(num: u64) -> u64 {
    call(num, [0; 6])
}

/// A call that reads three arguments: x3-x5 go in as they are (for `UpcallResume`, whose
/// fault path counts every instruction).
#[cfg(target_os = "none")]
#[inline(always)]
fn call3(num: u64, a: u64, b: u64, c: u64) -> u64 {
    let r: u64;
    // SAFETY: as in `call`; the calls made through this one read no argument past x2.
    unsafe {
        core::arch::asm!(
            "svc #0",
            inlateout("x0") a => r,
            inlateout("x1") b => _, inlateout("x2") c => _,
            inlateout("x8") num => _,
            out("x3") _, out("x4") _, out("x5") _, out("x6") _,
            out("x7") _, out("x9") _, out("x10") _, out("x11") _, out("x12") _, out("x13") _,
            out("x14") _, out("x15") _, out("x16") _, out("x17") _, out("x18") _,
            options(nostack),
        );
    }
    r
}
#[cfg(not(target_os = "none"))]
fn call3(num: u64, a: u64, b: u64, c: u64) -> u64 {
    call(num, [a, b, c, 0, 0, 0])
}

/// On the host there is no kernel: every call reports `NoSys` (only pure code is tested there).
#[cfg(not(target_os = "none"))]
fn call(_num: u64, _a: [u64; 6]) -> u64 {
    Error::NoSys as i64 as u64
}

/// The virtual counter: ticks since the machine started, `KernelInfo::counter_hz` a second
/// (under QEMU's `-icount`, instructions). Always 0 on the host.
#[cfg(target_os = "none")]
pub fn now() -> u64 {
    let t: u64;
    // SAFETY: reads CNTVCT_EL0, which the kernel lets EL0 read (CNTKCTL_EL1.EL0VCTEN); it
    // writes only the output register.
    unsafe { core::arch::asm!("mrs {}, cntvct_el0", out(reg) t, options(nostack, preserves_flags)) };
    t
}
#[cfg(not(target_os = "none"))]
pub fn now() -> u64 {
    0
}

/// The PMU cycle counter: under QEMU's `-icount`, guest instructions exactly (for
/// benchmarks; on a Pi 4, cycles). Always 0 on the host.
#[cfg(target_os = "none")]
pub fn cycles() -> u64 {
    let c: u64;
    // SAFETY: EL0 may read PMCCNTR_EL0 (the kernel sets PMUSERENR_EL0.CR); the `isb`s keep
    // the read from moving across the measured code; only the output register is written.
    unsafe { core::arch::asm!("isb", "mrs {}, pmccntr_el0", "isb", out(reg) c, options(nostack)) };
    c
}
#[cfg(not(target_os = "none"))]
pub fn cycles() -> u64 {
    0
}

/// A raw call with any number and arguments (for the fuzzer).
pub fn raw(num: u64, a: [u64; 6]) -> u64 {
    call(num, a)
}

fn c0(n: Sys) -> Result<u64, Error> {
    result(call0(n as u64))
}
fn c1(n: Sys, a: u64) -> Result<u64, Error> {
    result(call(n as u64, [a, 0, 0, 0, 0, 0]))
}
fn c2(n: Sys, a: u64, b: u64) -> Result<u64, Error> {
    result(call(n as u64, [a, b, 0, 0, 0, 0]))
}
fn c3(n: Sys, a: u64, b: u64, c: u64) -> Result<u64, Error> {
    result(call(n as u64, [a, b, c, 0, 0, 0]))
}
fn c4(n: Sys, a: u64, b: u64, c: u64, d: u64) -> Result<u64, Error> {
    result(call(n as u64, [a, b, c, d, 0, 0]))
}

pub fn nop() -> Result<u64, Error> {
    c0(Sys::Nop)
}
/// Writes all of `bytes` (the kernel takes a few at a time).
pub fn console_write(bytes: &[u8]) -> Result<u64, Error> {
    owed::touch(bytes.as_ptr() as u64, bytes.len() as u64);
    let mut rest = bytes;
    while !rest.is_empty() {
        let n = c2(Sys::ConsoleWrite, rest.as_ptr() as u64, rest.len() as u64)?;
        rest = &rest[(n as usize).min(rest.len())..];
    }
    Ok(bytes.len() as u64)
}
/// `pa`: a particular frame, or `None` for any free one.
pub fn frame_alloc(env: EnvId, pa: Option<u64>) -> Result<u64, Error> {
    c3(Sys::FrameAlloc, env.0 as u64, pa.unwrap_or(exo_abi::ANY_FRAME), 0)
}
/// A new frame for `env` holding a copy of `from`, a data frame the caller owns.
pub fn frame_copy(env: EnvId, from: u64) -> Result<u64, Error> {
    c3(Sys::FrameAlloc, env.0 as u64, exo_abi::ANY_FRAME, from)
}
pub fn frame_free(env: EnvId, pa: u64) -> Result<(), Error> {
    c2(Sys::FrameFree, env.0 as u64, pa).map(drop)
}
pub fn frame_give(pa: u64, to: EnvId) -> Result<(), Error> {
    c2(Sys::FrameGive, pa, to.0 as u64).map(drop)
}
pub fn table_bind(env: EnvId, pa: u64, level: u32) -> Result<(), Error> {
    c3(Sys::TableBind, env.0 as u64, pa, level as u64).map(drop)
}
pub fn table_unbind(env: EnvId, pa: u64) -> Result<(), Error> {
    c2(Sys::TableUnbind, env.0 as u64, pa).map(drop)
}
pub fn table_set(env: EnvId, va: u64, level: u32, pte: u64) -> Result<(), Error> {
    c4(Sys::TableSet, env.0 as u64, va, level as u64, pte).map(drop)
}
/// Sets entry `index` of `env`'s level-3 table at `table` (linked into its tree): `TableSet`
/// without the walk.
pub fn table_set_at(env: EnvId, table: u64, index: u64, pte: u64) -> Result<(), Error> {
    c4(Sys::TableSetAt, env.0 as u64, table, index, pte).map(drop)
}
/// Applies `ops` in order; returns how many succeeded.
pub fn table_set_batch(env: EnvId, ops: &[TableOp]) -> Result<u64, Error> {
    owed::touch(ops.as_ptr() as u64, size_of_val(ops) as u64);
    c3(Sys::TableSetBatch, env.0 as u64, ops.as_ptr() as u64, ops.len() as u64)
}
pub fn table_get(env: EnvId, va: u64, level: u32) -> Result<u64, Error> {
    c3(Sys::TableGet, env.0 as u64, va, level as u64)
}
pub fn env_create(quota: u32) -> Result<EnvId, Error> {
    c1(Sys::EnvCreate, quota as u64).map(|v| EnvId(v as u32))
}
pub fn env_set_entry(env: EnvId, pc: u64, sp: u64, a0: u64, a1: u64) -> Result<(), Error> {
    result(call(Sys::EnvSetEntry as u64, [env.0 as u64, pc, sp, a0, a1, 0])).map(drop)
}
pub fn env_set_upcall(env: EnvId, entry: u64, stack_top: u64, slice_upcalls: bool) -> Result<(), Error> {
    c4(Sys::EnvSetUpcall, env.0 as u64, entry, stack_top, slice_upcalls as u64).map(drop)
}
/// Lets `env` (this environment or a descendant) run only on the cores in `cores` (bit i:
/// core i), a subset of this environment's own.
pub fn env_set_affinity(env: EnvId, cores: u8) -> Result<(), Error> {
    c2(Sys::EnvSetAffinity, env.0 as u64, cores as u64).map(drop)
}
pub fn env_start(env: EnvId) -> Result<(), Error> {
    c1(Sys::EnvStart, env.0 as u64).map(drop)
}
pub fn env_self() -> EnvId {
    EnvId(c0(Sys::EnvSelf).unwrap_or(0) as u32)
}
pub fn kernel_info() -> Result<u64, Error> {
    c0(Sys::KernelInfo)
}
pub fn upcall_context_get(ctx: &mut Context) -> Result<(), Error> {
    owed::touch(ctx as *mut Context as u64, size_of::<Context>() as u64);
    c2(Sys::UpcallContext, ctx as *mut Context as u64, 0).map(drop)
}
pub fn upcall_context_set(ctx: &Context) -> Result<(), Error> {
    owed::touch(ctx as *const Context as u64, size_of::<Context>() as u64);
    c2(Sys::UpcallContext, ctx as *const Context as u64, 1).map(drop)
}
pub fn yield_now() {
    let _ = c0(Sys::Yield);
}
pub fn yield_to(env: EnvId) -> Result<(), Error> {
    c1(Sys::YieldTo, env.0 as u64).map(drop)
}
pub fn exit(status: i32) -> ! {
    loop {
        let _ = c1(Sys::Exit, status as u32 as u64);
    }
}
pub fn env_destroy(env: EnvId) -> Result<(), Error> {
    c1(Sys::EnvDestroy, env.0 as u64).map(drop)
}
/// Waits for a child to exit; returns its exit status.
pub fn env_wait(env: EnvId) -> Result<i32, Error> {
    c1(Sys::EnvWait, env.0 as u64).map(|v| v as u32 as i32)
}
/// Reads one byte of console input; `Denied` unless the caller holds the console input.
pub fn console_read(blocking: bool) -> Result<u8, Error> {
    c1(Sys::ConsoleRead, blocking as u64).map(|b| b as u8)
}
/// Hands the console input to `env` (the caller or a descendant); `EnvId::SELF` takes it
/// back from a descendant. The caller must hold it or be an ancestor of its holder.
pub fn console_give(env: EnvId) -> Result<(), Error> {
    c1(Sys::ConsoleGive, env.0 as u64).map(drop)
}
pub fn upcall_resume() -> ! {
    loop {
        let _ = c0(Sys::UpcallResume); // (x0 = 0: no entry to set)
    }
}
/// [`upcall_resume`] with entry `i` of this environment's level-3 table `table` set to
/// `pte` first, in the same kernel entry (checked as `TableSetAt` checks it). Returns only
/// if the entry could not be set, with why; the handler is still running then.
pub fn upcall_resume_mapping(table: u64, i: u64, pte: u64) -> Error {
    result(call3(Sys::UpcallResume as u64, table, i, pte)).err().unwrap_or(Error::Invalid)
}
/// Reads `buf.len() / 512` sectors from `sector` into `buf` (512-byte aligned). The
/// kernel writes only into pages mapped writable, so copy-on-write pages of `buf` are
/// first made private by writing to them: one byte in each page the buffer touches (which
/// maps owed stack pages too).
pub fn sector_read(sector: u64, buf: &mut [u8]) -> Result<u64, Error> {
    let base = buf.as_ptr() as usize;
    let mut at = 0;
    while at < buf.len() {
        let p = buf[at..].as_mut_ptr();
        // SAFETY: `p` points into `buf`, a valid `&mut [u8]`, so it may be read.
        let byte = unsafe { core::ptr::read_volatile(p) };
        // SAFETY: the same pointer may be written; the byte keeps its own value.
        unsafe { core::ptr::write_volatile(p, byte) };
        at = ((base + at) & !0xfff) + 0x1000 - base; // the start of the next page
    }
    sectors(Sys::SectorRead, sector, buf.len() as u64 / 512, buf.as_mut_ptr() as u64)
}
/// Writes `buf.len() / 512` sectors from `buf` (512-byte aligned) at `sector`.
pub fn sector_write(sector: u64, buf: &[u8]) -> Result<u64, Error> {
    owed::touch(buf.as_ptr() as u64, buf.len() as u64);
    sectors(Sys::SectorWrite, sector, buf.len() as u64 / 512, buf.as_ptr() as u64)
}
/// One transfer of `count` sectors as as many calls as it takes: each call moves at most
/// [`exo_abi::SECTOR_CHUNK`] and says how many, and when the device moves them in the
/// background ([`exo_abi::SECTOR_PENDING`]) `SectorWait` blocks until they have moved.
/// While the disk moves another's transfer (`Busy`, one chunk at most), the rest of the
/// slice goes to others. Returns `count`, or the first error.
fn sectors(call: Sys, sector: u64, count: u64, buf: u64) -> Result<u64, Error> {
    use exo_abi::SECTOR_PENDING;
    let mut done = 0;
    loop {
        let n = match c3(call, sector + done, count - done, buf + done * 512) {
            Err(Error::Busy) => {
                yield_now();
                continue;
            }
            r => r?,
        };
        if n & SECTOR_PENDING != 0 {
            c0(Sys::SectorWait)?;
        }
        let n = n & !SECTOR_PENDING;
        done += n;
        if n == 0 || done >= count {
            return Ok(done);
        }
    }
}
pub fn sector_flush() -> Result<(), Error> {
    c0(Sys::SectorFlush).map(drop)
}
pub fn sector_grant(env: EnvId, sector: u64, count: u64, rights: u32) -> Result<(), Error> {
    c4(Sys::SectorGrant, env.0 as u64, sector, count, rights as u64).map(drop)
}
pub fn sector_revoke(env: EnvId, sector: u64, count: u64) -> Result<(), Error> {
    c3(Sys::SectorRevoke, env.0 as u64, sector, count).map(drop)
}
/// `ConsoleAllow`: lets `env` (the caller or a descendant) write to the console, which the
/// caller must be allowed to itself; or (`on` false) takes that back from `env` and from
/// everyone below it.
pub fn console_allow(env: EnvId, on: bool) -> Result<(), Error> {
    c2(Sys::ConsoleAllow, env.0 as u64, on as u64).map(drop)
}
pub fn pct_allow(caller: EnvId, target: EnvId) -> Result<(), Error> {
    c2(Sys::PctAllow, caller.0 as u64, target.0 as u64).map(drop)
}
pub fn pct_disallow(caller: EnvId, target: EnvId) -> Result<(), Error> {
    c2(Sys::PctDisallow, caller.0 as u64, target.0 as u64).map(drop)
}
pub fn pct_register(entry: u64, stack_top: u64) -> Result<(), Error> {
    c2(Sys::PctRegister, entry, stack_top).map(drop)
}
pub fn pct_ungrant(target: EnvId, frame: u64) -> Result<(), Error> {
    c2(Sys::PctUngrant, target.0 as u64, frame).map(drop)
}
/// Parks this environment's own context for good, serving calls. Returns only on error.
pub fn pct_wait() -> Error {
    match c0(Sys::PctWait) {
        Err(e) => e,
        Ok(_) => Error::Invalid,
    }
}
/// A protected control transfer to `target` with four argument words; `opts` as
/// `exo_abi::Sys::PctCall` describes. Returns the callee's four reply words.
#[cfg(target_os = "none")]
pub fn pct_call(target: EnvId, args: [u64; 4], opts: u64) -> Result<[u64; 4], Error> {
    let (x0, r1, r2, r3, r4): (u64, u64, u64, u64, u64);
    // SAFETY: as in `call`; PctCall returns a status in x0 and results in x1-x4.
    unsafe {
        core::arch::asm!(
            "svc #0",
            inlateout("x0") target.0 as u64 => x0,
            inlateout("x1") args[0] => r1, inlateout("x2") args[1] => r2, inlateout("x3") args[2] => r3,
            inlateout("x4") args[3] => r4, inlateout("x5") opts => _,
            inlateout("x8") Sys::PctCall as u64 => _,
            out("x6") _, out("x7") _, out("x9") _, out("x10") _, out("x11") _, out("x12") _,
            out("x13") _, out("x14") _, out("x15") _, out("x16") _, out("x17") _, out("x18") _,
            options(nostack),
        );
    }
    result(x0).map(|_| [r1, r2, r3, r4])
}
#[cfg(not(target_os = "none"))]
pub fn pct_call(_target: EnvId, _args: [u64; 4], _opts: u64) -> Result<[u64; 4], Error> {
    Err(Error::NoSys)
}
/// From a call's context: the four reply words go back to the caller, in x1-x4. Inline,
/// so that the words go from the handler's result to the `svc` in registers, with no call
/// and no frame.
#[cfg(target_os = "none")]
#[inline(always)]
pub fn pct_reply(r: [u64; 4]) -> ! {
    // SAFETY: PctReply ends this context (the next call starts a fresh one at the entry).
    // It fails only outside a call's context, where it fails whatever the words: it is
    // then made again forever (with x8 set again, as a failed call clobbers it), as `loop`
    // did before.
    unsafe {
        core::arch::asm!(
            "2: mov x8, {n}", "svc #0", "b 2b",
            n = const Sys::PctReply as u64,
            in("x1") r[0], in("x2") r[1], in("x3") r[2], in("x4") r[3],
            options(noreturn, nostack),
        )
    }
}
#[cfg(not(target_os = "none"))]
pub fn pct_reply(r: [u64; 4]) -> ! {
    loop {
        let _ = call(Sys::PctReply as u64, [0, r[0], r[1], r[2], r[3], 0]);
    }
}

/// `NetBind`: the kernel checks the filters and the ring (see [`Sys::NetBind`]), which
/// it writes to later: owed pages of it are touched now.
pub fn net_bind(b: &exo_abi::net::NetBind) -> Result<u64, Error> {
    owed::touch(b as *const exo_abi::net::NetBind as u64, size_of::<exo_abi::net::NetBind>() as u64);
    owed::touch(b.ring, u64::from(b.slots).saturating_mul(exo_abi::net::NET_SLOT as u64));
    c1(Sys::NetBind, b as *const exo_abi::net::NetBind as u64)
}
/// `NetGrant`: lets `env`, a descendant, bind within `scope`, one of the caller's own or
/// within one; `None`: within every scope the caller holds.
pub fn net_grant(env: EnvId, scope: Option<&exo_abi::net::NetScope>) -> Result<(), Error> {
    let ptr = scope.map_or(0, |s| s as *const exo_abi::net::NetScope as u64);
    owed::touch(ptr, if ptr == 0 { 0 } else { size_of::<exo_abi::net::NetScope>() as u64 });
    c2(Sys::NetGrant, env.0 as u64, ptr).map(drop)
}
/// `NetRevoke`: takes `scope` back from `env` (the caller or a descendant), with every
/// binding and onward grant that needed it.
pub fn net_revoke(env: EnvId, scope: &exo_abi::net::NetScope) -> Result<(), Error> {
    owed::touch(scope as *const exo_abi::net::NetScope as u64, size_of::<exo_abi::net::NetScope>() as u64);
    c2(Sys::NetRevoke, env.0 as u64, scope as *const exo_abi::net::NetScope as u64).map(drop)
}
pub fn net_unbind(binding: u64) -> Result<(), Error> {
    c1(Sys::NetUnbind, binding).map(drop)
}
/// Sends one Ethernet frame, if the transmit check lets it.
pub fn net_send(frame: &[u8]) -> Result<(), Error> {
    owed::touch(frame.as_ptr() as u64, frame.len() as u64);
    c2(Sys::NetSend, frame.as_ptr() as u64, frame.len() as u64).map(drop)
}
/// Moves what the device received into the rings; returns how many copies went anywhere,
/// with the interface's counters in `info`.
pub fn net_poll(info: Option<&mut exo_abi::net::NetInfo>) -> Result<u64, Error> {
    if let Some(i) = &info {
        owed::touch(&raw const **i as u64, size_of::<exo_abi::net::NetInfo>() as u64);
    }
    c1(Sys::NetPoll, info.map_or(0, |i| i as *mut exo_abi::net::NetInfo as u64))
}
/// Sleeps until the next tick, or until another environment yields to this one.
pub fn net_wait() -> Result<(), Error> {
    c0(Sys::NetWait).map(drop)
}
/// As [`net_wait`], unless `word` no longer holds `expected` (then it returns at once): the
/// kernel looks under its lock, so a waker that changes the word and then yields to this
/// environment (`YieldTo`) always finds it asleep, or finds it never slept.
pub fn wait_on(word: &AtomicU64, expected: u64) -> Result<(), Error> {
    owed::touch(word.as_ptr() as u64, 8);
    c2(Sys::NetWait, word.as_ptr() as u64, expected).map(drop)
}
