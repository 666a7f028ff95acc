//! Choosing what runs: round robin over runnable environments, by default.
//!
//! A time slice is one timer tick (10 ms). At each tick the running environment goes to
//! the back of the line — unless it asked to be told when its slice ends, in which case
//! its upcall handler runs first, with one more tick of grace to save state and yield.
//! `YieldTo` donates the rest of a slice to a chosen environment. The runnable set is a
//! bitmask, so choosing the next environment costs a few instructions, whatever the count.
//!
//! Each core schedules itself, at its own ticks, from the same runnable set: what it may
//! take is what is runnable, allowed on this core (`excluded`), and not running on another
//! core — an environment runs on one core at a time. Core 0's ticks are the clock
//! (`ticks`, the deadlines of calls and revocations).

use exo_abi::upcall;

use crate::arch::smp::{self, MAX_CPUS};
use crate::arch::{self, trap::TrapFrame};
use crate::env::{Ctx, Env, Kernel, Wait, MAX_ENVS, NONE, PENDING_SLICE};
use crate::irq::{EVENT_CONSOLE, EVENT_DISK, EVENT_TICK};

impl Kernel {
    /// Handles interrupt `events`, then picks the environment to run and points the MMU at
    /// it. `give_up`: the current environment yields its slice. Returns the frame to
    /// resume, or `None` if nothing can run (the caller idles).
    pub fn schedule(&mut self, mut give_up: bool, events: u32) -> Option<*mut TrapFrame> {
        let cur = self.current;
        // The common case — no interrupt, nobody yielded to — keeps running what ran.
        let stays = cur != NONE && self.runnable() & !self.excluded[self.cpu] & 1 << cur != 0;
        if events == 0 && !give_up && self.donate_to == NONE && self.handoff[self.cpu].0 == NONE && stays {
            return self.run(cur);
        }
        if events != 0 {
            match self.on_events(events, give_up) {
                Some(g) => give_up = g,
                None => return self.run(cur), // its slice-end upcall runs first
            }
        }
        let others = (0..self.on.len()).filter(|&c| c != self.cpu && self.on[c] != NONE);
        let avail = self.runnable() & !self.excluded[self.cpu] & !others.fold(0, |m, c| m | 1 << self.on[c]);
        let donated = core::mem::replace(&mut self.donate_to, NONE);
        let next = if donated != NONE && avail & (1 << donated) != 0 {
            donated
        } else if let Some(handed) = self.handed(avail, cur, give_up, events & EVENT_TICK != 0) {
            handed
        } else if !give_up && cur != NONE && avail & (1 << cur) != 0 {
            cur
        } else if let Some(next) = next_after(avail, cur) {
            next
        } else {
            // Idle: the slot it ran may go to another core, or be destroyed; walk nothing of it.
            arch::set_user_table(0, Env::asid(NONE));
            self.leave_fp(NONE);
            self.current = NONE;
            return None;
        };
        self.run(next)
    }

    /// Handles interrupt `events` (out of line: `schedule`'s common paths have none):
    /// sleepers woken, and at a tick the clock, deadlines and slices. Returns whether the
    /// current environment gives up the CPU, or `None` if it keeps it for a slice-end upcall.
    #[inline(never)]
    fn on_events(&mut self, events: u32, mut give_up: bool) -> Option<bool> {
        let (cur, clock) = (self.current, events & EVENT_TICK != 0 && self.cpu == 0);
        if events & (EVENT_CONSOLE | EVENT_DISK) != 0 || clock {
            for s in 0..MAX_ENVS {
                let w = self.envs[s].wait;
                if w == Wait::Console && events & EVENT_CONSOLE != 0
                    || w == Wait::Disk && events & EVENT_DISK != 0
                    || w == Wait::Net && clock
                {
                    self.wake(s);
                }
            }
        }
        if events & EVENT_TICK != 0 {
            let (c, busy) = (self.cpu, cur != NONE);
            if let Some(i) = self.info() {
                (i.cpu_ticks[c], i.cpu_busy[c]) = (i.cpu_ticks[c] + 1, i.cpu_busy[c] + busy as u64);
                i.cpu_signals[c] = crate::irq::SIGNALS[c].load(core::sync::atomic::Ordering::Relaxed);
            }
            if clock {
                self.ticks += 1;
                crate::upcall::on_tick(self);
                crate::pct::on_tick(self);
                self.net_drain(); // for the `NetWait` sleepers woken above
            }
            if cur != NONE && self.runnable() & (1 << cur) != 0 && !give_up {
                let warned = core::mem::replace(&mut self.envs[cur].slice_warned, false);
                let asked = self.envs[cur].slice_upcall && !warned;
                if asked && crate::upcall::deliver(self, cur, upcall::SLICE_END, 0, 0, 0) {
                    self.envs[cur].slice_warned = true; // one tick of grace, then preempted
                    return None;
                } else if asked && self.envs[cur].active == Ctx::Upcall {
                    self.envs[cur].pending |= PENDING_SLICE; // at the handler's resume
                }
            }
            give_up = true;
        }
        Some(give_up)
    }

    /// Makes `slot` current: its tables in TTBR0, any pending upcall delivered.
    #[inline(always)]
    pub fn run(&mut self, slot: usize) -> Option<*mut TrapFrame> {
        if slot != self.current {
            self.leave_fp(slot);
            arch::set_user_table(self.envs[slot].root, Env::asid(slot));
            (self.current, self.envs[slot].last_cpu) = (slot, self.cpu as u8);
            self.publish_state(slot);
        }
        crate::upcall::deliver_pending(self, slot);
        Some(self.envs[slot].frame() as *mut TrapFrame)
    }

    /// The core leaves `current` (for `next`, or to idle: NONE): its TPIDR_EL0 saved and
    /// `next`'s loaded, its FP/SIMD registers saved if they are live here, EL0's access off
    /// (`arch::FpState`). Every change of `current` but `destroy`'s comes here; after
    /// `destroy` it is NONE, and the registers left live (a zombie's) go at the next, unsaved.
    fn leave_fp(&mut self, next: usize) {
        let next = self.envs.get(next).map_or(core::ptr::null(), |e| &raw const e.fp);
        // SAFETY: null, or the state of the environment leaving the core; null, or the state
        // of the one coming (another slot's: `run` switches only to a slot not `current`).
        unsafe { arch::fp_leave(self.envs.get_mut(self.current).map_or(core::ptr::null_mut(), |e| &mut e.fp), next) };
    }
}

/// The first slot of `avail` after `cur` in round-robin order (possibly `cur` itself).
fn next_after(avail: u64, cur: usize) -> Option<usize> {
    let from = if cur == NONE { 0 } else { (cur + 1) % MAX_ENVS } as u32;
    (avail != 0).then(|| (avail.rotate_right(from).trailing_zeros() + from) as usize % MAX_ENVS)
}

/// In `Kernel::lent`: the core's occupant had its turn back after a hand-off; no other
/// hand-off preempts it before the core's next tick.
const GUARD: usize = MAX_ENVS;

/// Directed yield across cores. A `YieldTo` names an environment this core may not run
/// (its affinity) and that runs nowhere: the caller's slice ends, and one core the target
/// may use is handed it and signalled, so that it runs the target at once rather than at
/// its next tick — an idle core if there is one, else the core the target last ran on. A
/// yield gives only the caller's own time, so what the preempted occupant loses is bounded:
/// it gets the core back as soon as the target's turn ends (the target yields or blocks, or
/// the core ticks), and from then until the core's next tick no hand-off preempts it (a
/// hand-off meanwhile is dropped, as one that meets the tick is). However many callers loop,
/// a core takes at most one preempting hand-off per two of its ticks.
impl Kernel {
    /// Hands runnable `t` to a core it may use, if this core may not run it and no core runs it.
    pub fn hand_off(&mut self, t: usize) {
        if self.excluded[self.cpu] & 1 << t == 0 || self.running_elsewhere(t).is_some() {
            return; // a plain donation, or nothing to do
        }
        let ok =
            |c: usize| c != self.cpu && self.excluded[c] & 1 << t == 0 && self.handoff[c] == (NONE, NONE);
        let last = self.envs[t].last_cpu as usize;
        if let Some(c) = (0..MAX_CPUS).filter(|&c| ok(c)).min_by_key(|&c| (self.on[c] != NONE, c != last)) {
            self.handoff[c].0 = t;
            smp::signal(1 << c);
        }
    }

    /// What a hand-off makes this core run now, if anything: the occupant it preempted, when
    /// the target's turn ends; else the target handed to it, preempting the occupant (which
    /// is then owed the core) unless the occupant gave up its slice.
    fn handed(&mut self, avail: u64, cur: usize, give_up: bool, tick: bool) -> Option<usize> {
        if self.handoff[self.cpu] == (NONE, NONE) {
            return None; // the common case: no hand-off about
        }
        let (to, lent) = core::mem::replace(&mut self.handoff[self.cpu], (NONE, NONE));
        let has = |s: usize| s < MAX_ENVS && avail & 1 << s != 0;
        if lent < MAX_ENVS && (give_up || !has(cur)) {
            self.handoff[self.cpu].1 = GUARD;
            return Some(lent).filter(|&s| has(s));
        } else if lent != NONE || tick || to == cur || !has(to) {
            self.handoff[self.cpu].1 = if lent == GUARD && tick { NONE } else { lent };
            return None;
        }
        self.handoff[self.cpu].1 = if !give_up && has(cur) { cur } else { NONE };
        Some(to)
    }
}
