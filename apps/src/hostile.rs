//! Hostile EL0 tests: each is one of the attacks in the isolation review (issue 13), tried
//! the way an ordinary program would try it, and passes only if the kernel refuses it.
//! They run in the core suite (`exo.test=core`), after `ktest`'s own tests; those that
//! need a disk run in the disk suite (`exo.test=disk`).

use core::sync::atomic::{AtomicU64, Ordering::SeqCst};

use crate::ipctest::server;
use crate::runner::{check, run_suite, wait_for};
use exo_libos::abi::pte::{attr, bits, Pte};
use exo_libos::abi::{
    upcall, EnvId, Error, Sys, TableOp, PCT_GRANT_RW, PCT_NONBLOCK, PCT_TIMEOUT_SHIFT, SECTOR_READ,
    SECTOR_WRITE,
};
use exo_libos::ipc::Call;
use exo_libos::process::{self, Fork};
use exo_libos::upcall::{set_hook, Upcall};
use exo_libos::vm::{self, PAGE, RO, RW, SHARED};
use exo_libos::{println, sys};

type Test = (&'static str, fn() -> Result<(), &'static str>);

pub const TESTS: &[Test] = &[
    ("child_cannot_map_its_parents_frames_or_code_writable", parents_frames),
    ("child_cannot_escape_its_quota_by_giving_frames_to_its_parent", give_to_parent),
    ("frame_written_since_its_allocation_is_zeroed_when_it_becomes_a_table", written_frame_as_table),
    ("non_cacheable_view_of_a_frame_reads_its_zeros_and_none_reaches_past_ram", non_cacheable_views),
    ("frame_copy_reads_only_the_callers_own_data_frames", frame_copy_rights),
    ("resume_with_a_mapping_checks_it_as_table_set_at_does", resume_mapping_checks),
    ("call_right_to_a_gone_environment_does_not_reach_the_next_in_its_slot", stale_right),
    ("call_right_taken_back_is_gone_from_everyone_it_was_passed_down_to", right_revocation_reaches_down),
    ("stale_grant_cannot_unmap_a_page_the_server_now_owns", stale_grant),
    ("grant_renewed_read_only_leaves_the_server_no_writable_mapping", grant_narrowed),
    ("timed_out_caller_cannot_pull_the_buffer_from_a_working_server", ungrant_during_call),
    (
        "timed_out_caller_cannot_pull_the_buffer_from_a_server_in_its_handler_mid_call",
        ungrant_during_call_upcall,
    ),
    ("mapping_a_public_page_66000_times_locks_no_one_out", map_count_flood),
    ("child_cannot_take_every_environment_slot", slot_hog),
    ("one_caller_cannot_keep_a_servers_grant_slots_from_another", grant_slot_hog),
    ("one_program_cannot_fill_a_servers_grant_slots_through_its_children", grant_slot_family_hog),
    ("memory_hog_is_made_to_give_back_not_its_victims", hog_loses),
    (
        "droppable_mark_cannot_make_the_kernel_take_another_environments_frame",
        crate::pressure::mark_cannot_give_away_others_frames,
    ),
    ("taking_and_freeing_in_turn_is_not_giving_frames_back", crate::pressure::churn_is_not_giving_back),
    ("ungrant_leaves_no_kernel_values_in_the_callers_registers", ungrant_registers),
    ("sibling_cannot_read_the_console_it_was_not_given", console_stealing),
    ("console_holder_cannot_hand_it_up_or_sideways", console_passes_only_down),
    (
        "child_never_allowed_the_console_can_neither_write_nor_allow_itself_or_its_own",
        console_output_never_given,
    ),
    ("console_output_taken_back_is_gone_from_everyone_below", console_output_taken_back),
    ("child_cannot_map_the_framebuffer_it_was_not_given", framebuffer_stealing),
    ("child_cannot_move_onto_a_core_its_parent_left_out", core_escape),
    ("forked_child_does_not_inherit_the_framebuffer_mapping", crate::fbtest::fork_leaves_the_framebuffer_out),
    (
        "oracle_refuses_device_frames_to_all_but_their_owner",
        crate::fbtest::oracle_holds_device_frames_to_their_owner,
    ),
    ("program_cannot_map_a_pipe_it_was_not_given", pipe_stealing),
    (
        "dying_child_leaves_no_frame_behind_and_takes_none_of_its_parents",
        crate::teardown::child_leaves_no_frame_behind_and_takes_none_of_its_parents,
    ),
    (
        "shared_text_table_is_frozen_for_parent_and_child",
        crate::sharing::text_table_is_frozen_for_parent_and_child,
    ),
    (
        "only_the_owner_shares_a_table_and_only_its_own_read_only_pages",
        crate::sharing::only_the_owner_shares_a_table_and_only_its_own_read_only_pages,
    ),
    (
        "a_child_that_uses_up_the_text_tables_links_cannot_stop_its_parent_forking",
        crate::sharing::a_child_that_uses_up_the_text_tables_links_cannot_stop_its_parent_forking,
    ),
    ("yield_to_cannot_pull_a_partner_onto_a_core_it_may_not_use", yield_off_core),
    ("call_switched_to_directly_still_needs_the_right_and_the_servers_core", direct_call_checks),
    ("direct_call_fails_its_caller_when_the_server_is_destroyed_mid_call", direct_call_destroyed),
    ("direct_call_and_reply_show_no_register_of_the_other_side", crate::regtest::call_registers),
    ("direct_yield_shows_no_register_of_the_other_side", crate::regtest::yield_registers),
    ("thread_pointer_register_shows_nothing_of_another_environment", crate::regtest::thread_pointer),
    ("yield_switched_to_directly_refuses_what_the_general_path_refuses", direct_yield_checks),
    ("call_switched_to_directly_refuses_what_the_general_path_refuses", direct_call_refusals),
    (
        "revocation_pending_for_a_parked_server_runs_before_a_direct_call_reaches_it",
        crate::pending::call_after_pending_upcall,
    ),
    (
        "revocation_pending_for_a_waiting_caller_runs_before_a_direct_reply_reaches_it",
        crate::pending::reply_after_pending_upcall,
    ),
    (
        "revocation_pending_for_a_runnable_environment_runs_before_a_direct_yield_reaches_it",
        crate::pending::yield_after_pending_upcall,
    ),
    (
        "revocation_asked_during_a_handler_runs_before_a_resume_with_an_entry_goes_on",
        crate::pending::resume_after_pending_upcall,
    ),
    ("late_reply_does_not_wake_a_timed_out_caller_blocked_elsewhere", late_reply),
    ("yield_to_cannot_run_an_environment_already_running_on_another_core", yield_no_double_run),
    (
        "table_set_at_takes_only_a_linked_level_3_table_of_the_space_named",
        crate::tableat::names_only_linked_level_3_tables_of_the_space,
    ),
    (
        "table_set_at_cannot_reach_a_table_torn_down_on_another_core",
        crate::tableat::cannot_reach_a_table_torn_down_on_another_core,
    ),
    (
        "teardown_leaves_no_mapping_count_on_a_table_it_freed_that_was_also_mapped_as_a_page",
        table_mapped_as_page_teardown,
    ),
    ("child_cannot_use_up_the_mapping_count_of_a_frame_its_parent_shares", shared_map_count_flood),
    ("data_and_table_frames_of_a_dead_child_read_as_zeros_when_taken_by_address", dead_childs_frames_zeroed),
    ("public_kernel_pages_cannot_be_mapped_non_cacheable", public_pages_cacheable_only),
    ("batch_cut_short_by_an_unreadable_op_reports_the_entries_it_changed", batch_cut_short),
    ("memory_hog_split_among_children_is_made_to_give_back_not_its_victims", split_hog_loses),
    ("memory_hoarded_in_frames_mapped_twice_is_still_repossessed", twice_mapped_hoard),
    ("memory_hoarded_as_page_tables_is_still_repossessed", table_hoard),
    ("a_frame_granted_to_a_server_mid_call_is_spared_when_its_owner_is_repossessed", granted_frame_spared),
    ("a_stale_grant_slot_spares_no_frame_from_repossession", stale_grant_not_spared),
    ("a_program_asked_for_frames_that_exits_keeps_its_exit_status_past_the_deadline", asked_then_exited),
];

/// Attacks the kernel does not refuse yet: each fails until its hole is closed, so they run
/// only when asked for (`exo.test=holes`), never in the suites `cargo xtask test` boots.
/// docs/apps.md says why each is still open. (None today.)
pub const OPEN: &[Test] = &[];

pub fn run_open(filter: &str) -> usize {
    run_suite("open holes", OPEN, filter, |test| test())
}

pub fn run(filter: &str) -> usize {
    run_suite("hostile", TESTS, filter, |test| test())
}

/// Forks a child that runs `f`; returns its exit status.
fn in_child(f: impl FnOnce() -> i32) -> Result<i32, &'static str> {
    match process::fork().map_err(|_| "fork")? {
        Fork::Child => sys::exit(f()),
        Fork::Parent(c) => process::wait(c).map_err(|_| "wait"),
    }
}

static COW_WORD: AtomicU64 = AtomicU64::new(7);

/// Hole 1: the old family rule let a child map any frame of an ancestor, writable.
fn parents_frames() -> Result<(), &'static str> {
    COW_WORD.store(7, SeqCst);
    let private = sys::frame_alloc(EnvId::SELF, None).map_err(|_| "alloc")?;
    let status = in_child(|| {
        let va = vm::alloc_va(1);
        let cow = vm::entry(&COW_WORD as *const _ as u64 & !0xfff);
        let code = vm::entry(parents_frames as *const () as u64 & !0xfff);
        let tries = [
            vm::map_frame(va, private, RW), // never shared at all
            vm::map_frame(va, private, RO),
            vm::map_frame(va, Pte(cow).addr(), RW), // shared read-only by fork
            vm::map_frame(va, Pte(code).addr(), RW), // the parent's code
        ];
        let refused = tries.iter().filter(|r| **r == Err(Error::Denied)).count() as i32;
        // Read-only sharing still works: that is how copy-on-write reaches the child.
        let read = vm::map_frame(va, Pte(cow).addr(), RO).is_ok() as i32;
        refused + 10 * read
    });
    let _ = sys::frame_free(EnvId::SELF, private); // unless `wait`'s reclaim freed it
    check(COW_WORD.load(SeqCst) == 7, "the child changed the parent's copy")?;
    check(status? % 10 == 4, "the child mapped a frame of its parent it was never given")?;
    check(status? / 10 == 1, "a page shared read-only by fork was not mappable read-only")
}

/// Hole 2: memory given up the tree escaped the child's quota.
fn give_to_parent() -> Result<(), &'static str> {
    let status = in_child(|| {
        let parent = vm::env_info(vm::me()).map_or(0, |i| i.parent);
        let Ok(pa) = sys::frame_alloc(EnvId::SELF, None) else { return 1 };
        let r = sys::frame_give(pa, EnvId(parent));
        if r.is_ok() {
            return 2;
        }
        (r == Err(Error::Denied)) as i32 * 10
    })?;
    check(status != 2, "a child gave a frame to its parent")?;
    check(status == 10, "giving to the parent failed, but not with Denied")
}

/// A page the server and this test both write, and a window the server maps into.
static SHARED_VA: AtomicU64 = AtomicU64::new(0);

fn words() -> &'static [AtomicU64; 512] {
    if SHARED_VA.load(SeqCst) == 0 {
        let va = vm::alloc_va(1);
        let pa = sys::frame_alloc(EnvId::SELF, None).expect("shared frame");
        vm::map(va, Pte::user_page(pa, RW).0 | SHARED).expect("map shared");
        SHARED_VA.store(va, SeqCst);
    }
    // SAFETY: SHARED_VA maps a page shared read-write with every forked child.
    unsafe { &*(SHARED_VA.load(SeqCst) as *const [AtomicU64; 512]) }
}

const MARK: u64 = 0x600d_f00d;

/// The server of the grant attacks. `args[0]`: 1 maps the granted frame, reads it,
/// unmaps it; 2 takes frame `args[1]` for itself and maps it at `args[2]`, marked; 3 reads
/// the mark back; 4 maps the grant writable, waits for word 1, writes through it.
fn grant_server(c: &Call) -> [u64; 4] {
    let w = words();
    match c.args[0] {
        1 => {
            let va = c.args[2];
            let ok = vm::map_frame(va, c.frame, RO).is_ok() && vm::unmap(va).is_ok();
            [ok as u64, 0, 0, 0]
        }
        2 => {
            let (pa, va) = (c.args[1], c.args[2]);
            let ok = sys::frame_alloc(EnvId::SELF, Some(pa)).is_ok() && vm::map_frame(va, pa, RW).is_ok();
            if ok {
                // SAFETY: just mapped read-write.
                unsafe { (va as *mut u64).write_volatile(MARK) };
            }
            [ok as u64, 0, 0, 0]
        }
        // SAFETY: mapped by call 2; if the mapping was taken away this faults and the call
        // fails, which is what the test looks for.
        3 => [unsafe { (c.args[2] as *const u64).read_volatile() }, 0, 0, 0],
        4 => {
            let va = c.args[2];
            if vm::map_frame(va, c.frame, RW).is_err() {
                return [0, 0, 0, 0];
            }
            w[0].store(1, SeqCst);
            while w[1].load(SeqCst) == 0 {
                sys::yield_now();
            }
            // SAFETY: mapped read-write above; the kernel must keep it so until we reply.
            unsafe { (va as *mut u64).write_volatile(MARK) };
            let _ = vm::unmap(va);
            w[2].store(1, SeqCst);
            [1, 0, 0, 0]
        }
        5 => {
            let va = c.args[2];
            if vm::map_frame(va, c.frame, RW).is_err() {
                return [0, 0, 0, 0];
            }
            BAIT.store(c.args[3], SeqCst);
            set_hook(Some(bait_hook));
            w[0].store(1, SeqCst);
            // SAFETY: the bait page is unmapped: this faults, and `bait_hook` maps it.
            let _ = unsafe { (c.args[3] as *const u64).read_volatile() };
            set_hook(None);
            // SAFETY: mapped read-write above; the kernel must keep it so until we reply.
            unsafe { (va as *mut u64).write_volatile(MARK) };
            let _ = vm::unmap(va);
            w[2].store(1, SeqCst);
            [1, 0, 0, 0]
        }
        6 => [vm::map_frame(c.args[2], c.frame, RW).is_ok() as u64, 0, 0, 0],
        7 => {
            let pte = sys::table_get(EnvId::SELF, c.args[2], 3).unwrap_or(0);
            let writable = pte & bits::VALID != 0 && pte & bits::AP_RO == 0;
            if writable {
                // SAFETY: mapped read-write by call 6, and still so (its entry says).
                unsafe { (c.args[2] as *mut u64).write_volatile(MARK) };
            }
            [writable as u64, 0, 0, 0]
        }
        _ => [0; 4],
    }
}

/// A caller grants a frame read-write (the server maps it so and keeps the mapping), then
/// grants it again read-only, which renews the grant in place: the server must not be left
/// a writable mapping of a frame now granted to it read-only.
fn grant_narrowed() -> Result<(), &'static str> {
    words().iter().for_each(|w| w.store(0, SeqCst));
    let (window, mine) = (vm::alloc_va(1), vm::alloc_va(1));
    let s = server(grant_server)?;
    let pa = sys::frame_alloc(EnvId::SELF, None).map_err(|_| "alloc")?;
    let wide = sys::pct_call(s, [6, 0, window, 0], pa | PCT_GRANT_RW);
    let narrow = sys::pct_call(s, [7, 0, window, 0], pa);
    let seen = vm::map_frame(mine, pa, RO).map(|_| {
        // SAFETY: just mapped read-only.
        unsafe { (mine as *const u64).read_volatile() }
    });
    let _ = vm::unmap(mine);
    let _ = sys::env_destroy(s);
    let _ = sys::frame_free(EnvId::SELF, pa);
    check(wide == Ok([1, 0, 0, 0]), "the server could not map the read-write grant")?;
    check(narrow.is_ok() && seen.is_ok(), "the read-only call or the read back failed")?;
    check(seen != Ok(MARK), "the server wrote through a grant renewed read-only")
}

/// Hole 6: a grant outlived its frame changing hands, and its old granter could then tear
/// the frame's new owner's mapping away.
fn stale_grant() -> Result<(), &'static str> {
    words().iter().for_each(|w| w.store(0, SeqCst));
    let window = vm::alloc_va(1); // the same address in the server, which forks from us
    let s = server(grant_server)?;
    let pa = sys::frame_alloc(EnvId::SELF, None).map_err(|_| "alloc")?;
    let used = sys::pct_call(s, [1, 0, window, 0], pa);
    let freed = sys::frame_free(EnvId::SELF, pa);
    let taken = sys::pct_call(s, [2, pa, window, 0], 0);
    let ungrant = sys::pct_ungrant(s, pa);
    let mark = sys::pct_call(s, [3, 0, window, 0], 0);
    let _ = sys::env_destroy(s);
    check(used == Ok([1, 0, 0, 0]), "the server could not use the granted frame")?;
    check(freed.is_ok() && taken == Ok([1, 0, 0, 0]), "the server could not take the freed frame")?;
    check(ungrant == Err(Error::NotFound), "a grant survived its frame changing hands")?;
    check(mark == Ok([MARK, 0, 0, 0]), "the server lost its own page")
}

/// Hole 6, variant: a caller whose call timed out took the buffer back mid-call.
fn ungrant_during_call() -> Result<(), &'static str> {
    let w = words();
    w.iter().for_each(|w| w.store(0, SeqCst));
    let window = vm::alloc_va(1);
    let s = server(grant_server)?;
    let pa = sys::frame_alloc(EnvId::SELF, None).map_err(|_| "alloc")?;
    let opts = pa | PCT_GRANT_RW | (5 << PCT_TIMEOUT_SHIFT);
    let call = sys::pct_call(s, [4, 0, window, 0], opts);
    let mapped = w[0].load(SeqCst) == 1;
    let during = sys::pct_ungrant(s, pa);
    w[1].store(1, SeqCst);
    let finished = wait_for(2000, || w[2].load(SeqCst) == 1);
    let alive = vm::env_info(s).is_some_and(|i| i.id == s.0 && i.state != exo_libos::abi::env_state::ZOMBIE);
    let after = sys::pct_ungrant(s, pa);
    let _ = sys::env_destroy(s);
    let freed = sys::frame_free(EnvId::SELF, pa);
    if call != Err(Error::Timeout) || !mapped {
        println!("  call {call:?}, mapped {mapped}");
        return Err("the call did not time out with the buffer mapped");
    }
    check(during == Err(Error::Busy), "the grant was taken back while the server used it")?;
    check(finished && alive, "the server did not survive to finish its call")?;
    check(after.is_ok() && freed.is_ok(), "the grant did not end once the call was over")
}

static BAIT: AtomicU64 = AtomicU64::new(0);

/// The grant server's hook in call 5: at the fault on the bait page it says so (word 3),
/// then stays in its upcall handler, in the middle of the call, until word 1 is set, and
/// resumes with a fresh frame mapped there.
fn bait_hook(u: &Upcall) -> bool {
    let (w, va) = (words(), BAIT.load(SeqCst));
    if u.kind != upcall::DATA_ABORT || u.far & !(PAGE - 1) != va {
        return false;
    }
    w[3].store(1, SeqCst);
    while w[1].load(SeqCst) == 0 {
        sys::yield_now();
    }
    let Ok(pa) = sys::frame_alloc(EnvId::SELF, None) else { return false };
    vm::map_and_resume(va, Pte::user_page(pa, RW).0);
    false
}

/// Hole 6, variant: the server, mid-call, is in its upcall handler (a page fault it takes
/// while working on the call) when the timed-out caller asks for its buffer back. The call
/// is no less under way: the grant must stay until the reply.
fn ungrant_during_call_upcall() -> Result<(), &'static str> {
    let w = words();
    w.iter().for_each(|w| w.store(0, SeqCst));
    let (window, bait) = (vm::alloc_va(1), vm::alloc_va(1));
    let s = server(grant_server)?;
    let pa = sys::frame_alloc(EnvId::SELF, None).map_err(|_| "alloc")?;
    let opts = pa | PCT_GRANT_RW | (5 << PCT_TIMEOUT_SHIFT);
    let call = sys::pct_call(s, [5, 0, window, bait], opts);
    let in_handler = wait_for(2000, || w[3].load(SeqCst) == 1);
    let during = sys::pct_ungrant(s, pa);
    w[1].store(1, SeqCst);
    let finished = wait_for(2000, || w[2].load(SeqCst) == 1);
    let alive = vm::env_info(s).is_some_and(|i| i.id == s.0 && i.state != exo_libos::abi::env_state::ZOMBIE);
    let after = sys::pct_ungrant(s, pa);
    let _ = sys::env_destroy(s);
    let freed = sys::frame_free(EnvId::SELF, pa);
    if call != Err(Error::Timeout) || w[0].load(SeqCst) != 1 || !in_handler {
        println!("  call {call:?}, in its handler {in_handler}");
        return Err("the call did not time out with the server in its handler");
    }
    check(during == Err(Error::Busy), "the grant was taken back while the server's handler ran mid-call")?;
    check(finished && alive, "the server did not survive to finish its call")?;
    check(after.is_ok() && freed.is_ok(), "the grant did not end once the call was over")
}

/// Forks a child that maps frame `pa` read-only at 66,000 pages of fresh address space
/// (more than a 16-bit mapping count holds), 500 entries a `TableSetBatch`, leaves how
/// many took in word 1 and then only yields. Returns it, and whether it got that far
/// (word 0, which the caller has cleared).
fn flooder(pa: u64) -> Result<(EnvId, bool), &'static str> {
    let w = words();
    let child = match process::fork().map_err(|_| "fork")? {
        Fork::Child => {
            w[1].store(map_many_times(pa), SeqCst);
            w[0].store(1, SeqCst);
            loop {
                sys::yield_now();
            }
        }
        Fork::Parent(c) => c,
    };
    Ok((child, wait_for(2000, || w[0].load(SeqCst) == 1)))
}

fn map_many_times(pa: u64) -> u64 {
    const N: u64 = 66_000;
    let base = vm::alloc_va(N + 512) & !(0x20_0000 - 1);
    let mut ops = [TableOp::default(); 500];
    let mut mapped = 0;
    for chunk in 0..N.div_ceil(500) {
        let va = base + 0x20_0000 + chunk * 500 * PAGE;
        for (k, op) in ops.iter_mut().enumerate() {
            let v = va + k as u64 * PAGE;
            if k == 0 || v & 0x1f_ffff == 0 {
                let _ = vm::ensure_tables(EnvId::SELF, v);
            }
            *op = TableOp { va: v, level: 3, pte: Pte::user_page(pa, RO).0 };
        }
        mapped += sys::table_set_batch(EnvId::SELF, &ops).unwrap_or(0);
    }
    mapped
}

/// Hole 3: a public page mapped 65,535 times saturated its 16-bit count, and every other
/// environment's mapping of it (so fork and spawn) failed with `Busy`.
fn map_count_flood() -> Result<(), &'static str> {
    let w = words();
    w.iter().for_each(|w| w.store(0, SeqCst));
    let public = vm::kinfo().frame_table;
    let (child, done) = flooder(public)?;
    let va = vm::alloc_va(1);
    let mine = vm::map_frame(va, public, RO);
    let _ = vm::unmap(va);
    let fork_works = in_child(|| 5) == Ok(5);
    let _ = sys::env_destroy(child);
    check(done, "the flooding child did not finish")?;
    check(w[1].load(SeqCst) >= 65_536, "the flood was refused before the old limit")?;
    check(mine.is_ok(), "after the flood, mapping the public page failed")?;
    check(fork_works, "after the flood, fork failed")
}

/// Hole 4: environment slots cost nothing, so one program took all of them.
fn slot_hog() -> Result<(), &'static str> {
    let w = words();
    w.iter().for_each(|w| w.store(0, SeqCst));
    let child = match process::fork().map_err(|_| "fork")? {
        Fork::Child => {
            let mut n = 0;
            while sys::env_create(0).is_ok() {
                n += 1;
            }
            w[1].store(n, SeqCst);
            w[0].store(1, SeqCst);
            loop {
                sys::yield_now();
            }
        }
        Fork::Parent(c) => c,
    };
    let done = wait_for(2000, || w[0].load(SeqCst) == 1);
    let mine = sys::env_create(0);
    if let Ok(e) = mine {
        let _ = sys::env_destroy(e);
    }
    let fork_works = in_child(|| 5) == Ok(5);
    let _ = sys::env_destroy(child);
    check(done, "the slot-hogging child did not finish")?;
    check(w[1].load(SeqCst) > 0, "the child could not create any environment")?;
    check(mine.is_ok() && fork_works, "one child took every environment slot")
}

/// Hole 5: eight calls with distinct frames filled a server's grant table for everyone.
/// Now every call's grant gets a slot (the oldest grant ends when all are taken), so the
/// hog's eight calls all go through, and so does another caller's.
fn grant_slot_hog() -> Result<(), &'static str> {
    words().iter().for_each(|w| w.store(0, SeqCst));
    let s = server(grant_server)?;
    let mut frames = [0u64; exo_libos::abi::PCT_GRANTS];
    let mut accepted = 0;
    for f in frames.iter_mut() {
        *f = sys::frame_alloc(EnvId::SELF, None).map_err(|_| "alloc")?;
        accepted += sys::pct_call(s, [0; 4], *f).is_ok() as usize;
    }
    let other = match process::fork().map_err(|_| "fork")? {
        Fork::Child => {
            let Ok(pa) = sys::frame_alloc(EnvId::SELF, None) else { sys::exit(2) };
            while sys::pct_call(s, [0; 4], 0) == Err(Error::Denied) {
                sys::yield_now(); // until the right arrives
            }
            sys::exit(sys::pct_call(s, [0; 4], pa).is_ok() as i32)
        }
        Fork::Parent(c) => c,
    };
    sys::pct_allow(other, s).map_err(|_| "allow")?;
    let served = process::wait(other);
    let _ = sys::env_destroy(s);
    for f in frames {
        let _ = sys::frame_free(EnvId::SELF, f);
    }
    check(accepted == frames.len(), "a call with a grant was refused")?;
    check(served == Ok(1), "another caller's grant was refused")
}

/// A program that may call a server passes its right down to three children it forks (a
/// right may be passed down), and each of the four takes its quarter of the server's
/// grant slots and keeps it (a grant outlives its call). A caller outside that family must
/// still be able to grant the server a frame: no one program may keep the table full.
fn grant_slot_family_hog() -> Result<(), &'static str> {
    let w = words();
    w.iter().for_each(|w| w.store(0, SeqCst));
    let s = server(grant_server)?;
    let take_quarter = |i: usize| {
        while sys::pct_call(s, [0; 4], 0) == Err(Error::Denied) {
            sys::yield_now(); // until the right arrives
        }
        for _ in 0..exo_libos::abi::PCT_GRANTS / 4 {
            let Ok(pa) = sys::frame_alloc(EnvId::SELF, None) else { continue };
            w[20 + i].fetch_add(sys::pct_call(s, [0; 4], pa).is_ok() as u64, SeqCst);
        }
        w[30 + i].store(1, SeqCst);
        loop {
            sys::yield_now(); // alive, so that its grants stand
        }
    };
    let hog = match process::fork().map_err(|_| "fork")? {
        Fork::Child => {
            // Its own right first: passed down before it arrives, a child's would be refused
            // (the parent allows this one only once `fork` returns, maybe on another core).
            while sys::pct_call(s, [0; 4], 0) == Err(Error::Denied) {
                sys::yield_now();
            }
            for i in 1..4 {
                match process::fork() {
                    Ok(Fork::Child) => take_quarter(i),
                    Ok(Fork::Parent(c)) => {
                        let _ = sys::pct_allow(c, s);
                    }
                    Err(_) => {}
                }
            }
            take_quarter(0);
            sys::exit(0)
        }
        Fork::Parent(c) => c,
    };
    sys::pct_allow(hog, s).map_err(|_| "allow")?;
    let filled = wait_for(2000, || (30..34).all(|i| w[i].load(SeqCst) == 1));
    let taken: u64 = (20..24).map(|i| w[i].load(SeqCst)).sum();
    let pa = sys::frame_alloc(EnvId::SELF, None).map_err(|_| "alloc")?;
    let mine = sys::pct_call(s, [0; 4], pa);
    let _ = sys::env_destroy(hog);
    let _ = sys::env_destroy(s);
    let _ = sys::frame_free(EnvId::SELF, pa);
    check(filled, "the hog's family did not all get to call")?;
    println!("  the hog's family holds {taken} of {} grant slots", exo_libos::abi::PCT_GRANTS);
    check(mine.is_ok(), "one program's family filled every grant slot of the server")
}

/// A call right taken back goes from everyone it was passed down to, as a sector binding
/// revoked does: the test lets a child call a server, the child passes the right on to a
/// child of its own, and the test takes the child's right back. The grandchild, which the
/// right reached only through the child, must no longer reach the server.
fn right_revocation_reaches_down() -> Result<(), &'static str> {
    let w = words();
    w.iter().for_each(|w| w.store(0, SeqCst));
    let s = server(|c| c.args)?;
    let until_allowed = || {
        while sys::pct_call(s, [0; 4], 0) == Err(Error::Denied) {
            sys::yield_now();
        }
    };
    let child = match process::fork().map_err(|_| "fork")? {
        Fork::Child => {
            let Ok(Fork::Parent(grandchild)) = process::fork() else {
                until_allowed();
                w[42].store(1, SeqCst);
                while w[40].load(SeqCst) == 0 {
                    sys::yield_now();
                }
                sys::exit((sys::pct_call(s, [7; 4], 0) == Err(Error::Denied)) as i32)
            };
            until_allowed();
            let passed = sys::pct_allow(grandchild, s).is_ok();
            w[41].store(1 + passed as u64, SeqCst);
            sys::exit(process::wait(grandchild).unwrap_or(-1))
        }
        Fork::Parent(c) => c,
    };
    sys::pct_allow(child, s).map_err(|_| "allow")?;
    let passed = wait_for(2000, || w[41].load(SeqCst) == 2 && w[42].load(SeqCst) == 1);
    let taken = sys::pct_disallow(child, s);
    w[40].store(1, SeqCst);
    let status = process::wait(child);
    let _ = sys::env_destroy(s);
    check(passed && taken.is_ok(), "the right did not reach the grandchild, or could not be taken back")?;
    check(status == Ok(1), "a right taken back still let the one it was passed down to call")
}

/// Forks a victim that takes `frames` frames and then only yields, with the whole
/// environment table mapped first, while memory is free. Returns it, and whether it got
/// that far (word 0, which the caller has cleared).
fn victim_holding(frames: u64) -> Result<(EnvId, bool), &'static str> {
    let w = words();
    vm::env_info(EnvId(0)).zip(vm::env_info(EnvId(vm::kinfo().max_envs as u32 - 1))).ok_or("env info")?;
    let victim = match process::fork().map_err(|_| "fork")? {
        Fork::Child => {
            for _ in 0..frames {
                let _ = sys::frame_alloc(EnvId::SELF, None);
            }
            w[0].store(1, SeqCst);
            loop {
                sys::yield_now();
            }
        }
        Fork::Parent(c) => c,
    };
    Ok((victim, wait_for(2000, || w[0].load(SeqCst) == 1)))
}

/// Item 10: revocation asked the biggest holder *other than the asker*, so a hog that took
/// all memory and kept asking had the kernel repossess its victims' frames.
fn hog_loses() -> Result<(), &'static str> {
    let w = words();
    w.iter().for_each(|w| w.store(0, SeqCst));
    let (victim, ready) = victim_holding(64)?;
    let hog = match process::fork().map_err(|_| "fork")? {
        Fork::Child => loop {
            // No upcall handler of note: it ignores revocation requests and keeps taking.
            if sys::frame_alloc(EnvId::SELF, None).is_err() {
                w[1].fetch_add(1, SeqCst);
                sys::yield_now();
            }
        },
        Fork::Parent(c) => c,
    };
    // Filling 2 GiB (raspi4b) takes longer than one wait: the bound counts once it is full.
    let full = (0..8).any(|_| wait_for(2000, || w[1].load(SeqCst) > 0));
    let hog_lost = full
        && wait_for(2000, || vm::env_info(hog).is_some_and(|i| i.repossessed > 0) && w[1].load(SeqCst) > 50);
    let victim_lost = vm::env_info(victim).map_or(u64::MAX, |i| i.repossessed);
    let _ = sys::env_destroy(hog);
    let _ = sys::env_destroy(victim);
    check(ready, "the victim did not start")?;
    check(full, "the hog never ran memory out")?;
    check(victim_lost == 0, "the kernel repossessed the victim's frames for the hog")?;
    check(hog_lost, "the hog was never made to give frames back")
}

/// `hog_loses`, with the hog split: a program forks children that each take frames until
/// memory runs out, none of them holding as many as the victim. The program and its
/// children hold most of memory between them: they must be asked, not the victim.
fn split_hog_loses() -> Result<(), &'static str> {
    // An eighth of free memory: sixteen children each holding a little less run it out.
    let victim_frames = vm::kinfo().free_frames as u64 / 8;
    let w = words();
    w.iter().for_each(|w| w.store(0, SeqCst));
    let (victim, ready) = victim_holding(victim_frames)?;
    let hog = match process::fork().map_err(|_| "fork")? {
        Fork::Child => {
            for _ in 0..16 {
                if let Ok(Fork::Child) = process::fork() {
                    let mut held = 0;
                    loop {
                        // Never as many as the victim; no handler of note, as in `hog_loses`.
                        if held + 256 < victim_frames && sys::frame_alloc(EnvId::SELF, None).is_ok() {
                            held += 1;
                        } else {
                            w[1].fetch_add(1, SeqCst);
                            sys::yield_now();
                        }
                    }
                }
            }
            loop {
                sys::yield_now();
            }
        }
        Fork::Parent(c) => c,
    };
    let victim_lost = || vm::env_info(victim).map_or(u64::MAX, |i| i.repossessed);
    let hogs_lost = || {
        (0..vm::kinfo().max_envs as u32)
            .filter_map(|s| vm::env_info(EnvId(s)))
            .filter(|i| i.parent == hog.0)
            .map(|i| i.repossessed)
            .sum::<u64>()
    };
    let anyone_lost = || hogs_lost() > 0 || victim_lost() > 0;
    let settled = (0..16).any(|_| wait_for(2000, anyone_lost)); // (2 GiB take a while to run out)
    let lost = victim_lost();
    println!("  repossessed: {lost} of the victim's frames, {} of the hogs'", hogs_lost());
    let _ = sys::env_destroy(hog);
    let _ = sys::env_destroy(victim);
    check(ready, "the victim did not start")?;
    check(settled, "memory never ran out, or no one was made to give frames back")?;
    check(lost == 0, "the kernel repossessed the victim's frames for a hog split among children")
}

/// A blank child (no handler: it can never answer) is given all of memory by its parent,
/// each frame kept as `keep(child, i)` says (false: memory ran out); it holds the most, so
/// it is asked, and at the deadline the kernel must take frames by force. Passes if the
/// parent then gets a frame.
fn hoard(mut keep: impl FnMut(EnvId, u64) -> bool) -> Result<(), &'static str> {
    let child = sys::env_create(0).map_err(|_| "create")?;
    let root = sys::frame_alloc(child, None).map_err(|_| "alloc")?;
    sys::table_bind(child, root, 0).map_err(|_| "bind the child's root")?;
    let mut i = 0;
    while keep(child, i) {
        i += 1;
    }
    // Memory is full: ask for a frame until one comes back (the deadline is 3 ticks).
    let got = (0..4).any(|_| {
        wait_for(2000, || {
            sys::frame_alloc(EnvId::SELF, None).is_ok_and(|pa| sys::frame_free(EnvId::SELF, pa).is_ok())
        })
    });
    let lost = vm::env_info(child).map_or(u64::MAX, |e| e.repossessed);
    let _ = sys::env_destroy(child);
    let _ = process::wait(child);
    println!("  the hoard kept {i} frames; {lost} repossessed");
    check(i > 1000, "the hoard never filled memory")?;
    check(got, "no frame ever came back from the hoard")
}

/// Frames mapped more than once were never taken: each of the child's frames mapped twice
/// in its own tables (two entries a frame, a level-3 table's 512 entries a batch; the
/// tables made before the frames, so that none is left unmapped when memory runs out).
fn twice_mapped_hoard() -> Result<(), &'static str> {
    let base = vm::alloc_va(1 << 21) & !0x1f_ffff;
    let (mut ops, mut n) = ([TableOp::default(); 512], 0);
    hoard(|child, i| {
        let va = base + 0x20_0000 + 2 * i * PAGE;
        let tables = va & 0x1f_ffff != 0 || vm::ensure_tables(child, va).is_ok();
        let pa = if tables { sys::frame_alloc(child, None).ok() } else { None };
        if let Some(pa) = pa {
            for v in [va, va + PAGE] {
                ops[n] = TableOp { va: v, level: 3, pte: Pte::user_page(pa, RW).0 };
                n += 1;
            }
        }
        if n == ops.len() || pa.is_none() {
            let all = sys::table_set_batch(child, &ops[..n]) == Ok(n as u64);
            n = 0;
            return pa.is_some() && all;
        }
        true
    })
}

/// A server in the middle of a call keeps the frame it was granted for it, even when the
/// caller misses a revocation deadline and loses frames by force: the kernel passes over
/// it to the caller's next frame (`repossess`'s third pass). The caller is a blank child
/// that owns nothing but its tables and nearly all of memory as frames its parent mapped
/// twice into them (so the third pass is the only one with anything to take), and runs
/// only `granted_call`, mapped from the parent's text: it grants the lowest of those
/// frames, which the third pass reaches first. The parent then runs memory out and waits
/// for the deadline, with the caller blocked in its call.
fn granted_frame_spared() -> Result<(), &'static str> {
    let w = words();
    w.iter().for_each(|w| w.store(0, SeqCst));
    // The server maps the granted frame and reads its first word into word 51 until told
    // to reply (word 50).
    fn hold(c: &Call) -> [u64; 4] {
        let w = words();
        let va = vm::alloc_va(1);
        if vm::map_frame(va, c.frame, RO).is_err() {
            return [1; 4];
        }
        // SAFETY: `va` maps the granted frame, readable, for as long as this call lasts.
        let read = || unsafe { core::ptr::read_volatile(va as *const u64) };
        let end = sys::now() + 20 * vm::kinfo().counter_hz;
        while w[50].load(SeqCst) == 0 && sys::now() < end {
            w[51].store(read(), SeqCst);
            sys::yield_now();
        }
        [0; 4]
    }
    let s = server(hold)?;
    let caller = sys::env_create(0).map_err(|_| "create")?;
    let root = sys::frame_alloc(caller, None).map_err(|_| "alloc")?;
    sys::table_bind(caller, root, 0).map_err(|_| "bind the caller's root")?;
    // The code it runs: the page of `granted_call`, at the same address (`.balign`: one page).
    let code = granted_call as *const () as u64;
    let (page, rx) = (code & !0xfff, exo_libos::abi::pte::Perm { write: false, exec: true });
    let pte = Pte::user_page(Pte(vm::entry(page)).addr(), rx).0;
    let text = vm::ensure_tables(caller, page).and_then(|_| sys::table_set(caller, page, 3, pte));
    text.map_err(|_| "map the caller's code")?;
    let (i, whole, low) = hoard_twice(caller);
    // It writes the frame's address into the frame (at sp: the frame's first mapping),
    // then calls the server granting it.
    let (g, g_va) = low[0];
    let started = sys::pct_allow(caller, s)
        .and_then(|_| sys::env_set_entry(caller, code, g_va, s.0 as u64, g))
        .and_then(|_| sys::env_start(caller));
    let granted = started.is_ok() && wait_for(2000, || w[51].load(SeqCst) == g);
    // The deadline passes with the caller blocked in its call, answering nothing.
    run_memory_out();
    let taken = || vm::env_info(caller).map_or(0, |e| e.repossessed);
    let repossessed = granted && (0..8).any(|_| wait_for(2000, || taken() > 0));
    let entry = |va| sys::table_get(caller, va, 3).map(|e| Pte(e).addr());
    let kept = [entry(g_va), entry(g_va + PAGE)] == [Ok(g); 2];
    let next_taken = entry(low[1].1) != Ok(low[1].0);
    let still_read = w[51].load(SeqCst) == g;
    w[50].store(1, SeqCst);
    let status = process::wait(caller);
    let _ = sys::env_destroy(s);
    println!("  the caller held {i} frames mapped twice; {} repossessed", taken());
    check(i > 1000 && whole, "the hoard never filled memory")?;
    check(granted, "the server never read the frame it was granted")?;
    check(repossessed, "the caller lost no frame at its deadline")?;
    check(
        next_taken,
        "repossession never reached the caller's frames mapped twice: the test proves nothing",
    )?;
    check(kept, "repossession took a frame the server was granted for the call it is serving")?;
    check(still_read, "the server lost the frame it was granted in the middle of its call")?;
    check(status == Ok(0), "the call did not complete once the server replied")
}

/// Fills memory with frames of `env`'s (not started), each mapped twice in its tables from
/// VA 0x40_0000_0000, so that only repossession's third pass can take them: how many, whether
/// every mapping went in, and the lowest two (address, first VA).
fn hoard_twice(env: EnvId) -> (u64, bool, [(u64, u64); 2]) {
    let base = 0x40_0000_0000;
    let (mut ops, mut n, mut low) = ([TableOp::default(); 512], 0, [(u64::MAX, 0u64); 2]);
    let (mut i, mut whole) = (0u64, true);
    while vm::kinfo().free_frames > 96 && whole {
        let va = base + 2 * i * PAGE;
        let tables = va & 0x1f_ffff != 0 || vm::ensure_tables(env, va).is_ok();
        let Some(pa) = tables.then(|| sys::frame_alloc(env, None).ok()).flatten() else { break };
        for v in [va, va + PAGE] {
            ops[n] = TableOp { va: v, level: 3, pte: Pte::user_page(pa, RW).0 };
            n += 1;
        }
        if pa < low[1].0 {
            low = if pa < low[0].0 { [(pa, va), low[0]] } else { [low[0], (pa, va)] };
        }
        if n == ops.len() {
            whole = sys::table_set_batch(env, &ops) == Ok(n as u64);
            n = 0;
        }
        i += 1;
    }
    whole &= n == 0 || sys::table_set_batch(env, &ops[..n]) == Ok(n as u64);
    (i, whole, low)
}

/// Memory runs out (the environment holding the most is asked to give frames back), then
/// comes back at once.
fn run_memory_out() {
    let mut mine = alloc::vec::Vec::with_capacity(256);
    while let Ok(pa) = sys::frame_alloc(EnvId::SELF, None) {
        mine.push(pa);
    }
    mine.iter().for_each(|&pa| {
        let _ = sys::frame_free(EnvId::SELF, pa);
    });
}

/// A grant slot that still names a frame which changed hands since spares it from nothing:
/// a frame this program granted a server, then gave to a child that maps it twice with a
/// hoard, is taken at the child's deadline like the rest (a stale slot would otherwise let
/// a family keep up to 8 frames per server out of repossession's reach).
fn stale_grant_not_spared() -> Result<(), &'static str> {
    fn nothing(_: &Call) -> [u64; 4] {
        [0; 4]
    }
    let s = server(nothing)?;
    // The lowest free frame, so that it comes first in repossession's third pass.
    let k = vm::kinfo();
    let lowest = (0..k.frames).find_map(|i| sys::frame_alloc(EnvId::SELF, Some(k.ram_base + i * PAGE)).ok());
    let f = lowest.ok_or("alloc")?;
    let granted = sys::pct_call(s, [0; 4], f).is_ok();
    let child = sys::env_create(0).map_err(|_| "create")?;
    let root = sys::frame_alloc(child, None).map_err(|_| "alloc")?;
    sys::table_bind(child, root, 0).map_err(|_| "bind the child's root")?;
    let given = sys::frame_give(f, child).is_ok();
    let f_va = 0x3f_0000_0000;
    let maps = vm::ensure_tables(child, f_va).is_ok()
        && [f_va, f_va + PAGE].iter().all(|&v| sys::table_set(child, v, 3, Pte::user_page(f, RW).0).is_ok());
    let (i, whole, low) = hoard_twice(child);
    run_memory_out();
    let taken = || vm::env_info(child).map_or(0, |e| e.repossessed);
    let repossessed = (0..8).any(|_| wait_for(2000, || taken() > 0));
    let entry = |va| sys::table_get(child, va, 3).map(|e| Pte(e).addr());
    let f_taken = [entry(f_va), entry(f_va + PAGE)] != [Ok(f); 2];
    let next_taken = entry(low[0].1) != Ok(low[0].0);
    println!("  the child held {} frames mapped twice; {} repossessed", i + 1, taken());
    let _ = sys::env_destroy(child);
    let _ = sys::env_destroy(s);
    check(granted && given && maps, "set-up: grant, give or map")?;
    check(i > 1000 && whole, "the hoard never filled memory")?;
    check(repossessed, "the child lost no frame at its deadline")?;
    check(f < low[0].0 && next_taken, "the given frame was not first in line: the test proves nothing")?;
    check(f_taken, "a grant slot of a frame that changed hands since spared it from repossession")
}

unsafe extern "C" {
    /// `granted_frame_spared`'s caller, from its entry registers: x0 the server, x1 a frame
    /// of its own, mapped at sp. Writes x1 into the frame, calls the server granting it
    /// (read-only), and exits with the call's status. No stack, no data: it owns nothing
    /// it could lose.
    fn granted_call();
}
core::arch::global_asm!(
    ".section .text.granted_call, \"ax\"",
    ".balign 64",
    ".global granted_call",
    "granted_call:",
    "mov x9, sp",
    "str x1, [x9]",
    "mov x5, x1",
    "mov x8, #{call}",
    "svc #0",
    "mov x8, #{exit}",
    "svc #0",
    "b .",
    call = const Sys::PctCall as u64,
    exit = const Sys::Exit as u64,
);

/// Tables were never taken: each of the child's frames bound as a level-3 table, linked
/// nowhere.
fn table_hoard() -> Result<(), &'static str> {
    hoard(|child, _| sys::frame_alloc(child, None).is_ok_and(|pa| sys::table_bind(child, pa, 3).is_ok()))
}

/// A program asked for frames back exits before its deadline: its parent, reaping it after
/// the deadline, reads the status it exited with. (A zombie still counted as owing frames
/// would be found at the deadline with nothing to take, and destroyed again.)
fn asked_then_exited() -> Result<(), &'static str> {
    let child = match process::fork().map_err(|_| "fork")? {
        Fork::Child => {
            fn ignore(u: &Upcall) -> bool {
                u.kind == upcall::REVOKE
            }
            set_hook(Some(ignore));
            // Memory runs out with this holding the most of it: the kernel asks it.
            while sys::frame_alloc(EnvId::SELF, None).is_ok() {}
            sys::exit(7)
        }
        Fork::Parent(c) => c,
    };
    use exo_libos::abi::env_state::ZOMBIE;
    let gone = (0..8).any(|_| wait_for(2000, || vm::env_info(child).is_some_and(|i| i.state == ZOMBIE)));
    let asked = vm::env_info(child).is_some_and(|i| i.revoke_deadline != 0);
    let end = sys::now() + vm::kinfo().counter_hz / 10; // 10 ticks: the deadline is 3
    while sys::now() < end {
        sys::yield_now();
    }
    let status = process::wait(child);
    check(gone && asked, "the child was not asked for frames before it exited")?;
    check(status == Ok(7), "the child's exit status was not the one it exited with")
}

/// Attacks on disk bindings; they need a disk, so they run in the disk suite.
pub const DISK_TESTS: &[Test] = &[
    ("revoking_a_binding_also_revokes_what_was_granted_onward", sector_revoke_reaches_down),
    ("flush_without_a_write_binding_is_denied", flush_needs_binding),
    ("a_binding_revoked_mid_stream_lets_no_write_land_after_the_revoke", revoke_mid_stream),
    ("destroying_a_reading_child_from_another_core_leaves_its_old_frames_alone", destroy_mid_stream),
    ("freeing_a_reading_childs_buffer_page_mid_stream_leaves_the_frame_alone", free_mid_stream),
    ("destroying_a_reader_blocked_on_its_transfer_leaves_its_old_frames_alone", destroy_while_waiting),
    ("a_reader_freeing_its_own_buffer_before_sector_wait_gets_a_clean_frame", free_before_wait),
];

pub fn run_disk(filter: &str) -> usize {
    run_suite("hostile-disk", DISK_TESTS, filter, |test| test())
}

/// Item 11: a child's sub-grant survived the revocation of the binding it came from.
fn sector_revoke_reaches_down() -> Result<(), &'static str> {
    let w = words();
    w.iter().for_each(|w| w.store(0, SeqCst));
    let child = match process::fork().map_err(|_| "fork")? {
        Fork::Child => {
            let grandchild = sys::env_create(0).map_or(0, |g| g.0 as u64);
            w[1].store(grandchild, SeqCst);
            w[0].store(1, SeqCst);
            loop {
                sys::yield_now();
            }
        }
        Fork::Parent(c) => c,
    };
    let ready = wait_for(2000, || w[0].load(SeqCst) == 1);
    let grandchild = EnvId(w[1].load(SeqCst) as u32);
    let (start, rw) = (10_000, SECTOR_READ | SECTOR_WRITE);
    let granted = sys::sector_grant(child, start, 64, rw).is_ok()
        && sys::sector_grant(grandchild, start + 8, 16, rw).is_ok();
    let revoked = sys::sector_revoke(child, start, 64);
    let left = vm::env_info(grandchild).map_or(1, |i| i.sectors.iter().filter(|b| b.count != 0).count());
    let _ = sys::env_destroy(child);
    check(ready && grandchild.0 != 0, "the child could not create a grandchild")?;
    check(granted && revoked.is_ok(), "granting or revoking failed")?;
    check(left == 0, "a sub-grant outlived the binding it was carved from")
}

/// Item 8 (the kernel's side): anyone could make the device flush.
fn flush_needs_binding() -> Result<(), &'static str> {
    let status = in_child(|| {
        let me = vm::me();
        let mine = vm::env_info(me).map_or(0, |i| i.sectors.iter().filter(|b| b.count != 0).count());
        (mine == 0 && sys::sector_flush() == Err(Error::Denied)) as i32
    })?;
    let own = sys::sector_flush();
    check(status == 1, "an environment without a write binding flushed the disk")?;
    check(own.is_ok(), "the disk's owner could not flush")
}

/// Item 14: `PctUngrant` runs on the fast path, which leaves x1-x18 as the kernel left them,
/// and it computes with the grantee's tables: every one of those registers must come back
/// zero, not a kernel value (the sentinel the caller put there is gone too).
fn ungrant_registers() -> Result<(), &'static str> {
    const S: u64 = 0x5a5a_5a5a_5a5a_5a5a;
    let mut r = [S; 18];
    let num = exo_libos::abi::Sys::PctUngrant as u64;
    // SAFETY: a system call; it may change only x0-x18 (declared here, x18 excepted, which
    // the compiler reserves and the kernel zeroes) and the memory of this environment's own
    // tables, which no Rust value aliases.
    unsafe {
        core::arch::asm!(
            "svc #0",
            inout("x0") EnvId::SELF.0 as u64 => r[0],
            inout("x1") 0x1000u64 => r[1],
            inout("x2") S => r[2], inout("x3") S => r[3], inout("x4") S => r[4],
            inout("x5") S => r[5], inout("x6") S => r[6], inout("x7") S => r[7],
            inout("x8") num => r[8], inout("x9") S => r[9], inout("x10") S => r[10],
            inout("x11") S => r[11], inout("x12") S => r[12], inout("x13") S => r[13],
            inout("x14") S => r[14], inout("x15") S => r[15], inout("x16") S => r[16],
            inout("x17") S => r[17],
        )
    };
    check((r[0] as i64) < 0, "ungranting a frame never granted succeeded")?;
    check(r[1..].iter().all(|&x| x == 0), "PctUngrant left values in x1-x17")
}

/// Item 14: any environment could `ConsoleRead` and steal keystrokes. The test runs in
/// init, which holds the console input.
fn console_stealing() -> Result<(), &'static str> {
    // A child without the console input: its read and its attempt to give it are refused.
    let status = in_child(|| {
        let read = sys::console_read(false) == Err(Error::Denied);
        let give = sys::console_give(EnvId::SELF) == Err(Error::Denied);
        read as i32 + 10 * give as i32
    })?;
    check(status % 10 == 1, "a child that was not given the console read it")?;
    check(status / 10 == 1, "a child that does not hold the console gave it to itself")?;
    // Given it, a child may read: nothing is waiting, so `WouldBlock` (or a byte).
    let child = match process::fork().map_err(|_| "fork")? {
        Fork::Child => sys::exit(poll_until_given()),
        Fork::Parent(c) => c,
    };
    let given = sys::console_give(child);
    let status = process::wait(child).map_err(|_| "wait")?;
    check(given.is_ok(), "the holder could not give the console to its child")?;
    check(status == 1, "the child given the console could not read it")?;
    check(readable(), "the console did not come back to the parent when its holder died")?;
    // Held by one child (a blank one), it is closed to that child's sibling and to the
    // parent, until the parent takes it back.
    let holder = sys::env_create(0).map_err(|_| "create")?;
    sys::console_give(holder).map_err(|_| "give to a blank child")?;
    let sibling = in_child(|| (sys::console_read(false) == Err(Error::Denied)) as i32);
    let parent_denied = sys::console_read(false) == Err(Error::Denied);
    let taken_back = sys::console_give(EnvId::SELF);
    let _ = sys::env_destroy(holder);
    check(sibling? == 1, "a sibling read the console given to another child")?;
    check(parent_denied, "the parent read the console it had given away")?;
    check(taken_back.is_ok() && readable(), "the parent could not take the console back")
}

/// The console input passes down only: a child given it cannot hand it up to its parent
/// or sideways to a sibling, and keeps it after trying.
fn console_passes_only_down() -> Result<(), &'static str> {
    let (me, sibling) = (vm::me(), sys::env_create(0).map_err(|_| "create")?);
    let child = match process::fork().map_err(|_| "fork")? {
        Fork::Child => {
            if poll_until_given() != 1 {
                sys::exit(0);
            }
            let up = sys::console_give(me) == Err(Error::Denied);
            let sideways = sys::console_give(sibling) == Err(Error::Denied);
            sys::exit(up as i32 | (sideways as i32) << 1 | (readable() as i32) << 2)
        }
        Fork::Parent(c) => c,
    };
    let given = sys::console_give(child);
    let status = process::wait(child).map_err(|_| "wait")?;
    let _ = sys::env_destroy(sibling);
    check(given.is_ok() && status != 0, "the child given the console never read it")?;
    check(status & 1 != 0, "the child handed the console up to its parent")?;
    check(status & 2 != 0, "the child handed the console sideways to a sibling")?;
    check(status & 4 != 0 && readable(), "the console did not stay with the child, then come back")
}

/// A `ConsoleWrite` of nothing: 0 if the caller may write to the console, else its error.
fn write_nothing() -> u64 {
    sys::raw(Sys::ConsoleWrite as u64, [0; 6])
}

/// Console output is a right like the others (`ConsoleAllow`). A child that gives it up
/// cannot take it back, and a child of its own, never allowed, can neither write nor
/// allow itself, its parent, or a blank child of its own.
fn console_output_never_given() -> Result<(), &'static str> {
    let status = in_child(|| {
        let gave_up =
            sys::console_allow(EnvId::SELF, false).is_ok() && write_nothing() == Error::Denied as u64;
        let regained = sys::console_allow(EnvId::SELF, true) != Err(Error::Denied);
        let me = vm::me();
        let never = in_child(|| {
            let blank = sys::env_create(0);
            let tries = [
                sys::console_write(b"an environment never allowed the console wrote this\n"),
                sys::console_allow(EnvId::SELF, true).map(|_| 0),
                sys::console_allow(me, true).map(|_| 0),
                blank.and_then(|b| sys::console_allow(b, true)).map(|_| 0),
            ];
            let _ = blank.map(sys::env_destroy);
            let refused = tries.iter().filter(|r| **r == Err(Error::Denied)).count() as i32;
            refused + 10 * (write_nothing() == Error::Denied as u64) as i32
        });
        gave_up as i32 + 2 * regained as i32 + 4 * never.unwrap_or(0)
    })?;
    check(status & 1 != 0, "a child could not give its console output up")?;
    check(status & 2 == 0, "a child that gave its console output up took it back")?;
    check(status / 4 == 14, "a child never allowed the console wrote to it, or allowed itself or another")?;
    check(write_nothing() == 0, "the parent lost its console output to its child's doing")
}

/// Taken back from a child, console output goes from the grandchild it passed it to as
/// well: each was writing, and neither writes once it is taken back.
fn console_output_taken_back() -> Result<(), &'static str> {
    let w = words();
    w.iter().for_each(|w| w.store(0, SeqCst));
    let quieted = || wait_for(2000, || w[40].load(SeqCst) == 1) && write_nothing() == Error::Denied as u64;
    let child = match process::fork().map_err(|_| "fork")? {
        Fork::Child => {
            let Ok(Fork::Parent(grandchild)) = process::fork() else {
                w[42].store((write_nothing() == 0) as u64 + 1, SeqCst);
                sys::exit(quieted() as i32)
            };
            w[41].store((write_nothing() == 0) as u64 + 1, SeqCst);
            let own = quieted() as i32;
            sys::exit(own + 2 * process::wait(grandchild).unwrap_or(-1))
        }
        Fork::Parent(c) => c,
    };
    let wrote = wait_for(2000, || w[41].load(SeqCst) == 2 && w[42].load(SeqCst) == 2);
    let taken = sys::console_allow(child, false);
    w[40].store(1, SeqCst);
    let status = process::wait(child);
    check(wrote, "a child or grandchild given the console could not write")?;
    check(taken.is_ok(), "the parent could not take its child's console output back")?;
    check(status == Ok(3), "console output taken back still let the child or its grandchild write")?;
    check(write_nothing() == 0, "taking a child's console output took the parent's")
}

/// Reads the console until the parent gives it, for at most `wait_for`'s two seconds (a
/// count of tries ran out when the parent's core was slow to come back to it): 1 once a
/// read is allowed, 2 if it never was, 3 for any other error.
fn poll_until_given() -> i32 {
    if !wait_for(2000, || sys::console_read(false) != Err(Error::Denied)) {
        return 2;
    }
    match sys::console_read(false) {
        Ok(_) | Err(Error::WouldBlock) => 1,
        _ => 3,
    }
}

/// Whether the caller may read the console now (without waiting for a byte).
fn readable() -> bool {
    matches!(sys::console_read(false), Ok(_) | Err(Error::WouldBlock))
}

/// Maps the framebuffer's frame `pa` (non-cacheable, as device frames must be) at a fresh
/// address, writes a white pixel and unmaps it.
fn map_fb(pa: u64) -> Result<(), Error> {
    let va = vm::alloc_va(1);
    let nc = (Pte::user_page(pa, RW).0 & !bits::ATTR_MASK) | (attr::NORMAL_NC << bits::ATTR_SHIFT);
    vm::map(va, nc)?;
    // SAFETY: `va` was just mapped writable at the framebuffer's first frame, 4-aligned.
    unsafe { core::ptr::write_volatile(va as *mut u32, 0x00ff_ffff) };
    vm::unmap(va).map(|_| ())
}

fn framebuffer_stealing() -> Result<(), &'static str> {
    let k = vm::kinfo();
    if k.fb_bytes == 0 {
        return Ok(()); // no screen (virt): nothing is bound
    }
    let fb = k.fb_base;
    let owner = || vm::frame_entry(fb).map(|e| e.owner);
    check(owner() == Some(vm::me().0), "the framebuffer is not bound to init")?;
    // A child that was not given it cannot map it, and its owner cannot map it cacheable.
    let child = in_child(|| (map_fb(fb) == Err(Error::Denied)) as i32)?;
    check(child == 1, "a child mapped the framebuffer it was not given")?;
    let va = vm::alloc_va(1);
    check(vm::map(va, Pte::user_page(fb, RW).0) == Err(Error::Denied), "the owner mapped it cacheable")?;
    // Given it, a child maps it; when the child dies, it comes back.
    let child = match process::fork().map_err(|_| "fork")? {
        Fork::Child => sys::exit(poll_until_owner(fb)),
        Fork::Parent(c) => c,
    };
    let given = sys::frame_give(fb, child);
    let status = process::wait(child).map_err(|_| "wait")?;
    check(given.is_ok(), "the owner could not give the framebuffer to its child")?;
    check(status == 1, "the child given the framebuffer could not map it")?;
    check(owner() == Some(vm::me().0), "the framebuffer did not come back when its holder died")?;
    // Held by a blank child, it is closed to the parent that gave it.
    let holder = sys::env_create(0).map_err(|_| "create")?;
    sys::frame_give(fb, holder).map_err(|_| "give to a blank child")?;
    let parent_denied = map_fb(fb) == Err(Error::Denied);
    let _ = sys::env_destroy(holder);
    check(parent_denied, "the parent mapped the framebuffer it had given away")?;
    check(owner() == Some(vm::me().0), "the framebuffer did not come back from the blank child")?;
    check(map_fb(fb).is_ok(), "the owner could not map its framebuffer")
}

/// Waits (bounded) until this environment owns frame `pa`, then maps it: 1 if that worked.
fn poll_until_owner(pa: u64) -> i32 {
    for _ in 0..1000 {
        if vm::frame_entry(pa).map(|e| e.owner) == Some(vm::me().0) {
            return map_fb(pa).is_ok() as i32;
        }
        sys::yield_now();
    }
    2
}

/// A parent that keeps itself (and so its subtree) to core 0: its child may not move itself
/// onto another core, nor move its parent or a sibling anywhere.
fn core_escape() -> Result<(), &'static str> {
    let mine = vm::env_info(vm::me()).map_or(0, |e| e.affinity);
    if mine.count_ones() < 2 {
        return Ok(()); // one core up: there is nowhere to escape to
    }
    let va = vm::alloc_va(1);
    let pa = sys::frame_alloc(EnvId::SELF, None).map_err(|_| "frame")?;
    vm::map(va, Pte::user_page(pa, RW).0 | SHARED).map_err(|_| "map")?;
    // SAFETY: `va` was just mapped read-write and shared with the children forked below.
    let word = unsafe { &*(va as *const AtomicU64) };
    word.store(0, SeqCst);
    sys::env_set_affinity(EnvId::SELF, 1).map_err(|_| "self to core 0")?;
    let sibling = match process::fork().map_err(|_| "fork")? {
        Fork::Child => loop {
            sys::yield_now();
        },
        Fork::Parent(s) => s,
    };
    let child = match process::fork().map_err(|_| "fork")? {
        Fork::Child => {
            let parent = vm::env_info(vm::me()).map_or(EnvId(0), |e| EnvId(e.parent));
            let refused = sys::env_set_affinity(EnvId::SELF, mine) == Err(Error::Denied)
                && sys::env_set_affinity(EnvId::SELF, 0b10) == Err(Error::Denied)
                && sys::env_set_affinity(parent, mine) == Err(Error::Denied)
                && sys::env_set_affinity(sibling, 0b10) == Err(Error::Denied)
                && vm::env_info(vm::me()).is_some_and(|e| e.affinity == 1);
            word.store(1 + refused as u64, SeqCst);
            sys::exit(0)
        }
        Fork::Parent(c) => c,
    };
    let _ = process::wait(child);
    let _ = sys::env_destroy(sibling);
    let _ = sys::env_set_affinity(EnvId::SELF, mine);
    let verdict = word.load(SeqCst);
    let _ = vm::unmap(va);
    let _ = sys::frame_free(EnvId::SELF, pa);
    check(verdict == 2, "a child moved onto a core its parent left out")
}

/// `YieldTo` donates the slice to the environment it names only if that may run on this core
/// and runs nowhere else. Two children are kept to core 1, where they take turns a tick at
/// a time: a watcher and a spinner. From core 0 the watcher is yielded to over and over for
/// 30 ms, so both while it runs on core 1 and while it waits there for its turn: it must
/// never run on core 0, which its affinity leaves out. It watches the core the kernel says
/// it is on.
/// `YieldTo` on core 0 to environments on core 0, where the vector's fast path
/// (`el0_yield`) decides it: every id the general path refuses is refused with the same error
/// (bits above 32, a slot beyond the table, a blank child, a parked server, a zombie, a
/// stale id), and none of them runs anything; a yield to a runnable child runs it, and one
/// to the caller itself (by id or as 0) returns at once.
fn direct_yield_checks() -> Result<(), &'static str> {
    let mine = vm::env_info(vm::me()).map_or(0, |e| e.affinity);
    if mine & 1 == 0 || sys::env_set_affinity(EnvId::SELF, 1).is_err() {
        return check(false, "could not keep to core 0");
    }
    let (w, me) = (words(), vm::me());
    w[11].store(0, SeqCst);
    let spinner = match process::fork().map_err(|_| "fork")? {
        Fork::Child => loop {
            w[11].fetch_add(1, SeqCst);
            let _ = sys::yield_to(me);
        },
        Fork::Parent(c) => c,
    };
    let zombie = match process::fork().map_err(|_| "fork")? {
        Fork::Child => sys::exit(0),
        Fork::Parent(c) => c,
    };
    // The child's first turn may be long (the libOS's start after a fork): let it reach
    // its loop before anything is measured.
    let started = wait_for(2000, || w[11].load(SeqCst) > 0);
    let server = server(|c| c.args)?;
    let blank = sys::env_create(0).map_err(|_| "create")?;
    let dead =
        wait_for(2000, || vm::env_info(zombie).is_some_and(|i| i.state == exo_libos::abi::env_state::ZOMBIE));
    let raw = |id: u64| sys::raw(Sys::YieldTo as u64, [id, 0, 0, 0, 0, 0]) as i64;
    let ran = || w[11].load(SeqCst);
    // SAFETY: a plain read of the kernel information page, which stays mapped.
    let ticks = || unsafe { core::ptr::read_volatile(&vm::kinfo().cpu_ticks[0]) };
    let (mut refused, mut still, mut own) = ([false; 7], false, false);
    for _ in 0..5 {
        let (before, tick) = (ran(), ticks());
        refused = [
            raw(1 << 32 | spinner.0 as u64) == Error::Invalid as i64,
            raw(1 << 32) == Error::Invalid as i64,
            raw(spinner.0 as u64 & !0xfff | 0x7ff) == Error::NotFound as i64,
            raw(blank.0 as u64) == Error::Invalid as i64,
            raw(server.0 as u64) == Error::Invalid as i64,
            raw(zombie.0 as u64) == Error::NotFound as i64,
            raw(spinner.0 as u64 + 0x1000) == Error::NotFound as i64,
        ];
        still = ran() == before;
        own = raw(me.0 as u64) == 0 && raw(0) == 0 && ran() == before;
        if ticks() == tick {
            break; // no tick let the spinner run meanwhile: `still` and `own` count
        }
    }
    let direct = (0..5).any(|_| {
        let before = ran();
        raw(spinner.0 as u64) == 0 && ran() > before // (a tick may end the child's turn first)
    });
    let reaped = process::wait(zombie) == Ok(0);
    let stale = raw(zombie.0 as u64) == Error::NotFound as i64;
    for e in [spinner, server, blank] {
        let _ = sys::env_destroy(e);
    }
    let _ = sys::env_set_affinity(EnvId::SELF, mine);
    check(started, "the yielding child never ran")?;
    check(dead && reaped, "the exiting child did not become a zombie")?;
    check(refused.iter().all(|&ok| ok) && stale, "a yield to what may not run was not refused")?;
    check(still, "a refused yield ran an environment")?;
    check(own, "a yield to the caller itself did not return at once")?;
    check(direct, "a yield to a runnable child did not run it")
}

/// The server of `direct_call_refusals`: counts its calls (`words()[16]`) and answers with
/// its core, the frame it was granted, its caller and `args[1]`. `args[0]`: 1 drops its
/// entry (`PctRegister(0, 0)`) before it replies, 2 holds the call for 50 ms (5 ticks),
/// 3 exits (a zombie until reaped).
fn probe(c: &Call) -> [u64; 4] {
    words()[16].fetch_add(1, SeqCst);
    if c.args[0] == 3 {
        sys::exit(0);
    }
    if c.args[0] == 1 {
        let _ = sys::pct_register(0, 0);
    }
    let end = sys::now() + if c.args[0] == 2 { vm::kinfo().counter_hz / 20 } else { 0 };
    while sys::now() < end {
        sys::yield_now();
    }
    [vm::env_info(vm::me()).map_or(9, |e| e.cpu as u64), c.frame, c.caller.0 as u64, c.args[1]]
}

/// `PctCall` on core 0 to servers on core 0, where the vector's fast path (`el0_call`)
/// decides the common case: every call the general path refuses is refused with the same
/// error and runs no handler (an id with bits above 32, id 0, a slot beyond the table, ids
/// not held as rights, the caller itself, a server registered but not parked — running, or
/// blocked in another wait — one that exited, before and after it is reaped, one destroyed, a frame the
/// caller does not own, a server that dropped its entry); a granted frame reaches the
/// handler; a timeout fires, and a call without one does not inherit it; a server moved to
/// core 1 is served there.
fn direct_call_refusals() -> Result<(), &'static str> {
    let mine = vm::env_info(vm::me()).map_or(0, |e| e.affinity);
    if mine & 1 == 0 || sys::env_set_affinity(EnvId::SELF, 1).is_err() {
        return check(false, "could not keep to core 0");
    }
    let (w, me) = (words(), vm::me());
    (16..=18).for_each(|i| w[i].store(0, SeqCst));
    let state = |e: EnvId| vm::env_info(e).map_or(0, |i| i.state);
    let (s, zombie, stranger, destroyed) = (server(probe)?, server(probe)?, server(probe)?, server(probe)?);
    // Registered for calls but not parked: one runs, one waits for a child of its own.
    let running = match process::fork().map_err(|_| "fork")? {
        Fork::Child => {
            w[17].store(1 + exo_libos::ipc::register(probe).is_ok() as u64, SeqCst);
            loop {
                sys::yield_now();
            }
        }
        Fork::Parent(c) => c,
    };
    let waiting = match process::fork().map_err(|_| "fork")? {
        Fork::Child => {
            let registered = exo_libos::ipc::register(probe).is_ok();
            if let Ok(Fork::Parent(g)) = process::fork() {
                w[18].store(1 + registered as u64, SeqCst);
                let _ = sys::env_wait(g); // the grandchild (below) never exits
            }
            loop {
                sys::yield_now();
            }
        }
        Fork::Parent(c) => c,
    };
    let blocked = exo_libos::abi::env_state::BLOCKED;
    let ready = wait_for(2000, || w[17].load(SeqCst) == 2)
        && wait_for(2000, || w[18].load(SeqCst) == 2 && state(waiting) == blocked)
        && [running, waiting, me].iter().all(|&e| sys::pct_allow(EnvId::SELF, e).is_ok())
        && sys::pct_disallow(EnvId::SELF, stranger).is_ok();
    let dead = sys::pct_call(zombie, [3, 0, 0, 0], 0).is_err()
        && wait_for(2000, || state(zombie) == exo_libos::abi::env_state::ZOMBIE)
        && sys::env_destroy(destroyed).is_ok();
    w[16].store(0, SeqCst);
    let pa = sys::frame_alloc(EnvId::SELF, None).map_err(|_| "alloc")?;
    let gone = sys::frame_alloc(EnvId::SELF, None).map_err(|_| "alloc")?;
    let freed = sys::frame_free(EnvId::SELF, gone).is_ok();
    let raw = |id: u64, opts: u64| sys::raw(Sys::PctCall as u64, [id, 0, 7, 0, 0, opts]) as i64;
    let id = |e: EnvId| e.0 as u64;
    let refused = [
        raw(1 << 32 | id(s), 0) == Error::Invalid as i64,
        raw(0, 0) == Error::Denied as i64,
        raw(id(s) & !0xfff | 0x7ff, 0) == Error::Denied as i64,
        raw(id(s) + 0x1000, 0) == Error::NotFound as i64, // its slot's, not it: nobody
        raw(id(stranger), 0) == Error::Denied as i64,
        raw(id(me), 0) == Error::NotFound as i64,
        raw(id(running), PCT_NONBLOCK) == Error::Busy as i64,
        raw(id(waiting), PCT_NONBLOCK) == Error::Busy as i64,
        raw(id(zombie), 0) == Error::NotFound as i64,
        raw(id(destroyed), 0) == Error::NotFound as i64,
        raw(id(s), gone | PCT_GRANT_RW) == Error::Denied as i64,
    ];
    let none_ran = w[16].load(SeqCst) == 0;
    let reaped = process::wait(zombie).is_ok() && raw(id(zombie), 0) == Error::NotFound as i64;
    let me64 = id(me);
    let granted = sys::pct_call(s, [0, 5, 0, 0], pa | PCT_GRANT_RW) == Ok([0, pa, me64, 5]);
    let timed_out = sys::pct_call(s, [2, 0, 0, 0], 2 << PCT_TIMEOUT_SHIFT) == Err(Error::Timeout)
        && wait_for(2000, || state(s) == blocked); // parked again once its hold is over
    let quick = sys::pct_call(s, [0, 1, 0, 0], 2 << PCT_TIMEOUT_SHIFT) == Ok([0, 0, me64, 1]);
    let long = sys::pct_call(s, [2, 2, 0, 0], 0) == Ok([0, 0, me64, 2]);
    let mut calls = 4;
    let moved = mine & 0b10 == 0
        || sys::env_set_affinity(EnvId::SELF, mine).is_ok() // cores flow down: 1 must be ours
            && sys::env_set_affinity(s, 0b10).is_ok()
            && sys::env_set_affinity(EnvId::SELF, 1).is_ok()
            && {
                calls += 1;
                sys::pct_call(s, [0, 4, 0, 0], 0) == Ok([1, 0, me64, 4])
            }
            && sys::env_set_affinity(s, 1).is_ok();
    let dropped = sys::pct_call(s, [1, 3, 0, 0], 0) == Ok([0, 0, me64, 3])
        && sys::pct_call(s, [0; 4], 0) == Err(Error::NotFound)
        && state(s) == blocked; // still parked: not started at address 0 (and killed)
    let ran = w[16].load(SeqCst);
    for e in [s, stranger, running, waiting] {
        let _ = sys::env_destroy(e);
        let _ = process::wait(e);
    }
    let _ = sys::pct_disallow(EnvId::SELF, me);
    let _ = sys::frame_free(EnvId::SELF, pa);
    let _ = sys::env_set_affinity(EnvId::SELF, mine);
    check(ready && dead && freed, "could not set the servers up")?;
    if let Some(i) = refused.iter().position(|&ok| !ok) {
        println!("  refusal {i} not as the general path's");
        return Err("a call the general path refuses was not refused alike");
    }
    check(none_ran, "a refused call ran a handler")?;
    check(reaped, "a call to a reaped server was not refused")?;
    check(granted, "a granted frame did not reach the handler")?;
    check(timed_out, "a call held past its timeout did not time out")?;
    check(quick && long, "a call without a timeout timed out, or a quick one failed")?;
    check(moved, "the server moved to core 1 was not served there")?;
    check(dropped, "a call reached a server that had dropped its entry")?;
    check(ran == calls + 1, "a handler ran for a call that did not reach it")
}

/// `YieldTo` to an environment that may run on the caller's core but runs on another
/// right now must not switch to it here as well (`el0_yield` reads `on[]`): a child spins
/// holding a flag through nearly all of its loop, and reports finding the flag taken, which
/// only a second copy of itself running at the same time can do. It is placed on core 1,
/// then allowed core 0 too (it keeps running on core 1), while the parent, on core 0,
/// yields to it for 30 ms.
fn yield_no_double_run() -> Result<(), &'static str> {
    let mine = vm::env_info(vm::me()).map_or(0, |e| e.affinity);
    if mine & 0b11 != 0b11 {
        return Ok(()); // cores 0 and 1 are not both ours
    }
    let w = words();
    (13..=15).for_each(|i| w[i].store(0, SeqCst));
    let kid = match process::fork().map_err(|_| "fork")? {
        Fork::Child => loop {
            if w[13].swap(1, SeqCst) == 1 {
                w[14].store(1, SeqCst); // another copy of this loop holds it
            }
            w[15].fetch_add(1, SeqCst);
            for _ in 0..200 {
                core::hint::black_box(w[15].load(SeqCst));
            }
            w[13].store(0, SeqCst);
        },
        Fork::Parent(c) => c,
    };
    sys::env_set_affinity(kid, 0b10).map_err(|_| "child to core 1")?;
    let on_core_1 =
        || vm::env_info(kid).is_some_and(|e| e.cpu == 1 && e.state == exo_libos::abi::env_state::RUNNABLE);
    let placed = wait_for(2000, || on_core_1() && w[15].load(SeqCst) > 0);
    sys::env_set_affinity(kid, 0b11).map_err(|_| "child to cores 0 and 1")?;
    sys::env_set_affinity(EnvId::SELF, 1).map_err(|_| "self to core 0")?;
    let (hz, mut yields) = (vm::kinfo().counter_hz, 0);
    let end = sys::now() + hz * 30 / 1000;
    while sys::now() < end {
        yields += sys::yield_to(kid).is_ok() as u32;
    }
    let twice = w[14].load(SeqCst);
    let _ = sys::env_destroy(kid);
    let _ = sys::env_set_affinity(EnvId::SELF, mine);
    check(placed && yields > 0, "the child never ran on core 1, or no yield to it succeeded")?;
    check(twice == 0, "the child ran on two cores at once")
}

fn yield_off_core() -> Result<(), &'static str> {
    let mine = vm::env_info(vm::me()).map_or(0, |e| e.affinity);
    if mine & 0b11 != 0b11 {
        return Ok(()); // cores 0 and 1 are not both ours: nothing to pull across
    }
    let w = words();
    w[5].store(0, SeqCst);
    w[6].store(0, SeqCst);
    let on_core_1 = || vm::env_info(vm::me()).is_some_and(|e| e.cpu == 1);
    let mut kids = [EnvId(0); 2];
    for (i, kid) in kids.iter_mut().enumerate() {
        *kid = match process::fork().map_err(|_| "fork")? {
            Fork::Child => {
                if !wait_for(2000, on_core_1) {
                    sys::exit(1); // never moved: the parent sees no progress
                }
                loop {
                    if i == 0 && !on_core_1() {
                        w[6].store(1, SeqCst);
                    }
                    w[5].fetch_add(1, SeqCst);
                }
            }
            // The parent places them, before it leaves core 1 itself: a child may only
            // take cores its parent has, so a child asking for core 1 after that would be
            // refused and stay free to run on core 0 (this test once failed so, on builds
            // where the children came to ask late).
            Fork::Parent(c) => {
                sys::env_set_affinity(c, 0b10).map_err(|_| "child to core 1")?;
                c
            }
        };
    }
    sys::env_set_affinity(EnvId::SELF, 1).map_err(|_| "self to core 0")?;
    let started = wait_for(2000, || w[5].load(SeqCst) > 0);
    let (hz, mut yields) = (vm::kinfo().counter_hz, 0);
    let end = sys::now() + hz * 30 / 1000;
    while sys::now() < end {
        yields += sys::yield_to(kids[0]).is_ok() as u32;
    }
    let moved = w[6].load(SeqCst);
    for k in kids {
        let _ = sys::env_destroy(k);
    }
    let _ = sys::env_set_affinity(EnvId::SELF, mine);
    check(started && yields > 0, "the children never ran, or no yield was taken")?;
    check(moved == 0, "a yield pulled its partner onto a core it may not use")
}

/// The core a handler runs on, as the kernel publishes it.
fn where_am_i(_: &Call) -> [u64; 4] {
    words()[7].fetch_add(1, SeqCst);
    [vm::env_info(vm::me()).map_or(9, |e| e.cpu as u64), 0, 0, 0]
}

/// The direct switch (a call on one core goes straight to the parked server, no pass of
/// the scheduler) keeps the checks of the general path: on the server's own core a caller
/// without the right, or whose right was taken back, is refused and the handler never
/// runs; a server moved off the caller's core is served on its new core, not pulled back.
fn direct_call_checks() -> Result<(), &'static str> {
    let mine = vm::env_info(vm::me()).map_or(0, |e| e.affinity);
    if mine & 0b11 != 0b11 {
        return Ok(()); // cores 0 and 1 are not both ours
    }
    let w = words();
    w[7].store(0, SeqCst);
    let s = server(where_am_i)?;
    sys::env_set_affinity(s, 1).map_err(|_| "server to core 0")?;
    sys::env_set_affinity(EnvId::SELF, 1).map_err(|_| "self to core 0")?;
    let here = sys::pct_call(s, [0; 4], 0);
    let stranger = in_child(|| (sys::pct_call(s, [0; 4], 0) == Err(Error::Denied)) as i32);
    let revoked =
        sys::pct_disallow(EnvId::SELF, s).is_ok() && sys::pct_call(s, [0; 4], 0) == Err(Error::Denied);
    let ran = w[7].load(SeqCst);
    let moved = sys::pct_allow(EnvId::SELF, s).is_ok()
        && sys::env_set_affinity(EnvId::SELF, mine).is_ok() // cores flow down: 1 must be ours
        && sys::env_set_affinity(s, 0b10).is_ok()
        && sys::env_set_affinity(EnvId::SELF, 1).is_ok();
    let there = sys::pct_call(s, [0; 4], 0);
    let _ = sys::env_destroy(s);
    let _ = sys::env_set_affinity(EnvId::SELF, mine);
    check(here == Ok([0, 0, 0, 0]), "the call on core 0 failed or ran elsewhere")?;
    check(stranger == Ok(1) && revoked, "a call without the right was not refused")?;
    check(ran == 1, "the handler ran for a caller without the right")?;
    check(moved && there == Ok([1, 0, 0, 0]), "the server moved to core 1 was not served there")
}

/// A handler that holds the call until `words()[12]` is set and its caller is blocked
/// (again: it was, for the reply), then replies [9, 9, 9, 9].
fn late(c: &Call) -> [u64; 4] {
    let blocked = || vm::env_info(c.caller).is_some_and(|i| i.state == exo_libos::abi::env_state::BLOCKED);
    while words()[12].load(SeqCst) == 0 || !blocked() {
        sys::yield_now();
    }
    [9; 4]
}

/// A reply switched directly on core 0 (`el0_reply`) reaches only a caller waiting for it:
/// the caller times out, then blocks in `EnvWait` for a child; the server's late reply
/// must leave it there (not wake it with the results as that wait's outcome), and the
/// server must park and serve the next call.
fn late_reply() -> Result<(), &'static str> {
    let mine = vm::env_info(vm::me()).map_or(0, |e| e.affinity);
    if mine & 1 == 0 || sys::env_set_affinity(EnvId::SELF, 1).is_err() {
        return check(false, "could not keep to core 0");
    }
    let w = words();
    w[12].store(0, SeqCst);
    let s = server(late)?;
    let parked = || vm::env_info(s).is_some_and(|i| i.state == exo_libos::abi::env_state::BLOCKED);
    let child = match process::fork().map_err(|_| "fork")? {
        // Exits once the late reply is over: the server, running its handler since the
        // call, is parked again.
        Fork::Child => sys::exit(if wait_for(2000, || w[12].load(SeqCst) == 1) && wait_for(2000, parked) {
            7
        } else {
            1
        }),
        Fork::Parent(c) => c,
    };
    let call = sys::pct_call(s, [0; 4], 2 << PCT_TIMEOUT_SHIFT);
    w[12].store(1, SeqCst);
    let status = process::wait(child);
    let next = sys::pct_call(s, [0; 4], 0);
    let _ = sys::env_destroy(s);
    let _ = sys::env_set_affinity(EnvId::SELF, mine);
    check(call == Err(Error::Timeout), "the held call did not time out")?;
    check(status == Ok(7), "the late reply woke its caller out of another wait")?;
    check(next == Ok([9; 4]), "the server did not serve the next call")
}

/// A handler that reports it started (`words()[8]`) and holds the call until `words()[10]`.
fn held(_: &Call) -> [u64; 4] {
    let w = words();
    w[8].store(1, SeqCst);
    while w[10].load(SeqCst) == 0 {
        sys::yield_now();
    }
    [5, 0, 0, 0]
}

/// Destroy while blocked, with the call and reply switched directly on core 0 and the
/// destroyer on core 1: a caller destroyed mid-call leaves a server that still serves the
/// next caller (the reply to the dead one is dropped), and a server destroyed mid-call
/// fails its caller with `NotFound`.
fn direct_call_destroyed() -> Result<(), &'static str> {
    let mine = vm::env_info(vm::me()).map_or(0, |e| e.affinity);
    if mine & 0b11 != 0b11 {
        return Ok(());
    }
    let w = words();
    let s = server(held)?;
    sys::env_set_affinity(s, 1).map_err(|_| "server to core 0")?;
    let mut statuses = [0; 2];
    for (round, status) in statuses.iter_mut().enumerate() {
        [8, 9, 10].iter().for_each(|&i| w[i].store(0, SeqCst));
        sys::env_set_affinity(EnvId::SELF, mine).map_err(|_| "self to every core")?;
        let client = match process::fork().map_err(|_| "fork")? {
            Fork::Child => {
                while w[9].load(SeqCst) == 0 {
                    sys::yield_now();
                }
                let r = sys::pct_call(s, [0; 4], 0);
                sys::exit(if r == Err(Error::NotFound) { 1 } else { 2 })
            }
            Fork::Parent(c) => c,
        };
        sys::env_set_affinity(client, 1).map_err(|_| "client to core 0")?;
        sys::env_set_affinity(EnvId::SELF, mine & !1).map_err(|_| "self off core 0")?;
        sys::pct_allow(client, s).map_err(|_| "allow")?;
        w[9].store(1, SeqCst);
        check(wait_for(2000, || w[8].load(SeqCst) == 1), "the handler never started")?;
        let on_core_0 = vm::env_info(s).is_some_and(|e| e.cpu == 0);
        check(on_core_0, "the server did not run on core 0")?;
        if round == 0 {
            *status = sys::env_destroy(client).is_ok() as i32; // reaped too; the server goes on
            w[10].store(1, SeqCst);
            let s = sys::pct_allow(EnvId::SELF, s).and_then(|_| sys::pct_call(s, [0; 4], 0));
            check(s == Ok([5, 0, 0, 0]), "the server did not serve after its caller died")?;
        } else {
            let _ = sys::env_destroy(s); // the server goes mid-call
            *status = process::wait(client).unwrap_or(0);
        }
    }
    let _ = sys::env_set_affinity(EnvId::SELF, mine);
    check(statuses[0] == 1, "the caller could not be destroyed mid-call")?;
    check(statuses[1] == 1, "the caller of a destroyed server did not get NotFound")
}

/// The sectors the mid-stream attacks use: the last MiB of the test disk, past the LFS
/// partition (its first `STREAM` sectors).
const STREAM_AT: u64 = 16384 - 2048;
const STREAM: u64 = 512;

/// A child placed on core 1 that streams `SectorWrite`s (`write`) or `SectorRead`s of
/// [`STREAM`] sectors at [`STREAM_AT`] for ever, through a buffer of its own filled with
/// `0xbb`. It publishes in `words()`: [1] transfers done, [2] the first error, [3] and [4]
/// its buffer's last page (physical address, virtual address). The parent runs on core 2
/// (`affinity` restores it). `None` with fewer than three cores up.
fn streamer(write: bool) -> Result<Option<(EnvId, u8)>, &'static str> {
    let mine = vm::env_info(vm::me()).map_or(0, |e| e.affinity);
    if mine & 0b110 != 0b110 {
        return Ok(None);
    }
    let w = words();
    w.iter().for_each(|w| w.store(0, SeqCst));
    match process::fork().map_err(|_| "fork")? {
        Fork::Child => {
            let pages = STREAM * 512 / PAGE;
            let va = vm::alloc_va(pages);
            for p in 0..pages {
                let Ok(pa) = vm::map_new(va + p * PAGE, RW) else { sys::exit(1) };
                w[3].store(pa, SeqCst);
                w[4].store(va + p * PAGE, SeqCst);
            }
            // SAFETY: just mapped read-write, used by nothing else.
            let buf = unsafe { core::slice::from_raw_parts_mut(va as *mut u8, (pages * PAGE) as usize) };
            buf.fill(0xbb);
            while w[0].load(SeqCst) == 0 {
                sys::yield_now(); // until the parent has granted the sectors
            }
            loop {
                let r =
                    if write { sys::sector_write(STREAM_AT, buf) } else { sys::sector_read(STREAM_AT, buf) };
                match r {
                    Ok(_) => w[1].fetch_add(1, SeqCst),
                    Err(e) => sys::exit(w[2].swap(e as i64 as u64, SeqCst) as i32),
                };
            }
        }
        Fork::Parent(c) => {
            sys::env_set_affinity(c, 0b10).map_err(|_| "child to core 1")?;
            let _ = sys::env_set_affinity(EnvId::SELF, 0b100);
            let rights = if write { SECTOR_WRITE } else { SECTOR_READ };
            sys::sector_grant(c, STREAM_AT, STREAM, rights).map_err(|_| "grant")?;
            w[0].store(1, SeqCst);
            if !wait_for(2000, || w[1].load(SeqCst) >= 2) {
                let _ = sys::env_destroy(c);
                let _ = sys::env_set_affinity(EnvId::SELF, mine);
                return Err("the child did not stream");
            }
            Ok(Some((c, mine)))
        }
    }
}

/// Lets the streaming child's core run on for a while: long enough for a transfer still in
/// flight to land where it should not.
fn settle() {
    for _ in 0..200 {
        sys::yield_now();
    }
}

/// The child gone and reaped, whether it still runs or has exited.
fn end(child: EnvId) {
    if sys::env_destroy(child).is_err() {
        let _ = process::wait(child);
    }
}

/// `STREAM` sectors at `STREAM_AT` all hold `byte`.
fn stream_holds(byte: u8) -> Result<bool, &'static str> {
    let pages = STREAM * 512 / PAGE;
    let va = vm::alloc_va(pages);
    for p in 0..pages {
        vm::map_new(va + p * PAGE, RW).map_err(|_| "map")?;
    }
    // SAFETY: just mapped read-write, used by nothing else.
    let buf = unsafe { core::slice::from_raw_parts_mut(va as *mut u8, (pages * PAGE) as usize) };
    let ok = sys::sector_read(STREAM_AT, buf).is_ok() && buf.iter().all(|&b| b == byte);
    for p in 0..pages {
        let _ = vm::unmap_free(va + p * PAGE);
    }
    Ok(ok)
}

/// A transfer in flight when its binding is revoked: once `SectorRevoke` returns, nothing
/// of the child's lands any more, and its next call is refused.
fn revoke_mid_stream() -> Result<(), &'static str> {
    let Some((child, mine)) = streamer(true)? else { return Ok(()) };
    let w = words();
    let revoked = sys::sector_revoke(child, STREAM_AT, STREAM);
    let pages = STREAM * 512 / PAGE;
    let va = vm::alloc_va(pages);
    for p in 0..pages {
        vm::map_new(va + p * PAGE, RW).map_err(|_| "map")?;
    }
    // SAFETY: just mapped read-write, used by nothing else.
    let buf = unsafe { core::slice::from_raw_parts_mut(va as *mut u8, (pages * PAGE) as usize) };
    buf.fill(0xaa);
    let mine_written = sys::sector_write(STREAM_AT, buf).is_ok();
    let refused = wait_for(2000, || w[2].load(SeqCst) != 0);
    let error = w[2].load(SeqCst) as i64;
    for p in 0..pages {
        let _ = vm::unmap_free(va + p * PAGE);
    }
    end(child);
    let _ = sys::env_set_affinity(EnvId::SELF, mine);
    check(revoked.is_ok() && mine_written, "revoking or the parent's own write failed")?;
    check(refused && error == Error::Denied as i64, "the child kept writing after the revoke")?;
    check(stream_holds(0xaa)?, "a write of the child's landed after its binding was revoked")
}

/// Frames the device may still be filling are not freed under it: the child is destroyed
/// from core 2 while it reads on core 1; the frames that come back (and are handed to the
/// parent here) are never written afterwards.
fn destroy_mid_stream() -> Result<(), &'static str> {
    let Some((child, mine)) = streamer(false)? else { return Ok(()) };
    let destroyed = sys::env_destroy(child);
    let (got, n, clean) = frames_stay_clean();
    let _ = sys::env_set_affinity(EnvId::SELF, mine);
    check(destroyed.is_ok() && got == n, "destroying the child or taking frames failed")?;
    check(clean, "a frame of the destroyed child was written after it came back")
}

/// Takes as many frames as a streaming child's buffer held, and a few more, fills them,
/// lets the device finish anything in flight, and says whether they were all taken and
/// none was written after: (frames taken, frames wanted, clean). They are freed again.
fn frames_stay_clean() -> (usize, usize, bool) {
    let n = (STREAM * 512 / PAGE + 8) as usize;
    let mut frames = [0u64; 80];
    let mut got = 0;
    for f in frames.iter_mut().take(n) {
        let Ok(pa) = vm::fill_new_frame(|b| b.fill(0x5a)) else { break };
        (*f, got) = (pa, got + 1);
    }
    settle();
    let mut clean = true;
    for &pa in &frames[..got] {
        let _ = vm::fill_frame(pa, |b| clean &= b.iter().all(|&x| x == 0x5a));
        let _ = sys::frame_free(EnvId::SELF, pa);
    }
    (got, n, clean)
}

/// The same as [`destroy_mid_stream`], with the child caught blocked in `SectorWait` while
/// the device (virtio-blk, in the background) fills its buffer. A spinner shares its core
/// (a caller sleeps only when its core has someone else to run). Only `virt` moves data in
/// the background; elsewhere a transfer ends before its call returns and there is no such
/// state to catch.
fn destroy_while_waiting() -> Result<(), &'static str> {
    if vm::kinfo().board != exo_libos::abi::board::VIRT {
        return Ok(());
    }
    let company = match process::fork().map_err(|_| "fork")? {
        Fork::Child => loop {
            core::hint::spin_loop();
        },
        Fork::Parent(c) => c,
    };
    let placed = sys::env_set_affinity(company, 0b10); // before `streamer` leaves core 1
    let streaming = streamer(false);
    let Ok(Some((child, mine))) = streaming else {
        let _ = sys::env_destroy(company);
        return streaming.map(drop);
    };
    let blocked = || vm::env_info(child).is_some_and(|e| e.state == exo_libos::abi::env_state::BLOCKED);
    let caught = poll(blocked);
    let destroyed = sys::env_destroy(child);
    let (got, n, clean) = frames_stay_clean();
    let _ = sys::env_set_affinity(EnvId::SELF, mine);
    let _ = sys::env_destroy(company);
    check(placed.is_ok(), "the spinner could not be placed on core 1")?;
    check(caught, "the reader was never seen blocked on its transfer")?;
    check(destroyed.is_ok() && got == n, "destroying the child or taking frames failed")?;
    check(clean, "a frame of the destroyed child was written after it came back")
}

/// A reader that starts a `SectorRead` and, before its `SectorWait`, unmaps and frees the
/// buffer's last page, takes the frame back and fills it: the unmap waits for the device,
/// so nothing of the read lands in the frame afterwards. A second transfer started before
/// the wait is refused with `Busy` while the first is in flight, and the wait reports 0.
fn free_before_wait() -> Result<(), &'static str> {
    let pages = 8;
    let va = vm::alloc_va(pages);
    let mut pa = 0;
    for p in 0..pages {
        pa = vm::map_new(va + p * PAGE, RW).map_err(|_| "map")?;
    }
    let read = |at: u64| {
        let r = exo_libos::abi::result(sys::raw(Sys::SectorRead as u64, [at, 64, va, 0, 0, 0]));
        r.map(|n| n & !exo_libos::abi::SECTOR_PENDING)
    };
    let started = read(STREAM_AT);
    let again = read(STREAM_AT);
    let unmapped = sys::table_set(EnvId::SELF, va + (pages - 1) * PAGE, 3, 0);
    let retaken = sys::frame_free(EnvId::SELF, pa).and_then(|_| sys::frame_alloc(EnvId::SELF, Some(pa)));
    let filled = vm::fill_frame(pa, |b| b.fill(0x5a)).is_ok();
    let waited = exo_libos::abi::result(sys::raw(Sys::SectorWait as u64, [0; 6]));
    settle();
    let mut clean = false;
    let _ = vm::fill_frame(pa, |b| clean = b.iter().all(|&x| x == 0x5a));
    let _ = sys::frame_free(EnvId::SELF, pa);
    for p in 0..pages - 1 {
        let _ = vm::unmap_free(va + p * PAGE);
    }
    check(started == Ok(64), "the read was refused")?;
    check(
        again == Err(Error::Busy) || again == Ok(64),
        "a second read before the wait got neither Busy nor through",
    )?;
    check(unmapped.is_ok() && retaken == Ok(pa) && filled, "the page could not be taken back")?;
    check(waited == Ok(0), "SectorWait did not report the transfer's success")?;
    check(clean, "the read landed in the frame after it was freed")
}

/// A page of a reading child's buffer, unmapped and freed by its parent mid-stream and
/// taken by the parent: the unmap waits for the transfer in flight, so the frame is never
/// written afterwards, and the child's next transfer finds the page gone.
fn free_mid_stream() -> Result<(), &'static str> {
    let Some((child, mine)) = streamer(false)? else { return Ok(()) };
    let w = words();
    let (pa, va) = (w[3].load(SeqCst), w[4].load(SeqCst));
    let unmapped = sys::table_set(child, va, 3, 0);
    let freed = sys::frame_free(child, pa);
    let taken = sys::frame_alloc(EnvId::SELF, Some(pa));
    let filled = vm::fill_frame(pa, |b| b.fill(0x5a)).is_ok();
    settle();
    let mut clean = false;
    let _ = vm::fill_frame(pa, |b| clean = b.iter().all(|&x| x == 0x5a));
    end(child);
    let _ = sys::frame_free(EnvId::SELF, pa);
    let _ = sys::env_set_affinity(EnvId::SELF, mine);
    check(unmapped.is_ok() && freed.is_ok(), "the parent could not take the page back")?;
    check(taken == Ok(pa) && filled, "the parent could not take the freed frame")?;
    check(clean, "the device wrote into a frame after it was freed")
}
/// Waits (a bounded number of turns) until `ready` holds.
fn poll(mut ready: impl FnMut() -> bool) -> bool {
    (0..200_000).any(|_| {
        let r = ready();
        if !r {
            sys::yield_now();
        }
        r
    })
}

/// A pipe's frames are its owner's (a shell's job), shared with the programs it gives an
/// end to and no one else: a program of another job cannot map them, whatever access it
/// asks for, though it can read their addresses in the public frame table.
fn pipe_stealing() -> Result<(), &'static str> {
    let w = words();
    for word in &w[400..404] {
        word.store(0, SeqCst);
    }
    let owner = match process::fork().map_err(|_| "fork")? {
        Fork::Child => sys::exit(own_a_pipe()),
        Fork::Parent(c) => c,
    };
    let published = poll(|| w[403].load(SeqCst) == 1);
    let [header, ring, token] = [0, 1, 2].map(|i| w[400 + i].load(SeqCst));
    // The owner's sibling, as another job's program is.
    let refused = in_child(|| {
        let va = vm::alloc_va(1);
        let tries = [
            vm::map_frame(va, header, RO),
            vm::map_frame(va, header, RW),
            vm::map_frame(va, ring, RO),
            vm::map_frame(va, ring, RW),
            vm::map_frame(va, token, RO),
        ];
        tries.iter().filter(|r| **r == Err(Error::Denied)).count() as i32
    });
    w[403].store(2, SeqCst);
    let owner_status = process::wait(owner);
    check(published && header != 0, "the pipe's owner never set its pipe up")?;
    check(refused? == 5, "a program mapped a pipe it was not given")?;
    check(owner_status == Ok(1), "the program given the read end did not read what was written")
}

/// The owner's side: a pipe, its read end given to a child, its write end its own; then
/// the frames' addresses published, and a wait until the test is done with them.
fn own_a_pipe() -> i32 {
    use exo_libos::fd::slot_va;
    use exo_libos::pipe::{End, Mapped, Pipe};
    const TEXT: &[u8] = b"through the pipe";
    let w = words();
    let Ok(pipe) = Pipe::new() else { return 10 };
    let reader = match process::fork() {
        Ok(Fork::Child) => {
            let given = poll(|| w[404].load(SeqCst) == 1);
            let mut buf = [0u8; 16];
            let n = if given { Mapped { va: slot_va(0) }.read(&mut buf) } else { 0 };
            sys::exit((&buf[..n] == TEXT) as i32)
        }
        Ok(Fork::Parent(c)) => c,
        Err(_) => return 11,
    };
    let wired = pipe
        .attach(reader, slot_va(0), End::Read)
        .and_then(|_| pipe.attach(vm::me(), slot_va(1), End::Write));
    let wrote = wired.is_ok() && Mapped { va: slot_va(1) }.write(TEXT).is_ok();
    w[404].store(1, SeqCst);
    // Not `process::wait`: its reclaim would free the read token, which nothing maps once
    // the reader is gone.
    let read = sys::env_wait(reader).unwrap_or(0);
    for (i, pa) in [pipe.header, pipe.ring[0], pipe.read_token].into_iter().enumerate() {
        w[400 + i].store(pa, SeqCst);
    }
    w[403].store(1, SeqCst);
    poll(|| w[403].load(SeqCst) == 2);
    if wrote {
        read
    } else {
        12
    }
}

/// `TableBind` leaves a frame unzeroed only while the frame table marks it `ZEROED` (all
/// zeros since `FrameAlloc`): a program that fills a frame with forged page entries and
/// binds it as a table must find it empty, whether it wrote the frame through a mapping of
/// its own (removed since), a child wrote it where the parent mapped it in the child's
/// tables, or it only mapped it read-only.
/// A fresh frame is bound without the second zeroing, and is empty too.
/// A page entry that maps a frame non-cacheable has the kernel clean the frame first (it
/// was zeroed in the cache, `uvm.rs`'s `clean_for`). The views read the zeros and then what
/// a cacheable view wrote (QEMU models no caches: what this shows is that the path runs and
/// maps the right frame); at frames the kernel keeps, or past RAM, they are refused, with
/// no clean attempted on memory the kernel has no view of.
fn non_cacheable_views() -> Result<(), &'static str> {
    use exo_libos::abi::frame::{ABSENT, KERNEL};
    let nc = |pa: u64, perm| {
        (Pte::user_page(pa, perm).0 & !bits::ATTR_MASK) | (attr::NORMAL_NC << bits::ATTR_SHIFT)
    };
    let (va, alias) = (vm::alloc_va(1), vm::alloc_va(1));
    // SAFETY: each read happens while `va` maps a frame of ours.
    let words = || unsafe { core::slice::from_raw_parts(va as *const u64, 512) };
    let pa = sys::frame_alloc(EnvId::SELF, None).map_err(|_| "alloc")?;
    vm::map(va, nc(pa, RW)).map_err(|_| "map a fresh frame non-cacheable (TableSetAt)")?;
    check(words().iter().all(|&w| w == 0), "a non-cacheable view of a fresh frame is not all zeros")?;
    vm::unmap(va).map_err(|_| "unmap")?;
    vm::map_frame(alias, pa, RW).map_err(|_| "map cacheable")?;
    // SAFETY: `alias` maps `pa` read-write.
    unsafe { core::slice::from_raw_parts_mut(alias as *mut u64, 512).fill(0x5a5a_0000_1234_5678) };
    // The same through `TableSet`'s walk (`vm` believes `va` unmapped: it is put back so).
    sys::table_set(EnvId::SELF, va, 3, nc(pa, RO)).map_err(|_| "map non-cacheable (TableSet)")?;
    let seen = words().iter().all(|&w| w == 0x5a5a_0000_1234_5678);
    sys::table_set(EnvId::SELF, va, 3, 0).map_err(|_| "unmap (TableSet)")?;
    vm::unmap(alias).map_err(|_| "unmap the alias")?;
    sys::frame_free(EnvId::SELF, pa).map_err(|_| "free")?;
    check(seen, "a non-cacheable view does not show what was written")?;
    // Refused: a frame the kernel keeps, an absent one (if this board has any), past RAM.
    let k = vm::kinfo();
    let kind = |pa: u64| vm::frame_entry(pa).map(|e| e.kind);
    let find = |want| (0..k.frames).map(|i| k.ram_base + i * PAGE).find(|&pa| kind(pa) == Some(want));
    let kernel = find(KERNEL).ok_or("no kernel frame in the frame table")?;
    let past = [k.ram_base + k.frames * PAGE, k.ram_base + (k.frames + 4096) * PAGE];
    for pa in [Some(kernel), find(ABSENT)].into_iter().flatten().chain(past) {
        check(vm::map(va, nc(pa, RO)).is_err(), "a non-cacheable view of a frame not ours was allowed")?;
        check(sys::table_set(EnvId::SELF, va, 3, nc(pa, RO)).is_err(), "TableSet allowed one too")?;
    }
    Ok(())
}

/// `FrameAlloc` with a source (`sys::frame_copy`) copies a data frame the caller owns, and
/// nothing else: not an ancestor's frame (though the child maps it, copy-on-write), not a
/// public, kernel or table frame, not past RAM; and only into a frame for itself or a
/// descendant. The copy is not marked zeroed, so a table made of it starts empty.
fn frame_copy_rights() -> Result<(), &'static str> {
    use exo_libos::abi::frame::{KERNEL, ZEROED};
    let va = vm::alloc_va(1);
    let mine = vm::map_new(va, RW).map_err(|_| "map")?;
    // SAFETY: `va` maps `mine` read-write.
    let page = || unsafe { core::slice::from_raw_parts_mut(va as *mut u64, 512) };
    page().iter_mut().enumerate().for_each(|(i, w)| *w = 0x7000_0000_0000_0000 | i as u64);
    let copy = sys::frame_copy(EnvId::SELF, mine).map_err(|_| "copy our own frame")?;
    let entry = vm::frame_entry(copy).ok_or("no entry for the copy")?;
    check(entry.owner == vm::me().0 && entry.flags & ZEROED == 0, "the copy's owner or mark is wrong")?;
    vm::unmap(va).map_err(|_| "unmap")?;
    vm::map_frame(va, copy, RO).map_err(|_| "map the copy")?;
    let same = page().iter().enumerate().all(|(i, &w)| w == 0x7000_0000_0000_0000 | i as u64);
    vm::unmap(va).map_err(|_| "unmap the copy")?;
    check(same, "the copy does not hold the frame's words")?;
    sys::table_bind(EnvId::SELF, copy, 3).map_err(|_| "bind the copy")?;
    vm::map_frame(va, copy, RO).map_err(|_| "map the table")?;
    let empty = page().iter().all(|&w| w == 0);
    vm::unmap(va).map_err(|_| "unmap the table")?;
    sys::table_unbind(EnvId::SELF, copy).map_err(|_| "unbind")?;
    check(empty, "a table made of a copy kept the copied words")?;
    // Not ours: a kernel frame, a public one, a table, nothing at all.
    let k = vm::kinfo();
    let frames = || (0..k.frames).map(|i| k.ram_base + i * PAGE);
    // (Not frame 0, a Pi's first: `from` = 0 asks for no copy, a zeroed frame.)
    let kernel = frames().find(|&pa| pa != 0 && vm::frame_entry(pa).is_some_and(|e| e.kind == KERNEL));
    let table = frames().find(|&pa| {
        vm::frame_entry(pa).is_some_and(|e| e.kind == exo_libos::abi::frame::TABLE && e.owner == vm::me().0)
    });
    let past = k.ram_base + k.frames * PAGE;
    for from in [kernel, Some(k.frame_table), table, Some(past), Some(mine + 8)].into_iter().flatten() {
        check(sys::frame_copy(EnvId::SELF, from).is_err(), "a frame not our own data was copied")?;
    }
    // A child may read the parent's frame through its copy-on-write mapping, but not copy
    // it; nor make a copy of its own for its parent.
    vm::map_frame(va, mine, RW).map_err(|_| "map again")?;
    let status = in_child(|| {
        let up = sys::frame_copy(EnvId::SELF, mine) == Err(Error::Denied);
        let own = sys::frame_alloc(EnvId::SELF, None).unwrap_or(0);
        let parent = vm::env_info(vm::me()).map_or(EnvId(0), |e| EnvId(e.parent));
        let sideways = own != 0 && sys::frame_copy(parent, own) == Err(Error::Denied);
        up as i32 | (sideways as i32) << 1
    })?;
    check(status & 1 == 1, "a child copied its parent's frame")?;
    check(status & 2 == 2, "a child made a copy for its parent")?;
    vm::unmap(va).map_err(|_| "unmap again")?;
    sys::frame_free(EnvId::SELF, copy).map_err(|_| "free the copy")?;
    sys::frame_free(EnvId::SELF, mine).map_err(|_| "free")?;
    Ok(())
}

/// For `resume_mapping_hook`: what it tries, set before the fault (the `R_*` slots), then
/// the errors of its refused attempts (from [`R_ERRORS`]) and how many times it ran. In
/// `.private`, which is never copy-on-write: a handler's write elsewhere could fault, and a
/// fault there is fatal.
#[unsafe(link_section = ".private")]
static RESUME: [AtomicU64; R_ERRORS + RESUME_REFUSED.len() + 1] =
    [const { AtomicU64::new(0) }; R_ERRORS + RESUME_REFUSED.len() + 1];
/// A kernel frame, a public frame, a data frame of a child's, one of our own, our level-2
/// table, a level-3 table of ours bound but not linked, a child's level-3 table linked in
/// its tree, a frozen table of ours and an empty entry of it, and a page of ours mapped in
/// the same table as the faulting one with the frame to replace its frame with, and an
/// empty entry of that table after the faulting page's; and a frame of ours once shared
/// with the child and mapped nowhere now, for the last resume.
const R_KERNEL: usize = 0;
const R_PUBLIC: usize = 1;
const R_CHILDS: usize = 2;
const R_OWN: usize = 3;
const R_L2: usize = 4;
const R_UNLINKED: usize = 5;
const R_CHILDS_TABLE: usize = 6;
const R_FROZEN: usize = 7;
const R_FROZEN_ENTRY: usize = 8;
const R_NEIGHBOUR: usize = 9;
const R_NEW: usize = 10;
const R_EMPTY: usize = 11;
const R_SHARED: usize = 12;
const R_ERRORS: usize = 13;
/// What `TableSetAt` answers each of `resume_mapping_hook`'s attempts, in order.
const RESUME_REFUSED: [Error; 16] = [
    Error::Denied,   // a kernel frame, read-only
    Error::Denied,   // a page writable and executable (`PteError::WriteExec`)
    Error::Denied,   // a public frame as the table
    Error::Denied,   // a child's data frame, never shared with us
    Error::NotFound, // a frame past the end of RAM
    Error::Denied,   // one of our own tables as a writable page
    Error::Invalid,  // an entry past 511
    Error::Invalid,  // an entry with a reserved bit set (`PteError::Malformed`)
    Error::Invalid,  // an entry for EL1 (`PteError::Malformed`)
    Error::Denied,   // a data frame of ours as the table
    Error::Invalid,  // our level-2 table
    Error::NotFound, // a level-3 table of ours not linked into the tree
    Error::Invalid,  // a table address not page-aligned
    Error::NotFound, // a table past the end of RAM
    Error::Denied,   // a child's table
    Error::Busy,     // a frozen table of ours
];

/// At the first fault it is set for, tries `UpcallResume` with entries the kernel must
/// refuse (`RESUME_REFUSED`, each aimed at one of the checks the fast path in `vectors.S`
/// makes before it sets an entry itself), noting each error and going on running; then
/// replaces the frame of a neighbouring page, which resumes (and faults again: the
/// faulting page is still unmapped). At the second, resumes with a fresh frame mapped.
fn resume_mapping_hook(u: &Upcall) -> bool {
    if u.kind != upcall::DATA_ABORT {
        return false;
    }
    let get = |i: usize| RESUME[i].load(SeqCst);
    let va = u.far & !(PAGE - 1);
    let i = (va >> 12) & 511;
    let table = Pte(sys::table_get(EnvId::SELF, va, 2).unwrap_or(0)).addr();
    let runs = &RESUME[RESUME.len() - 1];
    if runs.fetch_add(1, SeqCst) == 0 {
        let Ok(pa) = sys::frame_alloc(EnvId::SELF, None) else { return false };
        let rw = |pa| Pte::user_page(pa, RW).0;
        let k = vm::kinfo();
        let past = k.ram_base + k.frames * PAGE;
        let tries = [
            vm::map_and_resume(va, Pte::user_page(get(R_KERNEL), RO).0),
            vm::map_and_resume(va, rw(pa) & !bits::UXN),
            sys::upcall_resume_mapping(get(R_PUBLIC), i, rw(pa)),
            vm::map_and_resume(va, rw(get(R_CHILDS))),
            vm::map_and_resume(va, rw(past)),
            vm::map_and_resume(va, rw(table)),
            sys::upcall_resume_mapping(table, 1 << 61 | get(R_EMPTY), rw(pa)), // (8 times it wraps)
            vm::map_and_resume(va, rw(pa) | 1 << 52),
            vm::map_and_resume(va, rw(pa) & !bits::PXN),
            sys::upcall_resume_mapping(get(R_OWN), i, rw(pa)),
            sys::upcall_resume_mapping(get(R_L2), i, rw(pa)),
            sys::upcall_resume_mapping(get(R_UNLINKED), i, rw(pa)),
            sys::upcall_resume_mapping(table + 8 * (get(R_EMPTY) - i), i, rw(pa)), // (its entry i: empty)
            sys::upcall_resume_mapping(past, i, rw(pa)),
            sys::upcall_resume_mapping(get(R_CHILDS_TABLE), i, rw(pa)),
            sys::upcall_resume_mapping(get(R_FROZEN), get(R_FROZEN_ENTRY), rw(pa)),
        ];
        for (slot, e) in RESUME[R_ERRORS..].iter().zip(tries) {
            slot.store(e as i64 as u64, SeqCst);
        }
        let _ = sys::frame_free(EnvId::SELF, pa);
        // A replacement: the neighbour's entry gets the new frame, and this resumes.
        let neighbour = (get(R_NEIGHBOUR) >> 12) & 511;
        sys::upcall_resume_mapping(table, neighbour, rw(get(R_NEW)));
        return false; // (not reached unless it was refused, which the test sees)
    }
    vm::map_and_resume(va, Pte::user_page(get(R_SHARED), RW).0);
    false
}

/// `UpcallResume` with a page entry (`sys::upcall_resume_mapping`) sets it with the checks
/// of `TableSetAt`, and an entry refused leaves the handler running with the error; outside
/// an upcall it is refused before anything is set. An entry it replaces has its frame
/// counted unmapped and its old translation gone. (The vector's fast path sets a new entry
/// of one's own data frame itself: each refusal here is one of its checks, the
/// replacement its test for an entry already there.)
fn resume_mapping_checks() -> Result<(), &'static str> {
    // Three pages in one level-3 table: the one to fault on, a neighbour mapped, and one
    // left empty (the first of three in a row whose index is below 510).
    let base = vm::alloc_va(5);
    let va = (0..3).map(|k| base + k * PAGE).find(|v| (v >> 12) & 511 <= 509).ok_or("no room")?;
    let near = va + PAGE;
    vm::reserve(va).map_err(|_| "reserve")?;
    let old = vm::map_new(near, RW).map_err(|_| "map the neighbour")?;
    // SAFETY: `near` maps `old` read-write.
    unsafe { (near as *mut u64).write_volatile(0x5ca1ab1e) };
    let table = Pte(sys::table_get(EnvId::SELF, va, 2).map_err(|_| "table")?).addr();
    let pa = sys::frame_alloc(EnvId::SELF, None).map_err(|_| "alloc")?;
    let outside = sys::upcall_resume_mapping(table, (va >> 12) & 511, Pte::user_page(pa, RW).0);
    check(vm::entry(va) == 0, "UpcallResume outside an upcall set the entry")?;
    check(outside == Error::Invalid, "UpcallResume outside an upcall was not refused")?;
    use exo_libos::abi::frame::{KERNEL, PUBLIC};
    let k = vm::kinfo();
    let frames = || (0..k.frames).map(|i| k.ram_base + i * PAGE);
    let kind = |want| move |pa: &u64| *pa != 0 && vm::frame_entry(*pa).is_some_and(|e| e.kind == want);
    let child = sys::env_create(0).map_err(|_| "create a child")?;
    let childs = sys::frame_alloc(child, None).map_err(|_| "a frame for the child")?;
    let root = sys::frame_alloc(child, None).map_err(|_| "a root for the child")?;
    sys::table_bind(child, root, 0).map_err(|_| "bind the child's root")?;
    let childs_table = vm::ensure_tables(child, va).map_err(|_| "the child's tables")?;
    // Shared with the child by mapping it there, then unmapped: marked shared, mapped nowhere.
    let shared = sys::frame_alloc(EnvId::SELF, None).map_err(|_| "alloc")?;
    sys::table_set(child, va, 3, Pte::user_page(shared, RO).0).map_err(|_| "share with the child")?;
    sys::table_set(child, va, 3, 0).map_err(|_| "unmap from the child")?;
    use exo_libos::abi::frame::{SHARED_RO, SHARED_RW, ZEROED};
    let marks = |pa| vm::frame_entry(pa).map_or(0, |e| e.flags);
    check(marks(shared) & SHARED_RO != 0, "a frame mapped into a child is not marked shared")?;
    sys::table_bind(EnvId::SELF, pa, 3).map_err(|_| "bind a table")?;
    // A frozen table of ours: a fork freezes the text's tables to link them into the child.
    in_child(|| 0)?;
    let (frozen, frozen_entry) = frozen_empty_entry().ok_or("no frozen table of ours with an empty entry")?;
    let entries = |t: u64| vm::frame_entry(t).map_or(0, |e| e.entries);
    let region = va & !(0x20_0000 - 1);
    let empty = ((va + 2 * PAGE) >> 12) & 511;
    check(sys::table_get(EnvId::SELF, region + empty * PAGE, 3) == Ok(0), "the third page is mapped")?;
    let entries_before = entries(table);
    let inputs = [
        (R_KERNEL, frames().find(kind(KERNEL)).ok_or("no kernel frame")?),
        (R_PUBLIC, frames().find(kind(PUBLIC)).ok_or("no public frame")?),
        (R_CHILDS, childs),
        (R_OWN, old),
        (R_L2, Pte(sys::table_get(EnvId::SELF, va, 1).map_err(|_| "level 2")?).addr()),
        (R_UNLINKED, pa),
        (R_CHILDS_TABLE, childs_table),
        (R_FROZEN, frozen),
        (R_FROZEN_ENTRY, frozen_entry),
        (R_NEIGHBOUR, near),
        (R_NEW, sys::frame_alloc(EnvId::SELF, None).map_err(|_| "alloc")?),
        (R_EMPTY, empty),
        (R_SHARED, shared),
    ];
    for (i, v) in inputs {
        RESUME[i].store(v, SeqCst);
    }
    set_hook(Some(resume_mapping_hook));
    // SAFETY: `va` is unmapped until the hook maps a frame of ours there, read-write.
    let word = unsafe { (va as *const u64).read_volatile() };
    set_hook(None);
    // SAFETY: `near` maps a frame of ours (the new one, if the replacement was made).
    let near_word = unsafe { (near as *const u64).read_volatile() };
    let new = RESUME[R_NEW].load(SeqCst);
    let errors: [i64; RESUME_REFUSED.len()] =
        core::array::from_fn(|i| RESUME[R_ERRORS + i].load(SeqCst) as i64);
    let runs = RESUME[RESUME.len() - 1].load(SeqCst);
    let replaced = Pte(vm::entry(near)).addr() == new;
    let counts = [old, new].map(|pa| vm::frame_entry(pa).map_or(u16::MAX, |e| e.maps));
    // The page mapped at the last resume (a new entry of our own frame: the fast path's).
    let last = vm::frame_entry(Pte(vm::entry(va)).addr());
    let last_ok = last.is_some_and(|f| f.maps == 1 && f.flags & ZEROED == 0);
    let unshared = marks(shared) & (SHARED_RO | SHARED_RW) == 0;
    let entries_after = entries(table);
    vm::unmap_free(va).map_err(|_| "unmap")?;
    vm::unmap_free(near).map_err(|_| "unmap the neighbour")?;
    let old_freed = sys::frame_free(EnvId::SELF, old).is_ok();
    sys::table_unbind(EnvId::SELF, pa).map_err(|_| "unbind")?;
    sys::frame_free(EnvId::SELF, pa).map_err(|_| "free")?;
    let _ = sys::env_destroy(child);
    check(word == 0, "the page mapped at the resume does not hold the zeros of its fresh frame")?;
    for (got, want) in errors.iter().zip(RESUME_REFUSED) {
        check(
            *got == want as i64,
            "an entry UpcallResume should refuse was not refused as TableSetAt would",
        )?;
    }
    check(runs == 2, "the replacement did not resume (or the handler ran more than twice)")?;
    check(replaced, "the replacement did not set the entry")?;
    check(counts == [0, 1], "the replaced frame is still counted mapped, or the new one not")?;
    check(near_word == 0, "the old translation of a replaced entry was still used")?;
    check(old_freed, "the replaced frame could not be freed")?;
    check(last_ok, "the frame mapped at the resume is not counted mapped once, or still marked zeroed")?;
    check(entries_after == entries_before + 1, "the table's count of entries did not grow by the one set")?;
    check(unshared, "a frame mapped writable where nothing else maps it is still marked shared")
}

/// A frozen level-3 table of ours that covers text (a fork froze it) and an empty entry in
/// it: the text's last region ends before its 2 MiB do.
fn frozen_empty_entry() -> Option<(u64, u64)> {
    let text = resume_mapping_checks as *const () as u64 & !(0x20_0000 - 1);
    (0..4).map(|r| text + r * 0x20_0000).find_map(|region| {
        let l2 = Pte(sys::table_get(EnvId::SELF, region, 2).ok()?);
        if !l2.is_valid() || l2.0 & bits::FROZEN_LINK == 0 {
            return None;
        }
        let empty =
            (0..512).find(|j| sys::table_get(EnvId::SELF, region + j * PAGE, 3).is_ok_and(|e| e == 0))?;
        Some((l2.addr(), empty))
    })
}

fn written_frame_as_table() -> Result<(), &'static str> {
    use exo_libos::abi::frame::ZEROED;
    let zeroed = |pa: u64| vm::frame_entry(pa).is_some_and(|f| f.flags & ZEROED != 0);
    // Every entry the first page of RAM, writable from EL0, were the frame a table.
    let forged = Pte::user_page(vm::kinfo().ram_base, RW).0;
    let va = vm::alloc_va(1);
    let empty_once_bound = |pa: u64| -> Result<(), &'static str> {
        sys::table_bind(EnvId::SELF, pa, 3).map_err(|_| "bind")?;
        vm::map_frame(va, pa, RO).map_err(|_| "map the table")?;
        // SAFETY: `va` maps the table read-only while the slice is read.
        let empty = unsafe { core::slice::from_raw_parts(va as *const u64, 512) }.iter().all(|&w| w == 0);
        vm::unmap(va).map_err(|_| "unmap")?;
        sys::table_unbind(EnvId::SELF, pa).map_err(|_| "unbind")?;
        sys::frame_free(EnvId::SELF, pa).map_err(|_| "free")?;
        check(empty, "a table kept what was written to its frame")
    };
    // Fresh: marked, bound as it is.
    let pa = sys::frame_alloc(EnvId::SELF, None).map_err(|_| "alloc")?;
    check(zeroed(pa), "a fresh frame is not marked zeroed")?;
    empty_once_bound(pa)?;
    // Written through a mapping, then unmapped.
    let pa = vm::map_new(va, RW).map_err(|_| "map")?;
    check(!zeroed(pa), "a mapped frame is still marked zeroed")?;
    // SAFETY: `va` maps `pa` read-write.
    unsafe { core::slice::from_raw_parts_mut(va as *mut u64, 512).fill(forged) };
    vm::unmap(va).map_err(|_| "unmap")?;
    check(!zeroed(pa), "a written frame is marked zeroed again once unmapped")?;
    empty_once_bound(pa)?;
    // Mapped read-only only: the mark goes too (no mapping keeps it).
    let pa = sys::frame_alloc(EnvId::SELF, None).map_err(|_| "alloc")?;
    vm::map_frame(va, pa, RO).map_err(|_| "map")?;
    vm::unmap(va).map_err(|_| "unmap")?;
    check(!zeroed(pa), "a frame mapped read-only is still marked zeroed")?;
    empty_once_bound(pa)?;
    // Mapped by the parent into its child's tables; the child writes it and exits.
    let pa = sys::frame_alloc(EnvId::SELF, None).map_err(|_| "alloc")?;
    let child = match process::fork().map_err(|_| "fork")? {
        Fork::Child => {
            let mut tries = 0;
            while sys::table_get(EnvId::SELF, va, 3).map_or(true, |e| !Pte(e).is_valid()) && tries < 10_000 {
                sys::yield_now();
                tries += 1;
            }
            // SAFETY: the parent mapped `pa` read-write at `va` in this child's tables (or
            // the write faults, and the child dies: the parent's check fails).
            unsafe { core::slice::from_raw_parts_mut(va as *mut u64, 512).fill(forged) };
            sys::exit(0)
        }
        Fork::Parent(c) => c,
    };
    vm::ensure_tables(child, va).map_err(|_| "child's tables")?;
    sys::table_set(child, va, 3, Pte::user_page(pa, RW).0).map_err(|_| "map into the child")?;
    check(process::wait(child) == Ok(0), "the child could not write the frame")?;
    check(!zeroed(pa), "a frame a child wrote is marked zeroed")?;
    empty_once_bound(pa)
}

/// A call right is one bit per slot, and `EnvCreate` clears every right to the slot it
/// fills: a right to a server that is gone must not reach the next environment made in
/// its slot.
fn stale_right() -> Result<(), &'static str> {
    fn echo(c: &Call) -> [u64; 4] {
        c.args
    }
    let old = server(echo)?;
    check(
        sys::pct_call(old, [1, 2, 3, 4], 0) == Ok([1, 2, 3, 4]),
        "the right to the first server does not work",
    )?;
    sys::env_destroy(old).map_err(|_| "destroy")?;
    let _ = process::wait(old);
    // Environments made until one takes the gone one's slot (each takes the first free).
    let mut extra = [EnvId(0); 16];
    let mut new = EnvId(0);
    for e in extra.iter_mut() {
        new = match process::fork().map_err(|_| "fork")? {
            Fork::Child => sys::exit(-(exo_libos::ipc::serve(echo) as i32)),
            Fork::Parent(c) => c,
        };
        if new.slot() == old.slot() {
            break;
        }
        *e = new;
    }
    let parked = || vm::env_info(new).is_some_and(|i| i.state == exo_libos::abi::env_state::BLOCKED);
    while new.slot() == old.slot() && !parked() {
        sys::yield_now();
    }
    let same_slot = new.slot() == old.slot() && new != old;
    let call = sys::pct_call(new, [0; 4], 0);
    let stale = sys::pct_call(old, [0; 4], 0);
    for e in extra.into_iter().filter(|e| e.0 != 0).chain([new]) {
        let _ = sys::env_destroy(e);
        let _ = process::wait(e);
    }
    check(same_slot, "the next environment did not take the gone one's slot")?;
    check(call == Err(Error::Denied), "a right to a gone environment called the next in its slot")?;
    check(stale.is_err(), "a call to a gone environment went somewhere")
}

/// Memory review: a program maps one of its own level-3 tables read-only as a page (which
/// the kernel allows) at an address whose level-3 table its teardown reaches after that
/// one. Teardown frees the table first, then uncounts the page entry that mapped it: the
/// free frame must not be left counting a mapping (0 - 1 = 65535 in its public entry).
fn table_mapped_as_page_teardown() -> Result<(), &'static str> {
    let w = words();
    w[410].store(0, SeqCst);
    let status = in_child(|| {
        let low = vm::alloc_va(1);
        let Ok(table) = vm::l3_table(low) else { return 1 };
        let high = vm::alloc_va(1024) + 1023 * PAGE; // 4 MiB on: another level-3 table
        if vm::map_frame(high, table, RO).is_err() {
            return 2;
        }
        words()[410].store(table, SeqCst);
        0
    })?;
    let table = w[410].load(SeqCst);
    let f = vm::frame_entry(table);
    check(status == 0 && table != 0, "the child could not map its table as a page")?;
    let freed = f.is_some_and(|f| f.kind == exo_libos::abi::frame::FREE);
    check(!freed || f.is_some_and(|f| f.maps == 0), "a freed table still counts a mapping (underflow)")
}

/// Memory review: a frame's mapping count (`maps`, 16 bits) is one counter for every space
/// that maps it, and only the owner's own space keeps a reserve (the last 4096 counts). A
/// child that maps a page its parent shares with it (here the page `fork` shares
/// read-write with every child) until the count is full must not stop the parent sharing
/// it with anyone else: the next `fork` still works.
fn shared_map_count_flood() -> Result<(), &'static str> {
    let w = words();
    w.iter().for_each(|w| w.store(0, SeqCst));
    let shared = Pte(vm::entry(w as *const _ as u64)).addr();
    let (child, done) = flooder(shared)?;
    let fork_works = in_child(|| 5) == Ok(5);
    let _ = sys::env_destroy(child);
    check(done && w[1].load(SeqCst) > 60_000, "the flooding child did not map the page")?;
    check(fork_works, "a child used up its parent's shared page's mapping count: fork failed")
}

/// Memory review (the kernel holds; no test had tried it): a child fills a page and has a
/// level-3 table full of page entries (physical addresses), then dies. Teardown puts both
/// on the free list as they are; whoever takes them next, by address, must read zeros.
fn dead_childs_frames_zeroed() -> Result<(), &'static str> {
    let w = words();
    w[420..423].iter().for_each(|w| w.store(0, SeqCst));
    let view = vm::alloc_va(1);
    vm::reserve(view).map_err(|_| "reserve")?; // no table taken after the child dies
    let status = in_child(|| {
        let va = vm::alloc_va(512) & !(0x20_0000 - 1); // (a table's worth: all of it ours)
        let Ok(table) = vm::l3_table(va + 0x20_0000) else { return 1 };
        let Ok(page) = vm::map_new(va + 0x20_0000, RW) else { return 2 };
        // SAFETY: just mapped read-write.
        unsafe { core::ptr::write_bytes((va + 0x20_0000) as *mut u8, 0xa5, PAGE as usize) };
        let w = words();
        w[420].store(page, SeqCst);
        w[421].store(table, SeqCst);
        0
    })?;
    let mut dirty = 0;
    let mut taken = 0;
    for pa in [w[420].load(SeqCst), w[421].load(SeqCst)] {
        if pa == 0 || sys::frame_alloc(EnvId::SELF, Some(pa)).is_err() {
            continue; // (another environment took it first: not this test's to see)
        }
        taken += 1;
        if vm::map_frame(view, pa, RO).is_ok() {
            // SAFETY: just mapped read-only, a whole page.
            let words = unsafe { core::slice::from_raw_parts(view as *const u64, 512) };
            dirty += words.iter().any(|&x| x != 0) as u32;
            let _ = vm::unmap(view);
        }
        let _ = sys::frame_free(EnvId::SELF, pa);
    }
    check(status == 0, "the child could not fill its page")?;
    check(taken > 0, "neither frame could be taken back by address")?;
    check(dirty == 0, "a dead child's frame reached its next owner unzeroed")
}

/// Memory review: the public pages (frame table, environment table, kernel information
/// page) were zeroed at boot in the cache (`dc zva`) and are written through it ever since,
/// and the kernel never cleans them: a non-cacheable view reads memory under the cache,
/// which on hardware can still hold what was there before boot (a previous session's data
/// after a warm reboot). Such a view must be refused; a cacheable read-only one is fine.
/// (QEMU models no caches, so this shows the refusal, not the stale bytes.)
fn public_pages_cacheable_only() -> Result<(), &'static str> {
    let k = vm::kinfo();
    let va = vm::alloc_va(1);
    let nc = |pa: u64| (Pte::user_page(pa, RO).0 & !bits::ATTR_MASK) | (attr::NORMAL_NC << bits::ATTR_SHIFT);
    let mut allowed = 0;
    for pa in [k.frame_table, k.env_table] {
        if vm::map(va, nc(pa)).is_ok() {
            allowed += 1;
            let _ = vm::unmap(va);
        }
    }
    let cacheable = vm::map_frame(va, k.frame_table, RO);
    let _ = vm::unmap(va);
    check(cacheable.is_ok(), "the frame table could not be mapped read-only")?;
    check(allowed == 0, "a public kernel page was mapped non-cacheable")
}

/// Memory review: `TableSetBatch` returns how many ops it applied, or the first one's error
/// if none was. Its ops sit in the caller's memory, read sixteen at a time: seventeen ops
/// whose last lies on an unmapped page must report the sixteen entries already changed,
/// not an error that tells the caller nothing changed.
fn batch_cut_short() -> Result<(), &'static str> {
    let me = EnvId::SELF;
    let buf = vm::alloc_va(2); // the first page mapped, the second not
    vm::map_new(buf, RW).map_err(|_| "map")?;
    let target = (vm::alloc_va(1024) & !(0x20_0000 - 1)) + 0x20_0000; // (wholly ours)
    vm::reserve(target).map_err(|_| "reserve")?;
    let pa = sys::frame_alloc(me, None).map_err(|_| "alloc")?;
    let at = buf + PAGE - 16 * size_of::<TableOp>() as u64; // op 16 is on the second page
                                                            // SAFETY: `at..buf + PAGE` lies in the page just mapped read-write.
    let ops = unsafe { core::slice::from_raw_parts_mut(at as *mut TableOp, 16) };
    for (i, op) in ops.iter_mut().enumerate() {
        *op = TableOp { va: target + i as u64 * PAGE, level: 3, pte: Pte::user_page(pa, RO).0 };
    }
    // The raw call: the library's would touch the unmapped page first.
    let r = exo_libos::abi::result(sys::raw(Sys::TableSetBatch as u64, [0, at, 17, 0, 0, 0]));
    let changed = (0..16).filter(|i| sys::table_get(me, target + i * PAGE, 3).is_ok_and(|e| e != 0)).count();
    for i in 0..16 {
        let _ = sys::table_set(me, target + i * PAGE, 3, 0);
    }
    let _ = sys::frame_free(me, pa);
    check(changed == 16, "the first sixteen ops were not applied")?;
    check(r == Ok(16), "a batch that changed sixteen entries reported an error")
}
