//! Processes as library code: copy-on-write `fork`, `wait`, and reclaiming what children
//! leave behind. The kernel only offers blank environments and checked table updates.

use exo_abi::pte::{bits, Pte};
use exo_abi::{frame, EnvId, Error, FrameEntry, TableOp};

use crate::private::Private;
use crate::rt::FORK_MAGIC;
pub use crate::spawn::Net;
use crate::vm::{self, COW, PAGE, RW, SCRATCH, SHARED, STACK_SIZE, STACK_TOP};
use crate::{ipc, owed, sys, upcall};

/// Callee-saved registers and sp at the moment of `fork` (x19..x30, sp; the assembly below
/// knows these offsets), then what the child takes over at its start: the stack pages it
/// is owed ([`owed`]), its id, and its level-3 table for each of the parent's table slots
/// (0: none made), whose windows `fork` set already (`vm::adopt_after_fork`).
#[repr(C)]
#[derive(Default)]
struct Saved {
    regs: [u64; 13],
    owed: owed::Owed,
    child: EnvId,
    /// The slots recorded in `l3`, or `usize::MAX` if there were more: the child then
    /// looks its tables up itself (`vm::fixup_after_fork`).
    slots: usize,
    l3: [u64; SLOTS],
}

/// Table slots `fork` hands the child in its `Saved` (a program has a dozen or so).
const SLOTS: usize = 32;

#[cfg(target_os = "none")]
core::arch::global_asm!(
    ".section .text.exo_fork, \"ax\"",
    ".global exo_fork_save",
    "exo_fork_save:",
    "    stp x19, x20, [x0, #0]",
    "    stp x21, x22, [x0, #16]",
    "    stp x23, x24, [x0, #32]",
    "    stp x25, x26, [x0, #48]",
    "    stp x27, x28, [x0, #64]",
    "    stp x29, x30, [x0, #80]",
    "    mov x1, sp",
    "    str x1, [x0, #96]",
    "    mov x0, #0",
    "    ret",
    ".global exo_fork_resume",
    "exo_fork_resume:",
    "    ldp x19, x20, [x0, #0]",
    "    ldp x21, x22, [x0, #16]",
    "    ldp x23, x24, [x0, #32]",
    "    ldp x25, x26, [x0, #48]",
    "    ldp x27, x28, [x0, #64]",
    "    ldp x29, x30, [x0, #80]",
    "    ldr x1, [x0, #96]",
    "    mov sp, x1",
    "    mov x0, #1",
    "    ret",
);

unsafe extern "C" {
    /// Returns 0 after saving; "returns" 1 again in the child, via `exo_fork_resume`.
    fn exo_fork_save(s: *mut Saved) -> u64;
    fn exo_fork_resume(s: *const Saved) -> !;
    fn _start();
    static __private_start: u8;
    static __private_end: u8;
}

const BOOT_STACK: usize = 8 * 1024;
#[repr(C, align(4096))]
struct Stack([u8; BOOT_STACK]);
/// The stack a forked child starts on, before it switches to its copy of the parent's:
/// whole pages, of which the child gets only the top one (a zeroed frame); the one below
/// stays unmapped, a guard: `child_start` needs far less than a page, and a fault there
/// ends the child rather than overwriting the statics next to it.
#[unsafe(link_section = ".private.stacks")]
static CHILD_BOOT_STACK: Private<Stack> = Private::new(Stack([0; BOOT_STACK]));

pub enum Fork {
    Parent(EnvId),
    Child,
}

/// Creates a child running a copy of this environment. Data and heap pages are shared
/// copy-on-write; the stack and `.private` are copied at once (the upcall handler and the
/// address-space bookkeeping must never fault), except stack pages that hold nothing the
/// child reads: the main stack below the stack pointer and the call stack are left for
/// the child to fault in (`owed`), the rest it gets zeroed; pages marked [`SHARED`] stay shared
/// read-write. Device frames (the screen) are left out: only their owner may map them, so
/// the child starts without them. The child may write to the console if the caller may,
/// and binds the network the caller may. Returns in both, like Unix `fork`.
pub fn fork() -> Result<Fork, Error> {
    fork_with_quota(0)
}

/// [`fork`], with the child (and its descendants) limited to `quota` frames (0: no limit
/// but the caller's own).
#[inline(never)]
pub fn fork_with_quota(quota: u32) -> Result<Fork, Error> {
    fork_with(quota, &[], Net::All)
}

/// [`fork`], the child given `net` of the caller's network (`NetGrant`) instead of all of
/// it: [`Net::None`] for a child that is never to use the network.
#[inline(never)]
pub fn fork_with_network(net: Net) -> Result<Fork, Error> {
    fork_with(0, &[], net)
}

/// [`fork`], the child allowed to call each of `servers` (`PctAllow`) before it first
/// runs. Rights are never inherited, and a child may run on another core at once, before
/// its parent could give them once `fork` returns there.
#[inline(never)]
pub fn fork_allowing(servers: &[EnvId]) -> Result<Fork, Error> {
    fork_with(0, servers, Net::All)
}

/// Inlined into each entry point (whose own frame the child resumes in).
#[inline(always)]
fn fork_with(quota: u32, servers: &[EnvId], net: Net) -> Result<Fork, Error> {
    let mut saved = Saved::default();
    // SAFETY: saves callee-saved state into `saved`; the child resumes here with 1.
    if unsafe { exo_fork_save(&mut saved) } != 0 {
        return Ok(Fork::Child);
    }
    let child = sys::env_create(quota)?;
    match build_child(child, &mut saved, servers, net) {
        Ok(()) => Ok(Fork::Parent(child)),
        Err(e) => {
            let _ = sys::env_destroy(child);
            Err(e)
        }
    }
}

/// In the child, from `_start`: adopt the tables the parent built, then continue where
/// the parent called `fork`.
pub(crate) fn child_start(saved: u64) -> ! {
    // SAFETY: `saved` points at the parent's Saved, in the child's copy of the stack
    // (above the saved stack pointer, so copied, not owed).
    let s = unsafe { &*(saved as *const Saved) };
    let fixed = match s.slots {
        usize::MAX => vm::fixup_after_fork(),
        n => vm::adopt_after_fork(s.child, &s.l3[..n]),
    };
    // The upcall handler: `fork` registered it for the child already (`build_child`).
    if let Err(e) = fixed.and_then(|_| adopt(s.owed)) {
        // Not `println`: it may write to a pipe, deeper than this stack's one page.
        let _ = sys::console_write(b"fork: the child cannot adopt its tables\n");
        sys::exit(-(e as i32));
    }
    crate::reclaim::after_fork();
    // SAFETY: `saved` points at the parent's Saved, in the child's copy of the stack.
    unsafe { exo_fork_resume(saved as *const Saved) }
}

/// In the child, before it touches either stack: takes over the pages it is owed, with its
/// own level-3 table for each stretch.
fn adopt(mut owed: owed::Owed) -> Result<(), Error> {
    for s in owed.iter_mut().filter(|s| s.mask != 0) {
        s.l3 = vm::l3_table(s.base)?;
    }
    owed::set(owed);
    Ok(())
}

struct Batch {
    env: EnvId,
    ops: [TableOp; 64],
    n: usize,
}

impl Batch {
    fn push(&mut self, va: u64, pte: u64) -> Result<(), Error> {
        self.ops[self.n] = TableOp { va, level: 3, pte };
        self.n += 1;
        if self.n == self.ops.len() {
            self.flush()?;
        }
        Ok(())
    }

    fn flush(&mut self) -> Result<(), Error> {
        if self.n > 0 {
            let done = sys::table_set_batch(self.env, &self.ops[..self.n])?;
            if done != self.n as u64 {
                // Report the failing op's own error.
                let op = self.ops[done as usize];
                sys::table_set(self.env, op.va, 3, op.pte)?;
            }
            self.n = 0;
        }
        Ok(())
    }
}

/// Out of line: its frame (the batches, a few KiB) lies below the stack pointer `fork`
/// saved, so the child is owed those pages rather than given copies of them.
#[inline(never)]
fn build_child(child: EnvId, saved: &mut Saved, servers: &[EnvId], net: Net) -> Result<(), Error> {
    let me = vm::me();
    let root = sys::frame_alloc(child, None)?;
    sys::table_bind(child, root, 0)?;
    vm::reserve(SCRATCH)?;
    // Text and read-only data: their tables are linked whole (the first fork freezes them;
    // a forked child's are its ancestor's, frozen already), so no page of them is copied,
    // walked or, at the child's end, unmapped one by one. Frozen, they never change again.
    let (mut tables, mut upper) = (Ok(()), [u64::MAX; 4]);
    // Text regions whose frozen table the child could not link, a bit each from the first:
    // their entries are copied. (Not a `Vec`: nothing may be mapped between this look at
    // the tables and the walk below, and the heap could map a page.)
    let text_bit = |r: u64| 1u64.checked_shl(((r - vm::text_base()) / vm::REGION) as u32);
    let mut unlinked = 0u64;
    saved.child = child;
    saved.slots = 0;
    vm::regions(|r, l3| {
        // The child's table for this slot, in order (0: none), while there is room.
        let mut record = |pa: u64| match saved.l3.get_mut(saved.slots) {
            Some(slot) => (*slot, saved.slots) = (pa, saved.slots + 1),
            None => saved.slots = usize::MAX,
        };
        tables = tables.and_then(|_| {
            let text = vm::text_region(r);
            // An empty table (pages unmapped since, or only reserved) is not made again:
            // the child forgets its region (`fixup_after_fork`) and adds it if it maps there.
            // But for the windows the child maps again itself: their tables stay, so that
            // it needs no frame for them (an upcall under memory pressure reads the
            // environment table), even where the parent never mapped a page.
            let empty = || vm::frame_entry(l3).is_some_and(|t| t.entries == 0);
            if !text && !vm::remade_by_child(r) && empty() {
                record(0);
                return Ok(());
            }
            upper_tables(child, r, &mut upper)?;
            if text && share_whole(me, child, r, l3)? {
                record(l3);
                return Ok(());
            }
            if text && vm::frozen(l3) {
                unlinked |= text_bit(r).ok_or(Error::Busy)?;
            }
            let pa = sys::frame_alloc(child, None)?;
            sys::table_bind(child, pa, 3)?;
            record(pa);
            sys::table_set(child, r, 2, Pte::table(pa).0)
        })
    });
    tables?;
    let private = (&raw const __private_start as u64, &raw const __private_end as u64);
    let copied =
        |va: u64| (private.0..private.1).contains(&va) || (STACK_TOP - STACK_SIZE..STACK_TOP).contains(&va);
    // Written before the walk copies the stack page that holds it.
    saved.owed = owed_by_child(saved.regs[12]);
    let owed = saved.owed;
    let lazy = |va: u64| owed.iter().any(|s| s.bit(va).is_some_and(|b| s.mask & b != 0));
    let boot = CHILD_BOOT_STACK.get() as u64;
    let guard = |va: u64| (boot..boot + BOOT_STACK as u64 - PAGE).contains(&va);
    let dead = dead_pages(saved.regs[12], &owed);
    let fresh = |va: u64| dead.iter().any(|r| r.contains(&va));
    let mut for_child = Batch { env: child, ops: [TableOp::default(); 64], n: 0 };
    let mut for_me = Batch { env: me, ops: [TableOp::default(); 64], n: 0 };
    // The child's windows on its tables (in its slot order: those made) and the kernel
    // information page, so that it need not set them itself.
    if saved.slots != usize::MAX {
        let made = saved.l3[..saved.slots].iter().filter(|&&pa| pa != 0);
        for (k, &pa) in made.enumerate() {
            for_child.push(vm::window(k), Pte::user_page(pa, vm::RO).0)?;
        }
        for_child.push(vm::KINFO, Pte::user_page(vm::kinfo_pa(), vm::RO).0)?;
    }
    let mut result = Ok(());
    let mut each = |va: u64, e: u64| {
        // Pages of the stacks and `.private` are owed, left out, zeroed or copied; the
        // questions are asked only there (most pages are elsewhere).
        let own = copied(va);
        if result.is_err() || own && (lazy(va) || guard(va)) || va == SCRATCH || is_device(Pte(e).addr()) {
            return;
        }
        // Read-only pages (text, rodata, public kernel pages) are shared as they are.
        result = if own && fresh(va) {
            sys::frame_alloc(child, None).and_then(|pa| for_child.push(va, Pte::user_page(pa, RW).0))
        } else if own {
            copy_page(va, Pte(e).addr(), child).and_then(|pa| for_child.push(va, Pte::user_page(pa, RW).0))
        } else if e & SHARED == 0 && (e & bits::AP_RO == 0 || e & COW != 0) {
            // Still copy-on-write from an earlier fork: only the child's entry is new.
            let shared = e | bits::AP_RO | COW;
            let mine = if shared == e { Ok(()) } else { for_me.push(va, shared) };
            mine.and_then(|_| for_child.push(va, shared))
        } else {
            for_child.push(va, e)
        };
    };
    vm::for_each_mapping_in(false, vm::remade_by_child, &mut each);
    if unlinked != 0 {
        let skip = |r: u64| !vm::text_region(r) || text_bit(r).is_none_or(|b| unlinked & b == 0);
        vm::for_each_mapping_in(true, skip, &mut each);
    }
    result?;
    for_me.flush()?;
    for_child.flush()?;
    sys::env_set_upcall(child, upcall::entry_address(), upcall::stack_top(), false)?;
    let boot_sp = CHILD_BOOT_STACK.get() as u64 + BOOT_STACK as u64;
    sys::env_set_entry(child, _start as *const () as u64, boot_sp, &raw const *saved as u64, FORK_MAGIC)?;
    for &s in servers {
        sys::pct_allow(child, s)?;
    }
    crate::spawn::grant_net(child, net)?; // (a copy of the parent's, unless told otherwise)
    crate::spawn::pass_console(child)?;
    sys::env_start(child)
}

/// Links this program's text table `l3` (for `region`) into `child` whole, frozen first if
/// it is not yet. `false` if it cannot be shared: a table that maps an ancestor's pages
/// cannot be frozen (this program's text table is then a copy, made when its parent's
/// could not be linked), and a frozen table takes no more than 255 links, which a
/// descendant may have used up by linking it itself. The child then gets a table of its
/// own with the same entries (`build_child`), so that nobody else's doing makes `fork` fail.
fn share_whole(me: EnvId, child: EnvId, region: u64, l3: u64) -> Result<bool, Error> {
    if !vm::frozen(l3) && sys::table_set(me, region, 2, Pte::table(l3).0 | bits::FROZEN_LINK).is_err() {
        return Ok(false);
    }
    match sys::table_set(child, region, 2, Pte::table(l3).0) {
        Ok(()) => Ok(true),
        Err(Error::Busy) => Ok(false),
        Err(e) => Err(e),
    }
}

/// Makes sure `child` has its tables down to level 2 for `region`: looked up and made once
/// per GiB (`known` lists those done), since most regions share them.
fn upper_tables(child: EnvId, region: u64, known: &mut [u64; 4]) -> Result<(), Error> {
    let gib = region >> 30;
    if !known.contains(&gib) {
        vm::ensure_tables_to(child, region, 2)?;
        if let Some(k) = known.iter_mut().find(|k| **k == u64::MAX) {
            *k = gib;
        }
    }
    Ok(())
}

/// The stack pages a child forked with stack pointer `sp` is owed ([`owed`]): those this
/// environment is owed itself (never touched, so zero), and when `fork` runs on the main
/// stack, its pages below `sp` and the whole call stack (no call is running then, and a
/// call starts afresh on its stack's top). The child gets no frame for them.
fn owed_by_child(sp: u64) -> owed::Owed {
    let mine = owed::get();
    let on_main = (STACK_TOP - STACK_SIZE..STACK_TOP).contains(&sp);
    let main = owed::Stretch {
        base: STACK_TOP - STACK_SIZE,
        l3: 0,
        mask: if on_main { owed::mask(STACK_TOP - STACK_SIZE, STACK_TOP - STACK_SIZE, sp) } else { 0 },
    };
    let call = owed::stretch(ipc::call_stack())
        .map_or(owed::Stretch::default(), |c| owed::Stretch { mask: if on_main { c.mask } else { 0 }, ..c });
    let mut owed = [main, call];
    for (o, m) in owed.iter_mut().zip(mine) {
        if m.base == o.base {
            o.mask |= m.mask;
        }
    }
    owed
}

/// Pages of the stacks and of `.private` that hold nothing the child will read and that it
/// is not `owed` either, for a fork whose saved stack pointer is `sp`: the child gets
/// zeroed frames there instead of copies. The address-space bookkeeping's unused part
/// ([`vm::unread_by_child`]); the top page of the child's boot stack (the rest is a guard,
/// left unmapped), the parent's too, unused since its own start; when `fork` runs on the
/// main stack, the upcall stack (no upcall is running
/// then; it must stay mapped: a fault in the handler is fatal), and the call stack if it
/// cannot be owed ([`owed::stretch`]).
fn dead_pages(sp: u64, owed: &owed::Owed) -> [core::ops::Range<u64>; 5] {
    let pages = |(lo, hi): (u64, u64)| lo.next_multiple_of(PAGE)..hi & !(PAGE - 1);
    let boot = CHILD_BOOT_STACK.get() as u64;
    let (unread, read) = (vm::unread_by_child(), crate::reclaim::read_by_child());
    // The parked pages' list lies in the unread tail: the child reads its first entries.
    let (a, b) = if read.is_empty() {
        (pages((unread.start, unread.end)), 0..0)
    } else {
        (pages((unread.start, read.start)), pages((read.end, unread.end)))
    };
    let top = boot + BOOT_STACK as u64;
    let mut dead = [top - PAGE..top, a, b, 0..0, 0..0];
    if (STACK_TOP - STACK_SIZE..STACK_TOP).contains(&sp) {
        dead[3] = pages(upcall::stack());
        if owed[1].mask == 0 {
            dead[4] = pages(ipc::call_stack());
        }
    }
    dead
}

/// Whether `pa` is a device frame (the screen's, the only kind there is: see
/// `KernelInfo::fb_base`), which the child could not map.
fn is_device(pa: u64) -> bool {
    let k = vm::kinfo();
    (k.fb_base..k.fb_base + k.fb_bytes).contains(&pa)
}

/// The page mapped at `va`, to read.
///
/// # Safety
/// A page must be mapped readable at `va` and not be written while the slice lives.
pub(crate) unsafe fn page_at<'a>(va: u64) -> &'a [u8] {
    // SAFETY: the caller guarantees a readable page at `va` that nothing writes while the
    // slice lives; a page is `PAGE` bytes, and bytes need no alignment.
    unsafe { core::slice::from_raw_parts(va as *const u8, PAGE as usize) }
}

/// A new frame holding a copy of the page at `va` (mapped from frame `pa`), given to
/// `child`: the kernel copies a frame of ours; another's (`Denied`) is copied here.
fn copy_page(va: u64, pa: u64, child: EnvId) -> Result<u64, Error> {
    match sys::frame_copy(child, pa) {
        Err(Error::Denied) => {}
        done => return done,
    }
    // SAFETY: `va` is a mapped, readable page.
    let pa = vm::fill_new_frame(|page| page.copy_from_slice(unsafe { page_at(va) }))?;
    sys::frame_give(pa, child)?;
    Ok(pa)
}

/// Waits for `child` to exit and returns its status; then frees frames of ours that only
/// a child still used (`orphaned`: a copy made on write leaves ours mapped by the child
/// alone). That costs a look at each such frame, not a walk of the frame table.
pub fn wait(child: EnvId) -> Result<i32, Error> {
    let status = sys::env_wait(child)?;
    reclaim_orphans();
    Ok(status)
}

/// Frames [`orphaned`] remembers at most; past that, the next `wait` walks the whole
/// frame table once ([`reclaim`]).
const ORPHANS: usize = 256;

/// Frames of ours this program stopped mapping while another environment (a child) still
/// mapped them. In `.private`, all zero in a new program and in a forked child (whose
/// parent's frames they are not: `fork` gives it zeroed pages here).
struct Orphans {
    pa: [u64; ORPHANS],
    n: usize,
    overflow: bool,
}

/// In `.private.zero`: a forked child starts with none (the frames are its parent's).
#[unsafe(link_section = ".private.zero")]
static ORPHANED: Private<Orphans> = Private::new(Orphans { pa: [0; ORPHANS], n: 0, overflow: false });

fn orphans() -> &'static mut Orphans {
    // SAFETY: one thread of control. The upcall handler adds to the list (a copy made on
    // write) only while the program runs code that can fault on a copy-on-write page, and
    // nothing that touches this list does (it and the stack are never copy-on-write in
    // the program that owns them). Each reference ends within the call that took it.
    unsafe { &mut *ORPHANED.get() }
}

/// Frame `pa`, ours, is no longer mapped here but may still be mapped elsewhere (a child's
/// copy-on-write share): [`wait`] frees it once nothing maps it.
pub(crate) fn orphaned(pa: u64) {
    let o = orphans();
    match o.pa.get_mut(o.n) {
        Some(slot) => (*slot, o.n) = (pa, o.n + 1),
        None => o.overflow = true,
    }
}

/// Frees the `orphaned` frames nothing maps any more, forgets those that are not ours,
/// keeps the rest; after an overflow, walks the frame table instead. Returns how many went.
pub fn reclaim_orphans() -> u64 {
    if core::mem::take(&mut orphans().overflow) {
        orphans().n = 0;
        return reclaim();
    }
    let me = vm::me();
    let (mut i, mut freed) = (0, 0);
    while i < orphans().n {
        let pa = orphans().pa[i];
        let f = vm::frame_entry(pa).filter(|f| f.owner == me.0 && f.kind == frame::DATA);
        if f.is_some_and(|f| f.maps != 0) {
            i += 1; // another child still maps it
            continue;
        }
        if f.is_some() && sys::frame_free(me, pa).is_ok() {
            freed += 1;
        }
        let o = orphans();
        o.n -= 1;
        o.pa[i] = o.pa[o.n];
    }
    freed
}

/// Frees every data frame this environment owns that nothing maps.
pub fn reclaim() -> u64 {
    let me = vm::me();
    let mine = |f: &FrameEntry| f.owner == me.0 && f.kind == frame::DATA && f.maps == 0;
    vm::frames().filter(|(pa, f)| mine(f) && sys::frame_free(me, *pa).is_ok()).count() as u64
}
