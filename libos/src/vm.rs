//! The libOS's own address space: where things go, and the bookkeeping to map them.
//!
//! Layout (this libOS's choice; the kernel knows none of it, but for init's stack). All of
//! it lies in the first 512 GiB, under one level-0 entry, and everything but the heap's
//! far end, other mappings and `exec`'s area in the first GiB, under one level-1 entry: a
//! program's tables above level 3 are a root, one level-1 and one or two level-2 tables.
//! Small regions start their 2 MiB region: a walk of a table (`fork`'s, teardown's) stops
//! at its last entry.
//!
//! | address                      | what                                               |
//! |------------------------------|----------------------------------------------------|
//! | `0x40_0000`                  | the program image (`link.ld`), `.private` at its end |
//! | `0x1000_0000`                | read-only windows on the environment and frame tables |
//! | `0x1800_0000`                | the descriptors' pipe pages (`fd::FD_BASE`)        |
//! | `0x1c00_0000`                | the kernel information page, the scratch page, then |
//! |                              | read-only windows on this environment's level-3 tables |
//! | `0x1fc0_0000`                | the stack (64 KiB, growing down from `0x1fc1_0000`) |
//! | `0x2000_0000`                | the heap, growing up (64 GiB at most)              |
//! | `0x20_0000_0000`             | other mappings, handed out by [`alloc_va`]         |
//! | `0x7f_0000_0000`             | `exec`'s area (`exec::AREA`)                       |
//!
//! Every level-3 table gets a window, so reading a mapping is a memory load; only changes
//! are system calls. The bookkeeping lives in `.private`, which a forked child never
//! shares, and nothing here allocates — the upcall handler uses it while the heap may be
//! busy.

use exo_abi::pte::{bits, index, Perm, Pte};
use exo_abi::{frame, EnvId, EnvInfo, Error, FrameEntry, KernelInfo, INIT_STACK_SIZE, INIT_STACK_TOP};

use crate::private::Private;
use crate::sys;

pub const PAGE: u64 = 4096;
/// What one level-3 table covers.
pub const REGION: u64 = 2 << 20;
pub const HEAP_BASE: u64 = 0x2000_0000;
pub const HEAP_LIMIT: u64 = HEAP_BASE + (64 << 30);
pub const DYN_BASE: u64 = 0x20_0000_0000;
/// The windows on the environment table and on the frame table (64 MiB), each from a
/// 2 MiB region of its own.
pub const PUBLIC_BASE: u64 = 0x1000_0000;
const ENV_TABLE_WINDOW: u64 = PUBLIC_BASE;
const FRAME_TABLE_WINDOW: u64 = PUBLIC_BASE + REGION;
pub const TABLE_WINDOW: u64 = 0x1c00_0000;
pub const STACK_TOP: u64 = INIT_STACK_TOP;
pub const STACK_SIZE: u64 = INIT_STACK_SIZE;
/// The kernel information page, read-only: the first page of the windows' own table (the
/// windows follow its first two pages), so it needs no tables of its own. First, because a
/// walk of a table stops at its last entry: a page at its far end would cost every fork
/// and teardown a walk of the whole table.
pub const KINFO: u64 = TABLE_WINDOW;
/// A page used briefly to fill frames before they are mapped where they belong: the second
/// page of the windows' own table, likewise.
pub const SCRATCH: u64 = TABLE_WINDOW + PAGE;

/// Software bit 55 of a page entry: this page is copy-on-write (this libOS's convention).
pub const COW: u64 = 1 << 55;
/// Software bit 56: this page is shared read-write with children (`fork` keeps it shared).
pub const SHARED: u64 = 1 << 56;
/// Software bit 58, the one the kernel reads: a page whose contents the program can make
/// again, which a forced repossession takes before any other mapped page (`reclaim`'s cache
/// regions are mapped with it).
pub const DROPPABLE: u64 = exo_abi::pte::bits::DROPPABLE;

pub const RW: Perm = Perm { write: true, exec: false };
pub const RO: Perm = Perm { write: false, exec: false };

/// Level-3 tables this space has, at most (one window region, but for its first two pages).
pub const MAX_L3: usize = 510;
const FT_PAGES: usize = 16384;

// The regions, in order, apart and below 512 GiB (one level-0 entry).
const _: () = assert!(FRAME_TABLE_WINDOW + FT_PAGES as u64 * PAGE <= crate::fd::FD_BASE);
const _: () = assert!(crate::fd::FD_BASE + REGION <= TABLE_WINDOW);
const _: () = assert!(TABLE_WINDOW + REGION <= STACK_TOP - STACK_SIZE);
const _: () = assert!(STACK_TOP + REGION <= HEAP_BASE && HEAP_LIMIT <= DYN_BASE);
const _: () = assert!(DYN_BASE < crate::exec::AREA && crate::exec::AREA < 1 << 39);

#[derive(Clone, Copy)]
pub struct L3 {
    pub region: u64,
    pub pa: u64,
}

/// The address-space bookkeeping. All-zero is the valid "not started" state, because it
/// lives in `.private`, which starts zeroed. `l3` and `ft_mapped` come last, in that order
/// (`repr(C)`): a forked child reads neither `l3` past `n` nor `ft_mapped`, so `fork`
/// gives it zeroed pages there instead of copies ([`unread_by_child`]).
#[repr(C)]
pub struct State {
    pub me: EnvId,
    pub kinfo_pa: u64,
    pub n: usize,
    dyn_next: u64,
    env_mapped: bool,
    /// This environment's own entry in the environment table's window, once it is mapped
    /// (0 before): what every upcall reads a word of.
    own_entry: u64,
    lazy: [(u64, u64); 8],
    busy: bool,
    /// The slot `lookup` found last: faults and mappings come in runs within one region,
    /// so most lookups are one compare instead of a walk of `l3`.
    last: usize,
    pub l3: [L3; MAX_L3],
    ft_mapped: [u64; FT_PAGES / 64],
}

/// Alone in `.private.vm`, which the linker places just before `.private.zero` (`link.ld`):
/// what follows [`unread_by_child`] is zeroed in a child up to `__private_zero_end`.
#[unsafe(link_section = ".private.vm")]
static STATE: Private<State> = Private::new(State {
    me: EnvId(0),
    kinfo_pa: 0,
    n: 0,
    dyn_next: 0,
    env_mapped: false,
    own_entry: 0,
    lazy: [(0, 0); 8],
    busy: false,
    last: 0,
    l3: [L3 { region: 0, pa: 0 }; MAX_L3],
    ft_mapped: [0; FT_PAGES / 64],
});

/// The bytes of the bookkeeping a forked child never reads: the level-3 slots past those
/// in use (`add_l3` writes a slot before counting it) and the record of frame-table pages
/// mapped, which `fixup_after_fork` clears; then, to `__private_zero_end`, what `link.ld`
/// puts after this state: the parked heap pages' list (`.private.tail`, of which the child
/// reads the first few: `reclaim::read_by_child`) and the statics a child starts with
/// zeroed (`.private.zero`).
pub fn unread_by_child() -> core::ops::Range<u64> {
    unsafe extern "C" {
        static __private_zero_end: u8;
    }
    with(|s| s.l3[s.n..].as_ptr() as u64..&raw const __private_zero_end as u64)
}

/// Runs `f` on the bookkeeping. A libOS environment is single-threaded; the only other
/// way in is an upcall, and faults cannot happen inside this module (its state and the
/// stacks are never copy-on-write), so re-entry means a bug: it panics.
#[inline]
pub fn with<R>(f: impl FnOnce(&mut State) -> R) -> R {
    // SAFETY: a libOS environment has one thread of control, and `busy` (checked next)
    // rules out a second, overlapping borrow from an upcall.
    let s = unsafe { &mut *STATE.get() };
    assert!(!s.busy, "libOS address-space state re-entered");
    s.busy = true;
    let r = f(s);
    s.busy = false;
    r
}

/// Whether the code an upcall interrupted is inside this module: the handler must then
/// leave it alone (it answers kernel requests later, see `reclaim`).
pub fn busy() -> bool {
    // SAFETY: a plain read of a flag of this environment's own state; only this thread of
    // control writes it, and not while this read runs.
    unsafe { (*STATE.get()).busy }
}

pub fn me() -> EnvId {
    // SAFETY: a plain read of a word set before the program runs (`init`) and again only
    // by a forked child's own code (`fixup_after_fork`), never from an upcall.
    unsafe { (*STATE.get()).me }
}

/// The window on the level-3 table in `slot`.
pub(crate) fn window(slot: usize) -> u64 {
    TABLE_WINDOW + (2 + slot as u64) * PAGE
}

impl State {
    #[inline]
    fn lookup(&mut self, region: u64) -> Option<usize> {
        self.memo(region).or_else(|| self.search(region))
    }

    /// The slot of `region`'s table if it is the last one looked up (no search, no call).
    #[inline(always)]
    fn memo(&self, region: u64) -> Option<usize> {
        (self.last < self.n && self.l3[self.last].region == region).then_some(self.last)
    }

    fn search(&mut self, region: u64) -> Option<usize> {
        let i = self.l3[..self.n].iter().position(|t| t.region == region)?;
        self.last = i;
        Some(i)
    }

    /// Makes sure a level-3 table covers `va` (creating tables at levels 1–3 as needed,
    /// or adopting ones the kernel or parent made) and that it has a window.
    #[inline]
    fn ensure_l3(&mut self, va: u64) -> Result<usize, Error> {
        match self.lookup(va & !(REGION - 1)) {
            Some(i) => Ok(i),
            None => self.add_l3(va),
        }
    }

    fn add_l3(&mut self, va: u64) -> Result<usize, Error> {
        let region = va & !(REGION - 1);
        if self.n == MAX_L3 {
            return Err(Error::NoMemory);
        }
        let l3 = ensure_tables(self.me, va)?;
        let i = self.n;
        self.l3[i] = L3 { region, pa: l3 };
        self.n += 1;
        sys::table_set(EnvId::SELF, window(i), 3, Pte::user_page(l3, RO).0)?;
        Ok(i)
    }

    /// Sets the entry for page `va`, naming its level-3 table (`TableSetAt`: no walk).
    fn map(&mut self, va: u64, pte: u64) -> Result<(), Error> {
        let (table, i) = self.slot(va)?;
        sys::table_set_at(EnvId::SELF, table, i, pte)
    }

    /// The level-3 table that maps page `va` (made if need be) and the entry's index.
    /// (Inline: every `map` asks it; the boot, which maps many pages, pays for a call.)
    #[inline(always)]
    fn slot(&mut self, va: u64) -> Result<(u64, u64), Error> {
        if !va.is_multiple_of(PAGE) {
            return Err(Error::Invalid);
        }
        let i = match self.memo(va & !(REGION - 1)) {
            Some(i) => i,
            None => self.ensure_l3(va)?,
        };
        Ok((self.l3[i].pa, index(va, 3) as u64))
    }
}

/// Starts the bookkeeping for an environment whose image and stack someone else mapped
/// (the kernel, for init; a parent, for a spawned program): adopts their tables.
pub fn init(kinfo_pa: u64, image: (u64, u64)) -> Result<(), Error> {
    with(|s| {
        s.me = sys::env_self();
        s.kinfo_pa = kinfo_pa;
        s.dyn_next = DYN_BASE;
        s.ensure_l3(TABLE_WINDOW)?; // first: slot 0 is the windows' own table
        let mut va = image.0 & !(REGION - 1);
        while va < image.1 {
            s.ensure_l3(va)?;
            va += REGION;
        }
        s.ensure_l3(STACK_TOP - STACK_SIZE)?;
        s.map(KINFO, Pte::user_page(kinfo_pa, RO).0)
    })
}

/// The entry mapping `va` in this space (0 if none), read through the table windows.
#[inline]
pub fn entry(va: u64) -> u64 {
    with(|s| entry_in(s, va))
}

#[inline]
fn entry_in(s: &mut State, va: u64) -> u64 {
    s.lookup(va & !(REGION - 1)).map_or(0, |i| entry_at(i, va))
}

/// The entry mapping `va` in the level-3 table of slot `i`, which covers it.
#[inline(always)]
fn entry_at(i: usize, va: u64) -> u64 {
    // SAFETY: the window of slot i maps table i read-only; index < 512.
    unsafe { ((window(i) + index(va, 3) as u64 * 8) as *const u64).read_volatile() }
}

/// Maps `va` with descriptor `pte`.
pub fn map(va: u64, pte: u64) -> Result<(), Error> {
    with(|s| s.map(va, pte))
}

/// Makes sure `env`'s tables reach level 3 at `va`, creating (and binding) each missing
/// table with a frame of `env`'s own; returns the level-3 table's address.
pub fn ensure_tables(env: EnvId, va: u64) -> Result<u64, Error> {
    ensure_tables_to(env, va, 3)
}

/// [`ensure_tables`] down to the table at `level` only (the level-2 table, for a level-3
/// table to be linked in whole); returns its address.
pub fn ensure_tables_to(env: EnvId, va: u64, level: u32) -> Result<u64, Error> {
    let mut table = 0;
    for level in 0..level {
        let e = Pte(sys::table_get(env, va, level)?);
        table = if e.is_valid() {
            e.addr()
        } else {
            let pa = sys::frame_alloc(env, None)?;
            sys::table_bind(env, pa, level + 1)?;
            sys::table_set(env, va, level, Pte::table(pa).0)?;
            pa
        };
    }
    Ok(table)
}

/// A new frame of this environment's, filled by `fill` through the scratch mapping.
pub fn fill_new_frame(fill: impl FnOnce(&mut [u8])) -> Result<u64, Error> {
    let pa = sys::frame_alloc(me(), None)?;
    fill_frame(pa, fill)?;
    Ok(pa)
}

/// Lets `fill` write frame `pa` (ours, not mapped elsewhere writable) through the scratch
/// mapping.
pub fn fill_frame(pa: u64, fill: impl FnOnce(&mut [u8])) -> Result<(), Error> {
    map_frame(SCRATCH, pa, RW)?;
    // SAFETY: SCRATCH maps the frame read-write: a whole page that only this call uses.
    fill(unsafe { core::slice::from_raw_parts_mut(SCRATCH as *mut u8, PAGE as usize) });
    unmap(SCRATCH).map(drop)
}

/// From an upcall handler, as its last act: resumes the interrupted code with `pte` mapped
/// at `va`, in one kernel entry (`sys::upcall_resume_mapping`) where `map` and the resume
/// take two. Returns only if it could not be mapped, with why.
pub fn map_and_resume(va: u64, pte: u64) -> Error {
    // The common case first, with no call before the kernel's: the table is the last one
    // looked up. (A handler cannot be interrupted, so the state needs no `with` to be read.)
    if !busy() && va.is_multiple_of(PAGE) {
        // SAFETY: no `with` holds the state (`busy` is clear); the borrow ends here.
        let s = unsafe { &*STATE.get() };
        if let Some(i) = s.memo(va & !(REGION - 1)) {
            return sys::upcall_resume_mapping(s.l3[i].pa, index(va, 3) as u64, pte);
        }
    }
    map_and_resume_looked_up(va, pte)
}

/// [`map_and_resume`] with the table looked up (or made) in full. (Out of line: the common
/// case needs no stack frame.)
#[inline(never)]
fn map_and_resume_looked_up(va: u64, pte: u64) -> Error {
    match with(|s| s.slot(va)) {
        Ok((table, i)) => sys::upcall_resume_mapping(table, i, pte),
        Err(e) => e,
    }
}

pub fn map_frame(va: u64, pa: u64, perm: Perm) -> Result<(), Error> {
    map(va, Pte::user_page(pa, perm).0)
}

/// Maps a fresh zeroed frame at `va`; returns its physical address.
pub fn map_new(va: u64, perm: Perm) -> Result<u64, Error> {
    map_new_marked(va, perm, 0)
}

/// [`map_new`] with software bits `sw` in the entry (e.g. [`DROPPABLE`]).
pub fn map_new_marked(va: u64, perm: Perm, sw: u64) -> Result<u64, Error> {
    with(|s| {
        let pa = sys::frame_alloc(EnvId::SELF, None)?;
        match s.map(va, Pte::user_page(pa, perm).0 | sw) {
            Ok(()) => Ok(pa),
            Err(e) => {
                let _ = sys::frame_free(EnvId::SELF, pa);
                Err(e)
            }
        }
    })
}

/// Removes the mapping at `va`; returns the old entry (0 if there was none).
pub fn unmap(va: u64) -> Result<u64, Error> {
    with(|s| {
        let old = entry_in(s, va);
        if old & bits::VALID != 0 {
            s.map(va, 0)?;
        }
        Ok(old)
    })
}

/// Unmaps `va` and frees the frame if it is ours and nothing else maps it.
pub fn unmap_free(va: u64) -> Result<(), Error> {
    let old = Pte(unmap(va)?);
    if old.is_valid() {
        match sys::frame_free(me(), old.addr()) {
            Ok(()) | Err(Error::Denied) => {}
            Err(Error::Busy) => crate::process::orphaned(old.addr()), // still mapped elsewhere
            Err(e) => return Err(e),
        }
    }
    Ok(())
}

/// Hands out `pages` pages of address space nobody uses (never reused), up to `exec`'s
/// area; past that, [`NO_VA`], which nothing can be mapped at (the kernel refuses it), so
/// the caller's first map fails instead of landing in `exec`'s area.
pub fn alloc_va(pages: u64) -> u64 {
    with(|s| {
        let va = s.dyn_next;
        match pages.checked_mul(PAGE).and_then(|n| va.checked_add(n)) {
            Some(end) if end <= crate::exec::AREA => {
                s.dyn_next = end;
                va
            }
            _ => NO_VA,
        }
    })
}

/// What [`alloc_va`] returns when the address space is used up: above the 48 bits of
/// address a table can translate.
pub const NO_VA: u64 = 1 << 48;

/// Faults in `[start, end)` are answered with fresh zero pages (see `upcall`).
pub fn add_lazy_region(start: u64, end: u64) -> Result<(), Error> {
    with(|s| {
        let slot = s.lazy.iter_mut().find(|r| r.1 == 0).ok_or(Error::NoMemory)?;
        *slot = (start, end);
        Ok(())
    })
}

pub fn in_lazy_region(va: u64) -> bool {
    with(|s| in_lazy(s, va))
}

/// Regions fill `lazy` from the front and are never removed: the first empty slot ends it.
#[inline(always)]
fn in_lazy(s: &State, va: u64) -> bool {
    s.lazy[0].1 != 0 && s.lazy.iter().take_while(|r| r.1 != 0).any(|&(a, b)| va >= a && va < b)
}

/// What the upcall handler asks about a fault at `va`, in one look at the state: whether
/// its page is copy-on-write (asked only for a `write`) and whether it is in a lazy region.
/// `None` if the interrupted code is inside this module (a fault on a stack page owed to a
/// forked child: `owed`, which needs neither answer).
pub(crate) fn fault_facts(va: u64, write: bool) -> Option<(bool, bool)> {
    if busy() {
        return None;
    }
    Some(with(|s| {
        let cow = write && entry_in(s, va & !(PAGE - 1)) & COW != 0;
        (cow, in_lazy(s, va))
    }))
}

/// Whether a fault at `va` is none of this module's business: not the first write to a
/// copy-on-write page, not in a lazy region ([`fault_facts`]' answers, both false). False
/// too while the interrupted code is inside this module. For the upcall handler only: it
/// reads the state without taking it, which only an upcall, none nesting, may do.
#[inline(always)]
pub(crate) fn plain_fault(va: u64, write: bool) -> bool {
    if busy() {
        return false;
    }
    // SAFETY: no `with` holds the state (`busy` is clear), and the handler that calls this
    // is the one thread of control until it resumes; the borrow ends here.
    let s = unsafe { &*STATE.get() };
    // A write asks about copy-on-write through the memo only: no search, so no call.
    let not_cow = !write || s.memo(va & !(REGION - 1)).is_some_and(|i| entry_at(i, va) & COW == 0);
    not_cow && !in_lazy(s, va)
}

/// The kernel information page (mapped read-only at start).
pub fn kinfo() -> &'static KernelInfo {
    // SAFETY: `init` (or, in a forked child, `fixup_after_fork`) mapped the kernel
    // information page read-only at KINFO; the kernel keeps it valid for the environment's
    // life.
    unsafe { &*(KINFO as *const KernelInfo) }
}

/// This frame's entry in the kernel's public frame table (mapping the page that holds it
/// the first time it is needed).
pub fn frame_entry(pa: u64) -> Option<FrameEntry> {
    // SAFETY: `in_table` gives a mapped, aligned entry; `FrameEntry` is plain data.
    in_table(pa, |e| unsafe { e.read_volatile() })
}

/// How many page entries map frame `pa` (its entry's `maps`; 0 if it is not a frame): what
/// a pipe end asks on every read and write, without copying the rest of the entry.
pub fn frame_maps(pa: u64) -> u16 {
    in_table(pa, |e| {
        let maps = e.wrapping_byte_add(core::mem::offset_of!(FrameEntry, maps)).cast::<u16>();
        // SAFETY: a field of the mapped, aligned entry `in_table` gives.
        unsafe { maps.read_volatile() }
    })
    .unwrap_or(0)
}

/// `read` of where frame `pa`'s entry is, read-only in this space, if `pa` is a frame (the
/// page of the table that holds it is mapped here the first time).
fn in_table<R>(pa: u64, read: impl FnOnce(*const FrameEntry) -> R) -> Option<R> {
    let k = kinfo();
    let i = pa.checked_sub(k.ram_base)? / PAGE;
    if i >= k.frames {
        return None;
    }
    let page = (i * 16 / PAGE) as usize;
    with(|s| {
        if page >= FT_PAGES {
            return None;
        }
        if s.ft_mapped[page / 64] & (1 << (page % 64)) == 0 {
            let pa = k.frame_table + page as u64 * PAGE;
            s.map(FRAME_TABLE_WINDOW + page as u64 * PAGE, Pte::user_page(pa, RO).0).ok()?;
            s.ft_mapped[page / 64] |= 1 << (page % 64);
        }
        // The page holding entry i is mapped read-only (just above, or before).
        Some(read((FRAME_TABLE_WINDOW + i * 16) as *const FrameEntry))
    })
}

/// Every frame's physical address and entry in the public frame table, in order: a walk
/// of the whole table at a few instructions a frame, where [`frame_entry`] for each would
/// take several times that. Each page of the table is mapped (as `frame_entry` maps it)
/// when the walk reaches it; if one cannot be, the walk ends there.
pub fn frames() -> impl Iterator<Item = (u64, FrameEntry)> {
    let k = kinfo();
    let mut mapped = true;
    (0..k.frames).map_while(move |i| {
        if i % (PAGE / 16) == 0 {
            mapped = frame_entry(k.ram_base + i * PAGE).is_some();
        }
        let entry = (FRAME_TABLE_WINDOW + i * 16) as *const FrameEntry;
        // SAFETY: `frame_entry` mapped the page holding entry i read-only (for the page's
        // first entry, above) unless `mapped` is false; nothing unmaps the table's window
        // while the environment lives, and `FrameEntry` is plain data.
        mapped.then(|| (k.ram_base + i * PAGE, unsafe { entry.read_volatile() }))
    })
}

/// An environment's entry in the kernel's public environment table.
pub fn env_info(id: EnvId) -> Option<EnvInfo> {
    // SAFETY: `env_entry` points at a mapped, aligned entry; `EnvInfo` is plain data.
    env_entry(id).map(|e| unsafe { e.read_volatile() })
}

/// Of `id`'s entry, just the revocation request and the repossession count (what every
/// upcall looks at; the whole entry is a few hundred bytes).
pub(crate) fn env_revocation(id: EnvId) -> Option<(u32, u64)> {
    use core::mem::offset_of;
    let e = env_entry(id)?.cast::<u8>();
    let wanted = e.wrapping_add(offset_of!(EnvInfo, revoke_wanted)).cast::<u32>();
    let repossessed = e.wrapping_add(offset_of!(EnvInfo, repossessed)).cast::<u64>();
    // SAFETY: as in `env_info`, for one aligned field inside the mapped entry.
    let wanted = unsafe { wanted.read_volatile() };
    // SAFETY: likewise.
    Some((wanted, unsafe { repossessed.read_volatile() }))
}

/// Of this environment's own entry, the count of frames the kernel repossessed, if the
/// table's window is mapped already (`None` otherwise: this makes no call, for the upcall
/// handler's quick test).
#[inline(always)]
pub(crate) fn own_repossessed() -> Option<u64> {
    // SAFETY: a plain read of a word only this environment's own code writes (never an
    // upcall while the code it interrupted is inside this module: see `busy`).
    let own = unsafe { (*STATE.get()).own_entry };
    if own == 0 {
        return None;
    }
    let repossessed = (own + core::mem::offset_of!(EnvInfo, repossessed) as u64) as *const u64;
    // SAFETY: `own` is this environment's entry in the mapped window (`env_entry`, which
    // checked its slot against `max_envs`); the field is aligned in it.
    Some(unsafe { repossessed.read_volatile() })
}

/// Where `id`'s entry is, mapping the table's window the first time.
fn env_entry(id: EnvId) -> Option<*const EnvInfo> {
    // SAFETY: a plain read of a flag only this environment's own code writes (never an
    // upcall while the code it interrupted is inside this module: see `busy`).
    if !unsafe { (*STATE.get()).env_mapped } {
        let k = kinfo();
        with(|s| {
            for p in 0..k.env_table_bytes.div_ceil(PAGE) {
                s.map(ENV_TABLE_WINDOW + p * PAGE, Pte::user_page(k.env_table + p * PAGE, RO).0).ok()?;
            }
            s.env_mapped = true;
            if (s.me.slot() as u64) < k.max_envs {
                s.own_entry = ENV_TABLE_WINDOW + (s.me.slot() * size_of::<EnvInfo>()) as u64;
            }
            Some(())
        })?;
    }
    if id.slot() as u64 >= kinfo().max_envs {
        return None;
    }
    // SAFETY: `id.slot()` is below `max_envs` (checked above), so the entry lies inside the
    // window, mapped read-only just above (or before), that holds the whole table; the
    // kernel keeps each `EnvInfo` aligned in it.
    Some(unsafe { (ENV_TABLE_WINDOW as *const EnvInfo).add(id.slot()) })
}

/// Calls `f(va, entry)` for every valid page entry of this space, except the table
/// windows themselves (slot 0) and those of frozen tables (shared whole: [`frozen`]).
pub fn for_each_mapping(f: impl FnMut(u64, u64)) {
    for_each_mapping_in(false, |_| false, f)
}

/// [`for_each_mapping`] over the frozen tables if `frozen`, else over the others, leaving
/// out the regions `skip` names.
pub fn for_each_mapping_in(frozen: bool, skip: impl Fn(u64) -> bool, mut f: impl FnMut(u64, u64)) {
    let n = with(|s| s.n);
    for slot in 1..n {
        let (region, pa) = with(|s| (s.l3[slot].region, s.l3[slot].pa));
        if skip(region) {
            continue;
        }
        // SAFETY: the window of an existing table slot, read-only; i < 512.
        let entry = |i: u64| unsafe { ((window(slot) + i * 8) as *const u64).read_volatile() };
        // The frame table counts a table's valid entries: the walk stops after the last one,
        // and skips runs of eight empty ones with a few loads (most tables are sparse).
        let (mut left, mut i) = match frame_entry(pa) {
            Some(t) if (t.flags & frame::FROZEN != 0) != frozen => (0, 0),
            t => (t.map_or(512, |t| t.entries), 0),
        };
        while i < 512 && left > 0 {
            if i % 8 == 0 && (i..i + 8).fold(0, |a, j| a | entry(j)) == 0 {
                i += 8;
                continue;
            }
            let e = entry(i);
            if e & bits::VALID != 0 {
                f(region + i * PAGE, e);
                left -= 1;
            }
            i += 1;
        }
    }
}

/// The 2 MiB regions this space has level-3 tables for, and those tables, in slot order.
pub fn regions(mut f: impl FnMut(u64, u64)) {
    let n = with(|s| s.n);
    for slot in 0..n {
        let (region, pa) = with(|s| (s.l3[slot].region, s.l3[slot].pa));
        f(region, pa);
    }
}

unsafe extern "C" {
    static __image_start: u8;
    static __data_start: u8;
}

/// Whether `region` holds only the program's text and read-only data (`link.ld` gives them
/// 2 MiB regions of their own): `fork` shares its table whole, which freezes it.
pub fn text_region(region: u64) -> bool {
    (text_base()..&raw const __data_start as u64).contains(&region)
}

/// The first text region (see [`text_region`]).
pub fn text_base() -> u64 {
    &raw const __image_start as u64 & !(REGION - 1)
}

/// Whether a forked child maps `va` again itself when it needs it, so that `fork` gives
/// it the tables but not the mappings: the windows on the environment and frame tables
/// (`fixup_after_fork` forgets them; a page is mapped again on first use, which needs no
/// frame, so it works when memory is short: every upcall reads the environment table).
pub fn remade_by_child(va: u64) -> bool {
    (ENV_TABLE_WINDOW..FRAME_TABLE_WINDOW + FT_PAGES as u64 * PAGE).contains(&va)
}

/// Whether level-3 table `pa` is frozen: shared whole with descendants (or an ancestor's),
/// so no entry of it may change (the kernel refuses); it is replaced by unlinking it.
pub fn frozen(pa: u64) -> bool {
    frame_entry(pa).is_some_and(|t| t.flags & frame::FROZEN != 0)
}

/// Makes sure a level-3 table covers `va`.
pub fn reserve(va: u64) -> Result<(), Error> {
    with(|s| s.ensure_l3(va).map(drop))
}

/// The level-3 table that covers `va` (made if there is none).
pub fn l3_table(va: u64) -> Result<u64, Error> {
    with(|s| s.ensure_l3(va).map(|i| s.l3[i].pa))
}

/// The kernel information page's frame.
pub(crate) fn kinfo_pa() -> u64 {
    with(|s| s.kinfo_pa)
}

/// In a forked child whose parent (`fork`) recorded its id and its level-3 table for each
/// of the parent's slots (`l3`, 0 for none made) and set their windows and the kernel
/// information page in the child's tables: the bookkeeping takes them over, no call made.
/// Regions the parent added after recording, or left out, are forgotten.
pub fn adopt_after_fork(me: EnvId, l3: &[u64]) -> Result<(), Error> {
    with(|s| {
        s.me = me;
        s.ft_mapped = [0; FT_PAGES / 64];
        s.env_mapped = false;
        s.own_entry = 0;
        let mut kept = 0;
        for (slot, &pa) in l3.iter().enumerate().take(s.n) {
            if pa != 0 {
                s.l3[kept] = L3 { region: s.l3[slot].region, pa };
                kept += 1;
            }
        }
        s.n = kept;
        Ok(())
    })
}

/// In a forked child: the bookkeeping was copied from the parent, but the tables are the
/// child's own. Look each one up again and give it a window; forget regions the parent
/// added after it built the child's tables (or left out, empty). Then map the kernel
/// information page, which `fork` left out with the rest of the windows' table.
pub fn fixup_after_fork() -> Result<(), Error> {
    with(|s| {
        s.me = sys::env_self();
        s.ft_mapped = [0; FT_PAGES / 64];
        s.env_mapped = false;
        s.own_entry = 0;
        let mut kept = 0;
        for slot in 0..s.n {
            let region = s.l3[slot].region;
            let pa = match sys::table_get(s.me, region, 2) {
                Ok(e) if Pte(e).is_valid() => Pte(e).addr(),
                Ok(_) | Err(Error::NotFound) => continue,
                Err(e) => return Err(e),
            };
            s.l3[kept] = L3 { region, pa };
            // Slot 0 is the windows' own table (kept first: never empty), so each window
            // is set in it by name, with no walk.
            let (w, pte) = (window(kept), Pte::user_page(pa, RO).0);
            match s.l3[0] {
                t if t.region == TABLE_WINDOW => sys::table_set_at(s.me, t.pa, index(w, 3) as u64, pte)?,
                _ => sys::table_set(s.me, w, 3, pte)?,
            }
            kept += 1;
        }
        s.n = kept;
        s.map(KINFO, Pte::user_page(s.kinfo_pa, RO).0)
    })
}
