//! `YieldTo` across cores (smp suite): a partner kept to another core runs at once, not at
//! that core's next tick; a caller yielding in a loop cannot take that core from its other
//! occupant; and neither `YieldTo` nor `EnvSetAffinity` interrupts a core that runs an
//! environment the caller has no authority over. The rule is in `docs/multicore.md`.

use core::sync::atomic::Ordering::SeqCst;

use crate::cores::{core_ticks, runs_on, shared, spinner, PATIENCE_MS};
use crate::runner::{check, wait_for};
use exo_libos::abi::EnvId;
use exo_libos::process::{self, Fork};
use exo_libos::{println, sys};

/// Forks a child kept to `core` alone that runs `f`, then exits.
fn on_core(core: u8, f: impl FnOnce()) -> Result<EnvId, &'static str> {
    match process::fork().map_err(|_| "fork")? {
        Fork::Child => {
            f();
            sys::exit(0)
        }
        Fork::Parent(c) => {
            sys::env_set_affinity(c, 1 << core).map_err(|_| "set affinity")?;
            Ok(c)
        }
    }
}

/// Core 1 runs a spinner and a partner that, at each turn, stamps core 1's tick count,
/// counts the turn and yields: by round robin it runs once a tick, just after core 1's
/// tick. From core 0, just after such a turn, the partner is yielded to: it must run again
/// before core 1 ticks again (the old kernel let it wait for that tick: the donation was not
/// taken on core 0, which the partner may not use).
pub fn partner_runs_at_once() -> Result<(), &'static str> {
    let s = shared();
    let spin = spinner(s, 0, 1)?;
    // The partner keeps the stamp of its turn n in s[16 + n % 64], then counts it in s[1].
    let partner = on_core(1, || loop {
        let n = s[1].load(SeqCst);
        s[16 + n as usize % 64].store(core_ticks(1).0, SeqCst);
        s[1].store(n + 1, SeqCst);
        sys::yield_now();
    })?;
    sys::env_set_affinity(EnvId::SELF, 1).map_err(|_| "self to core 0")?;
    let placed = wait_for(PATIENCE_MS, || runs_on(spin, 1) && s[0].load(SeqCst) > 0 && s[1].load(SeqCst) > 2);
    let (rounds, mut prompt, mut missed) = (5, 0, 0);
    for _ in 0..rounds {
        // Wait for a fresh tick of core 1 and the partner's turn in it.
        let t = core_ticks(1).0;
        let fresh = wait_for(PATIENCE_MS, || {
            let now = core_ticks(1).0;
            let n = s[1].load(SeqCst);
            now > t && n > 0 && s[16 + (n as usize - 1) % 64].load(SeqCst) == now
        });
        // The spinner counts again: the partner has yielded (while it runs, it is not handed).
        let spun = s[0].load(SeqCst);
        let fresh = fresh && wait_for(PATIENCE_MS, || s[0].load(SeqCst) > spun);
        let (turns, tick) = (s[1].load(SeqCst), core_ticks(1).0);
        let _ = sys::yield_to(partner);
        let ran = wait_for(PATIENCE_MS, || s[1].load(SeqCst) != turns);
        let stamp = s[16 + turns as usize % 64].load(SeqCst);
        if fresh && ran && stamp == tick {
            prompt += 1;
        } else {
            println!("xcore: late: fresh {fresh} ran {ran} tick {tick} partner's stamp {stamp}");
            missed += 1;
        }
    }
    let kept = runs_on(partner, 1) || vm_cpu(partner) == Some(1);
    let _ = sys::env_destroy(partner);
    let _ = sys::env_destroy(spin);
    println!(
        "xcore: partner ran before core 1's next tick after {prompt} of {rounds} yields ({missed} late)"
    );
    check(placed, "the spinner and the partner did not both run on core 1")?;
    check(kept, "the partner left core 1")?;
    check(prompt == rounds, "a yield to the partner on core 1 waited for core 1's tick")
}

fn vm_cpu(env: EnvId) -> Option<u8> {
    exo_libos::vm::env_info(env).filter(|e| e.id == env.0).map(|e| e.cpu)
}

/// Core 1 runs two spinners, a victim and a partner, which share it a tick at a time. The
/// test on core 0 and two helpers on cores 2 and 3 yield to the partner in a loop for 30 of
/// core 1's ticks. The victim must keep a quarter of core 1 (its fair share is a half; the
/// rule leaves it at least a third): a kernel that let every such yield preempt it would
/// leave it almost nothing.
pub fn looping_yields_do_not_starve_the_neighbour() -> Result<(), &'static str> {
    let s = shared();
    let victim = spinner(s, 0, 1)?;
    let partner = spinner(s, 1, 1)?;
    let attack = || {
        while s[8].load(SeqCst) == 0 {
            let _ = sys::yield_to(partner);
        }
    };
    let helpers = [
        on_core(2, || loop {
            attack()
        })?,
        on_core(3, || loop {
            attack()
        })?,
    ];
    sys::env_set_affinity(EnvId::SELF, 1).map_err(|_| "self to core 0")?;
    let placed =
        wait_for(PATIENCE_MS, || s[0].load(SeqCst) > 0 && s[1].load(SeqCst) > 0 && runs_on(victim, 1));
    let t = core_ticks(1).0;
    let (v, p) = (s[0].load(SeqCst), s[1].load(SeqCst));
    while core_ticks(1).0 < t + 30 {
        let _ = sys::yield_to(partner);
    }
    let (dv, dp) = (s[0].load(SeqCst) - v, s[1].load(SeqCst) - p);
    s[8].store(1, SeqCst);
    for k in [victim, partner].into_iter().chain(helpers) {
        let _ = sys::env_destroy(k);
    }
    let share = dv * 100 / (dv + dp).max(1);
    println!(
        "xcore: over 30 ticks of core 1 the victim counted {dv}, the partner {dp}: {share}% to the victim"
    );
    check(placed, "the victim did not run on core 1")?;
    check(share >= 25, "yields in a loop took core 1 from the victim")
}

/// Core `c`'s published count of signals taken (`KernelInfo::cpu_signals`, as of its tick).
fn signals(c: usize) -> u64 {
    // SAFETY: a plain read of the kernel information page, which stays mapped; volatile
    // because the kernel updates it behind the compiler's back.
    unsafe { core::ptr::read_volatile(&exo_libos::vm::kinfo().cpu_signals[c]) }
}

/// A victim spins alone on core 1. Its sibling, the attacker, has no authority over it
/// and may use every core but 1: for 20 of core 1's ticks it moves its own child between
/// cores 2 and 3 (`EnvSetAffinity`, which signals the core the child must leave and idle
/// cores it may now use) and yields to the victim (`YieldTo`, which hands nothing to a core
/// where its target already runs). Core 1 must take no signal meanwhile (each core
/// publishes how many it took).
pub fn affinity_and_yields_leave_other_cores_alone() -> Result<(), &'static str> {
    let s = shared();
    let victim = spinner(s, 0, 1)?;
    let attacker = match process::fork().map_err(|_| "fork")? {
        Fork::Child => {
            let child = spinner(s, 1, 2).unwrap_or(EnvId(0));
            let placed = wait_for(PATIENCE_MS, || runs_on(child, 2) && runs_on(victim, 1));
            let t = core_ticks(1).0;
            while core_ticks(1).0 == t {}
            let (t, before, moved) = (core_ticks(1).0, signals(1), signals(2) + signals(3));
            let (mut calls, mut moves) = (0u64, 0u64);
            while core_ticks(1).0 < t + 20 {
                moves += sys::env_set_affinity(child, 0b100 << (calls % 2)).is_ok() as u64;
                let _ = sys::yield_to(victim);
                calls += 1;
            }
            let (taken, moved) = (signals(1) - before, signals(2) + signals(3) - moved);
            let _ = sys::env_destroy(child);
            s[10].store(taken, SeqCst);
            s[11].store(moved, SeqCst);
            s[12].store(moves, SeqCst);
            s[13].store(1 + placed as u64, SeqCst);
            sys::exit(0)
        }
        Fork::Parent(c) => c,
    };
    sys::env_set_affinity(attacker, 0b1101).map_err(|_| "attacker off core 1")?;
    sys::env_set_affinity(EnvId::SELF, 1).map_err(|_| "self to core 0")?;
    let done = wait_for(PATIENCE_MS, || s[13].load(SeqCst) != 0);
    let _ = process::wait(attacker);
    let _ = sys::env_destroy(victim);
    let (taken, moved, moves) = (s[10].load(SeqCst), s[11].load(SeqCst), s[12].load(SeqCst));
    println!("xcore: {moves} moves of the attacker's child and yields: core 1 took {taken} signals, cores 2 and 3 {moved}");
    check(done, "the attacker did not report")?;
    check(s[13].load(SeqCst) == 2, "the victim and the attacker's child did not run on cores 1 and 2")?;
    check(moves > 100, "the attacker could not move its own child")?;
    check(taken == 0, "a core running an environment outside the caller's authority was signalled")
}
