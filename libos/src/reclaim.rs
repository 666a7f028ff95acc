//! Revocation honoured: giving frames back when the kernel asks, and taking stock after it
//! took some by force.
//!
//! On a `REVOKE` upcall (`arg` frames wanted, by tick `far`) the handler gives back, in this
//! order, until it has given enough:
//!
//! 1. pages of *cache regions* ([`add_cache_region`]): memory whose contents the program can
//!    make again (clean file-cache pages, scratch), mapped lazily; a page given back reads
//!    as zeros next time, so users check a page with [`CacheRegion::resident`] first and
//!    refill it (reread it from disk) when it is gone;
//! 2. free heap pages: whole free pages are taken out of the allocator, unmapped and freed,
//!    and *parked*; the heap maps them again before it grows (`heap.rs`);
//! 3. the reserve ([`keep_reserve`]): unmapped frames kept so that a missed deadline costs
//!    nothing. The kernel repossesses unmapped frames first, so a program with a reserve at
//!    least as large as the request loses no mapped page even when it cannot answer.
//!
//! Pages never touched in a lazy region hold no frame and cost nothing. Nothing here
//! allocates (the handler may have interrupted the heap). While the interrupted code is
//! inside `vm` (its state is not re-entrant) or has cache pages pinned, only the reserve can
//! be given: the rest stays owed, and slice-end upcalls are switched on until it is paid, so
//! the handler comes back within a few ticks. The main context pays it sooner where it can:
//! as the last pin ends ([`pinned`]), and in [`poll`].
//!
//! After a forced repossession (the deadline passed first) the kernel's public record says
//! how many frames went and the last [`REPOSSESS_LOG`] of them. [`poll`] (and every upcall)
//! reads it: frames of the reserve were meant to go (the reserve is refilled when memory
//! allows), cache-region pages are simply refaulted and refilled on use, and anything else
//! is reported as lost, with its count kept in [`stats`]. See `docs/libos.md`.

use exo_abi::pte::Pte;
use exo_abi::{EnvId, Error, REPOSSESS_LOG};

use crate::private::Private;
use crate::vm::{self, PAGE};
use crate::{println, sys};

/// Cache regions a program may register.
pub const MAX_CACHE_REGIONS: usize = 4;
/// Free heap pages that can be parked at once.
pub const MAX_PARKED: usize = 512;
/// Most frames kept in reserve.
pub const MAX_RESERVE: usize = 32;

/// What this environment gave back and lost, since it started.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Stats {
    /// `REVOKE` requests seen.
    pub requests: u64,
    /// Frames asked for by them.
    pub asked: u64,
    /// Cache-region pages given back.
    pub cache_pages: u64,
    /// Free heap pages given back.
    pub heap_pages: u64,
    /// Reserve frames given back.
    pub reserve_frames: u64,
    /// Frames the kernel took by force (its count).
    pub repossessed: u64,
    /// Of those, cache-region pages (refilled on use, so not lost).
    pub cache_repossessed: u64,
    /// Of those, frames neither the reserve's nor cache pages: mapped memory the program
    /// lost.
    pub lost: u64,
}

impl Stats {
    /// Frames given back of the program's own accord.
    pub fn given(&self) -> u64 {
        self.cache_pages + self.heap_pages + self.reserve_frames
    }
}

struct State {
    stats: Stats,
    /// Cache regions: (start, end), page-aligned; (0, 0) is a free slot.
    caches: [(u64, u64); MAX_CACHE_REGIONS],
    /// Cache regions in use by the program right now (never dropped while > 0).
    pinned: u32,
    /// Cache-region pages mapped, as far as this libOS knows (a forced repossession may
    /// have taken some since: `on_upcall` counts them).
    cache_mapped: u64,
    /// Cache-region pages faulted in so far ([`cache_faults`]).
    cache_faults: u64,
    /// How many of [`PARKED`] hold a page.
    n_parked: usize,
    reserve: [u64; MAX_RESERVE],
    n_reserve: usize,
    reserve_goal: usize,
    /// Frames still owed to a request the handler could not act on.
    owed: u64,
    /// Slice-end upcalls were switched on to come back for them.
    slices_on: bool,
    /// The main context is changing the parked list or the reserve: the handler leaves
    /// both alone until it is done.
    main_busy: bool,
    /// The main context is paying what is owed (`pay_owed`): the handler only adds a new
    /// request to the debt and leaves the paying to it.
    paying: bool,
}

#[unsafe(link_section = ".private")]
static STATE: Private<State> = Private::new(State {
    stats: Stats {
        requests: 0,
        asked: 0,
        cache_pages: 0,
        heap_pages: 0,
        reserve_frames: 0,
        repossessed: 0,
        cache_repossessed: 0,
        lost: 0,
    },
    cache_mapped: 0,
    cache_faults: 0,
    caches: [(0, 0); MAX_CACHE_REGIONS],
    pinned: 0,
    n_parked: 0,
    reserve: [0; MAX_RESERVE],
    n_reserve: 0,
    reserve_goal: 0,
    owed: 0,
    slices_on: false,
    main_busy: false,
    paying: false,
});

/// The parked heap pages, `n_parked` of them. Apart from `State`, alone in `.private.tail`
/// after `vm`'s state (`link.ld`): a forked child reads only the first `n_parked`
/// ([`read_by_child`]), and is given zeroed pages past them, most often all of them.
#[unsafe(link_section = ".private.tail")]
static PARKED: Private<[u64; MAX_PARKED]> = Private::new([0; MAX_PARKED]);

fn parked() -> &'static mut [u64; MAX_PARKED] {
    // SAFETY: as for `state`: the parked list is changed only under `main_busy` by the
    // main context, and by the handler only when `main_busy` is clear.
    unsafe { &mut *PARKED.get() }
}

/// In a forked child, before it runs on: its accounts start afresh. The counts it copied
/// are its parent's, and the kernel counts this environment's repossessions from 0 (a
/// parent's count left here would make the next stock-taking subtract past zero); the
/// reserve names the parent's frames, not the child's to give back; nobody owes anything
/// yet, and slice-end upcalls are off. (The parked heap pages are addresses, the child's too.)
pub(crate) fn after_fork() {
    let s = state();
    s.stats = Stats::default();
    (s.n_reserve, s.owed, s.slices_on) = (0, 0, false);
}

/// The bytes of the parked list a forked child reads: the pages parked.
pub(crate) fn read_by_child() -> core::ops::Range<u64> {
    let p = PARKED.get() as u64;
    p..p + state().n_parked as u64 * 8
}

fn state() -> &'static mut State {
    // SAFETY: one thread of control. The main context only touches this state in short
    // calls that do not fault and do not cross an upcall-sensitive point except through
    // the `pinned` counter, which the handler reads before it drops cache pages; the
    // handler's own use runs to completion before the main context resumes.
    unsafe { &mut *STATE.get() }
}

/// What this environment gave back and lost so far.
pub fn stats() -> Stats {
    state().stats
}

/// A region of lazily mapped pages whose contents the program can make again.
#[derive(Clone, Copy, Debug)]
pub struct CacheRegion {
    pub start: u64,
    pub pages: u64,
}

impl CacheRegion {
    /// The address of page `i`.
    pub fn page(&self, i: u64) -> u64 {
        self.start + i * PAGE
    }

    /// Whether page `i` still holds what was put there: it is mapped. Call it inside
    /// [`pinned`], and trust the page only until the closure returns.
    pub fn resident(&self, i: u64) -> bool {
        i < self.pages && Pte(vm::entry(self.page(i))).is_valid()
    }
}

/// Sets aside `pages` pages of address space as a cache region: mapped on first touch,
/// given back first when the kernel asks for memory.
pub fn add_cache_region(pages: u64) -> Result<CacheRegion, Error> {
    let start = vm::alloc_va(pages);
    let end = start + pages * PAGE;
    let s = state();
    let slot = s.caches.iter().position(|r| r.1 == 0).ok_or(Error::NoSlot)?;
    vm::add_lazy_region(start, end)?;
    s.caches[slot] = (start, end);
    Ok(CacheRegion { start, pages })
}

/// Whether `va` lies in a cache region (its pages are mapped [`vm::DROPPABLE`]).
pub fn in_cache_region(va: u64) -> bool {
    state().caches.iter().any(|&(a, b)| va >= a && va < b)
}

/// Cache-region pages faulted in since the program started. A page the kernel took by
/// force while the program was using it comes back as a fresh zero page through a fault:
/// code that reads a cache page compares this before and after to know that did not happen.
pub fn cache_faults() -> u64 {
    // The fault handler changes the count behind the compiler's back (an upcall in the
    // middle of a copy): a fence keeps the read where it is written, and a volatile read
    // keeps it from being folded with an earlier one.
    core::sync::atomic::compiler_fence(core::sync::atomic::Ordering::SeqCst);
    // SAFETY: STATE's pointer is valid for the program's life; this only names a field.
    let at = unsafe { &raw const (*STATE.get()).cache_faults };
    // SAFETY: `at` points to an initialised, aligned `u64` in STATE.
    let n = unsafe { core::ptr::read_volatile(at) };
    core::sync::atomic::compiler_fence(core::sync::atomic::Ordering::SeqCst);
    n
}

/// The fault handler mapped a cache-region page.
pub(crate) fn note_cache_fault() {
    let s = state();
    s.cache_mapped += 1;
    s.cache_faults += 1;
}

/// Cache-region pages mapped right now.
fn cache_resident() -> u64 {
    let mut n = 0;
    for &(start, end) in &state().caches {
        let mut va = start;
        while va < end {
            n += u64::from(Pte(vm::entry(va)).is_valid());
            va += PAGE;
        }
    }
    n
}

/// Runs `f` while no cache page can be given back (so a page checked resident stays so).
/// A request that came meanwhile, and that the handler could not pay in full, is paid as
/// the last pin ends, not a tick or more later when the handler comes back: a program
/// that keeps its cache pinned most of the time would otherwise keep missing deadlines.
pub fn pinned<R>(f: impl FnOnce() -> R) -> R {
    state().pinned += 1;
    let r = f();
    let s = state();
    s.pinned -= 1;
    if s.owed > 0 && s.pinned == 0 {
        pay_owed();
    }
    r
}

/// Keeps `frames` (at most [`MAX_RESERVE`]) unmapped frames in reserve, taken now as far
/// as memory allows; returns how many are held.
pub fn keep_reserve(frames: usize) -> usize {
    state().reserve_goal = frames.min(MAX_RESERVE);
    refill_reserve();
    state().n_reserve
}

fn refill_reserve() {
    let s = state();
    s.main_busy = true;
    while s.n_reserve < s.reserve_goal {
        match sys::frame_alloc(vm::me(), None) {
            Ok(pa) => {
                s.reserve[s.n_reserve] = pa;
                s.n_reserve += 1;
            }
            Err(_) => break,
        }
    }
    s.main_busy = false;
}

/// Takes private copies now of the heap pages a `fork` left copy-on-write, so that free
/// heap pages can be given back from the upcall handler (which must not fault, and so
/// leaves a heap it cannot write alone). A forked child that expects memory pressure calls
/// it once; it costs a frame per page still shared.
pub fn own_heap() -> Result<(), Error> {
    let mut va = vm::HEAP_BASE;
    while va < crate::heap::top() {
        if vm::entry(va) & vm::COW != 0 {
            crate::upcall::copy_on_write(va)?;
        }
        va += PAGE;
    }
    Ok(())
}

/// A parked heap page for the heap to map again and reuse; `None` if there is none. (The
/// host build has no heap of its own to call it.)
#[cfg_attr(not(target_os = "none"), allow(dead_code))]
pub(crate) fn unpark() -> Option<u64> {
    let s = state();
    if s.n_parked == 0 {
        return None;
    }
    s.main_busy = true;
    s.n_parked -= 1;
    let va = parked()[s.n_parked];
    s.main_busy = false;
    Some(va)
}

/// Unmaps and frees the page at `va` if the frame is this environment's and mapped only
/// here (a copy-on-write page shared with a parent or child frees nothing).
fn give_page(va: u64) -> bool {
    let e = Pte(vm::entry(va));
    if !e.is_valid() {
        return false;
    }
    let me = vm::me().0;
    if !vm::frame_entry(e.addr()).is_some_and(|f| f.owner == me && f.maps == 1) {
        return false;
    }
    vm::unmap(va).is_ok() && sys::frame_free(vm::me(), e.addr()).is_ok()
}

/// The `REVOKE` upcall: `wanted` frames back. Returns how many were given.
pub(crate) fn on_revoke(wanted: u64) -> u64 {
    let s = state();
    s.stats.requests += 1;
    s.stats.asked += wanted;
    s.owed = s.owed.max(wanted);
    settle()
}

/// In the main context, outside `vm` and every pin: gives back what is owed, a request
/// that comes meanwhile included (the handler leaves it to this: `paying`).
#[cold]
#[inline(never)]
fn pay_owed() {
    let s = state();
    s.paying = true;
    while s.owed > 0 && pay() > 0 {}
    s.paying = false;
}

/// Gives back what is owed, as far as the interrupted code allows; returns how many. What
/// it cannot give now (the code was inside `vm` or had cache pages pinned) stays owed, and
/// slice-end upcalls are switched on so that the handler comes back within a few ticks.
/// In the handler while the main context pays (`pay_owed`), nothing: it pays for both.
fn settle() -> u64 {
    if state().paying {
        return 0;
    }
    pay()
}

fn pay() -> u64 {
    let s = state();
    if s.owed == 0 {
        return 0;
    }
    let given = give(s.owed);
    // (A request meanwhile only raises the debt: see `on_revoke`.)
    s.owed = s.owed.saturating_sub(given);
    let come_back = s.owed > 0;
    if come_back != s.slices_on {
        let r = sys::env_set_upcall(
            EnvId::SELF,
            crate::upcall::entry_address(),
            crate::upcall::stack_top(),
            come_back,
        );
        s.slices_on = come_back && r.is_ok();
    }
    given
}

/// Gives back up to `frames` frames now, as a `REVOKE` asking for them would (cache pages
/// first, then free heap pages, then the reserve); returns how many went. A program that
/// wants to shrink calls it; cache users find their pages gone and refill them on use.
pub fn trim(frames: u64) -> u64 {
    give(frames)
}

/// Gives back up to `wanted` frames, as far as the interrupted code allows.
fn give(wanted: u64) -> u64 {
    let s = state();
    let vm_free = !vm::busy();
    let mut given = 0;
    // 1. Cache pages.
    if vm_free && s.pinned == 0 {
        for r in 0..MAX_CACHE_REGIONS {
            let (start, end) = s.caches[r];
            let mut va = start;
            while va < end && given < wanted {
                if give_page(va) {
                    given += 1;
                    s.stats.cache_pages += 1;
                    s.cache_mapped = s.cache_mapped.saturating_sub(1);
                }
                va += PAGE;
            }
        }
    }
    // 2. Free heap pages (only if the interrupted code is not in the allocator).
    while vm_free && !s.main_busy && given < wanted && s.n_parked < MAX_PARKED {
        let Some(va) = crate::heap::take_free_page() else { break };
        if give_page(va) {
            given += 1;
            s.stats.heap_pages += 1;
            parked()[s.n_parked] = va;
            s.n_parked += 1;
        } else {
            crate::heap::return_page(va);
            break;
        }
    }
    // 3. The reserve (a system call each: no `vm` needed).
    while !s.main_busy && given < wanted && s.n_reserve > 0 {
        s.n_reserve -= 1;
        if sys::frame_free(EnvId::SELF, s.reserve[s.n_reserve]).is_ok() {
            given += 1;
            s.stats.reserve_frames += 1;
        }
    }
    given
}

/// Every upcall and [`poll`]: answers a request left owed, then takes stock of frames the
/// kernel took by force. Must not allocate.
#[inline]
pub(crate) fn on_upcall() {
    if !nothing_to_take_stock_of() {
        take_stock();
    }
}

/// Whether [`on_upcall`] has nothing to do: the interrupted code is not inside `vm`,
/// nothing is owed, and nothing was taken since the last look (one word read).
#[inline(always)]
pub(crate) fn nothing_to_take_stock_of() -> bool {
    let s = state();
    !vm::busy() && s.owed == 0 && vm::own_repossessed() == Some(s.stats.repossessed)
}

#[cold]
#[inline(never)]
fn take_stock() {
    if vm::busy() {
        settle();
        return;
    }
    let s = state();
    let Some((wanted, repossessed)) = vm::env_revocation(vm::me()) else { return };
    // The kernel's count is the truth: frames the program freed itself count too.
    s.owed = s.owed.min(u64::from(wanted));
    settle();
    if repossessed == s.stats.repossessed || s.main_busy || s.paying {
        return;
    }
    let Some(info) = vm::env_info(vm::me()) else { return };
    let new = info.repossessed - s.stats.repossessed;
    let logged = new.min(REPOSSESS_LOG as u64);
    let mut from_reserve = 0;
    for k in 0..logged {
        let at = ((info.repossessed - 1 - k) % REPOSSESS_LOG as u64) as usize;
        let pa = info.repossess_log[at];
        if let Some(i) = s.reserve[..s.n_reserve].iter().position(|&r| r == pa) {
            s.reserve[i] = s.reserve[s.n_reserve - 1];
            s.n_reserve -= 1;
            from_reserve += 1;
        }
    }
    // Frames past the log's reach are counted as lost unless the reserve shrank for them:
    // the kernel takes unmapped frames first, so the reserve went before anything mapped.
    let beyond = new - logged;
    let reserve_beyond = beyond.min(s.n_reserve as u64);
    s.n_reserve -= reserve_beyond as usize;
    from_reserve += reserve_beyond;
    // Past the reserve the kernel takes pages marked droppable first: the cache pages.
    let resident = cache_resident();
    let from_cache = s.cache_mapped.saturating_sub(resident).min(new - from_reserve);
    s.cache_mapped = resident;
    let lost = new - from_reserve - from_cache;
    s.stats.repossessed = info.repossessed;
    s.stats.cache_repossessed += from_cache;
    s.stats.lost += lost;
    if lost > 0 {
        println!(
            "env {:#x}: the kernel repossessed {new} frames: {from_reserve} from the reserve, {from_cache} cache pages (refilled on use), {lost} others (a mapped page among them is lost)",
            info.id
        );
    }
}

/// Settles a request left owed and takes stock of repossessions, at a point where the
/// program may allocate: also refills the reserve. Programs that expect memory pressure
/// call it now and then (a loop's turn); the handler does the same at every upcall.
pub fn poll() {
    if state().owed > 0 {
        pay_owed();
    }
    on_upcall();
    refill_reserve();
}
