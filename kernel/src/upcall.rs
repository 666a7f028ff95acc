//! Upcalls: exceptions and kernel requests delivered to an environment's own handler at EL0,
//! and the revocation ("abort") protocol for taking frames back.
//!
//! An environment has three saved contexts (`env::Ctx`): its own, its upcall handler's, and
//! a protected control transfer's (see `pct.rs`). An upcall leaves the running context
//! untouched and starts the handler's at the registered entry, on the registered exception
//! stack, with x0 = kind, x1 = ESR, x2 = FAR, x3 = interrupted pc, x4 = the kind's
//! argument; `UpcallResume` switches back — nothing is copied either way. Every exception
//! is one kind, `FAULT`: reading the syndrome is the libOS's business. A fault while the
//! handler runs, or with no handler, kills the environment.

use exo_abi::pte::{bits::DROPPABLE, Pte};
use exo_abi::{frame, upcall, EnvState, REPOSSESS_LOG};

use crate::arch::trap::TrapFrame;
use crate::env::{is_ancestor_or_self, kernel, Ctx, Kernel, MAX_ENVS, NONE, PENDING_REVOKE, PENDING_SLICE};
use crate::mm::frames::FrameTable;

/// Frames asked back per revocation, and ticks the environment has to give them.
pub const REVOKE_BATCH: u32 = 16;
pub const REVOKE_GRACE: u64 = 3;

/// Starts `slot`'s handler for an upcall of `kind`. Returns false if it has no handler or
/// is already in one (the caller decides what that means).
#[inline]
pub fn deliver(k: &mut Kernel, slot: usize, kind: u64, esr: u64, far: u64, arg: u64) -> bool {
    let e = &mut k.envs[slot];
    if e.upcall_entry == 0 || e.active == Ctx::Upcall {
        return false;
    }
    let pc = e.frames[e.active as usize].pc;
    e.interrupted = e.active;
    // Only what the handler may rely on is set: its arguments, a clean frame-pointer
    // chain, its stack and entry. Other registers hold this environment's own values: what
    // its previous handler left, or on the fault path (`el0_abort`, which loads only these)
    // the interrupted context's and what the kernel computed from its own state. (`el0_abort`
    // loads these fields into the registers without storing them: every entry from the
    // handler saves each before anything reads it.)
    let f = &mut e.frames[Ctx::Upcall as usize];
    f.x[..5].copy_from_slice(&[kind, esr, far, pc, arg]);
    (f.x[29], f.x[30], f.sp, f.pc, f.pstate) = (0, 0, e.upcall_stack, e.upcall_entry, 0);
    e.active = Ctx::Upcall;
    true
}

/// Delivers what was waiting for `slot` to be able to take an upcall.
#[inline]
pub fn deliver_pending(k: &mut Kernel, slot: usize) {
    if k.envs[slot].pending != 0 {
        deliver_pending_slow(k, slot);
    }
}

fn deliver_pending_slow(k: &mut Kernel, slot: usize) {
    let e = &k.envs[slot];
    // Each stays pending until it can be delivered (a handler, not already in it).
    if e.pending & PENDING_REVOKE != 0 {
        if deliver(k, slot, upcall::REVOKE, 0, e.revoke_deadline, e.revoke_wanted as u64) {
            k.envs[slot].pending &= !PENDING_REVOKE;
        }
    } else if e.pending & PENDING_SLICE != 0 && deliver(k, slot, upcall::SLICE_END, 0, 0, 0) {
        k.envs[slot].pending &= !PENDING_SLICE;
    }
}

/// A synchronous exception from EL0 (not a system call, wfi or wfe), its context saved
/// (`el0_abort` in `vectors.S`): the handler's context to start at once, with no pass of
/// the scheduler (who runs here has not changed: an interrupt another core raised
/// meanwhile is taken as soon as the handler runs, as after a fast call). Null if it
/// cannot be delivered (no handler, a fault in the handler, the environment destroyed
/// meanwhile): the vector then takes the general path, `el0_trap`, which ends it.
#[unsafe(no_mangle)]
extern "C" fn el0_fault(esr: u64, far: u64) -> *mut TrapFrame {
    kernel(|k| {
        let cur = k.current;
        if cur != NONE && deliver(k, cur, upcall::FAULT, esr, far, 0) {
            return k.envs[cur].frame() as *mut _;
        }
        core::ptr::null_mut()
    })
}

/// A synchronous exception from EL0 other than a system call: handed to the handler as it
/// is (the libOS reads the syndrome), or the end of the environment.
pub fn fault(k: &mut Kernel, slot: usize, esr: u64, far: u64) {
    if deliver(k, slot, upcall::FAULT, esr, far, 0) {
        return;
    }
    let e = &k.envs[slot];
    let why = if e.active == Ctx::Upcall { "fault in its upcall handler" } else { "no upcall handler" };
    log::warn!(
        "env {:#x} killed: {} at pc {:#x}, FAR {:#x} ({why})",
        e.id.0,
        upcall::describe(esr),
        e.frames[e.active as usize].pc,
        far
    );
    k.destroy(slot, exo_abi::killed_status(upcall::classify(esr).0));
}

/// Memory ran out: ask the environment that answers for the most of it to give some
/// back, unless that one is already asked. From the top of the family tree down, the walk
/// goes into the child whose family (`subtree`) holds the most, and stops at the first
/// environment that holds by itself at least as much as any child's family. So the one
/// that took the memory is asked — a hog that took everything itself, or the largest part
/// of a hog split among children — never a bystander holding less than the hog's family.
/// Who ran out counts for nothing: an ancestor of it is asked like anyone else.
/// The kernel's only policy here is whom to ask; which frames go back is the libOS's
/// choice until the deadline passes.
pub fn request_revocation(k: &mut Kernel) {
    let envs = &k.envs;
    // The child of `p` whose family holds the most (`p` = NONE: of the roots, init).
    let heaviest = |p: usize| {
        let children = (0..MAX_ENVS).filter(|&s| envs[s].state != EnvState::Free && envs[s].parent == p);
        children.max_by_key(|&s| envs[s].subtree)
    };
    let down = |&v: &usize| heaviest(v).filter(|&c| envs[c].subtree > envs.get(v).map_or(0, |e| e.held));
    let v = core::iter::successors(Some(NONE), down).last().unwrap_or(NONE); // (NONE: above init)
    let Some(e) = k.envs.get_mut(v).filter(|e| e.held > 0 && e.revoke_wanted == 0) else { return };
    (e.revoke_wanted, e.revoke_deadline) = (REVOKE_BATCH.min(e.held), k.ticks + REVOKE_GRACE);
    e.pending |= PENDING_REVOKE;
    log::debug!("asking env {:#x} for {} frames back by tick {}", e.id.0, e.revoke_wanted, e.revoke_deadline);
    k.publish(v);
}

impl Kernel {
    /// `slot` gave up `n` frames: count them towards a pending revocation.
    pub fn frames_returned(&mut self, slot: usize, n: u32) {
        let e = &mut self.envs[slot];
        if e.revoke_wanted > 0 {
            e.revoke_wanted = e.revoke_wanted.saturating_sub(n);
            self.publish(slot);
        }
    }
}

/// Once a tick: environments past their revocation deadline lose frames by force.
pub fn on_tick(k: &mut Kernel) {
    for s in 0..MAX_ENVS {
        let e = &k.envs[s];
        if e.revoke_wanted > 0 && k.ticks >= e.revoke_deadline && e.state != EnvState::Free {
            repossess(k, s, e.revoke_wanted);
        }
    }
}

/// The abort protocol: takes `n` of `slot`'s data frames — unmapped ones first, then ones
/// mapped once in its own tables (the mapping is removed; pages marked `DROPPABLE` before
/// the rest), then any other but a granted one, with every mapping of it — and logs each in
/// its public repossession record. Tables are not taken: if too few frames could be, what
/// it holds is tables, and it is destroyed (not init, whose end is the machine's).
fn repossess(k: &mut Kernel, slot: usize, n: u32) {
    let id = k.envs[slot].id;
    let mut taken = [0u64; REVOKE_BATCH as usize];
    let mut count = 0;
    let want = (n as usize).min(taken.len());
    // How many mappings a frame has, if it is one of its data frames.
    let maps = |ft: &FrameTable, pa| {
        let e = ft.get(pa).ok().filter(|e| e.kind == frame::DATA && e.owner == id.0);
        e.map(|e| e.maps)
    };
    let span = k.envs[slot].span.0 as usize..k.envs[slot].span.1 as usize; // all it may own
    for pa in span.clone().map(|i| k.ft.pa(i)).filter(|&pa| maps(&k.ft, pa) == Some(0)).take(want) {
        taken[count] = pa;
        count += 1;
    }
    // Mapped pages the owner marked droppable first, then the others, in address order.
    for mark in [DROPPABLE, 0] {
        k.space(slot).0.for_each_page(|ft, entry| {
            let pa = Pte(*entry).addr();
            if count < want && *entry & DROPPABLE == mark && maps(ft, pa) == Some(1) {
                *entry = 0; // the walk uncounts it: no mapping left
                taken[count] = pa;
                count += 1;
            }
            count < want
        });
    }
    // Then frames mapped twice, or shared with its descendants: the bindings are broken by
    // force, in its family's tables. A frame it granted a server, still in that server's
    // grant slot, is spared, so that no server loses a buffer under a call (each server's 8
    // slots bound what stays so; a stale slot, of a frame that changed hands since, is void).
    let granted = |pa| k.envs.iter().flat_map(|e| &e.grants).any(|g| g.pa == pa && crate::pct::live(&k.ft, g));
    let more = |&pa: &u64| maps(&k.ft, pa).is_some_and(|m| m > 0) && !granted(pa);
    let first = count;
    for pa in span.map(|i| k.ft.pa(i)).filter(more).take(want - count) {
        taken[count] = pa;
        count += 1;
    }
    for s in (0..MAX_ENVS).filter(|_| first < count) {
        if is_ancestor_or_self(&k.envs, slot, s) {
            k.space(s).0.for_each_page(|_, entry| {
                *entry = if taken[first..count].contains(&Pte(*entry).addr()) { 0 } else { *entry };
                true
            });
        }
    }
    let mut freed = 0;
    for &pa in &taken[..count] {
        if k.ft.free(id, pa).is_ok() {
            let e = &mut k.envs[slot];
            e.repossess_log[(e.repossessed % REPOSSESS_LOG as u64) as usize] = pa;
            (e.repossessed, freed) = (e.repossessed + 1, freed + 1);
        }
    }
    k.uncharge(slot, freed);
    k.envs[slot].revoke_wanted = 0;
    k.publish(slot);
    k.publish_free();
    log::info!("env {:#x} missed its revocation deadline: {freed} frames repossessed", id.0);
    // Too few: the rest of what it holds is tables, and it must not keep memory that way.
    if (freed as usize) < want && k.envs[slot].parent != NONE {
        log::warn!("env {:#x} destroyed: what it still owes is held in its tables", id.0);
        k.destroy(slot, exo_abi::killed_status(upcall::REVOKE));
    }
}
