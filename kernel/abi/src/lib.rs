//! The exo system-call ABI, shared by the kernel and every libOS. No dependencies.
//!
//! A call is `svc #0` with the number ([`Sys`]) in `x8` and arguments in `x0`–`x5`. The
//! result comes back in `x0`: a value ≥ 0, or a negative [`Error`]. Registers `x1`–`x18`
//! are clobbered (zeroed or holding arguments); `x19`–`x30`, `sp` and the flags are kept.
//! `docs/abi.md` is the one-page reference; the rustdoc on each [`Sys`] variant says what
//! the kernel checks and which errors it returns.
//!
//! Names are physical: frames are named by physical address, environments by [`EnvId`],
//! translation-table slots by (environment, virtual address, level).
#![cfg_attr(not(test), no_std)]
#![forbid(unsafe_code)]

pub mod net;
pub mod pte;

/// An environment's name: slot index in the low 12 bits, a generation above, so a stale id
/// never names the slot's next occupant. `EnvId(0)` means "the caller" wherever an
/// environment is an argument.
#[repr(transparent)]
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct EnvId(pub u32);

impl EnvId {
    pub const SELF: EnvId = EnvId(0);
    pub const fn slot(self) -> usize {
        (self.0 & 0xfff) as usize
    }
}

/// Errors, as negative values of `x0`. The discriminants are part of the ABI.
#[repr(i64)]
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Error {
    /// An argument is malformed: unaligned, out of range, reserved bits set.
    Invalid = -1,
    /// The caller may not do this to that resource (not its own, not its descendant's).
    Denied = -2,
    /// No such environment, frame, table or slot.
    NotFound = -3,
    /// The resource is in use: a frame still mapped, a table not empty, a slot occupied.
    Busy = -4,
    /// No free frame. A revocation request may have been sent to the largest holder;
    /// trying again later can succeed.
    NoMemory = -5,
    /// The environment's frame quota is used up.
    Quota = -6,
    /// Nothing to read yet (non-blocking console read).
    WouldBlock = -7,
    /// The environment table is full.
    NoSlot = -8,
    /// A pointer from EL0 does not lead to memory the caller has mapped with the needed
    /// permission.
    Fault = -9,
    /// Unknown system call number.
    NoSys = -10,
    /// The device reported an error.
    Io = -11,
    /// The operation did not finish in time.
    Timeout = -12,
}

impl Error {
    pub const ALL: [Error; 12] = [
        Error::Invalid,
        Error::Denied,
        Error::NotFound,
        Error::Busy,
        Error::NoMemory,
        Error::Quota,
        Error::WouldBlock,
        Error::NoSlot,
        Error::Fault,
        Error::NoSys,
        Error::Io,
        Error::Timeout,
    ];

    /// The error a negative `x0` stands for.
    pub fn from_ret(v: i64) -> Option<Error> {
        Error::ALL.into_iter().find(|e| *e as i64 == v)
    }
}

/// Decodes a raw `x0`. Inlined into every system-call wrapper: success costs a test and a
/// branch, the error's decoding is out of line.
#[inline(always)]
pub fn result(x0: u64) -> Result<u64, Error> {
    if (x0 as i64) >= 0 {
        Ok(x0)
    } else {
        Err(error_of(x0 as i64))
    }
}

#[cold]
#[inline(never)]
fn error_of(v: i64) -> Error {
    Error::from_ret(v).unwrap_or(Error::Invalid)
}

/// Argument meaning "any free frame" for [`Sys::FrameAlloc`].
pub const ANY_FRAME: u64 = u64::MAX;

/// System-call numbers. Numbers below [`Sys::FIRST_SLOW`] never switch environments and
/// take the kernel's fast path; the others may block or switch.
#[repr(u64)]
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Sys {
    /// Does nothing; returns 0. The cost of a round trip.
    Nop = 0,
    /// `(ptr, len) -> written`: writes the first [`CONSOLE_CHUNK`] bytes at most to the
    /// debug console (a polled transmit: the caller loops for more). `Denied` unless the
    /// caller may write to it ([`Sys::ConsoleAllow`]); `Fault` if the bytes are not mapped
    /// readable; `Invalid` if `len` > 64 KiB.
    ConsoleWrite = 1,
    /// `(env, pa, from) -> pa`: allocates frame `pa` (or any free frame, with [`ANY_FRAME`])
    /// as data owned by `env`, zeroed, or (`from` ≠ 0) holding a copy of `from`, which must
    /// be a data frame the caller owns (`Denied` otherwise: not an ancestor's, not a shared
    /// one). `Denied` unless `env` is the caller or its descendant; `NotFound` if `pa` is not
    /// RAM; `Busy` if it is not free; `Quota`, `NoMemory`.
    FrameAlloc = 2,
    /// `(env, pa)`: frees a data frame `env` owns. `Busy` while any mapping points at it.
    FrameFree = 3,
    /// `(pa, to)`: gives a data frame the caller owns to `to`, a strict descendant
    /// (`Denied` for anyone else: memory never flows up or sideways, where it would escape
    /// the giver's quota). `Busy` while mapped; `Quota` if `to` is full.
    FrameGive = 4,
    /// `(env, pa, level)`: makes `env`'s unmapped data frame `pa` a translation table at
    /// `level` (0..=3), zeroed. Level 0 becomes `env`'s root (TTBR0); `Busy` if it has one.
    TableBind = 5,
    /// `(env, pa)`: turns an empty, unlinked table (or the root, once empty) back into data.
    TableUnbind = 6,
    /// `(env, va, level, pte)`: sets the entry for `va` in `env`'s table at `level`, which
    /// must be reachable from the root (`NotFound` otherwise). A zero `pte` clears it.
    /// At levels 0–2 a valid entry must be a table descriptor naming an unlinked table of
    /// `env` at `level + 1`; at level 3 a page descriptor with only the bits
    /// [`pte::USER_ALLOWED`] permits, pointing at a data frame `env` may map (its own; an
    /// ancestor's that the ancestor shared at least that widely — the caller shares its own
    /// frame by mapping it into a descendant; one granted to `env` over a call), or
    /// read-only at a public kernel frame (Normal, cacheable) or one of `env`'s tables.
    /// `Denied` otherwise, and for writable and executable together. Clearing a table entry
    /// needs that table empty.
    TableSet = 7,
    /// `(env, ptr, count) -> done`: applies `count` [`TableOp`]s from memory in order;
    /// returns how many succeeded, or the first one's error if none did.
    TableSetBatch = 8,
    /// `(env, va, level) -> pte`: reads the entry for `va` at `level`.
    TableGet = 9,
    /// `(quota, kin) -> env`: creates a blank child (no address space, not runnable) that
    /// may own at most `quota` frames (0: no limit beyond the caller's own) and have at
    /// most `kin` descendants at once (0: half the slots the caller has left). The child's
    /// slot counts against the caller's and every ancestor's `kin`; `NoSlot` past any.
    EnvCreate = 10,
    /// `(env, pc, sp, arg0, arg1)`: sets a blank or stopped child's entry registers.
    EnvSetEntry = 11,
    /// `(env, entry, stack_top, flags)`: registers the upcall handler and its exception
    /// stack; `flags` bit 0 asks for an upcall at the end of every time slice.
    EnvSetUpcall = 12,
    /// `(env)`: makes a child runnable. `Invalid` if it has no root table.
    EnvStart = 13,
    /// `() -> env`: the caller's own id.
    EnvSelf = 14,
    /// `() -> pa`: physical address of the [`KernelInfo`] page (map it read-only).
    KernelInfo = 15,
    /// `(ptr, write)`: copies the interrupted context of the current upcall to `ptr` (a
    /// [`Context`]), or from it when `write` is 1.
    UpcallContext = 16,
    /// Gives up the rest of the time slice.
    Yield = 32,
    /// `(env)`: donates the rest of the slice to a runnable environment (any). If this core
    /// may not run it and it runs nowhere, a core it may use is signalled to run it at once,
    /// preempting its occupant — at most once between two of that core's ticks, the
    /// occupant getting the core back when the target's turn ends (`docs/multicore.md`). A
    /// target asleep in [`Sys::NetWait`] is woken instead, and the caller goes on: an idle
    /// core the target may use is signalled to take it.
    YieldTo = 33,
    /// `(status)`: ends the caller; its parent can collect `status` with `EnvWait`.
    Exit = 34,
    /// `(env)`: destroys `env` and all its descendants, reclaiming every frame, table and
    /// binding they hold. The caller may name itself.
    EnvDestroy = 35,
    /// `(env) -> status`: waits for a child to exit and reclaims it.
    EnvWait = 36,
    /// `(blocking) -> byte`: reads one byte from the debug console; `WouldBlock` if none
    /// is waiting and `blocking` is 0. `Denied` (at once, never blocking) unless the caller
    /// holds the console input (see [`Sys::ConsoleGive`]).
    ConsoleRead = 37,
    /// `(table, i, pte)`: returns from an upcall to the interrupted context (as possibly
    /// changed by `UpcallContext`). With `table` ≠ 0, first sets entry `i` of that level-3
    /// table to `pte` exactly as [`Sys::TableSetAt`] on the caller itself would; if that
    /// fails, the handler gets the error and keeps running. `Invalid` outside an upcall
    /// (nothing set then).
    UpcallResume = 38,
    /// `(sector, count, buf) -> moved`: reads the first [`SECTOR_CHUNK`] at most of `count`
    /// sectors (1..=2048) into the caller's memory at `buf` (512-byte aligned, mapped
    /// writable: `Fault` otherwise) and returns how many it reads; the caller asks again
    /// for the rest. With [`SECTOR_PENDING`] set beside the count, a device that works in
    /// the background (virtio-blk) is still moving it, and the data has arrived once
    /// [`Sys::SectorWait`] returns 0; without it, the data is there.
    /// `Denied` unless one of the caller's sector bindings with the read right covers the
    /// whole range; `Invalid` for a bad count, alignment or a range past the disk; `Busy`
    /// while the disk moves another transfer (one chunk at most: ask again); `Io`,
    /// `Timeout` from the device; `NotFound` if there is no disk.
    SectorRead = 17,
    /// `(sector, count, buf) -> moved`: writes, likewise (buffer mapped readable, the write
    /// right). What it moved is complete once `SectorWait` returns 0; see `docs/storage.md`
    /// for durability.
    SectorWrite = 18,
    /// Returns once every completed write is durable on the device. `Denied` unless the
    /// caller holds a binding with the write right.
    SectorFlush = 19,
    /// `(env, sector, count, rights)`: binds an extent to a descendant. The caller must
    /// hold one binding covering the extent with at least `rights`; `NoSlot` if the
    /// descendant has [`SECTOR_BINDINGS`] already.
    SectorGrant = 20,
    /// `(env, sector, count)`: removes the binding of exactly that extent from the caller
    /// or a descendant; `NotFound` if there is none.
    SectorRevoke = 21,
    /// `(caller, target)`: lets `caller` make protected control transfers to `target`.
    /// The granter must be an ancestor-or-self of `caller`, and an ancestor-or-self of
    /// `target` or itself allowed to call it (rights pass down). A right is one bit per
    /// slot (any number of targets); it ends when the slot's next environment is made.
    PctAllow = 22,
    /// `(caller, target)`: takes that right back (same authority); `NotFound` if absent.
    PctDisallow = 23,
    /// `(entry, stack_top)`: the caller accepts calls: each starts a fresh context at
    /// `entry` on `stack_top` (see [`Sys::PctCall`]). Entry 0 stops accepting.
    PctRegister = 24,
    /// `(target, frame)`: ends a frame grant the caller made to `target`, removing every
    /// mapping of the frame in `target`'s tables; `NotFound` if there is no such grant (a
    /// grant dies when its frame changes hands); `Busy` while `target` is still serving a
    /// call from the caller (a call that timed out included).
    PctUngrant = 25,
    /// `(env, cores)`: lets `env` (the caller or a descendant) run only on the cores in the
    /// mask `cores` (bit i: core i), from each core's next scheduling decision on. A new
    /// environment starts with its parent's mask; init with every core that is up. `Denied`
    /// if `cores` names a core `env`'s parent may not run on (cores flow down the tree: a
    /// parent keeps its subtree off a core by leaving the core out of its own mask before
    /// it creates children); `Invalid` for an empty mask or one wider than 8 bits.
    EnvSetAffinity = 26,
    /// `(env, table, index, pte)`: [`Sys::TableSet`] at level 3 with the table named
    /// directly: sets entry `index` of `table`, which must be a level-3 table of `env`'s
    /// linked into its tree (the frame table records where: [`FrameEntry::link`]), so the
    /// kernel walks nothing. The page entry is checked exactly as `TableSet` checks it; a
    /// zero `pte` clears the entry. `NotFound` if `table` is not RAM or not linked;
    /// `Denied` unless it is a table `env` owns; `Invalid` if it is not at level 3 or
    /// `index` ≥ 512.
    TableSetAt = 27,
    /// `(env, on)`: with `on` ≠ 0, lets `env`, the caller or a descendant, write to the
    /// console ([`Sys::ConsoleWrite`]); the caller must be allowed itself (`Denied`
    /// otherwise). With `on` = 0, takes that back from `env` and from every descendant of
    /// `env`. Init may write from boot; no other environment may until it is allowed.
    ConsoleAllow = 28,
    /// `()`: parks the caller's own context for good and makes it available for calls
    /// (it must have registered an entry). Returns only with an error.
    PctWait = 39,
    /// `(target, a0, a1, a2, a3, opts) -> (status, r0, r1, r2, r3)`: a protected control
    /// transfer. The target must be available (parked in `PctWait`, not serving a call);
    /// it starts at its entry with x0 = the caller's id, x1-x4 = a0-a3 (the words stay in
    /// the registers they were passed in, both ways), x5 = the granted frame (or 0) with
    /// bit 0 set if read-write, x29 = x30 = 0, sp = the registered stack top, on the rest
    /// of the caller's time slice.
    /// `opts` = granted frame (page-aligned physical address of a data frame the caller
    /// owns, or 0) | [`PCT_GRANT_RW`] | [`PCT_NONBLOCK`] | timeout ticks << 3 (0: none).
    /// Errors: `Denied` without the right; `NotFound` if the target is dead or never
    /// registered, or dies or faults during the call; `Busy` if it is serving another call
    /// and `PCT_NONBLOCK` is set; `Timeout`.
    PctCall = 40,
    /// `(_, r0, r1, r2, r3)`, the words in x1-x4 (x0 is not read): from a call's context,
    /// returns to the caller (status 0 in x0, x1-x4 = r0-r3, as they were) and parks this
    /// context again.
    PctReply = 41,
    /// `(env)`: hands the console input to `env`, the caller or a descendant of it. One
    /// environment holds it at a time: init from boot; when the holder dies it passes to
    /// its nearest living ancestor. `Denied` unless the caller holds it or is an ancestor
    /// of its holder (so an ancestor takes it back by naming itself), or if `env` is not
    /// the caller or its descendant; `NotFound` if `env` is not alive.
    ConsoleGive = 42,
    /// `(ptr) -> binding`: binds the receive side of the network with the [`net::NetBind`]
    /// at `ptr` (see `docs/network.md`). `Invalid` if a filter fails the checker or the
    /// ring is misaligned or too large; `Fault` unless the ring is mapped writable;
    /// `Denied` unless one of the caller's scopes holds both filters ([`Sys::NetGrant`]);
    /// `Busy` if a filter overlaps another environment's (or a shared with an exclusive
    /// one); `NoSlot` past [`net::NET_BINDINGS`]; `NotFound` without a network device.
    NetBind = 48,
    /// `(binding)`: removes one of the caller's bindings; `NotFound` if it is not one.
    NetUnbind = 49,
    /// `(ptr, len)`: sends the Ethernet frame at `ptr`. `Denied` unless its source MAC
    /// is the interface's and it matches the transmit filter of one of the caller's
    /// bindings; `Invalid` for a length outside 14..=1514; `Io`, `Timeout` from the device.
    NetSend = 50,
    /// `(ptr) -> delivered`: moves what the device has received into the rings of the
    /// bindings it matches, and writes the [`net::NetInfo`] to `ptr` (unless 0).
    NetPoll = 51,
    /// `(word, expected)`: blocks until the next timer tick (when the kernel also polls the
    /// device), or until another environment yields to the caller ([`Sys::YieldTo`]), which
    /// any may: a return says only "look again". When `word` is not 0 it is the address of
    /// a `u64` of the caller's; if that no longer holds `expected`, the call returns at once
    /// (`Fault` if it is not readable). Read under the kernel's lock, so a waker that
    /// changes the word and then yields to the sleeper is never missed.
    NetWait = 52,
    /// `(env, ptr)`: lets `env`, a strict descendant of the caller, bind the network within
    /// the [`net::NetScope`] at `ptr`, which must lie within one of the caller's own scopes
    /// (`Denied` otherwise); `ptr` 0 gives `env` a copy of every scope the caller holds.
    /// `NetBind` accepts only a binding whose receive and transmit filters both lie within
    /// one scope of the binder's: init holds the whole network from boot, and no other
    /// environment holds any scope it was not given. `Invalid` for a filter the checker
    /// refuses; `NoSlot` past [`net::NET_SCOPES`]; `NotFound` without a network device.
    /// Scopes end with the environment, or are taken back with [`Sys::NetRevoke`].
    NetGrant = 53,
    /// `(env, ptr)`: takes the [`net::NetScope`] at `ptr` (exactly as it was given) from
    /// `env`, the caller or a descendant (`NotFound` if it holds none such), and with it
    /// every binding of `env` or a descendant, and every scope of a descendant, that no
    /// longer lies within a scope `env` keeps: so what was granted onward goes too.
    NetRevoke = 54,
    /// `()`: blocks while the caller's last `SectorRead`/`SectorWrite` is still moving data
    /// (its core runs others meanwhile; with none to run, it polls: it is repeated at once);
    /// then returns how that transfer ended: 0, or `Io`, `Timeout` from the device. An
    /// outcome is returned once; 0 when there is none.
    SectorWait = 46,
}

/// Most bytes one [`Sys::ConsoleWrite`] sends.
pub const CONSOLE_CHUNK: u64 = 64;
/// Frames granted to an environment at once.
pub const PCT_GRANTS: usize = 8;
/// [`Sys::PctCall`] option bits (in the low 12 bits of `opts`, below the frame address).
pub const PCT_GRANT_RW: u64 = 1;
pub const PCT_NONBLOCK: u64 = 2;
pub const PCT_TIMEOUT_SHIFT: u32 = 3;

impl Sys {
    pub const FIRST_SLOW: u64 = 32;
    /// One past the highest fast number the kernel's table has.
    pub const FAST_COUNT: u64 = 29;
}

/// Sector-binding rights.
pub const SECTOR_READ: u32 = 1;
pub const SECTOR_WRITE: u32 = 2;
/// Bindings an environment can hold.
pub const SECTOR_BINDINGS: usize = 8;
/// Most sectors one `SectorRead`/`SectorWrite` may ask for (1 MiB).
pub const SECTOR_MAX_COUNT: u64 = 2048;
/// Most sectors one `SectorRead`/`SectorWrite` moves (32 KiB): it returns how many it
/// moved, and the caller asks again for the rest. A device the CPU drives (PIO) thus holds
/// a core, with interrupts masked, for one chunk at a time; one that works in the
/// background holds none (docs/multicore.md).
pub const SECTOR_CHUNK: u64 = 64;
/// Set in what `SectorRead`/`SectorWrite` return, beside the count, when the chunk is left
/// to the device: [`Sys::SectorWait`] then waits for it and says how it ended. Without it
/// the chunk has moved already (a device the CPU drives), and there is nothing to wait for.
pub const SECTOR_PENDING: u64 = 1 << 32;

/// An extent of the disk bound to an environment (count 0: an empty slot).
#[repr(C)]
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct SectorBinding {
    pub start: u64,
    pub count: u32,
    pub rights: u32,
}

impl SectorBinding {
    /// Whether this binding covers `[start, start + count)` with all of `rights`.
    pub fn covers(&self, start: u64, count: u64, rights: u32) -> bool {
        self.count != 0
            && self.rights & rights == rights
            && start >= self.start
            && start.checked_add(count).is_some_and(|end| end <= self.start + self.count as u64)
    }

    /// What a descendant loses when a binding of `[start, start + count)` is revoked from
    /// an ancestor left holding `kept`: each of its `bindings` that overlaps the extent and
    /// that none of `kept` covers (with the same rights) is cleared.
    pub fn revoke_uncovered(bindings: &mut [SectorBinding], start: u64, count: u64, kept: &[SectorBinding]) {
        for b in bindings.iter_mut() {
            let overlaps = b.count != 0 && b.start < start + count && start < b.start + b.count as u64;
            if overlaps && !kept.iter().any(|k| k.covers(b.start, b.count as u64, b.rights)) {
                *b = SectorBinding::default();
            }
        }
    }
}

/// One entry of a [`Sys::TableSetBatch`] request.
#[repr(C)]
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct TableOp {
    pub va: u64,
    pub level: u64,
    pub pte: u64,
}

/// A saved EL0 context, as [`Sys::UpcallContext`] reads and writes it. The kernel's own
/// trap frame has this layout too (`vectors.S` saves into it).
#[repr(C)]
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Context {
    pub x: [u64; 31],
    pub sp: u64,
    pub pc: u64,
    /// SPSR: only the NZCV flags may be changed.
    pub pstate: u64,
}

impl Context {
    pub const ZERO: Context = Context { x: [0; 31], sp: 0, pc: 0, pstate: 0 };
}

/// The general registers two to a line, then `sp` (a crash report's register dump).
impl core::fmt::Display for Context {
    fn fmt(&self, f: &mut core::fmt::Formatter) -> core::fmt::Result {
        for (i, pair) in self.x.chunks(2).enumerate() {
            write!(f, "    x{:<2} {:#018x}", 2 * i, pair[0])?;
            match pair.get(1) {
                Some(v) => writeln!(f, "  x{:<2} {:#018x}", 2 * i + 1, v)?,
                None => writeln!(f, "  sp     {:#018x}", self.sp)?,
            }
        }
        Ok(())
    }
}

/// Why an upcall was delivered: `x0` of the handler. `x1` = ESR, `x2` = FAR, `x3` = the
/// interrupted pc, `x4` = the kind's argument.
///
/// The kernel delivers three kinds: [`upcall::FAULT`], [`upcall::SLICE_END`] and
/// [`upcall::REVOKE`]. It does not read the syndrome of a fault; a libOS decodes it with
/// [`upcall::classify`] into the kinds 1-6, which are also what exit statuses name.
pub mod upcall {
    /// A synchronous exception other than `svc`: x1 = ESR_EL1, x2 = FAR_EL1, x4 = 0.
    pub const FAULT: u64 = 0;
    /// Translation or permission fault on a data access (argument: 1 for a write).
    pub const DATA_ABORT: u64 = 1;
    /// Translation or permission fault on an instruction fetch.
    pub const INSTRUCTION_ABORT: u64 = 2;
    /// Misaligned pc, sp or data access.
    pub const ALIGNMENT: u64 = 3;
    /// Undefined instruction, including FP/SIMD (exo is soft-float).
    pub const UNDEFINED: u64 = 4;
    /// Breakpoint (`brk`).
    pub const BREAKPOINT: u64 = 5;
    /// Any other synchronous exception (see ESR).
    pub const OTHER: u64 = 6;
    /// The time slice ended (when asked for with `EnvSetUpcall` flag bit 0).
    pub const SLICE_END: u64 = 7;
    /// The kernel asks for frames back: x4 = how many, x2 = deadline in timer ticks.
    pub const REVOKE: u64 = 8;

    /// Reads an exception syndrome (ESR_EL1) as one of the kinds 1-6 and its argument
    /// (for a data abort, 1 if the access was a write). Always inline: its callers test the
    /// common case in a few instructions, and a call would cost them their registers.
    #[inline(always)]
    pub const fn classify(esr: u64) -> (u64, u64) {
        match data_abort(esr) {
            Some(write) => (DATA_ABORT, write),         // the common case, tested first
            None => classify_other((esr >> 26) & 0x3f), // ISS2 (bits 32..) is set on newer cores
        }
    }

    /// For a syndrome [`classify`] reads as a data abort, its argument (1 if the access
    /// was a write); `None` for any other kind.
    #[inline(always)]
    pub const fn data_abort(esr: u64) -> Option<u64> {
        if (esr >> 26) & 0x3f == 0x24 && esr & 0x3f != 0x21 {
            Some((esr >> 6) & 1)
        } else {
            None
        }
    }

    /// [`classify`] for every class but a data abort's (out of line: the common case stays
    /// a few instructions where it is inlined, the upcall handler's dispatch). A data
    /// abort's class comes here only as an alignment fault.
    #[inline(never)]
    const fn classify_other(class: u64) -> (u64, u64) {
        match class {
            0x20 => (INSTRUCTION_ABORT, 0),
            0x22 | 0x24 | 0x26 => (ALIGNMENT, 0),
            0x00 | 0x07 => (UNDEFINED, 0),
            0x3c => (BREAKPOINT, 0),
            _ => (OTHER, 0),
        }
    }

    /// A short reading of an exception syndrome's class (the kernel's fault logs use it).
    pub const fn describe(esr: u64) -> &'static str {
        match (esr >> 26) & 0x3f {
            0x00 => "unknown reason",
            0x01 => "WFI/WFE trapped",
            0x07 => "FP/SIMD access trapped",
            0x0e => "illegal execution state",
            0x15 => "SVC",
            0x18 => "system register access trapped",
            0x20 => "instruction abort from a lower EL",
            0x21 => "instruction abort",
            0x22 => "PC alignment fault",
            0x24 => "data abort from a lower EL",
            0x25 => "data abort",
            0x26 => "SP alignment fault",
            0x2f => "SError",
            0x3c => "BRK instruction",
            _ => "other exception",
        }
    }
}

/// Exit status of an environment destroyed with `EnvDestroy`.
pub const STATUS_DESTROYED: i32 = -1;

/// Exit status of an environment the kernel killed for an exception it could not deliver
/// (no handler, or a fault inside the handler), `kind` being [`upcall::classify`]'s reading
/// of it: -100 - kind. The default libOS exits with the same status for a fault it does
/// not handle. `killed_status(upcall::REVOKE)`: killed at a revocation deadline, owing
/// frames it held only as tables.
pub const fn killed_status(kind: u64) -> i32 {
    -100 - kind as i32
}

/// Frame kinds in [`FrameEntry::kind`].
pub mod frame {
    pub const FREE: u8 = 0;
    /// The kernel's own, not readable from EL0.
    pub const KERNEL: u8 = 1;
    /// The kernel's, readable by every environment (the frame table, environment table,
    /// kernel information page).
    pub const PUBLIC: u8 = 2;
    pub const DATA: u8 = 3;
    pub const TABLE: u8 = 4;
    /// Not RAM: a hole in the physical address range the table covers.
    pub const ABSENT: u8 = 5;
    /// A device's memory bound to one environment (the screen's framebuffer, see
    /// [`super::KernelInfo::fb_base`]): its owner alone maps it, non-cacheable and not
    /// executable; it is given down like data (`FrameGive`), never freed nor bound as a
    /// table, outside every quota, and passes to the owner's parent when the owner dies.
    pub const DEVICE: u8 = 6;
    /// [`super::FrameEntry::flags`]: the table is linked into its owner's tree.
    pub const LINKED: u8 = 1;
    /// Data-frame flags, all cleared whenever the frame changes hands (freed, given, bound
    /// as a table). The owner shared it with its descendants read-only, or read-write, by
    /// mapping it into a descendant's tables itself (see `docs/memory-model.md`).
    pub const SHARED_RO: u8 = 2;
    pub const SHARED_RW: u8 = 4;
    /// The owner granted it over a call since it last changed hands (call grants made
    /// before that are void).
    pub const GRANTED: u8 = 8;
    /// A level-3 table's flag: frozen, its entries fixed (`TableSet` into it is refused),
    /// since its owner first linked it into a descendant's tree (checked then: every entry
    /// read-only, at a data frame of the owner's or a public one). A frozen table is
    /// shared whole: [`super::FrameEntry::shares`] counts the links to it in other trees.
    /// It thaws only when its owner unlinks it and nothing shares it (then it is emptied).
    pub const FROZEN: u8 = 16;
    /// A data frame's flag: all zeros since `FrameAlloc` zeroed it. Cleared when it is
    /// mapped as a page anywhere (the only way EL0 or a transfer can write it) and when it
    /// changes hands; `TableBind` does not zero such a frame again.
    pub const ZEROED: u8 = 32;
}

/// One frame's entry in the public frame table (readable by mapping its frames).
#[repr(C)]
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct FrameEntry {
    /// Owning environment (0 for none).
    pub owner: u32,
    pub kind: u8,
    /// For tables: the level, 0..=3.
    pub level: u8,
    pub flags: u8,
    /// For a frozen level-3 table: the links to it in descendants' trees (at most 255).
    pub shares: u8,
    /// Page entries, in any environment's tables, that map this frame (not counted for
    /// public frames, which never change hands).
    pub maps: u16,
    /// For tables: valid entries inside it.
    pub entries: u16,
    /// Free frames form a doubly linked list, stored relative to the frame's own index `i`
    /// so that a run threaded downwards (next `i - 1`, previous `i + 1`) is all zeros and
    /// boot lays out free memory without writing to it: `link ^ i` is the next free frame's
    /// index + 1 and, for free frames only, `owner ^ (i + 2)` the previous one's (0 ends
    /// the list; the head, as index + 1, is [`KernelInfo::free_head`]). For a linked table (levels 1–3): the lowest virtual
    /// address it covers, shifted right by 21 (what [`Sys::TableSetAt`] reads). Unused
    /// otherwise.
    pub link: u32,
}

impl FrameEntry {
    /// For the free frame at index `i` of the table: the next free frame's index + 1, 0 at
    /// the list's end (decoded from [`FrameEntry::link`]).
    pub const fn free_next(&self, i: usize) -> u32 {
        self.link ^ i as u32
    }

    /// For the free frame at index `i`: the previous free frame's index + 1, 0 at the head.
    pub const fn free_prev(&self, i: usize) -> u32 {
        self.owner ^ (i as u32 + 2)
    }
}

/// An environment's state. [`EnvInfo::state`] holds it as a `u8`, numbered as here.
#[repr(u8)]
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum EnvState {
    Free = 0,
    /// Created, not yet started.
    Blank = 1,
    Runnable = 2,
    /// Waiting (console input, a child, ...).
    Blocked = 3,
    /// Exited or destroyed by the kernel; waiting for its parent to collect the status.
    Zombie = 4,
}

/// [`EnvState`]s as the numbers in [`EnvInfo::state`].
pub mod env_state {
    use super::EnvState;
    pub const FREE: u8 = EnvState::Free as u8;
    pub const BLANK: u8 = EnvState::Blank as u8;
    pub const RUNNABLE: u8 = EnvState::Runnable as u8;
    pub const BLOCKED: u8 = EnvState::Blocked as u8;
    pub const ZOMBIE: u8 = EnvState::Zombie as u8;
}

/// Repossessed frames remembered per environment (the last ones; `repossessed` counts all).
pub const REPOSSESS_LOG: usize = 8;

/// One environment's public entry in the environment table.
#[repr(C)]
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct EnvInfo {
    pub id: u32,
    pub parent: u32,
    pub state: u8,
    /// The core it last ran on (0 before it first runs), and the cores it may run on (a
    /// mask by core index; see [`Sys::EnvSetAffinity`]).
    pub cpu: u8,
    pub affinity: u8,
    /// 1 while it sleeps in [`Sys::SectorWait`] (blocked, but not parked for calls: a
    /// libOS waiting for a server to park tells the two apart by this).
    pub disk_wait: u8,
    pub exit_status: i32,
    /// Frames owned (data and tables).
    pub frames: u32,
    /// Most frames it may own (0: unlimited).
    pub quota: u32,
    /// Root table (TTBR0), 0 if none.
    pub root: u64,
    /// Frames asked back by a pending revocation (0: none pending).
    pub revoke_wanted: u32,
    /// Tick by which they must be freed.
    pub revoke_deadline: u32,
    /// Frames taken by force since creation.
    pub repossessed: u64,
    /// The last frames taken, ring-indexed by `repossessed % REPOSSESS_LOG`.
    pub repossess_log: [u64; REPOSSESS_LOG],
    pub _reserved: [u64; 2],
    /// Disk extents bound to it.
    pub sectors: [SectorBinding; SECTOR_BINDINGS],
}

/// Board kinds in [`KernelInfo::board`].
pub mod board {
    pub const VIRT: u32 = 1;
    pub const RPI4: u32 = 2;
}

/// The kernel information page: where the public tables are and what the machine is.
#[repr(C)]
#[derive(Clone, Copy, Debug)]
pub struct KernelInfo {
    /// [`KernelInfo::MAGIC`].
    pub magic: u64,
    /// Physical address of frame 0 of the frame table's range.
    pub ram_base: u64,
    /// Number of entries in the frame table (frames from `ram_base`).
    pub frames: u64,
    /// Frame table: physical address and size in bytes ([`FrameEntry`] array).
    pub frame_table: u64,
    pub frame_table_bytes: u64,
    /// Environment table: physical address and size in bytes ([`EnvInfo`] array).
    pub env_table: u64,
    pub env_table_bytes: u64,
    pub max_envs: u64,
    /// Generic-timer counter frequency and scheduler tick rate.
    pub counter_hz: u64,
    pub tick_hz: u64,
    /// Index + 1 of the first free frame (0: none), and how many frames are free. Updated
    /// by the kernel as frames come and go.
    pub free_head: u32,
    pub free_frames: u32,
    pub board: u32,
    pub bootargs_len: u32,
    pub bootargs: [u8; 256],
    /// The disk's size in sectors (0: no disk), and its MBR partitions as read at boot
    /// (entries with `sectors == 0` are empty).
    pub disk_sectors: u64,
    pub partitions: [Partition; 4],
    /// The screen's framebuffer (0 bytes: no screen): physical address and size, whose
    /// frames are `frame::DEVICE`, bound to init when it starts.
    pub fb_base: u64,
    pub fb_bytes: u64,
    /// Its width and height in pixels (32 bits each), bytes from one row to the next, 0.
    pub fb_size: [u32; 4],
    /// Per core, by index (cores that are not up stay 0): the timer ticks it has taken
    /// since it came up, one per time slice ([`KernelInfo::tick_hz`] a second), and how many
    /// of them found it running an environment rather than idle. Updated by the kernel at
    /// each core's own tick; a libOS reads a core's load as busy over ticks between two looks.
    pub cpu_ticks: [u64; MAX_CPUS],
    pub cpu_busy: [u64; MAX_CPUS],
    /// Per core: the signals (SGIs) it has taken since it came up — wake-ups of an idle
    /// core, kicks, hand-offs of a `YieldTo` from another core — as of its last tick. A
    /// libOS can see whether anything signals a core its environments run on.
    pub cpu_signals: [u64; MAX_CPUS],
}

/// Most cores the kernel runs on (the length of [`KernelInfo::cpu_ticks`], and of an
/// affinity mask's meaningful bits).
pub const MAX_CPUS: usize = 4;

impl Default for KernelInfo {
    /// All zero but the magic (arrays of 256 bytes have no derived `Default`).
    fn default() -> Self {
        KernelInfo {
            magic: KernelInfo::MAGIC,
            ram_base: 0,
            frames: 0,
            frame_table: 0,
            frame_table_bytes: 0,
            env_table: 0,
            env_table_bytes: 0,
            max_envs: 0,
            counter_hz: 0,
            tick_hz: 0,
            free_head: 0,
            free_frames: 0,
            board: 0,
            bootargs_len: 0,
            bootargs: [0; 256],
            disk_sectors: 0,
            partitions: Default::default(),
            fb_base: 0,
            fb_bytes: 0,
            fb_size: [0; 4],
            cpu_ticks: [0; MAX_CPUS],
            cpu_busy: [0; MAX_CPUS],
            cpu_signals: [0; MAX_CPUS],
        }
    }
}

impl KernelInfo {
    pub const MAGIC: u64 = 0x6578_6f5f_696e_666f; // "exo_info"
    pub fn bootargs(&self) -> &str {
        let n = (self.bootargs_len as usize).min(self.bootargs.len());
        core::str::from_utf8(&self.bootargs[..n]).unwrap_or("")
    }
}

/// The end of EL0's address space: every user virtual address (a mapping, an entry point,
/// a stack, a buffer) lies below it — the low half of a 48-bit address space.
pub const USER_VA_LIMIT: u64 = 1 << 48;

/// One primary partition as the MBR records it (`exo_format::mbr` reads them), as the kernel
/// reports it in [`KernelInfo::partitions`].
#[repr(C)]
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Partition {
    /// First sector (LBA) of the partition.
    pub start: u64,
    /// Number of 512-byte sectors.
    pub sectors: u64,
    /// The MBR type byte (0x0c FAT32 LBA, 0x83 Linux, 0x7f exo LFS ...).
    pub kind: u8,
    /// Position in the table, 0..=3.
    pub index: u8,
    /// Whether the boot flag (0x80) is set.
    pub bootable: bool,
    pub _reserved: [u8; 5],
}

/// Where the kernel puts init's stack: the 64 KiB below this address, in the first GiB,
/// where the default libOS keeps its stack (the first pages of a 2 MiB region, 4 MiB below
/// its heap).
pub const INIT_STACK_TOP: u64 = 0x1fc1_0000;
pub const INIT_STACK_SIZE: u64 = 64 * 1024;

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn classify_reads_the_exception_class_and_the_write_bit() {
        use upcall::*;
        // A level-3 translation fault on a write (EC 0x24, WnR, DFSC 0x07), then a read.
        assert_eq!(classify(0x24 << 26 | 1 << 25 | 1 << 6 | 0x07), (DATA_ABORT, 1));
        assert_eq!(classify(0x24 << 26 | 1 << 25 | 0x07), (DATA_ABORT, 0));
        assert_eq!(classify(1 << 32 | 0x24 << 26 | 0x07), (DATA_ABORT, 0)); // ISS2 set
        assert_eq!(classify(1 << 40 | 0x20 << 26), (INSTRUCTION_ABORT, 0));
        assert_eq!(classify(0x24 << 26 | 0x21), (ALIGNMENT, 0)); // DFSC alignment
        assert_eq!(classify(0x20 << 26 | 0x0f), (INSTRUCTION_ABORT, 0));
        assert_eq!(classify(0x22 << 26), (ALIGNMENT, 0)); // pc alignment
        assert_eq!(classify(0x26 << 26), (ALIGNMENT, 0)); // sp alignment
        assert_eq!(classify(0x07 << 26), (UNDEFINED, 0)); // FP/SIMD access
        assert_eq!(classify(0), (UNDEFINED, 0));
        assert_eq!(classify(0x3c << 26 | 1), (BREAKPOINT, 0));
        assert_eq!(classify(0x15 << 26), (OTHER, 0));
        assert_eq!(classify(u64::MAX), (OTHER, 0));
    }

    #[test]
    fn env_states_keep_the_numbers_el0_reads() {
        use env_state::*;
        assert_eq!([FREE, BLANK, RUNNABLE, BLOCKED, ZOMBIE], [0, 1, 2, 3, 4]);
        assert_eq!(EnvState::Zombie as u8, ZOMBIE);
    }

    #[test]
    fn error_values_are_stable_and_round_trip() {
        for (i, e) in Error::ALL.iter().enumerate() {
            assert_eq!(*e as i64, -(i as i64) - 1);
            assert_eq!(result(*e as i64 as u64), Err(*e));
        }
        assert_eq!(result(42), Ok(42));
        assert_eq!(result(-999i64 as u64), Err(Error::Invalid));
    }

    #[test]
    fn revocation_clears_only_overlapping_bindings_the_kept_ones_do_not_cover() {
        let rw = SECTOR_READ | SECTOR_WRITE;
        let b = |start, count, rights| SectorBinding { start, count, rights };
        let mut held = [b(100, 10, SECTOR_READ), b(200, 10, rw), b(300, 10, SECTOR_READ), b(0, 0, 0)];
        // [100, 250) revoked from an ancestor that still holds [200, 220) read-only.
        SectorBinding::revoke_uncovered(&mut held, 100, 150, &[b(200, 20, SECTOR_READ)]);
        assert_eq!(held, [b(0, 0, 0), b(0, 0, 0), b(300, 10, SECTOR_READ), b(0, 0, 0)]);
        let mut kept = [b(205, 5, SECTOR_READ)];
        SectorBinding::revoke_uncovered(&mut kept, 100, 150, &[b(200, 20, rw)]);
        assert_eq!(kept, [b(205, 5, SECTOR_READ)], "covered by what the ancestor kept");
    }

    #[test]
    fn bindings_cover_only_their_extent_and_rights() {
        let b = SectorBinding { start: 100, count: 50, rights: SECTOR_READ };
        assert!(b.covers(100, 50, SECTOR_READ));
        assert!(b.covers(120, 1, SECTOR_READ));
        assert!(!b.covers(99, 1, SECTOR_READ));
        assert!(!b.covers(149, 2, SECTOR_READ));
        assert!(!b.covers(100, 1, SECTOR_WRITE));
        assert!(!b.covers(u64::MAX, 2, SECTOR_READ));
        assert!(!SectorBinding::default().covers(0, 0, 0));
    }

    #[test]
    fn shared_structs_have_their_documented_sizes() {
        assert_eq!(core::mem::size_of::<FrameEntry>(), 16);
        assert_eq!(core::mem::size_of::<EnvInfo>(), 256);
        assert_eq!(core::mem::size_of::<Context>(), 34 * 8);
        assert_eq!(core::mem::size_of::<TableOp>(), 24);
        assert!(core::mem::size_of::<KernelInfo>() <= 4096);
    }
}
