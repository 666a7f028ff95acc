//! System calls. Each checks every argument it is given before acting; see `exo_abi::Sys`
//! for the contract of each.
//!
//! Calls numbered below `Sys::FIRST_SLOW` run on the fast path: `vectors.S` calls them
//! straight through `SYSCALL_FAST_TABLE` with the caller's argument registers, saving only
//! what the Rust calling convention would not. The rest may block or switch environments
//! and run with the caller's full context saved (`slow`).

use exo_abi::pte::Pte;
use exo_abi::{Context, EnvId, EnvState, Error, Sys, TableOp, ANY_FRAME, USER_VA_LIMIT};

use crate::arch::trap::TrapFrame;
use crate::env::{kernel, Ctx, Env, Kernel, Wait, NONE};
use crate::mm::phys_to_virt;
use crate::{console, uaccess, upcall};

type Fast = extern "C" fn(u64, u64, u64, u64, u64, u64) -> i64;

/// `UpcallResume`, called by `vectors.S` without saving the handler's context (it is
/// being thrown away): first, if `table` is not 0, `TableSetAt(SELF, table, i, pte)`;
/// then back to the interrupted context, or straight into the next pending upcall.
/// Returns the context to resume, or an error code for the handler (-4095..=-1, never a
/// kernel address): `Invalid` outside an upcall, or why the entry could not be set.
#[unsafe(no_mangle)]
extern "C" fn upcall_resume(table: u64, i: u64, pte: u64) -> i64 {
    kernel(|k| {
        let cur = k.current;
        if cur == NONE || k.envs[cur].active != Ctx::Upcall {
            return Error::Invalid as i64;
        }
        if table != 0 {
            let (mut space, may_map) = k.space(cur);
            if let Err(e) = space.set_at(table, i, Pte(pte), may_map) {
                return e as i64;
            }
        }
        k.envs[cur].active = k.envs[cur].interrupted;
        upcall::deliver_pending(k, cur);
        k.envs[cur].frame() as *mut TrapFrame as i64
    })
}

pub fn ret(r: Result<u64, Error>) -> i64 {
    r.map_or_else(|e| e as i64, |v| v as i64)
}

/// A slow call's outcome: its result, or `Ok(None)` once the caller has given up the CPU
/// (blocked, switched away, gone, or already holding its result).
type Step = Result<Option<u64>, Error>;

pub fn env_arg(x: u64) -> Result<EnvId, Error> {
    u32::try_from(x).map(EnvId).map_err(|_| Error::Invalid)
}

/// A fast call: `|k, a, b, ..|` names the argument registers it reads, in order (none
/// reads the sixth), and `k` the kernel, for a caller still alive once it holds the lock.
macro_rules! fast {
    ($(#[$attr:meta])* $name:ident, |$k:ident $(, $arg:ident)*| $body:expr) => {
        $(#[$attr])*
        extern "C" fn $name(a: u64, b: u64, c: u64, d: u64, e: u64, _: u64) -> i64 {
            let [$($arg,)* ..] = [a, b, c, d, e];
            // NONE: destroyed by another core while this call waited for the lock.
            ret(kernel(|$k| if $k.current == NONE { Err(Error::NotFound) } else { $body }))
        }
    };
}

/// A fast call on an environment the caller may act on (itself or a descendant), named by
/// its first argument: in `|k, t, b, ..|`, `t` is its slot (`Kernel::target`, checked
/// before the body runs), and `b, ..` the arguments after it.
macro_rules! fast_on {
    ($name:ident, |$k:ident, $t:ident $(, $arg:ident)*| $body:expr) => {
        fast!($name, |$k, env $(, $arg)*| {
            let $t = $k.target(env_arg(env)?)?;
            $body
        });
    };
}

extern "C" fn nop(_: u64, _: u64, _: u64, _: u64, _: u64, _: u64) -> i64 {
    0
}
// `FrameAlloc`: a frame for `t`, zeroed, or a copy of the caller's own data frame `from`.
fast_on!(frame_alloc, |k, t, pa, from| {
    if from != 0 {
        k.ft.check_owned_data(k.envs[k.current].id, from)?;
    }
    k.charge(t)?;
    let pa = match k.ft.alloc(k.envs[t].id, (pa != ANY_FRAME).then_some(pa), from == 0) {
        Ok(pa) => pa,
        Err(e) => {
            k.uncharge(t, 1);
            if e == Error::NoMemory {
                upcall::request_revocation(k);
            }
            return Err(e);
        }
    };
    k.owns(t, pa);
    let (src, dst) = (phys_to_virt(from) as *const u8, phys_to_virt(pa) as *mut u8);
    match from {
        0 => crate::arch::zero_page(dst as u64), // (`alloc` marked it ZEROED)
        // SAFETY: `from` is a data frame and `pa` one just taken from the free list: two
        // distinct whole pages of RAM, in the physmap. (Not marked.)
        _ => unsafe { core::ptr::copy_nonoverlapping(src, dst, 4096) },
    }
    k.publish_free();
    Ok(pa)
});
fast_on!(frame_free, |k, t, pa| {
    k.ft.free(k.envs[t].id, pa)?;
    k.uncharge(t, 1);
    k.publish_free();
    k.frames_returned(t, 1);
    Ok(0)
});
fast!(frame_give, |k, pa, to| {
    let (cur, t) = (k.current, k.slot(env_arg(to)?)?);
    // Down only: up or sideways would escape the quota.
    refuse_if!(t == cur || !crate::env::is_ancestor_or_self(&k.envs, cur, t), Error::Denied);
    if k.ft.get(pa)?.kind == exo_abi::frame::DEVICE {
        k.ft.give(k.envs[cur].id, pa, k.envs[t].id)?; // outside quotas
        k.envs[t].devices = true;
        k.owns(t, pa);
        return Ok(0);
    }
    k.ft.check_unmapped_data(k.envs[cur].id, pa)?;
    k.charge(t)?;
    k.ft.give(k.envs[cur].id, pa, k.envs[t].id)?;
    k.owns(t, pa);
    k.uncharge(cur, 1);
    k.frames_returned(cur, 1);
    Ok(0)
});
fast_on!(table_bind, |k, t, pa, level| {
    refuse_if!(level > 3, Error::Invalid);
    refuse_if!(level == 0 && k.envs[t].root != 0, Error::Busy);
    if !k.ft.bind_table(k.envs[t].id, pa, level as u8)? {
        crate::arch::zero_page(phys_to_virt(pa));
    }
    if level == 0 {
        k.set_root(t, pa);
    }
    Ok(0)
});
fast_on!(table_unbind, |k, t, pa| {
    k.ft.unbind_table(k.envs[t].id, pa)?;
    if k.envs[t].root == pa {
        k.set_root(t, 0);
    }
    Ok(0)
});
fast_on!(table_set, |k, t, va, level, pte| {
    let (mut space, may_map) = k.space(t);
    space.set(va, level.min(4) as u32, Pte(pte), may_map).map(|_| 0)
});
fast_on!(table_set_at, |k, t, table, i, pte| {
    let (mut space, may_map) = k.space(t);
    space.set_at(table, i, Pte(pte), may_map).map(|_| 0)
});
fast_on!(table_set_batch, |k, t, ptr, count| {
    refuse_if!(count == 0 || count > 512, Error::Invalid);
    let root = k.envs[k.current].root;
    let (mut space, may_map) = k.space(t); // the lock is held: no transfer pins it meanwhile
    let mut ops = [TableOp::default(); 16]; // read sixteen at a time
    for i in 0..count {
        let n = if i % 16 == 0 { (count - i).min(16) as usize } else { 0 };
        let read = if n == 0 { Ok(()) } else { uaccess::read_into(root, ptr.wrapping_add(i * 24), &mut ops[..n]) };
        let op = ops[i as usize % 16]; // (a failed read leaves it unused)
        if let Err(e) = read.and_then(|_| space.set(op.va, op.level.min(4) as u32, Pte(op.pte), &may_map)) {
            return if i == 0 { Err(e) } else { Ok(i) }; // what was applied stays reported
        }
    }
    Ok(count)
});
fast_on!(table_get, |k, t, va, level| k.space(t).0.get(va, level.min(4) as u32).map(|p| p.0));
fast!(env_create, |k, quota, kin| {
    let quota = u32::try_from(quota).map_err(|_| Error::Invalid)?;
    k.create(k.current, quota, u32::try_from(kin).map_err(|_| Error::Invalid)?).map(|s| k.envs[s].id.0 as u64)
});
// (A blank child: never the caller itself, which is running.)
fast_on!(env_set_entry, |k, t, pc, sp, a0, a1| {
    refuse_if!(k.envs[t].state != EnvState::Blank, Error::Invalid);
    refuse_if!(pc >= USER_VA_LIMIT || sp >= USER_VA_LIMIT, Error::Invalid);
    let f = &mut k.envs[t].frames[Ctx::Own as usize];
    *f = TrapFrame { pc, sp, ..TrapFrame::ZERO };
    (f.x[0], f.x[1]) = (a0, a1);
    Ok(0)
});
fast_on!(env_set_upcall, |k, t, entry, stack, flags| {
    refuse_if!(entry >= USER_VA_LIMIT || stack >= USER_VA_LIMIT || flags > 1, Error::Invalid);
    let e = &mut k.envs[t];
    (e.upcall_entry, e.upcall_stack, e.slice_upcall) = (entry, stack, flags & 1 != 0);
    Ok(0)
});
// (A blank child: never the caller itself, which is running.)
fast_on!(env_start, |k, t| {
    refuse_if!(k.envs[t].state != EnvState::Blank || k.envs[t].root == 0, Error::Invalid);
    k.make_runnable(t);
    Ok(0)
});
fast_on!(env_set_affinity, |k, t, mask| {
    let mask = u8::try_from(mask).ok().filter(|&m| m != 0).ok_or(Error::Invalid)?;
    let parent = k.envs.get(k.envs[t].parent);
    // Cores flow down the tree, like frames.
    refuse_if!(mask & !parent.map_or(crate::arch::smp::up_mask(), |p| p.affinity) != 0, Error::Denied);
    k.set_affinity(t, mask);
    Ok(0)
});
fast!(env_self, |k| Ok(k.envs[k.current].id.0 as u64));
fast!(kernel_info, |k| k.info_pa().ok_or(Error::NotFound));
fast!(upcall_context, |k, ptr, write| {
    let e = &mut k.envs[k.current];
    refuse_if!(e.active != Ctx::Upcall || write > 1, Error::Invalid);
    let f = &mut e.frames[e.interrupted as usize];
    if write == 1 {
        let c: Context = uaccess::read(e.root, ptr)?;
        // Only the condition flags of PSTATE are the environment's to change.
        *f = Context { pstate: c.pstate & 0xf000_0000, ..c };
    } else {
        uaccess::write(e.root, ptr, f)?;
    }
    Ok(0)
});

fast_on!(sector_grant, |k, t, start, count, rights| k.sector_grant(t, start, count, rights));
fast_on!(sector_revoke, |k, t, start, count| k.sector_revoke(t, start, count));

// `ConsoleAllow`: by a writer, to `t`; or (`on` 0) back from `t` and everyone below it.
fast_on!(console_allow, |k, t, on| {
    refuse_if!(on != 0 && !k.envs[k.current].speaks, Error::Denied);
    // A walk only to take it back: `fork` gives it, and walking there cost each fork 380.
    for s in 0..if on == 0 { crate::env::MAX_ENVS } else { 0 } {
        if crate::env::is_ancestor_or_self(&k.envs, t, s) {
            k.envs[s].speaks = false;
        }
    }
    k.envs[t].speaks = on != 0;
    Ok(0)
});

fast!(pct_allow, |k, caller, target| k.pct_right(env_arg(caller)?, env_arg(target)?, true));
fast!(pct_disallow, |k, caller, target| k.pct_right(env_arg(caller)?, env_arg(target)?, false));
fast!(pct_register, |k, entry, stack| {
    refuse_if!(entry >= USER_VA_LIMIT || stack >= USER_VA_LIMIT, Error::Invalid);
    let e = &mut k.envs[k.current];
    (e.pct_entry, e.pct_stack) = (entry, stack);
    Ok(0)
});
// `PctUngrant`, reached only through `pct_ungrant_scrubbed` (vectors.S), which zeroes the
// registers it leaves behind: it computes with the grantee's tables.
fast!(#[unsafe(no_mangle)] pct_ungrant, |k, target, pa| k.pct_ungrant(env_arg(target)?, pa));

unsafe extern "C" {
    safe fn pct_ungrant_scrubbed(a: u64, b: u64, c: u64, d: u64, e: u64, f: u64) -> i64;
}

/// The fast path's dispatch table, indexed by system-call number (read by `vectors.S`).
/// `console_write` sends, and the three `disk` calls move data, without the kernel lock.
#[unsafe(no_mangle)]
static SYSCALL_FAST_TABLE: [Fast; Sys::FAST_COUNT as usize] = [
    nop, console::console_write, frame_alloc, frame_free, frame_give, table_bind, table_unbind, table_set,
    table_set_batch, table_get, env_create, env_set_entry, env_set_upcall, env_start, env_self, kernel_info,
    upcall_context, crate::disk::sector_io::<false>, crate::disk::sector_io::<true>, crate::disk::sector_flush,
    sector_grant, sector_revoke, pct_allow, pct_disallow, pct_register, pct_ungrant_scrubbed, env_set_affinity,
    table_set_at, console_allow,
];

impl Kernel {
    /// Points `slot` at a new root table (0: none), and the MMU too if it is running.
    fn set_root(&mut self, slot: usize, root: u64) {
        self.envs[slot].root = root;
        if self.current == slot {
            crate::arch::set_user_table(root, Env::asid(slot));
        } else if let Some(c) = self.running_elsewhere(slot) {
            crate::arch::smp::kick(c, crate::arch::ttbr0(root, Env::asid(slot)));
        }
        self.publish(slot);
    }

    /// The calls that switch environments (`PctCall`, `PctReply`, `YieldTo`), for the
    /// environment in `cur`, or `None` for any other call (`slow`): dispatched apart so
    /// that `el0_svc`'s path through them stays short. Returns whether `cur` gives up the CPU.
    #[inline(always)]
    pub fn switching(&mut self, num: u64, cur: usize) -> Option<bool> {
        let a0 = self.envs[cur].frame().x[0];
        let step = match num {
            n if n == Sys::PctCall as u64 => return Some(self.pct_call(cur)),
            n if n == Sys::PctReply as u64 => self.pct_reply(cur).map(|()| None),
            n if n == Sys::YieldTo as u64 => self.yield_to(cur, a0),
            _ => return None,
        };
        Some(self.finish(cur, step))
    }

    /// System calls that may block or switch, for the environment in `cur`, whose saved
    /// context holds the arguments; the result goes into its x0. Returns whether the
    /// caller gives up the CPU. (Out of line: the switching calls above stay small.)
    #[inline(never)]
    pub fn slow(&mut self, num: u64, cur: usize) -> bool {
        let TrapFrame { x: [a0, a1, ..], .. } = *self.envs[cur].frame();
        let step = match num {
            n if n == Sys::Yield as u64 => Ok(None),
            n if n == Sys::Exit as u64 => {
                self.destroy(cur, a0 as i32);
                Ok(None)
            }
            n if n == Sys::EnvDestroy as u64 => self.env_destroy(cur, a0),
            n if n == Sys::PctWait as u64 => self.pct_wait(cur).map(|()| None),
            n if n == Sys::EnvWait as u64 => self.wait(cur, a0),
            n if n == Sys::ConsoleRead as u64 => self.console_read(cur, a0),
            n if n == Sys::ConsoleGive as u64 => self.console_give(cur, a0),
            n if n == Sys::NetBind as u64 => self.net_bind(a0).map(Some),
            n if n == Sys::NetUnbind as u64 => self.net_unbind(a0).map(Some),
            n if n == Sys::NetSend as u64 => self.net_send(a0, a1).map(Some),
            n if n == Sys::NetPoll as u64 => self.net_poll(a0).map(Some),
            n if n == Sys::NetWait as u64 => self.net_wait(cur, a0, a1),
            n if n == Sys::NetGrant as u64 => self.net_grant(a0, a1).map(Some),
            n if n == Sys::NetRevoke as u64 => self.net_revoke(a0, a1).map(Some),
            n if n == Sys::SectorWait as u64 => self.sector_wait(cur),
            _ => Err(Error::NoSys),
        };
        self.finish(cur, step)
    }

    /// A call's result into the caller's x0; whether it gave up the CPU.
    fn finish(&mut self, cur: usize, step: Step) -> bool {
        let Some(result) = step.transpose() else { return true };
        if self.current == cur {
            self.envs[cur].frame().x[0] = ret(result) as u64;
        }
        false
    }

    /// `YieldTo`: the rest of the slice to a runnable environment, here or, if this core
    /// may not run it, on another (`sched.rs`, `hand_off`). The direct switch, with no
    /// pass of the scheduler, is the vector's (`el0_yield`); what it leaves here (the lock
    /// was held, an upcall is pending, the target runs elsewhere or not here) is a donation.
    fn yield_to(&mut self, cur: usize, target: u64) -> Step {
        let t = self.slot(env_arg(target)?)?;
        if self.envs[t].wait == Wait::Net {
            self.wake(t); // anyone's sleep in `NetWait` ends ("look again"); the caller goes on
            return Ok(Some(0));
        }
        refuse_if!(self.envs[t].state != EnvState::Runnable, Error::Invalid);
        self.envs[cur].frame().x[0] = 0;
        self.donate_to = t;
        self.hand_off(t);
        Ok(None)
    }

    /// `EnvDestroy`: a descendant is destroyed and reaped; the caller itself just ends.
    fn env_destroy(&mut self, cur: usize, target: u64) -> Step {
        let t = self.target(env_arg(target)?)?;
        self.destroy(t, exo_abi::STATUS_DESTROYED);
        if t == cur {
            return Ok(None);
        }
        self.release(t); // now a zombie
        Ok(Some(0))
    }

    /// `ConsoleRead`: a received byte, or (if `blocking`) a wait for one.
    fn console_read(&mut self, cur: usize, blocking: u64) -> Step {
        refuse_if!(cur != self.console, Error::Denied); // keystrokes go to the holder alone
        match console::read_byte() {
            Some(b) => Ok(Some(b as u64)),
            None if blocking == 0 => Err(Error::WouldBlock),
            None => {
                self.restart(cur, Wait::Console);
                Ok(None)
            }
        }
    }

    /// `ConsoleGive`: the console input moves to `to`, from a holder or an ancestor of it.
    fn console_give(&mut self, cur: usize, to: u64) -> Step {
        let t = self.target(env_arg(to)?)?;
        refuse_if!(!crate::env::is_ancestor_or_self(&self.envs, cur, self.console), Error::Denied);
        self.console = t;
        Ok(Some(0))
    }

    /// Blocks the caller so that it repeats this system call once woken.
    fn restart(&mut self, cur: usize, why: Wait) {
        self.envs[cur].frame().pc -= 4;
        self.block(cur, why);
    }

    /// `EnvWait`: the child's status, or a wait for it to exit.
    fn wait(&mut self, cur: usize, child: u64) -> Step {
        let id = env_arg(child)?;
        let s = id.slot();
        let e = self.envs.get(s).filter(|e| e.id == id && e.parent == cur && e.state != EnvState::Free);
        let e = e.ok_or(Error::NotFound)?;
        if e.state == EnvState::Zombie {
            let status = e.exit_status;
            self.release(s);
            return Ok(Some(status as u32 as u64));
        }
        self.restart(cur, Wait::Child(id));
        Ok(None)
    }
}
