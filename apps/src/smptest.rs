//! EL0 tests of the kernel on several cores at once: environments placed on cores with
//! `EnvSetAffinity` run there in parallel, a table change made on one core is never seen
//! stale on another, an environment is destroyed while it runs on another core, and a
//! protected control transfer reaches a server on another core. Run by init with
//! `exo.test=smp`; every test needs four cores up (the test runner boots four).

use core::sync::atomic::Ordering::SeqCst;

use crate::cores::{core_ticks, my_cores, runs_on, shared, spinner, PATIENCE_MS};
use crate::runner::{check, wait_for};
use exo_libos::abi::pte::Pte;
use exo_libos::abi::{env_state, EnvId, Error};
use exo_libos::process::{self, Fork};
use exo_libos::sys;
use exo_libos::vm::{self, RO, RW, SHARED};

type Test = (&'static str, fn() -> Result<(), &'static str>);

pub const TESTS: &[Test] = &[
    ("four_environments_spinning_on_four_cores_all_make_progress", four_spinners),
    ("a_page_remapped_on_core_0_is_not_seen_stale_on_core_3", remap_seen_everywhere),
    ("destroying_an_environment_running_on_another_core_stops_it_at_once", destroy_elsewhere),
    ("pct_to_a_server_on_another_core_carries_values_both_ways", pct_across_cores),
    ("affinity_is_set_only_within_the_parents_cores_and_authority", affinity_rules),
    ("an_environment_leaving_its_own_core_goes_before_that_cores_next_tick", leave_own_core),
    (
        "revocation_under_pressure_from_two_cores_is_answered_by_workers_on_two_others",
        crate::pressure::across_cores,
    ),
    ("each_core_publishes_its_ticks_and_how_many_found_it_running_something", core_figures),
    ("console_writes_from_four_cores_at_once_come_out_whole", console_from_four_cores),
    (
        "yield_to_a_partner_kept_to_another_core_runs_it_before_that_cores_next_tick",
        crate::xcoreyield::partner_runs_at_once,
    ),
    (
        "yielding_in_a_loop_to_a_partner_on_another_core_leaves_its_neighbour_a_fair_share",
        crate::xcoreyield::looping_yields_do_not_starve_the_neighbour,
    ),
    (
        "set_affinity_and_yield_to_do_not_signal_a_core_running_an_environment_outside_the_callers_authority",
        crate::xcoreyield::affinity_and_yields_leave_other_cores_alone,
    ),
];

pub fn run(filter: &str) -> usize {
    crate::runner::run_suite("smptest", TESTS, filter, |test| {
        let mine = my_cores();
        if mine != 0xf {
            return Err("these tests need four cores up");
        }
        let r = test();
        let _ = sys::env_set_affinity(EnvId::SELF, mine); // back where it was
        r
    })
}

fn four_spinners() -> Result<(), &'static str> {
    let s = shared();
    let mut kids = [EnvId(0); 4];
    for (core, kid) in kids.iter_mut().enumerate() {
        *kid = spinner(s, core, core as u8)?;
    }
    let placed = wait_for(PATIENCE_MS, || (0..4).all(|c| runs_on(kids[c], c as u8) && s[c].load(SeqCst) > 0));
    // All four count during the same stretch: each core runs its own.
    let before: [u64; 4] = core::array::from_fn(|c| s[c].load(SeqCst));
    let moved = wait_for(PATIENCE_MS, || (0..4).all(|c| s[c].load(SeqCst) > before[c] + 1000));
    for kid in kids {
        let _ = sys::env_destroy(kid);
    }
    check(placed, "the spinners did not each run on their own core")?;
    check(moved, "not every spinner made progress")
}

fn remap_seen_everywhere() -> Result<(), &'static str> {
    let s = shared();
    // A page the child reads over and over, first holding A; the parent later points the
    // child's entry at a frame holding B, from another core.
    let va = vm::alloc_va(1);
    let a = sys::frame_alloc(EnvId::SELF, None).map_err(|_| "frame A")?;
    vm::map(va, Pte::user_page(a, RW).0 | SHARED).map_err(|_| "map A")?;
    // SAFETY: `va` was just mapped read-write.
    unsafe { (va as *mut u64).write_volatile(0xaaaa) };
    let reader = match process::fork().map_err(|_| "fork")? {
        Fork::Child => {
            // SAFETY: `va` is mapped in the child too (fork keeps SHARED pages shared).
            let read = || unsafe { (va as *const u64).read_volatile() };
            while s[0].load(SeqCst) == 0 {
                s[1].store(read(), SeqCst);
                s[2].fetch_add(1, SeqCst);
            }
            s[3].store(read(), SeqCst);
            s[4].store(1, SeqCst);
            sys::exit(0)
        }
        Fork::Parent(c) => c,
    };
    sys::env_set_affinity(reader, 1 << 3).map_err(|_| "reader to core 3")?;
    sys::env_set_affinity(EnvId::SELF, 1).map_err(|_| "self to core 0")?;
    let reading = wait_for(PATIENCE_MS, || {
        runs_on(reader, 3) && s[2].load(SeqCst) > 100 && s[1].load(SeqCst) == 0xaaaa
    });
    let b = sys::frame_alloc(EnvId::SELF, None).map_err(|_| "frame B")?;
    let window = vm::alloc_va(1);
    vm::map(window, Pte::user_page(b, RW).0).map_err(|_| "map B")?;
    // SAFETY: `window` was just mapped read-write.
    unsafe { (window as *mut u64).write_volatile(0xbbbb) };
    let on_core_0 = vm::env_info(vm::me()).is_some_and(|e| e.cpu == 0);
    let remapped = sys::table_set(reader, va, 3, Pte::user_page(b, RO).0);
    s[0].store(1, SeqCst);
    let answered = wait_for(PATIENCE_MS, || s[4].load(SeqCst) == 1);
    let seen = s[3].load(SeqCst);
    let _ = process::wait(reader);
    let _ = vm::unmap(window);
    let _ = vm::unmap(va);
    let _ = sys::frame_free(EnvId::SELF, a);
    let _ = sys::frame_free(EnvId::SELF, b);
    check(reading, "the reader did not run on core 3")?;
    check(on_core_0, "the remapping did not run on core 0")?;
    check(remapped.is_ok(), "the remap was refused")?;
    check(answered, "the reader did not answer")?;
    check(seen == 0xbbbb, "core 3 still saw the old page after the remap returned")
}

fn destroy_elsewhere() -> Result<(), &'static str> {
    let s = shared();
    let victim = spinner(s, 0, 2)?;
    sys::env_set_affinity(EnvId::SELF, 1).map_err(|_| "self to core 0")?;
    let running = wait_for(PATIENCE_MS, || runs_on(victim, 2) && s[0].load(SeqCst) > 100);
    let destroyed = sys::env_destroy(victim);
    let after = s[0].load(SeqCst);
    let later = sys::now() + vm::kinfo().counter_hz / 20;
    while sys::now() < later {
        sys::yield_now();
    }
    let still = s[0].load(SeqCst) == after;
    let gone = vm::env_info(victim).is_none_or(|e| e.id != victim.0 || e.state == env_state::FREE);
    check(running, "the victim did not run on core 2")?;
    check(destroyed.is_ok(), "the destroy failed")?;
    check(still, "the victim kept counting after it was destroyed")?;
    check(gone, "the victim's slot was not reclaimed")
}

fn pct_across_cores() -> Result<(), &'static str> {
    shared();
    let server = crate::ipctest::server(|c| [c.args[0] * 2, c.args[1] + 1, 0, 7])?;
    sys::env_set_affinity(server, 1 << 2).map_err(|_| "server to core 2")?;
    sys::env_set_affinity(EnvId::SELF, 1).map_err(|_| "self to core 0")?;
    let mut ok = true;
    let mut server_core = true;
    for i in 0..50u64 {
        ok &= sys::pct_call(server, [i, i, 0, 0], 0) == Ok([2 * i, i + 1, 0, 7]);
        server_core &= vm::env_info(server).is_some_and(|e| e.cpu == 2);
    }
    let client_core = vm::env_info(vm::me()).is_some_and(|e| e.cpu == 0);
    let _ = sys::env_destroy(server);
    check(ok, "wrong values came back")?;
    check(server_core, "the server did not run on core 2")?;
    check(client_core, "the client did not run on core 0")
}

fn affinity_rules() -> Result<(), &'static str> {
    let s = shared();
    let child = match process::fork().map_err(|_| "fork")? {
        Fork::Child => {
            // Pinned to core 1 by the parent (waited for: a child that ran to its exit first
            // would leave the parent nothing to pin): it may move within the parent's cores...
            wait_for(PATIENCE_MS, || s[1].load(SeqCst) != 0);
            let within = sys::env_set_affinity(EnvId::SELF, 0b110) == Ok(());
            // ...never onto a core that does not exist or outside a mask of eight.
            let beyond = sys::env_set_affinity(EnvId::SELF, 0x10) == Err(Error::Denied);
            let raw = sys::raw(exo_libos::abi::Sys::EnvSetAffinity as u64, [0, 0x1ff, 0, 0, 0, 0]);
            let wide = exo_libos::abi::result(raw) == Err(Error::Invalid);
            let empty = sys::env_set_affinity(EnvId::SELF, 0) == Err(Error::Invalid);
            let parent = vm::env_info(vm::me()).map_or(EnvId(0), |e| EnvId(e.parent));
            let not_parent = sys::env_set_affinity(parent, 1) == Err(Error::Denied);
            s[0].store(1 + (within && beyond && wide && empty && not_parent) as u64, SeqCst);
            sys::exit(0)
        }
        Fork::Parent(c) => c,
    };
    let pinned = sys::env_set_affinity(child, 0b10);
    s[1].store(1, SeqCst);
    let done = wait_for(PATIENCE_MS, || s[0].load(SeqCst) != 0);
    let _ = process::wait(child);
    check(pinned.is_ok(), "a parent could not pin its child")?;
    check(done, "the child did not report")?;
    check(s[0].load(SeqCst) == 2, "an affinity outside the rules was accepted")
}

/// `EnvSetAffinity` returns straight to its caller (no scheduler pass), so an environment
/// that takes away its own core is moved by a signal to that core, not left running there
/// until the core's tick: this one, on core 1, moves itself to core 2 and, making no
/// system call, watches the core the kernel says it is on change before core 1 ticks.
fn leave_own_core() -> Result<(), &'static str> {
    let me = vm::me();
    sys::env_set_affinity(EnvId::SELF, 0b10).map_err(|_| "to core 1")?;
    check(wait_for(PATIENCE_MS, || runs_on(me, 1)), "never ran on core 1")?;
    let tick = core_ticks(1).0;
    sys::env_set_affinity(EnvId::SELF, 0b100).map_err(|_| "to core 2")?;
    let end = sys::now() + PATIENCE_MS * vm::kinfo().counter_hz / 1000;
    while !runs_on(me, 2) && sys::now() < end {
        core::hint::spin_loop();
    }
    let ticked = core_ticks(1).0 != tick;
    check(runs_on(me, 2), "it never left core 1")?;
    check(!ticked, "it left core 1 only at that core's tick")
}

fn core_figures() -> Result<(), &'static str> {
    let s = shared();
    // Core 3 runs a spinner, this test runs on core 0, cores 1 and 2 have nothing to run.
    let kid = spinner(s, 0, 3)?;
    sys::env_set_affinity(EnvId::SELF, 1).map_err(|_| "self to core 0")?;
    let placed = wait_for(PATIENCE_MS, || runs_on(kid, 3) && s[0].load(SeqCst) > 0);
    let before: [(u64, u64); 4] = core::array::from_fn(core_ticks);
    let ticked = wait_for(PATIENCE_MS, || (0..4).all(|c| core_ticks(c).0 >= before[c].0 + 10));
    let after: [(u64, u64); 4] = core::array::from_fn(core_ticks);
    let _ = sys::env_destroy(kid);
    let delta = |c: usize| (after[c].0 - before[c].0, after[c].1 - before[c].1);
    let sane = (0..4).all(|c| after[c].1 <= after[c].0 && after[c].0 >= before[c].0);
    check(placed, "the spinner did not run on core 3")?;
    check(ticked, "not every core's tick count grew by 10")?;
    check(sane, "a core has more busy ticks than ticks, or its count went back")?;
    // The spinner's core was busy at (nearly) every tick; the idle cores at (nearly) none.
    let (t3, b3) = delta(3);
    check(b3 + 1 >= t3, "core 3 ran a spinner but its ticks did not count as busy")?;
    check((1..3).all(|c| delta(c).1 * 2 < delta(c).0), "an idle core's ticks counted as busy")
}

/// Lines each core writes in `console_from_four_cores`.
pub const CONSOLE_LINES: u64 = 20;

fn console_from_four_cores() -> Result<(), &'static str> {
    let s = shared();
    let mut kids = [EnvId(0); 4];
    for (core, kid) in kids.iter_mut().enumerate() {
        *kid = match process::fork().map_err(|_| "fork")? {
            Fork::Child => {
                while s[8].load(SeqCst) == 0 {
                    core::hint::spin_loop();
                }
                // One `ConsoleWrite` of 64 bytes per line: "console-mix c=N " and 47 N's.
                let mut line = [b'0' + core as u8; 64];
                line[..16].copy_from_slice(b"console-mix c=0 ");
                (line[14], line[63]) = (b'0' + core as u8, b'\n');
                let call = exo_libos::abi::Sys::ConsoleWrite as u64;
                let ok =
                    (0..CONSOLE_LINES).all(|_| sys::raw(call, [line.as_ptr() as u64, 64, 0, 0, 0, 0]) == 64);
                s[core].store(1 + ok as u64, SeqCst);
                sys::exit(0)
            }
            Fork::Parent(c) => c,
        };
        sys::env_set_affinity(*kid, 1 << core).map_err(|_| "set affinity")?;
    }
    s[8].store(1, SeqCst);
    let done = wait_for(PATIENCE_MS, || (0..4).all(|c| s[c].load(SeqCst) != 0));
    for kid in kids {
        let _ = process::wait(kid);
    }
    check(done, "not every writer finished")?;
    // The host side (xtask's smp test) checks that every line came out whole.
    check((0..4).all(|c| s[c].load(SeqCst) == 2), "a ConsoleWrite of 64 bytes did not take all 64")
}
