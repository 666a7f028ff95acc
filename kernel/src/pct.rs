//! Protected control transfer: the kernel's one communication primitive.
//!
//! A server registers an entry and parks its own context (`PctWait`). A caller holding the
//! right (granted by an ancestor of both) transfers control straight into it: the server
//! starts a fresh context at its entry with the caller's argument registers, on the rest
//! of the caller's time slice, while the caller waits. `PctReply` hands results back the
//! same way and parks the server again. Nothing is buffered in the kernel; a call can
//! carry one frame, granted to the server until the caller takes it back.

use exo_abi::pte::Pte;
use exo_abi::{
    frame, EnvId, EnvState, Error, PCT_GRANTS, PCT_GRANT_RW, PCT_NONBLOCK, PCT_TIMEOUT_SHIFT,
};

use crate::env::{Ctx, Grant, Kernel, Wait, MAX_ENVS};
use crate::mm::frames::FrameTable;

impl Kernel {
    /// `PctAllow` / `PctDisallow`: the granter needs authority over the caller (itself or
    /// an ancestor) and over the target — as its ancestor, or by holding the right to call
    /// it itself (a right can be passed down, never up or sideways; taken back, from the
    /// caller and all its descendants).
    pub fn pct_right(&mut self, caller: EnvId, target: EnvId, allow: bool) -> Result<u64, Error> {
        let (c, t, me) = (self.target(caller)?, self.slot(target)?, self.current);
        let above = crate::env::is_ancestor_or_self(&self.envs, me, t);
        refuse_if!(!above && self.envs[me].pct_rights & 1 << t == 0, Error::Denied);
        refuse_if!(!allow && self.envs[c].pct_rights & 1 << t == 0, Error::NotFound);
        // Taken back, it goes from every descendant it was passed down to, as well.
        for d in (0..MAX_ENVS).filter(|_| !allow) {
            if crate::env::is_ancestor_or_self(&self.envs, c, d) {
                self.envs[d].pct_rights &= !(1 << t); // (no other's rights read: a fast call)
            }
        }
        self.envs[c].pct_rights |= (allow as u64) << t;
        self.envs[t].pct_holders |= (allow as u64) << c;
        Ok(0)
    }

    /// `PctUngrant`: ends a grant and removes the frame from the grantee's tables — not
    /// while the grantee may still be using it for the granter's call.
    pub fn pct_ungrant(&mut self, target: EnvId, pa: u64) -> Result<u64, Error> {
        let (t, me) = (self.slot(target)?, self.envs[self.current].id);
        let e = &self.envs[t];
        let g = e.grants.iter().position(|g| g.pa == pa && g.owner == me && live(&self.ft, g));
        let g = g.ok_or(Error::NotFound)?;
        refuse_if!(e.serving(me), Error::Busy);
        self.envs[t].grants[g] = Grant::default();
        unmap_frame(self, t, pa);
        Ok(0)
    }

    /// `PctWait`: park the caller's own context, available for calls.
    pub fn pct_wait(&mut self, cur: usize) -> Result<(), Error> {
        refuse_if!(self.envs[cur].pct_entry == 0 || self.envs[cur].active != Ctx::Own, Error::Invalid);
        self.block(cur, Wait::Serve);
        self.wake_callers_of(cur);
        Ok(())
    }

    /// `PctCall`. Returns whether the caller gave up the CPU (it always does unless the
    /// call failed at once, in which case its x0 holds the error).
    pub fn pct_call(&mut self, cur: usize) -> bool {
        let x = &self.envs[cur].frame().x;
        let (target, opts, ticks) = (x[0], x[5], (x[5] & 0xfff) >> PCT_TIMEOUT_SHIFT);
        // When a wait for the target or its reply gives up (0: never; only such waits read it).
        self.envs[cur].deadline = if ticks == 0 { 0 } else { self.ticks + ticks };
        let status = match self.call_target(cur, target, opts) {
            Ok(t) if self.envs[t].wait == Wait::Serve => {
                self.enter(cur, t, opts);
                return true;
            }
            Ok(_) if opts & PCT_NONBLOCK != 0 => Error::Busy,
            Ok(t) => {
                self.envs[cur].frame().pc -= 4; // retry the call once the target is free
                self.call_waiters += 1;
                // A target asleep in `SectorWait` (perhaps only because the caller was
                // runnable) gets the core back and polls, unless something else here can use
                // it: else, with every core idle while virtio-blk works, `-icount ...
                // sleep=off` moves the clock on to the next tick (init calling fsd at boot).
                let w = Wait::Call(t);
                if self.envs[t].wait == Wait::Disk { self.hand_over(cur, w, t) } else { self.block(cur, w) }
                return true;
            }
            Err(e) => e,
        };
        self.envs[cur].frame().x[0] = status as i64 as u64;
        false
    }

    fn call_target(&self, cur: usize, target: u64, opts: u64) -> Result<usize, Error> {
        let id = EnvId(u32::try_from(target).map_err(|_| Error::Invalid)?);
        let right = self.envs[cur].pct_rights.checked_shr(id.slot() as u32).unwrap_or(0) & 1;
        refuse_if!(id.0 == 0 || right == 0, Error::Denied);
        let t = self.slot(id)?;
        refuse_if!(self.envs[t].pct_entry == 0 || t == cur, Error::NotFound);
        let frame = opts & !0xfff;
        if frame != 0 {
            self.ft.check_owned_data(self.envs[cur].id, frame)?;
        }
        Ok(t)
    }

    /// Starts target `t`'s call context with `cur`'s arguments and blocks `cur` for the
    /// reply; `t` runs next, on this core at once if it may (`hand_over`).
    fn enter(&mut self, cur: usize, t: usize, opts: u64) {
        let frame = opts & !0xfff;
        if frame != 0 {
            let g = Grant { pa: frame, owner: self.envs[cur].id, write: opts & PCT_GRANT_RW != 0 };
            if let Some(f) = self.ft.get_mut(frame).ok().filter(|f| f.flags & frame::GRANTED == 0) {
                // First grant since the frame changed hands: grants from before are void.
                f.flags |= frame::GRANTED;
                let stale = self.envs.iter_mut().flat_map(|e| e.grants.iter_mut()).filter(|h| h.pa == frame);
                stale.for_each(|h| *h = Grant::default());
            }
            // The slot of the same frame (renewed in place), else a free one, else the oldest
            // (the others move down one): that grant ends, so no caller, nor any family of
            // callers, can keep every slot from the rest. The server is parked: none is in use.
            let (ft, grants) = (&self.ft, &mut self.envs[t].grants);
            let found = grants.iter().position(|h| h.pa == frame).or_else(|| grants.iter().position(|h| !live(ft, h)));
            let i = found.unwrap_or_else(|| {
                grants.rotate_left(1);
                PCT_GRANTS - 1
            });
            let old = core::mem::replace(&mut grants[i], g);
            // The server keeps no mapping of a grant that ended, nor a writable one of a
            // grant renewed read-only.
            if live(ft, &old) && (old.pa != frame || old.write && !g.write) {
                unmap_frame(self, t, old.pa);
            }
        }
        let (caller_id, f) = (self.envs[cur].id, self.envs[cur].frame());
        let args = [caller_id.0 as u64, f.x[1], f.x[2], f.x[3], f.x[4], opts & (!0xfff | PCT_GRANT_RW)];
        let e = &mut self.envs[t];
        // Only what the entry relies on is set: arguments, a clean frame-pointer chain,
        // stack, pc. Other registers hold this server's own earlier values.
        let f = &mut e.frames[Ctx::Call as usize];
        f.x[..6].copy_from_slice(&args);
        (f.x[29], f.x[30], f.sp, f.pc, f.pstate) = (0, 0, e.pct_stack, e.pct_entry, 0);
        (e.active, e.pct_caller) = (Ctx::Call, (cur, caller_id));
        self.hand_over(cur, Wait::Reply(t), t);
    }

    /// `PctReply`, from a call context: results to the caller, park again.
    pub fn pct_reply(&mut self, cur: usize) -> Result<(), Error> {
        refuse_if!(self.envs[cur].active != Ctx::Call, Error::Invalid);
        let x = &self.envs[cur].frames[Ctx::Call as usize].x;
        let r = [0, x[1], x[2], x[3], x[4]]; // the status, then the results
        // (`pct_caller` is read only in a call context: it stays as it is.)
        let (c, cid) = self.envs[cur].pct_caller;
        self.envs[cur].active = Ctx::Own;
        if self.envs[c].id == cid && self.envs[c].wait == Wait::Reply(cur) {
            self.envs[c].frame().x[..5].copy_from_slice(&r);
            self.hand_over(cur, Wait::Serve, c);
        } else {
            self.block(cur, Wait::Serve);
        }
        self.wake_callers_of(cur);
        Ok(())
    }

    /// Callers that were waiting for `t` to be free try again.
    #[inline]
    fn wake_callers_of(&mut self, t: usize) {
        if self.call_waiters == 0 {
            return; // the common case: nobody is queued for any server
        }
        for s in 0..MAX_ENVS {
            if self.envs[s].wait == Wait::Call(t) {
                self.call_waiters -= 1;
                self.wake(s);
            }
        }
    }

    /// Fails a waiting caller with `e`.
    fn fail_caller(&mut self, s: usize, e: Error) {
        let retrying = matches!(self.envs[s].wait, Wait::Call(_));
        self.call_waiters -= retrying as u32;
        let f = self.envs[s].frame();
        // A retrying caller's pc was wound back to repeat the call: it returns instead.
        (f.x[0], f.pc) = (e as i64 as u64, f.pc + 4 * retrying as u64);
        self.wake(s);
    }
}

/// Once a tick: calls and replies waited for past their deadline fail with `Timeout`.
pub fn on_tick(k: &mut Kernel) {
    for s in 0..MAX_ENVS {
        let e = &k.envs[s];
        if e.deadline != 0 && k.ticks >= e.deadline && matches!(e.wait, Wait::Reply(_) | Wait::Call(_)) {
            k.envs[s].deadline = 0;
            k.fail_caller(s, Error::Timeout);
        }
    }
}

/// Before `slot` is torn down: callers waiting on it fail, and every grant of its frames
/// is withdrawn — mappings included — before those frames go back to the free list.
pub fn on_destroy(k: &mut Kernel, slot: usize) {
    k.call_waiters -= matches!(k.envs[slot].wait, Wait::Call(_)) as u32; // queued for a busy server
    let id = k.envs[slot].id;
    for s in 0..MAX_ENVS {
        // A zombie's wait, grants and call are never read again (`slot` refuses it), and
        // `create` clears them: this one's too, once `destroy` has made it one.
        if matches!(k.envs[s].state, EnvState::Free | EnvState::Zombie) {
            continue;
        }
        if matches!(k.envs[s].wait, Wait::Reply(t) | Wait::Call(t) if t == slot) {
            k.fail_caller(s, Error::NotFound);
        }
        for i in 0..k.envs[s].grants.len() {
            let g = k.envs[s].grants[i];
            if g.owner == id && g.pa != 0 {
                k.envs[s].grants[i] = Grant::default();
                unmap_frame(k, s, g.pa);
            }
        }
    }
}

/// Whether grant `g` stands: its frame has not changed hands since it was made.
pub(crate) fn live(ft: &FrameTable, g: &Grant) -> bool {
    let f = ft.get(g.pa);
    g.pa != 0
        && f.is_ok_and(|f| f.kind == frame::DATA && f.owner == g.owner.0 && f.flags & frame::GRANTED != 0)
}

/// Removes every mapping of frame `pa` from `slot`'s tables.
fn unmap_frame(k: &mut Kernel, slot: usize, pa: u64) {
    k.space(slot).0.for_each_page(|_, entry| {
        if Pte(*entry).addr() == pa {
            *entry = 0; // uncounted by the walk
        }
        true
    });
}
