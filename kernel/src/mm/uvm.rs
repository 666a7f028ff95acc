//! Environments' translation tables: every change a libOS asks for, checked.
//!
//! A libOS builds its address space from frames it owns: it binds a frame as a table (see
//! `frames.rs`), links it under its root with a table descriptor, and fills level-3 entries
//! with page descriptors. The kernel keeps three invariants, which make the tree safe to
//! hand to the MMU without the kernel knowing the layout:
//!
//! 1. Tables form a tree: a level-L table is linked from exactly one level-(L-1) entry of
//!    the same environment's tree (so no cycles, no surprise walks). The one exception is
//!    a frozen level-3 table (`freeze`): an ancestor's, linked whole into descendants'
//!    trees too, which nobody may change while it is frozen and whose pages nobody's walk
//!    takes while it is shared.
//! 2. A page entry points at a data frame the sharing rule (`env::may_map`) lets the
//!    environment map with that access, or read-only at a public kernel frame (cacheable:
//!    zeroed in the cache at boot, never cleaned) or one of its own tables.
//!    Frames with a mapping cannot be freed, given away or bound as tables.
//! 3. Page entries carry only the bits `exo_abi::pte::USER_ALLOWED` permits: EL0, normal
//!    memory, never EL1-executable, never writable and executable at once.
//!
//! Each frame's `maps` and each table's `entries` count what points where, so teardown
//! and the checks above are exact. TLB entries are invalidated by ASID and address.

use exo_abi::pte::{attr, bits, index, span, Pte};
use exo_abi::{frame, EnvId, Error, USER_VA_LIMIT};

use core::sync::atomic::{AtomicBool, Ordering};

use super::frames::FrameTable;
use super::phys_to_virt;

/// Set once an environment maps a device frame (the screen's framebuffer): from then on
/// the screen is its owner's, and the kernel's console stops drawing on it.
pub static SCREEN_TAKEN: AtomicBool = AtomicBool::new(false);

/// The sharing rule for data frames (`env::may_map`): `(owner, pa, write, flags)` to the
/// frame's new flags, or `None` if it may not appear in the space.
pub trait MayMap: Fn(u32, u64, bool, u8) -> Option<u8> {}
impl<F: Fn(u32, u64, bool, u8) -> Option<u8>> MayMap for F {}

/// A walk's visitor (`Space::for_each_page`): `(frame table, page entry)` to whether to go on.
pub trait Visit: FnMut(&FrameTable, &mut u64) -> bool {}
impl<F: FnMut(&FrameTable, &mut u64) -> bool> Visit for F {}

/// A page entry's place: its level-3 table, the table's frame-table index, the entry's index.
type Slot = (u64, usize, usize);

/// One environment's address space, borrowed for one operation.
pub struct Space<'a> {
    pub ft: &'a mut FrameTable,
    pub env: EnvId,
    pub root: u64,
    pub asid: u16,
    /// Who makes the change (0: the kernel): an owner sharing its frame into another space
    /// draws on the counts its own space may use, which no other space can take.
    pub by: u32,
}

/// The entries of the table at `table_pa` (here, and in `uaccess`'s walk of a tree).
pub(crate) fn slots(table_pa: u64) -> &'static mut [u64; 512] {
    // SAFETY: callers pass only frames the frame table records as TABLE, which the kernel
    // alone writes; the physmap maps all RAM. Each use is a short, non-overlapping borrow.
    unsafe { &mut *(phys_to_virt(table_pa) as *mut [u64; 512]) }
}

impl Space<'_> {
    /// The table at `level` that covers `va`, walking from the root; `Busy` for a frozen
    /// one if it is to be written (`write`).
    #[inline]
    fn table_at(&self, va: u64, level: u32, write: bool) -> Result<u64, Error> {
        refuse_if!(va >= USER_VA_LIMIT || level > 3 || (level == 3 && va & 0xfff != 0), Error::Invalid);
        refuse_if!(self.root == 0, Error::NotFound);
        let (mut t, mut e) = (self.root, Pte(0));
        for l in 0..level {
            e = Pte(slots(t)[index(va, l)]);
            refuse_if!(!e.is_valid(), Error::NotFound);
            t = e.addr();
        }
        refuse_if!(write && e.0 & bits::FROZEN_LINK != 0, Error::Busy); // owner and sharers alike
        Ok(t)
    }

    /// Reads the entry for `va` at `level`.
    pub fn get(&self, va: u64, level: u32) -> Result<Pte, Error> {
        Ok(Pte(slots(self.table_at(va, level, false)?)[index(va, level)]))
    }

    /// Sets the entry for `va` at `level` (see the module doc for what is allowed).
    /// `may_map(owner, pa, write, flags)` says whether data frame `pa` of `owner` may
    /// appear in this space (writable if `write`), and with which frame flags after.
    pub fn set(&mut self, va: u64, level: u32, pte: Pte, may_map: impl MayMap) -> Result<(), Error> {
        let t = self.table_at(va, level, true)?;
        let i = index(va, level);
        if level == 3 {
            self.clean_for(pte);
            return self.set_page((t, self.ft.index(t)?, i), va, pte, may_map);
        }
        let old = Pte(slots(t)[i]);
        if pte.0 == 0 {
            return self.clear(t, i, va, level);
        }
        let freeze = pte.0 & bits::FROZEN_LINK != 0;
        let pa = Pte(pte.0 & !bits::FROZEN_LINK).check_user_table()?;
        let e = self.ft.get_mut(pa)?;
        let (own, frozen) = (e.owner == self.env.0, e.flags & frame::FROZEN != 0);
        // Another's table only if an ancestor froze it (level 3): linked whole, shared.
        let family = || may_map(e.owner, pa, false, frame::SHARED_RO).is_some();
        refuse_if!(e.kind != frame::TABLE || !(own || frozen && family()), Error::Denied);
        refuse_if!(e.level as u32 != level + 1, Error::Invalid);
        if freeze {
            return self.freeze(t, i, pa);
        }
        refuse_if!(own && e.flags & frame::LINKED != 0 || old.is_valid(), Error::Busy);
        if own {
            // Where it sits, for `set_at` (and readers of the frame table): its first address.
            (e.flags, e.link) = (e.flags | frame::LINKED, ((va & !(span(level) - 1)) >> 21) as u32);
        } else {
            e.shares = e.shares.checked_add(1).ok_or(Error::Busy)?; // 255 links at most
        }
        self.ft.get_mut(t)?.entries += 1;
        slots(t)[i] = Pte::table(pa).0 | if frozen { bits::FROZEN_LINK } else { 0 };
        tlb::publish();
        Ok(())
    }

    /// `TableSetAt`: entry `i` of the level-3 table `table`, named by the caller. A table
    /// of this space's linked into its tree sits at one place, which the frame table
    /// recorded when it was linked (`link`): no walk, and the entry is checked as `set`
    /// checks it. A frozen table (`freeze`) is refused as `set`'s walk refuses it.
    #[inline(always)]
    pub fn set_at(&mut self, table: u64, i: u64, pte: Pte, may_map: impl MayMap) -> Result<(), Error> {
        self.clean_for(pte);
        let ti = self.ft.index(table)?;
        let t = self.ft.get(table)?;
        refuse_if!(t.kind != frame::TABLE || t.owner != self.env.0, Error::Denied);
        refuse_if!(t.level != 3 || i >= 512, Error::Invalid);
        refuse_if!(t.flags & frame::LINKED == 0, Error::NotFound); // not in the tree: nothing to use
        refuse_if!(t.flags & frame::FROZEN != 0, Error::Busy); // owner and sharers alike
        let va = (t.link as u64) << 21 | i << 12;
        self.set_page((table, ti, i as usize), va, pte, may_map)
    }

    /// Sets page entry `i` (for `va`) of level-3 table `t` (its frame-table index `ti`);
    /// `rule` is the sharing rule (`MayMap`).
    #[inline(always)]
    fn set_page(&mut self, (t, ti, i): Slot, va: u64, pte: Pte, rule: impl MayMap) -> Result<(), Error> {
        let old = Pte(slots(t)[i]);
        if pte.0 == 0 {
            return self.clear(t, i, va, 3);
        }
        let (pa, perm) = pte.check_user_page()?;
        let (env, by) = (self.env.0, self.by);
        let target = self.ft.get_mut(pa)?;
        let mut flags = target.flags;
        let allowed = match target.kind {
            // Its own frame (the common case) needs no look at the sharing rule.
            frame::DATA if target.owner == env => {
                // Mapped writable where nothing else maps it: its shares end.
                let others = target.maps - (old.is_valid() && old.addr() == pa) as u16;
                if perm.write && others == 0 {
                    flags &= !(frame::SHARED_RO | frame::SHARED_RW);
                }
                true
            }
            frame::DATA => rule(target.owner, pa, perm.write, flags).map(|f| flags = f).is_some(),
            frame::PUBLIC => !perm.write && !perm.exec && pte.attr_index() == attr::NORMAL,
            // Its own tables, and an ancestor's frozen one (whose pages it may map anyway).
            frame::TABLE => {
                let frozen = target.flags & frame::FROZEN != 0;
                let mine = target.owner == env
                    || frozen && rule(target.owner, pa, false, frame::SHARED_RO).is_some();
                mine && !perm.write && !perm.exec
            }
            // Device memory: its owner's alone (no sharing), non-cacheable, never executed.
            frame::DEVICE => target.owner == env && !perm.exec && pte.attr_index() == attr::NORMAL_NC,
            _ => false,
        };
        refuse_if!(!allowed, Error::Denied);
        if target.kind == frame::DEVICE {
            SCREEN_TAKEN.store(true, Ordering::Relaxed);
        }
        // Public frames never change hands, so their mappings are not counted (nor can a
        // loop of mappings saturate the count for everyone). Others may not take the last
        // 4096 counts of a frame from its owner, in its own space or shared by it.
        if target.kind != frame::PUBLIC {
            let cap = if target.owner == env || target.owner == by { u16::MAX } else { u16::MAX - 4096 };
            target.maps = target.maps.checked_add(1).filter(|&m| m <= cap).ok_or(Error::Busy)?;
        }
        target.flags = flags & !frame::ZEROED; // EL0 (or a transfer) may write it from now on
        slots(t)[i] = pte.0;
        if old.is_valid() {
            self.ft.uncount(old.addr());
            tlb::invalidate_page(self.asid, va);
        } else {
            self.ft.at(ti).entries += 1;
            tlb::publish();
        }
        Ok(())
    }

    /// Before `pte` (not yet checked) may map a data frame or a table non-cacheable: the
    /// frame is cleaned, since it was zeroed in the cache, maybe over an earlier owner's
    /// data still in memory. One bit is tested: of the two attributes a page may have, only
    /// `NORMAL_NC` has it, and a bit test keeps nothing alive across the checks after it.
    fn clean_for(&self, pte: Pte) {
        #[cold]
        fn clean(ft: &FrameTable, pa: u64) {
            if ft.get(pa).is_ok_and(|f| f.kind == frame::DATA || f.kind == frame::TABLE) {
                #[cfg(target_os = "none")] // (no caches to clean in the host tests)
                crate::arch::clean_page(phys_to_virt(pa)); // (RAM, in the physmap)
            }
        }
        if pte.0 & (attr::NORMAL_NC << bits::ATTR_SHIFT) != 0 {
            clean(self.ft, pte.addr());
        }
    }

    fn clear(&mut self, t: u64, i: usize, va: u64, level: u32) -> Result<(), Error> {
        let old = Pte(slots(t)[i]);
        if !old.is_valid() {
            return Ok(());
        }
        match level {
            3 => self.ft.uncount(old.addr()),
            _ => unlink(self.ft, old.addr(), self.env)?,
        }
        self.ft.get_mut(t)?.entries -= 1;
        slots(t)[i] = 0;
        match level {
            3 => tlb::invalidate_page(self.asid, va),
            _ => tlb::invalidate_asid(self.asid), // walk caches may hold the unlinked table
        }
        Ok(())
    }

    /// The owner freezes its level-3 table `pa`, linked at entry `i` of its table `t`: once
    /// every entry is read-only at a data frame of its own (each then counts as shared
    /// read-only with its descendants, as `may_map` would make it) or a public frame.
    /// From then on no entry of it changes, and its descendants may link it (`set`).
    #[inline(never)] // rare: kept out of `set`'s common path
    fn freeze(&mut self, t: u64, i: usize, pa: u64) -> Result<(), Error> {
        let e = *self.ft.get(pa)?;
        refuse_if!(e.owner != self.env.0, Error::Denied);
        refuse_if!(e.level != 3 || Pte(slots(t)[i]).addr() != pa, Error::Invalid); // its own link, there
        for mark in [false, true].into_iter().filter(|_| e.flags & frame::FROZEN == 0) {
            for i in valid(pa).take(e.entries as usize) {
                let (page, perm) = Pte(slots(pa)[i]).check_user_page()?;
                let f = self.ft.get_mut(page)?;
                match f.kind {
                    frame::DATA if f.owner == e.owner && !perm.write => {
                        f.flags |= mark as u8 * frame::SHARED_RO
                    }
                    frame::PUBLIC if !perm.write => {}
                    _ => return Err(Error::Denied),
                }
            }
        }
        self.ft.get_mut(pa)?.flags |= frame::FROZEN;
        slots(t)[i] |= bits::FROZEN_LINK; // ignored by the MMU: no TLB maintenance
        Ok(())
    }

    /// Visits every page entry of the tree, depth first; `f(ft, entry)` may clear it (set
    /// it to 0), and the counts are kept right. Stops when `f` returns false.
    pub fn for_each_page(&mut self, mut f: impl Visit) {
        if self.root != 0 {
            walk(self.ft, self.root, 0, self.env, &mut f);
            tlb::invalidate_asid(self.asid);
        }
    }

    /// Teardown: removes every mapping and unlinks every table, and puts each table and
    /// each data frame of the owner's whose last mapping this was on the free list; returns
    /// how many. Afterwards no frame anywhere counts a mapping from this space. The
    /// caller invalidates the ASID.
    pub fn dismantle(&mut self) -> u32 {
        match self.root {
            0 => 0,
            root => free_tables(self.ft, root, 0, self.env),
        }
    }
}

/// `env`'s tree lets go of its link to `table`: a sharer's share ends; the owner's link
/// goes if the table is empty or frozen. A frozen table neither linked nor shared any more
/// is emptied (its entries uncounted) and thaws.
#[inline(never)]
fn unlink(ft: &mut FrameTable, table: u64, env: EnvId) -> Result<(), Error> {
    let t = ft.get_mut(table)?;
    match t.owner == env.0 {
        false => t.shares -= 1,
        true if t.entries != 0 && t.flags & frame::FROZEN == 0 => return Err(Error::Busy),
        true => (t.flags, t.link) = (t.flags & !frame::LINKED, 0),
    }
    if t.flags & (frame::LINKED | frame::FROZEN) == frame::FROZEN && t.shares == 0 {
        (t.flags, t.entries) = (0, 0);
        for e in slots(table).iter_mut().filter(|e| Pte(**e).is_valid()) {
            ft.uncount(Pte(*e).addr());
            *e = 0;
        }
    }
    Ok(())
}

/// Depth-first walk below `table` (at `level`) of `env`'s tree; it does not enter a shared
/// table (`count`). A page entry `f` clears is uncounted.
fn walk(ft: &mut FrameTable, table: u64, level: u32, env: EnvId, f: &mut impl Visit) -> bool {
    valid(table).take(count(ft, table, env)).all(|i| {
        let e = Pte(slots(table)[i]);
        if level < 3 {
            return walk(ft, e.addr(), level + 1, env, f);
        }
        let slot = &mut slots(table)[i];
        let go = f(ft, slot);
        if *slot == 0 {
            ft.uncount(e.addr());
            let _ = ft.get_mut(table).map(|t| t.entries -= 1);
        }
        go
    })
}

/// Teardown, in one walk: removes every page entry below `table` (each frame of `env`'s
/// whose last mapping that was is freed) and frees `table` and every table below it. A
/// shared table is not `env`'s to free: its share ends. Returns how many frames were freed.
fn free_tables(ft: &mut FrameTable, table: u64, level: u32, env: EnvId) -> u32 {
    if ft.get(table).is_ok_and(|t| t.owner != env.0) {
        let _ = unlink(ft, table, env);
        return 0;
    }
    let mut n = 1;
    for i in valid(table).take(count(ft, table, env)) {
        let e = Pte(slots(table)[i]);
        n += match level {
            3 => {
                ft.uncount(e.addr());
                ft.free(env, e.addr()).is_ok() as u32 // its last mapping, if ours
            }
            _ => free_tables(ft, e.addr(), level + 1, env),
        };
        slots(table)[i] = 0;
    }
    ft.free_table(table);
    n
}

/// How many valid entries of `env`'s `table` a walk looks at (the frame table counts them:
/// it stops there): none in a table `env` does not own alone — another's, or one shared,
/// whose pages a sharer's TLB may hold.
fn count(ft: &FrameTable, table: u64, env: EnvId) -> usize {
    ft.get(table).map_or(512, |t| if t.owner != env.0 || t.shares != 0 { 0 } else { t.entries as usize })
}

/// The indexes of `table`'s valid entries, in order: a run of eight empty ones costs a few
/// loads (most of a tree is empty).
#[inline]
fn valid(table: u64) -> impl Iterator<Item = usize> {
    let mut i = 0;
    core::iter::from_fn(move || {
        while i < 512 {
            let (at, t) = (i, slots(table));
            i += if at % 8 == 0 && t[at..at + 8].iter().fold(0, |a, e| a | e) == 0 { 8 } else { 1 };
            if i == at + 1 && Pte(t[at]).is_valid() {
                return Some(at);
            }
        }
        None
    })
}

/// TLB maintenance for EL0 mappings (no-ops on the host, where tests run).
pub mod tlb {
    #[cfg(target_os = "none")]
    use core::arch::asm;

    /// Makes a new entry visible to the table walker before EL0 runs again.
    #[inline]
    pub fn publish() {
        // SAFETY: barriers only.
        #[cfg(target_os = "none")]
        unsafe {
            asm!("dsb ishst", options(nostack))
        };
    }

    /// After changing a valid level-3 entry: drop the old translation for (asid, va).
    #[inline]
    pub fn invalidate_page(asid: u16, va: u64) {
        let _op = ((asid as u64) << 48) | (va >> 12);
        // SAFETY: TLB maintenance by VA and ASID affects only that translation.
        #[cfg(target_os = "none")]
        unsafe {
            asm!("dsb ishst", "tlbi vae1is, {}", "dsb ish", "isb", in(reg) _op, options(nostack))
        };
    }

    /// Drops every translation (and walk-cache entry) tagged with `asid`.
    #[inline]
    pub fn invalidate_asid(asid: u16) {
        let _op = (asid as u64) << 48;
        // SAFETY: TLB maintenance by ASID affects only that environment's translations.
        #[cfg(target_os = "none")]
        unsafe {
            asm!("dsb ishst", "tlbi aside1is, {}", "dsb ish", "isb", in(reg) _op, options(nostack))
        };
    }
}

#[cfg(test)]
#[path = "uvm_tests.rs"]
mod tests;
