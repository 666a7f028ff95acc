//! The isolation oracle: walks the translation tables of every environment below this one
//! (through `TableGet`, as their ancestor may) and checks what each can reach against the
//! sharing rule of `docs/memory-model.md`:
//!
//! - every page entry passes the attribute checks and names RAM;
//! - a data frame is the environment's own, or an ancestor's shared with its descendants
//!   at least as widely as mapped, or one granted over a call (`GRANTED`);
//! - a public kernel frame or one of the environment's own tables is mapped read-only and
//!   never executable; kernel, free and absent frames are never reachable;
//! - a device frame (the screen's) is mapped only by its owner, never executable and
//!   non-cacheable (the owner-only rule);
//! - every table is the environment's, linked at its level, and counts its entries
//!   exactly — or, at level 3, a frozen table of an ancestor's, shared whole (its pages
//!   are checked as the sharer's, and counted once, by its owner's walk); every frame the walked environments own counts its mappings exactly (the
//!   caller's own frames, which its ancestors may map too, at least as many).
//!
//! The environments walked must not run meanwhile (the fuzzer pauses its workers first).

use alloc::vec::Vec;

use crate::runner::check as ok;
use exo_libos::abi::pte::{attr, Pte};
use exo_libos::abi::{env_state, frame, EnvId, EnvInfo};
use exo_libos::{sys, vm};

/// Page entries found, by frame (sorted before counting).
pub struct Oracle {
    seen: Vec<u64>,
    /// Completed checks.
    pub passes: u64,
}

type Verdict = Result<(), &'static str>;

impl Oracle {
    /// Room for `cap` mappings, touched now so that growing it never changes our tables.
    pub fn new(cap: usize) -> Oracle {
        let mut seen = alloc::vec![0u64; cap];
        seen.clear();
        Oracle { seen, passes: 0 }
    }

    /// Checks every descendant of the caller; returns how many environments it walked.
    pub fn check(&mut self) -> Result<usize, &'static str> {
        self.seen.clear();
        let me = vm::me();
        let k = vm::kinfo();
        let mut walked = 0;
        for slot in 0..k.max_envs as u32 {
            let Some(e) = vm::env_info(EnvId(slot)) else { continue };
            let live = matches!(e.state, env_state::BLANK | env_state::RUNNABLE | env_state::BLOCKED);
            if live && e.id != me.0 && descends(&e, me) && e.root != 0 {
                self.table(EnvId(e.id), e.root, 0, 0, false)?;
                walked += 1;
            }
        }
        self.seen.sort_unstable();
        let mut seen = 0;
        for (pa, f) in vm::frames() {
            seen += 1;
            if !matches!(f.kind, frame::DATA | frame::TABLE | frame::DEVICE) {
                continue;
            }
            let found = self.seen.partition_point(|&p| p < pa);
            let n = self.seen[found..].iter().take_while(|&&p| p == pa).count();
            let owner = vm::env_info(EnvId(f.owner)).ok_or("env table unreadable")?;
            if f.owner == me.0 {
                ok(f.maps as usize >= n, "a frame of ours is mapped more often than it counts")?;
            } else if descends(&owner, me) {
                ok(f.maps as usize == n, "a frame's mapping count is wrong")?;
            }
        }
        ok(seen == vm::kinfo().frames, "frame table unreadable")?;
        self.passes += 1;
        Ok(walked)
    }

    /// Checks the table `pa` of `env` at `level`, which covers addresses from `base`
    /// (`shared`: reached through a shared table, whose mappings its owner counts).
    fn table(&mut self, env: EnvId, pa: u64, level: u32, base: u64, shared: bool) -> Verdict {
        let t = vm::frame_entry(pa).ok_or("a table is not RAM")?;
        let shared = shared || level == 3 && t.owner != env.0;
        let ancestors = vm::env_info(env).is_some_and(|me| descends(&me, EnvId(t.owner)));
        let frozen = t.flags & frame::FROZEN != 0 && t.shares > 0 && ancestors;
        ok(
            t.kind == frame::TABLE && (t.owner == env.0 || frozen),
            "a table in the tree is not the environment's",
        )?;
        ok(t.level as u32 == level, "a table is linked at the wrong level")?;
        let mut valid = 0;
        for i in 0..512u64 {
            let va = base + (i << (39 - 9 * level));
            let e = Pte(sys::table_get(env, va, level).map_err(|_| "TableGet failed on a live tree")?);
            if !e.is_valid() {
                continue;
            }
            valid += 1;
            if level < 3 {
                self.table(env, e.addr(), level + 1, va, shared)?;
            } else {
                self.page(env, e, shared)?;
            }
        }
        ok(t.entries == valid, "a table's entry count is wrong")
    }

    fn page(&mut self, env: EnvId, e: Pte, shared: bool) -> Verdict {
        let (pa, perm) = e.check_user_page().map_err(|_| "a page entry has forbidden attributes")?;
        let f = vm::frame_entry(pa).ok_or("a mapped frame is not RAM (a device?)")?;
        let read_only = !perm.write && !perm.exec;
        let allowed = match f.kind {
            frame::DATA if f.owner == env.0 => true,
            frame::DATA => {
                let want = if perm.write { frame::SHARED_RW } else { frame::SHARED_RW | frame::SHARED_RO };
                let ancestor = vm::env_info(env).is_some_and(|me| descends(&me, EnvId(f.owner)));
                (ancestor && f.flags & want != 0) || f.flags & frame::GRANTED != 0
            }
            frame::PUBLIC => read_only,
            frame::TABLE => {
                let frozen = f.flags & frame::FROZEN != 0;
                read_only
                    && (f.owner == env.0
                        || frozen && vm::env_info(env).is_some_and(|me| descends(&me, EnvId(f.owner))))
            }
            frame::DEVICE => device_allowed(f.owner, env, perm.exec, e),
            _ => false,
        };
        ok(allowed, "an environment maps a frame the sharing rule does not give it")?;
        if shared {
            return Ok(());
        }
        if self.seen.len() == self.seen.capacity() {
            return Err("too many mappings for the oracle's record");
        }
        self.seen.push(pa);
        Ok(())
    }
}

/// The owner-only rule for device frames: `env` maps one only if it owns it, not
/// executable, and non-cacheable.
pub fn device_allowed(owner: u32, env: EnvId, exec: bool, e: Pte) -> bool {
    owner == env.0 && !exec && e.attr_index() == attr::NORMAL_NC
}

/// Whether `e` is a strict descendant of `ancestor`.
fn descends(e: &EnvInfo, ancestor: EnvId) -> bool {
    let mut parent = e.parent;
    for _ in 0..64 {
        if parent == 0 {
            return false;
        }
        if parent == ancestor.0 {
            return true;
        }
        parent = vm::env_info(EnvId(parent)).map_or(0, |p| p.parent);
    }
    false
}
