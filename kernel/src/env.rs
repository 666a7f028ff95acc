//! Environments: exo's processes, and the one `Kernel` value that holds all kernel state.
//!
//! An environment is a saved register context, a root translation table with its own ASID,
//! an upcall handler, and the resources bound to it. It is created blank by its parent,
//! filled in by the parent's libOS through the same calls the libOS uses on itself, and
//! made runnable. Authority flows down the family tree: a parent may act on its
//! descendants, never on anything else, and a child dies with its parent.

use exo_abi::{
    frame, EnvId, EnvInfo, EnvState, Error, KernelInfo, SectorBinding, PCT_GRANTS, REPOSSESS_LOG,
    SECTOR_BINDINGS,
};

use crate::arch::smp::{self, MAX_CPUS};
use crate::arch::trap::TrapFrame;
use crate::cell::{Aligned, Global};
use crate::mm::frames::FrameTable;
use crate::mm::uvm::{self, Space};

/// Environment slots. The runnable set is one `u64` bitmask, so this is at most 64.
pub const MAX_ENVS: usize = 64;
/// No environment (an empty `parent`, an idle CPU).
pub const NONE: usize = usize::MAX;

/// What a blocked environment waits for. A tag byte, then (`Reply`, `Call`) the slot
/// aligned after it (`#[repr(u8)]`'s layout): `el0_reply` and `el0_call` (`vectors.S`) read
/// and write it.
#[derive(Clone, Copy, PartialEq, Eq, Debug)]
#[repr(u8)]
pub enum Wait {
    None,
    Console,
    /// `NetWait`: the next tick.
    Net,
    /// `SectorWait`: the disk letting go of a transfer.
    Disk,
    /// A child's exit (`EnvId(0)`: any child).
    Child(EnvId),
    /// Parked, available for protected control transfers.
    Serve,
    /// Calling this slot: waiting for it to reply.
    Reply(usize),
    /// Calling this slot: waiting for it to be free to take the call.
    Call(usize),
}

impl Wait {
    /// The tag byte, for `vectors.S`.
    pub const fn tag(self) -> u8 {
        // SAFETY: a `#[repr(u8)]` enum starts with its tag, which is always initialised.
        unsafe { *(&raw const self as *const u8) }
    }
}

/// A frame another environment granted over a call: mappable here while the frame keeps
/// its `GRANTED` flag, which it loses when it changes hands (see `pct::enter`).
#[derive(Clone, Copy, Default, PartialEq, Eq)]
pub struct Grant {
    pub pa: u64,
    pub owner: EnvId,
    pub write: bool,
}

/// An environment's saved contexts, in the order of `Env::frames` (a byte: `el0_yield` reads it).
#[derive(Clone, Copy, PartialEq, Eq, Debug)]
#[repr(u8)]
pub enum Ctx {
    /// Its own.
    Own,
    /// Its upcall handler's (see `upcall.rs`).
    Upcall,
    /// A protected control transfer's (see `pct.rs`).
    Call,
}

/// Upcalls waiting for the environment to be able to take them.
pub const PENDING_SLICE: u8 = 1;
pub const PENDING_REVOKE: u8 = 2;

/// 2 KiB apart, so that `vectors.S` finds an environment by a shift, not a multiply.
#[repr(align(2048))]
pub struct Env {
    pub id: EnvId,
    pub parent: usize,
    pub state: EnvState,
    /// Saved contexts, indexed by [`Ctx`].
    pub frames: [TrapFrame; 3],
    /// Which of `frames` runs, and which one the running upcall interrupted.
    pub active: Ctx,
    pub interrupted: Ctx,
    pub root: u64,
    pub upcall_entry: u64,
    pub upcall_stack: u64,
    pub slice_upcall: bool,
    /// A slice-end upcall was delivered this tick: the next tick preempts regardless.
    pub slice_warned: bool,
    pub pending: u8,
    /// Frames owned (data and tables), and owned by it and all its descendants.
    pub held: u32,
    pub subtree: u32,
    /// It was given device frames (which no quota counts), so teardown looks for them.
    pub devices: bool,
    /// The frame indices it ever owned a frame at, from the lowest to past the highest
    /// (`(u32::MAX, 0)`, empty, at first): what teardown and repossession scan of the frame
    /// table, so that what one environment was given never makes another's scan longer.
    pub span: (u32, u32),
    pub quota: u32,
    /// Slots its descendants hold (zombies included), and how many they may hold at once.
    pub kin: u32,
    pub kin_quota: u32,
    pub exit_status: i32,
    pub wait: Wait,
    pub revoke_wanted: u32,
    pub revoke_deadline: u64,
    pub repossessed: u64,
    pub repossess_log: [u64; REPOSSESS_LOG],
    pub sectors: [SectorBinding; SECTOR_BINDINGS],
    /// Protected control transfer: where calls start, whom it may call, what it was
    /// granted, who is calling it (read only in a call context: after the reply it still
    /// names that caller), and when a wait for a call or reply gives up.
    pub pct_entry: u64,
    pub pct_stack: u64,
    /// Bit i: it may call the environment in slot i (cleared when the slot's next
    /// environment is made: `create`). `pct_holders`: bit i, slot i may hold a right to
    /// call this one (a superset: bits are set with each right and go only with the slot).
    pub pct_rights: u64,
    pub pct_holders: u64,
    pub grants: [Grant; PCT_GRANTS],
    pub pct_caller: (usize, EnvId),
    pub deadline: u64,
    /// It may write to the console (`ConsoleWrite`): init from boot, anyone else once allowed.
    pub speaks: bool,
    /// The cores it may run on (a mask by core index), and the one it last ran on.
    pub affinity: u8,
    pub last_cpu: u8,
    generation: u32,
    /// Its FP/SIMD registers while they are not live on a core (`arch::FpState`).
    pub fp: crate::arch::FpState,
}

impl Env {
    /// Whether it is serving a call from `caller`: in its call context, or in an upcall
    /// handler that interrupted it.
    pub fn serving(&self, caller: EnvId) -> bool {
        let ctx = if self.active == Ctx::Upcall { self.interrupted } else { self.active };
        ctx == Ctx::Call && self.pct_caller.1 == caller
    }

    /// An empty slot: free, running its own context, waiting for nothing, holding and bound
    /// to nothing — every field zero, but for the two that name no slot.
    const EMPTY: Env = {
        // SAFETY: every field of `Env` is an integer, a bool, an `EnvId`, an enum whose zero
        // is its first variant (`EnvState::Free`, `Ctx::Own`, `Wait::None`), or an array,
        // tuple or plain struct of those: all valid as zero. (A field added for which zero
        // is not valid would make this constant fail to compile: const evaluation checks.)
        let mut e: Env = unsafe { core::mem::zeroed() };
        (e.parent, e.pct_caller) = (NONE, (NONE, EnvId(0)));
        e
    };

    /// The slot's ASID is the slot itself (`el0_yield`, `el0_call`, `el0_reply` put it in
    /// TTBR0 as it is); `NONE`, the empty table's, gives 255, which is no slot's.
    pub fn asid(slot: usize) -> u16 {
        slot as u8 as u16
    }

    pub fn frame(&mut self) -> &mut TrapFrame {
        &mut self.frames[self.active as usize]
    }
}

/// Whether `a` is `b` or one of `b`'s ancestors.
pub fn is_ancestor_or_self(envs: &[Env], a: usize, b: usize) -> bool {
    core::iter::successors(Some(b), |&s| envs.get(s).map(|e| e.parent)).any(|s| s == a && s != NONE)
}

/// The sharing rule: whether data frame `pa` — owned by `owner`, with frame-table `flags`
/// — may be mapped in `slot`'s space (writable if `write`) by `actor`, and if so the
/// frame's new flags. Allowed: `slot`'s own frames; an ancestor's frame the ancestor
/// shared with its descendants at least that widely, which it does by mapping the frame
/// into a descendant itself (an ancestor outlives its descendants); a frame granted to
/// `slot` over a call since it last changed hands. Kinship alone grants nothing.
pub fn may_map(envs: &[Env], slot: usize, actor: usize) -> impl Fn(u32, u64, bool, u8) -> Option<u8> + '_ {
    move |owner, pa, write, flags| {
        let o = EnvId(owner);
        if o == envs[slot].id {
            return Some(flags); // its own: the common case, decided first
        }
        let family =
            envs.get(o.slot()).is_some_and(|e| e.id == o) && is_ancestor_or_self(envs, o.slot(), slot);
        let shared = if write { frame::SHARED_RW } else { frame::SHARED_RW | frame::SHARED_RO };
        let granted = || {
            flags & frame::GRANTED != 0
                && envs[slot].grants.iter().any(|g| g.pa == pa && g.owner == o && (g.write || !write))
        };
        if family && flags & shared != 0 || granted() {
            Some(flags)
        } else if family && envs.get(actor).is_some_and(|a| a.id == o) {
            Some(flags | if write { frame::SHARED_RW } else { frame::SHARED_RO })
        } else {
            None
        }
    }
}

/// All kernel state. There is exactly one, in [`KERNEL`]. Each field has one owner, the
/// module that changes it (the crate doc lists them); the private ones change only here.
#[repr(C)]
pub struct Kernel {
    /// Who owns each frame, changed only through `FrameTable`'s checked transitions.
    pub ft: FrameTable,
    /// The slot running now on the core holding the lock, or [`NONE`]: chosen by
    /// `sched.rs`, cleared by `destroy`. [`kernel`] swaps it in and out of `on`.
    pub current: usize,
    /// The core holding the lock, and the slot each core runs ([`NONE`]: it idles).
    pub cpu: usize,
    pub on: [usize; MAX_CPUS],
    /// Per core, bit i set: slot i may not run there (its affinity leaves the core out).
    pub excluded: [u64; MAX_CPUS],
    /// Bit i set: slot i is runnable. Follows `Env::state`, so it changes only here.
    runnable: u64,
    /// Timer ticks since boot, counted by `sched.rs`.
    pub ticks: u64,
    /// Where a `YieldTo` or a PCT sends the rest of the slice ([`NONE`]: nowhere); `sched.rs`
    /// takes it.
    pub donate_to: usize,
    /// Per core: a slot that a `YieldTo` on another core handed it, to run at once
    /// ([`NONE`]: none), and the occupant that hand-off preempted, owed the core back (or
    /// `sched::GUARD`: not to be preempted again before the core's next tick). `sched.rs`.
    pub handoff: [(usize, usize); MAX_CPUS],
    /// Where this trap switches at once, with no pass (`hand_over`; [`NONE`]: nowhere);
    /// `el0_svc` takes it. (`YieldTo`'s direct switch is `el0_yield`'s, in `vectors.S`, and
    /// the common cases of `PctCall`'s and `PctReply`'s are `el0_call`'s and `el0_reply`'s.)
    pub switch_to: usize,
    /// Callers blocked waiting for a busy server to become free (`pct.rs`).
    pub call_waiters: u32,
    /// The slot that holds the console input: init's from boot, moved by `ConsoleGive`
    /// (`syscall.rs`) and, when its holder dies, to the nearest living ancestor here.
    pub console: usize,
    /// The public pages, installed at boot and written by the `publish` methods here.
    info: Option<&'static mut KernelInfo>,
    env_info: Option<&'static mut [EnvInfo; MAX_ENVS]>,
    /// Created, started, blocked, woken and destroyed here; each mechanism's module keeps
    /// its own fields of an `Env` (`pct.rs` its calls, `upcall.rs` its upcalls, ...).
    /// Last, so that every other field is a short offset from the start (one load each).
    pub envs: [Env; MAX_ENVS],
}

pub static KERNEL: Aligned<Global<Kernel>> = Aligned(Global::new(Kernel {
    ft: FrameTable::empty(),
    envs: [Env::EMPTY; MAX_ENVS],
    current: NONE,
    cpu: 0,
    on: [NONE; MAX_CPUS],
    excluded: [0; MAX_CPUS],
    runnable: 0,
    ticks: 0,
    donate_to: NONE,
    handoff: [(NONE, NONE); MAX_CPUS],
    switch_to: NONE,
    call_waiters: 0,
    console: NONE,
    info: None,
    env_info: None,
}));

/// Runs `f` with the kernel state for this core: the big kernel lock held, `current` the
/// slot this core runs. Every path into the kernel goes through here.
pub fn kernel<R>(f: impl FnOnce(&mut Kernel) -> R) -> R {
    let c = smp::cpu();
    KERNEL.0.with_on(c, |k| {
        (k.cpu, k.current) = (c, k.on[c]);
        let r = f(k);
        k.on[c] = k.current; // (`cpu` stays `c` throughout)
        r
    })
}

impl Kernel {
    /// Where the public environment table's address and the runnable set lie, for
    /// `el0_yield`, `el0_reply` and `el0_call` (`vectors.S`).
    pub const ENV_INFO: usize = core::mem::offset_of!(Kernel, env_info);
    pub const RUNNABLE: usize = core::mem::offset_of!(Kernel, runnable);
    /// Where the kernel information page's address lies, for `el0_resume` (0: none yet).
    pub const INFO: usize = core::mem::offset_of!(Kernel, info);

    /// Installs the frame table and the public pages (at boot, once).
    pub fn install(&mut self, ft: FrameTable, info: &'static mut KernelInfo, envs: &'static mut [EnvInfo]) {
        (self.ft, self.info, self.env_info) = (ft, Some(info), envs.first_chunk_mut());
        self.publish_free();
    }

    /// The kernel information page, once installed (`disk.rs` publishes the disk in it).
    pub fn info(&mut self) -> Option<&mut KernelInfo> {
        self.info.as_deref_mut()
    }

    /// The physical address of the kernel information page, once installed.
    pub fn info_pa(&self) -> Option<u64> {
        self.info.as_deref().map(|i| i as *const KernelInfo as u64 - crate::mm::phys_to_virt(0))
    }

    /// The runnable set: bit i for slot i.
    pub fn runnable(&self) -> u64 {
        self.runnable
    }

    /// The slot named by `id` (`EnvId(0)`: the caller), if it is a live environment.
    #[inline]
    pub fn slot(&self, id: EnvId) -> Result<usize, Error> {
        if id.0 == 0 {
            return if self.current == NONE { Err(Error::NotFound) } else { Ok(self.current) };
        }
        let s = id.slot();
        match self.envs.get(s) {
            Some(e) if e.id == id && e.state != EnvState::Free && e.state != EnvState::Zombie => Ok(s),
            _ => Err(Error::NotFound),
        }
    }

    /// The slot of `id` if the current environment may act on it (itself or a descendant).
    #[inline]
    pub fn target(&self, id: EnvId) -> Result<usize, Error> {
        let t = self.slot(id)?;
        (t == self.current || is_ancestor_or_self(&self.envs, self.current, t)).then_some(t).ok_or(Error::Denied)
    }

    /// `slot`'s address space, for one operation, and the rule for which data frames may
    /// appear in it.
    #[inline]
    pub fn space(&mut self, slot: usize) -> (Space<'_>, impl Fn(u32, u64, bool, u8) -> Option<u8> + '_) {
        crate::disk::wait_unpinned(|s| s == slot); // no page unmapped under a transfer
        let (e, by) = (&self.envs[slot], self.envs.get(self.current).map_or(0, |a| a.id.0));
        let space = Space { env: e.id, root: e.root, asid: Env::asid(slot), ft: &mut self.ft, by };
        (space, may_map(&self.envs, slot, self.current))
    }

    /// Frame `pa` (a frame of RAM's) is `slot`'s now: its span takes it in.
    #[inline]
    pub fn owns(&mut self, slot: usize, pa: u64) {
        let (i, s) = (((pa - self.ft.pa(0)) >> 12) as u32, &mut self.envs[slot].span);
        *s = (s.0.min(i), s.1.max(i + 1));
    }

    /// Counts a frame newly held by `slot` against its quota and every ancestor's.
    pub fn charge(&mut self, slot: usize) -> Result<(), Error> {
        refuse_if!(self.line(slot).any(|e| e.quota != 0 && e.subtree >= e.quota), Error::Quota);
        self.envs[slot].held += 1;
        self.up(slot, |e| e.subtree += 1);
        self.publish_frames(slot);
        // A frame taken while frames are asked back is one more owed: taking and freeing
        // in turn must not count as giving back (`frames_returned`).
        let e = &mut self.envs[slot];
        if e.revoke_wanted > 0 {
            e.revoke_wanted += 1;
            self.publish(slot);
        }
        Ok(())
    }

    /// `from` and each of its ancestors ([`NONE`]: none).
    fn line(&self, from: usize) -> impl Iterator<Item = &Env> {
        core::iter::successors(self.envs.get(from), |e| self.envs.get(e.parent))
    }

    /// Applies `f` to `from` and each of its ancestors ([`NONE`]: to none).
    fn up(&mut self, mut from: usize, f: impl Fn(&mut Env)) {
        while from != NONE {
            f(&mut self.envs[from]);
            from = self.envs[from].parent;
        }
    }

    fn publish_frames(&mut self, slot: usize) {
        if let Some(info) = self.env_info.as_mut().and_then(|t| t.get_mut(slot)) {
            info.frames = self.envs[slot].held;
        }
    }

    /// The opposite of [`Kernel::charge`], for `n` frames.
    pub fn uncharge(&mut self, slot: usize, n: u32) {
        self.envs[slot].held -= n;
        self.up(slot, |e| e.subtree -= n);
        self.publish_frames(slot);
    }

    /// A new blank environment, child of `parent` (or of no one, for init). It takes a slot
    /// from `parent`'s and every ancestor's slot quota, and may itself have `kin` descendants
    /// at once (0: half of what `parent` has left, so no child can take every slot).
    pub fn create(&mut self, parent: usize, quota: u32, kin: u32) -> Result<usize, Error> {
        let slot = self.envs.iter().position(|e| e.state == EnvState::Free).ok_or(Error::NoSlot)?;
        let left = self.line(parent).map(|e| e.kin_quota.saturating_sub(e.kin)).fold(MAX_ENVS as u32, u32::min);
        refuse_if!(left == 0 || kin >= left, Error::NoSlot);
        self.up(parent, |e| e.kin += 1); // a slot taken by a descendant of each
        let kin_quota = if kin == 0 { (left - 1) / 2 } else { kin };
        // 20 bits of generation, never 0 (slot 0's id would be `EnvId(0)`, "the caller").
        let generation = ((self.envs[slot].generation + 1) & 0xf_ffff).max(1);
        let _ = (generation == 1).then(|| crate::net::table(|t| t.forget_slot(slot as u32))); // ids restart
        let affinity = self.envs.get(parent).map_or(smp::up_mask(), |p| p.affinity);
        // A call right names a slot's environment: none left from before names this one.
        let mut holders = self.envs[slot].pct_holders;
        while holders != 0 {
            self.envs[holders.trailing_zeros() as usize].pct_rights &= !(1 << slot);
            holders &= holders - 1;
        }
        let (id, state) = (EnvId((generation << 12) | slot as u32), EnvState::Blank);
        let span = (u32::MAX, 0); // none yet: `owns` widens it
        let speaks = parent == NONE; // init may write to the console from boot; others when allowed
        self.envs[slot] = Env { id, state, generation, parent, quota, kin_quota, span, speaks, ..Env::EMPTY };
        self.set_affinity(slot, affinity);
        if parent == NONE {
            self.console = slot; // init holds the console input from boot
        }
        self.publish(slot);
        Ok(slot)
    }

    /// Frees a zombie's (or an orphaned environment's) slot.
    pub fn release(&mut self, slot: usize) {
        self.envs[slot].state = EnvState::Free;
        self.up(self.envs[slot].parent, |e| e.kin -= 1);
        self.publish(slot);
    }

    /// Tears `slot` and all its descendants down: every mapping removed, every frame and
    /// table back on the free list, every TLB entry of their ASIDs dropped. Each becomes a
    /// zombie holding `status` for its parent, or is freed if its parent is going too.
    pub fn destroy(&mut self, slot: usize, status: i32) {
        // Another core running it first lets go of its tables (and its saved context).
        while let Some(c) = self.running_elsewhere(slot) {
            smp::kick(c, crate::arch::ttbr0(0, Env::asid(NONE)) | smp::GONE);
            self.on[c] = NONE;
        }
        for child in 0..MAX_ENVS {
            if self.envs[child].parent == slot && self.envs[child].state != EnvState::Free {
                if self.envs[child].state != EnvState::Zombie {
                    self.destroy(child, status);
                }
                self.release(child); // its parent is going: no one to tell
            }
        }
        crate::pct::on_destroy(self, slot);
        let mut n = self.space(slot).0.dismantle();
        uvm::tlb::invalidate_asid(Env::asid(slot)); // walk caches may name those tables

        // Frames it holds but did not map, or device frames: the frame table has them.
        if n < self.envs[slot].held || self.envs[slot].devices {
            let heir = self.envs.get(self.envs[slot].parent).map_or(EnvId(0), |p| p.id);
            let (lo, hi) = self.envs[slot].span; // (a device frame goes back where it came from)
            n += self.ft.reclaim(self.envs[slot].id, heir, lo as usize..hi as usize);
        }
        self.uncharge(slot, n);
        self.publish_free();
        let e = &mut self.envs[slot];
        (e.root, e.state, e.exit_status, e.wait) = (0, EnvState::Zombie, status, Wait::None);
        e.revoke_wanted = 0; // a zombie owes nothing: no repossession, nor its end, at the deadline
        self.runnable &= !(1 << slot);
        self.current = if self.current == slot { NONE } else { self.current };
        let parent = self.envs[slot].parent;
        // The console input's holder: descendants went first, so the parent is the nearest alive.
        self.console = if self.console == slot { parent } else { self.console };
        if parent == NONE {
            log::info!("init exited with status {status}");
            crate::exit::power_off(status as u32);
        } else if matches!(self.envs[parent].wait, Wait::Child(w) if w.0 == 0 || w == self.envs[slot].id) {
            self.wake(parent);
        }
        self.publish(slot);
    }

    /// A blank environment starts: it becomes runnable.
    pub fn make_runnable(&mut self, slot: usize) {
        self.envs[slot].state = EnvState::Runnable;
        self.runnable |= 1 << slot;
        self.publish(slot);
        self.nudge(slot);
    }

    /// Wakes the idle cores `slot` may run on, so that one of them takes it now.
    /// Not one this core is about to switch to (a call or reply donating to it).
    fn nudge(&self, slot: usize) {
        if self.donate_to == slot && self.excluded[self.cpu] & 1 << slot == 0 {
            return;
        }
        let idle = (0..MAX_CPUS)
            .filter(|&c| self.on[c] == NONE && c != self.cpu && self.excluded[c] & 1 << slot == 0);
        smp::signal(idle.fold(0, |m, c| m | 1 << c));
    }

    /// Lets `slot` run on the cores in `mask` only: an idle core it may now use is woken to
    /// take it, and a core it must leave is signalled to reschedule (not left to its tick).
    pub fn set_affinity(&mut self, slot: usize, mask: u8) {
        self.envs[slot].affinity = mask;
        for (c, x) in self.excluded.iter_mut().enumerate() {
            *x = if mask & 1 << c != 0 { *x & !(1 << slot) } else { *x | 1 << slot };
        }
        self.publish(slot);
        // Its core, this one included (a fast call returns without a pass), if it must go.
        let on = (self.current == slot).then_some(self.cpu).or(self.running_elsewhere(slot));
        let leave = on.filter(|&c| mask & 1 << c == 0);
        smp::signal(leave.map_or(0, |c| 1 << c));
        if self.runnable & 1 << slot != 0 {
            self.nudge(slot);
        }
    }

    /// The core other than this one that runs `slot`, if any.
    pub fn running_elsewhere(&self, slot: usize) -> Option<usize> {
        (0..MAX_CPUS).find(|&c| c != self.cpu && self.on[c] == slot)
    }

    pub fn wake(&mut self, slot: usize) {
        let e = &mut self.envs[slot];
        if e.state == EnvState::Blocked {
            (e.state, e.wait) = (EnvState::Runnable, Wait::None);
            self.runnable |= 1 << slot;
            self.publish_state(slot);
            self.nudge(slot);
        }
    }

    /// `from` blocks for `why`, giving the CPU to `to` (blocked until now), which runs
    /// next: straight away on this core if it may run `to` at all ([`Kernel::switch_to`]:
    /// no pass of the scheduler, no other core woken; a blocked `to` runs on no other core,
    /// and no events wait at a system call, every interrupt being handled in a trap that
    /// passes them to `schedule`), else as a donation the scheduler takes or passes on.
    #[inline]
    pub fn hand_over(&mut self, from: usize, why: Wait, to: usize) {
        self.block(from, why);
        if self.excluded[self.cpu] & 1 << to == 0 {
            (self.envs[to].state, self.envs[to].wait) = (EnvState::Runnable, Wait::None);
            self.runnable |= 1 << to;
            self.switch_to = to; // `run` publishes it
        } else {
            self.donate_to = to;
            self.wake(to);
        }
    }

    #[inline]
    pub fn block(&mut self, slot: usize, why: Wait) {
        (self.envs[slot].state, self.envs[slot].wait) = (EnvState::Blocked, why);
        self.runnable &= !(1 << slot);
        self.publish_state(slot);
    }

    /// Publishes just the state and core (the hot paths change nothing else).
    pub fn publish_state(&mut self, slot: usize) {
        if let Some(info) = self.env_info.as_mut().and_then(|t| t.get_mut(slot)) {
            (info.state, info.cpu) = (self.envs[slot].state as u8, self.envs[slot].last_cpu);
            info.disk_wait = (self.envs[slot].wait == Wait::Disk) as u8; // not parked: `SectorWait`
        }
    }

    /// Copies `slot`'s public facts into the environment table environments can read.
    pub fn publish(&mut self, slot: usize) {
        let e = &self.envs[slot];
        let parent = if e.parent == NONE { 0 } else { self.envs[e.parent].id.0 };
        if let Some(info) = self.env_info.as_mut().and_then(|t| t.get_mut(slot)) {
            *info = EnvInfo {
                id: if e.state == EnvState::Free { 0 } else { e.id.0 },
                parent,
                state: e.state as u8,
                exit_status: e.exit_status,
                frames: e.held,
                quota: e.quota,
                root: e.root,
                revoke_wanted: e.revoke_wanted,
                revoke_deadline: e.revoke_deadline as u32,
                repossessed: e.repossessed,
                repossess_log: e.repossess_log,
                sectors: e.sectors,
                cpu: e.last_cpu,
                affinity: e.affinity,
                disk_wait: (e.wait == Wait::Disk) as u8,
                ..EnvInfo::default()
            };
        }
    }

    /// Copies the free list's head and length into the kernel information page.
    pub fn publish_free(&mut self) {
        if let Some(info) = self.info.as_deref_mut() {
            (info.free_head, info.free_frames) = (self.ft.free.head, self.ft.free.count);
        }
    }
}
