//! EL0 tests of protected control transfer: calls and replies, rights, frame grants, and
//! every way a call can fail. Run by init with `exo.test=ipc`.

use core::sync::atomic::{AtomicU64, Ordering::SeqCst};

use crate::runner::check;
use exo_libos::abi::pte::Pte;
use exo_libos::abi::{env_state, EnvId, Error, PCT_GRANT_RW, PCT_NONBLOCK, PCT_TIMEOUT_SHIFT};
use exo_libos::ipc::{self, Call};
use exo_libos::process::{self, Fork};
use exo_libos::sys;
use exo_libos::vm::{self, RO, RW, SHARED};

type Test = (&'static str, fn() -> Result<(), &'static str>);

pub const TESTS: &[Test] = &[
    ("call_and_reply_carry_values_both_ways", round_trip),
    ("calls_without_the_right_are_denied_and_rights_revoke", rights),
    ("rights_pass_down_to_descendants_but_not_sideways", delegation),
    ("calling_an_unregistered_or_destroyed_environment_fails", dead_targets),
    ("busy_server_refuses_a_nonblocking_call_and_serves_a_waiting_one", busy),
    ("callee_that_faults_during_a_call_fails_the_call", callee_faults),
    ("callee_that_never_replies_times_the_caller_out", timeout),
    ("granted_frame_is_seen_by_the_callee_and_gone_after_revocation", grants),
    ("garbage_registers_and_forged_grants_are_refused", garbage),
    ("server_survives_a_caller_destroyed_while_it_writes_the_grant", grant_vanishes),
    ("server_writing_a_read_only_grant_in_its_window_still_dies", readonly_window_write),
];

pub fn run(filter: &str) -> usize {
    crate::runner::run_suite("ipctest", TESTS, filter, |test| test())
}

/// Addresses the handlers use (set before `fork`, so the server has them too).
static SHARED_VA: AtomicU64 = AtomicU64::new(0);
static WINDOW: AtomicU64 = AtomicU64::new(0);

fn shared() -> &'static [AtomicU64; 512] {
    // SAFETY: SHARED_VA maps a page shared read-write with every forked child.
    unsafe { &*(SHARED_VA.load(SeqCst) as *const [AtomicU64; 512]) }
}

fn setup_shared() {
    if SHARED_VA.load(SeqCst) == 0 {
        let va = vm::alloc_va(1);
        let pa = sys::frame_alloc(EnvId::SELF, None).expect("shared frame");
        vm::map(va, Pte::user_page(pa, RW).0 | SHARED).expect("map shared");
        SHARED_VA.store(va, SeqCst);
        WINDOW.store(vm::alloc_va(1), SeqCst);
    }
    for w in shared().iter() {
        w.store(0, SeqCst);
    }
}

/// Forks a server running `handler`; returns once it is parked and callable by us.
pub(crate) fn server(handler: impl ipc::Handler) -> Result<EnvId, &'static str> {
    let s = match process::fork().map_err(|_| "fork")? {
        Fork::Child => {
            let e = ipc::serve(handler);
            sys::exit(-(e as i32))
        }
        Fork::Parent(s) => s,
    };
    let parked = || vm::env_info(s).is_some_and(|i| i.state == env_state::BLOCKED);
    while !parked() {
        sys::yield_now();
    }
    sys::pct_allow(EnvId::SELF, s).map_err(|_| "allow")?;
    Ok(s)
}

fn arithmetic(c: &Call) -> [u64; 4] {
    [c.args[0] + c.args[1], c.args[2] * c.args[3], c.caller.0 as u64, 42]
}

fn round_trip() -> Result<(), &'static str> {
    setup_shared();
    let s = server(arithmetic)?;
    let me = vm::me().0 as u64;
    let mut ok = true;
    for i in 0..100u64 {
        ok &= sys::pct_call(s, [i, 7, i, 3], 0) == Ok([i + 7, 3 * i, me, 42]);
    }
    let _ = sys::env_destroy(s);
    check(ok, "wrong values came back")
}

fn rights() -> Result<(), &'static str> {
    setup_shared();
    let s = server(arithmetic)?;
    let client = match process::fork().map_err(|_| "fork")? {
        Fork::Child => {
            let denied = sys::pct_call(s, [0; 4], 0) == Err(Error::Denied);
            // A child cannot give itself the right: it has no authority over the server.
            let no_self_grant = sys::pct_allow(EnvId::SELF, s) == Err(Error::Denied);
            sys::exit((denied && no_self_grant) as i32)
        }
        Fork::Parent(c) => c,
    };
    let first = process::wait(client) == Ok(1);
    sys::pct_disallow(EnvId::SELF, s).map_err(|_| "disallow")?;
    let after = sys::pct_call(s, [0; 4], 0);
    let twice = sys::pct_disallow(EnvId::SELF, s);
    let _ = sys::env_destroy(s);
    check(first, "a call without the right went through")?;
    check(after == Err(Error::Denied), "a revoked right still worked")?;
    check(twice == Err(Error::NotFound), "a right revoked twice")
}

fn delegation() -> Result<(), &'static str> {
    setup_shared();
    let s = server(arithmetic)?;
    let holder = match process::fork().map_err(|_| "fork")? {
        Fork::Child => {
            // Wait for the right, then pass it to a child of our own.
            while sys::pct_call(s, [1, 1, 1, 1], 0).is_err() {
                sys::yield_now();
            }
            let grandchild = match process::fork() {
                Ok(Fork::Child) => {
                    while sys::pct_call(s, [2, 2, 2, 2], 0).is_err() {
                        sys::yield_now();
                    }
                    sys::exit(1)
                }
                Ok(Fork::Parent(g)) => g,
                Err(_) => sys::exit(0),
            };
            let passed = sys::pct_allow(grandchild, s).is_ok();
            let got = process::wait(grandchild) == Ok(1);
            sys::exit((passed && got) as i32)
        }
        Fork::Parent(c) => c,
    };
    let sibling = match process::fork().map_err(|_| "fork")? {
        Fork::Child => loop {
            sys::yield_now();
        },
        Fork::Parent(c) => c,
    };
    sys::pct_allow(holder, s).map_err(|_| "allow")?;
    let ok = process::wait(holder) == Ok(1);
    // The holder cannot hand its right to a sibling: it has no authority over it.
    let _ = sys::env_destroy(sibling);
    let _ = sys::env_destroy(s);
    check(ok, "a held right could not be passed to a descendant")
}

fn dead_targets() -> Result<(), &'static str> {
    setup_shared();
    // Never registered: a child that just waits.
    let idle = match process::fork().map_err(|_| "fork")? {
        Fork::Child => loop {
            sys::yield_now();
        },
        Fork::Parent(c) => c,
    };
    sys::pct_allow(EnvId::SELF, idle).map_err(|_| "allow")?;
    let unregistered = sys::pct_call(idle, [0; 4], 0);
    let _ = sys::env_destroy(idle);
    let gone = sys::pct_call(idle, [0; 4], 0);
    let s = server(arithmetic)?;
    let _ = sys::env_destroy(s);
    let destroyed = sys::pct_call(s, [0; 4], 0);
    check(unregistered == Err(Error::NotFound), "an unregistered environment took a call")?;
    check(gone == Err(Error::Denied) || gone == Err(Error::NotFound), "a dead environment took a call")?;
    check(destroyed == Err(Error::NotFound), "a destroyed server took a call")
}

/// Holds the call until `shared()[0]` is set.
fn slow(c: &Call) -> [u64; 4] {
    shared()[1].store(1, SeqCst);
    while shared()[0].load(SeqCst) == 0 {
        sys::yield_now();
    }
    [c.args[0], 0, 0, 0]
}

fn busy() -> Result<(), &'static str> {
    setup_shared();
    let s = server(slow)?;
    let client = match process::fork_allowing(&[s]).map_err(|_| "fork")? {
        Fork::Child => sys::exit(if sys::pct_call(s, [5, 0, 0, 0], 0) == Ok([5, 0, 0, 0]) { 1 } else { 0 }),
        Fork::Parent(c) => c,
    };
    while shared()[1].load(SeqCst) == 0 {
        sys::yield_now(); // until the client's call is being served
    }
    let nonblocking = sys::pct_call(s, [6, 0, 0, 0], PCT_NONBLOCK);
    // A blocking call from another environment waits its turn, then gets through.
    let second = match process::fork_allowing(&[s]).map_err(|_| "fork")? {
        Fork::Child => sys::exit(if sys::pct_call(s, [7, 0, 0, 0], 0) == Ok([7, 0, 0, 0]) { 1 } else { 0 }),
        Fork::Parent(c) => c,
    };
    shared()[0].store(1, SeqCst);
    let first_ok = process::wait(client) == Ok(1);
    let second_ok = process::wait(second) == Ok(1);
    let _ = sys::env_destroy(s);
    check(nonblocking == Err(Error::Busy), "a busy server did not refuse a non-blocking call")?;
    check(first_ok && second_ok, "a call was lost")
}

fn crash(_: &Call) -> [u64; 4] {
    // SAFETY: deliberately faults (nothing mapped at 8): the server dies mid-call.
    let v = unsafe { core::ptr::dangling::<u64>().read_volatile() };
    [v, 0, 0, 0]
}

fn callee_faults() -> Result<(), &'static str> {
    setup_shared();
    let s = server(crash)?;
    // The server's handler falls to the default upcall handler, which ends the server.
    let r = sys::pct_call(s, [0; 4], 0);
    let status = process::wait(s);
    check(r == Err(Error::NotFound), "the caller did not learn the callee died")?;
    check(status.is_ok(), "the server was not reaped")
}

fn never(_: &Call) -> [u64; 4] {
    loop {
        sys::yield_now();
    }
}

fn timeout() -> Result<(), &'static str> {
    setup_shared();
    let s = server(never)?;
    let r = sys::pct_call(s, [0; 4], 5 << PCT_TIMEOUT_SHIFT);
    let _ = sys::env_destroy(s);
    check(r == Err(Error::Timeout), "no timeout")
}

/// Maps the granted frame, reads word 0, writes word 1 if writable; `args[0]` = 1 asks
/// only whether the previous mapping is still there and whether mapping again works.
fn use_grant(c: &Call) -> [u64; 4] {
    let va = WINDOW.load(SeqCst);
    if c.args[0] == 1 {
        let still = vm::entry(va) != 0;
        let again = vm::map_frame(va, c.args[1], RO).is_ok();
        return [still as u64, again as u64, 0, 0];
    }
    let perm = if c.frame_writable { RW } else { RO };
    if vm::map_frame(va, c.frame, perm).is_err() {
        return [u64::MAX, 0, 0, 0];
    }
    // SAFETY: just mapped; the caller keeps the frame alive for the grant's life.
    let word = unsafe { (va as *const u64).read_volatile() };
    if c.frame_writable {
        // SAFETY: the second word of the page mapped at `va` just above.
        let next = unsafe { (va as *mut u64).add(1) };
        // SAFETY: that page was mapped writable, since the grant is writable.
        unsafe { next.write_volatile(word + 1) };
    }
    let writable_refused = !c.frame_writable && vm::map_frame(va, c.frame, RW).is_err();
    [word, writable_refused as u64, 0, 0]
}

fn grants() -> Result<(), &'static str> {
    setup_shared();
    let s = server(use_grant)?;
    // The client is the server's sibling, so only the grant lets the server map its frame.
    let client = match process::fork_allowing(&[s]).map_err(|_| "fork")? {
        Fork::Child => sys::exit(grant_client(s)),
        Fork::Parent(c) => c,
    };
    let status = process::wait(client).map_err(|_| "wait")?;
    let _ = sys::env_destroy(s);
    check(status & 1 != 0, "read-only grant not seen, or mappable writable")?;
    check(status & 2 != 0, "read-write grant not writable")?;
    check(status & 4 != 0, "the mapping survived revocation")?;
    check(status & 8 != 0, "ungranted twice")?;
    check(status & 16 != 0, "the server could map the frame without a grant")
}

/// Runs in the client; returns a bit for each check that held.
fn grant_client(s: EnvId) -> i32 {
    let va = vm::alloc_va(1);
    let Ok(pa) = vm::map_new(va, RW) else { return 0 };
    // SAFETY: mapped read-write just above.
    unsafe { (va as *mut u64).write_volatile(0x5eed) };
    let mut bits = 0;
    // Before any grant, the server cannot map it.
    if sys::pct_call(s, [1, pa, 0, 0], 0).is_ok_and(|r| r[1] == 0) {
        bits |= 16;
    }
    if sys::pct_call(s, [0; 4], pa) == Ok([0x5eed, 1, 0, 0]) {
        bits |= 1;
    }
    let rw = sys::pct_call(s, [0; 4], pa | PCT_GRANT_RW);
    // SAFETY: the second word of the page at `va`.
    let second = unsafe { (va as *const u64).add(1) };
    // SAFETY: `va` is still mapped read-write (only the server's mapping of the grant was
    // touched).
    let written = unsafe { second.read_volatile() };
    if rw.map(|r| r[0]) == Ok(0x5eed) && written == 0x5eee {
        bits |= 2;
    }
    if sys::pct_ungrant(s, pa).is_ok() && sys::pct_call(s, [1, pa, 0, 0], 0) == Ok([0, 0, 0, 0]) {
        bits |= 4;
    }
    if sys::pct_ungrant(s, pa) == Err(Error::NotFound) {
        bits |= 8;
    }
    let _ = vm::unmap_free(va);
    bits
}

fn garbage() -> Result<(), &'static str> {
    setup_shared();
    let s = server(arithmetic)?;
    let va = vm::alloc_va(1);
    let theirs = vm::map_new(va, RW).map_err(|_| "frame")?;
    let forged = [
        sys::pct_call(s, [0; 4], 0x1000),                  // a frame that is not RAM
        sys::pct_call(s, [0; 4], vm::kinfo().frame_table), // a public kernel frame
        sys::pct_call(EnvId(u32::MAX), [0; 4], 0),
        sys::pct_call(EnvId::SELF, [0; 4], 0),
    ];
    let raw = sys::raw(40, [u64::MAX, 1, 2, 3, 4, u64::MAX]) as i64;
    let reply_outside = sys::raw(41, [0; 6]) as i64;
    let mut flood = true;
    for i in 0..500 {
        flood &= sys::pct_call(s, [i, 0, 0, 0], 0).is_ok();
    }
    let _ = sys::env_destroy(s);
    vm::unmap_free(va).map_err(|_| "free")?;
    let _ = theirs;
    check(forged[0].is_err() && forged[1] == Err(Error::Denied), "a forged grant was accepted")?;
    check(forged[2] == Err(Error::Denied) && forged[3] == Err(Error::Denied), "a bogus target was accepted")?;
    check(raw == Error::Invalid as i64 && reply_outside == Error::Invalid as i64, "garbage accepted")?;
    check(flood, "the server stopped answering under a flood of calls")
}

/// Maps the granted frame at the window and fills it with `args[0]` slowly: it writes and
/// yields until `shared()[0]` is set, then writes the whole page. Records in
/// `shared()[args[0]]` whether the grant vanished during the call.
fn slow_writer(c: &Call) -> [u64; 4] {
    let va = WINDOW.load(SeqCst);
    if ipc::set_grant_window(va, 1).is_err() || vm::map_frame(va, c.frame, RW).is_err() {
        return [u64::MAX, 0, 0, 0];
    }
    shared()[1].store(1, SeqCst);
    let page = va as *mut u64;
    let mut i = 0;
    while shared()[0].load(SeqCst) == 0 && i < 1_000_000 {
        // SAFETY: word i % 512 of the page at `va`: the grant, or (once it vanished) the
        // scratch page the libOS puts in its place.
        unsafe { page.wrapping_add(i % 512).write_volatile(c.args[0]) };
        sys::yield_now();
        i += 1;
    }
    for w in 0..512 {
        // SAFETY: as above.
        unsafe { page.wrapping_add(w).write_volatile(c.args[0]) };
    }
    // SAFETY: as above.
    let back = unsafe { page.read_volatile() };
    shared()[c.args[0] as usize % 512].store(ipc::grant_lost() as u64, SeqCst);
    [back, 0, 0, 0]
}

fn grant_vanishes() -> Result<(), &'static str> {
    setup_shared();
    let s = server(slow_writer)?;
    let doomed = match process::fork_allowing(&[s]).map_err(|_| "fork")? {
        Fork::Child => {
            let va = vm::alloc_va(1);
            let Ok(pa) = vm::map_new(va, RW) else { sys::exit(0) };
            let _ = sys::pct_call(s, [5, 0, 0, 0], pa | PCT_GRANT_RW);
            sys::exit(1)
        }
        Fork::Parent(c) => c,
    };
    let mut spins = 0;
    while shared()[1].load(SeqCst) == 0 && spins < 1_000_000 {
        sys::yield_now(); // until the server is writing into the doomed caller's frame
        spins += 1;
    }
    let in_call = shared()[1].load(SeqCst) == 1;
    let _ = sys::env_destroy(doomed);
    shared()[0].store(1, SeqCst); // the server now writes into a grant that is gone
                                  // A fresh caller with a fresh grant is answered, and its frame filled.
    let va = vm::alloc_va(1);
    let pa = vm::map_new(va, RW).map_err(|_| "frame")?;
    // A blocking call: it waits while the server finishes the dead caller's call.
    let reply = sys::pct_call(s, [9, 0, 0, 0], pa | PCT_GRANT_RW);
    let (first_lost, fresh_lost) = (shared()[5].load(SeqCst) == 1, shared()[9].load(SeqCst) == 1);
    // SAFETY: `va` maps our frame read-write.
    let filled = (0..512).all(|w| unsafe { (va as *const u64).wrapping_add(w).read_volatile() } == 9);
    let ungranted = sys::pct_ungrant(s, pa).is_ok();
    let alive = vm::env_info(s).is_some_and(|i| i.state == env_state::BLOCKED);
    let _ = sys::env_destroy(s);
    let _ = vm::unmap_free(va);
    check(in_call, "the doomed caller's call never reached the server")?;
    check(reply == Ok([9, 0, 0, 0]), "the server did not answer after its caller died mid-call")?;
    check(first_lost, "the doomed caller's grant did not vanish mid-call")?;
    check(filled && ungranted, "the fresh caller's frame was not filled")?;
    check(alive, "the server is not parked for the next call")?;
    check(!fresh_lost, "the fresh call was taken for a vanished grant")
}

/// Names the window, maps the grant read-only there and writes to it: a fault at a mapped
/// page of the window is the server's own bug, not a vanished grant.
fn write_read_only(c: &Call) -> [u64; 4] {
    let va = WINDOW.load(SeqCst);
    if ipc::set_grant_window(va, 1).is_err() || vm::map_frame(va, c.frame, RO).is_err() {
        return [u64::MAX, 0, 0, 0];
    }
    // SAFETY: deliberately faults: `va` maps the grant read-only.
    unsafe { (va as *mut u64).write_volatile(1) };
    [0, 0, 0, 0]
}

fn readonly_window_write() -> Result<(), &'static str> {
    setup_shared();
    let s = server(write_read_only)?;
    let va = vm::alloc_va(1);
    let pa = vm::map_new(va, RW).map_err(|_| "frame")?;
    let r = sys::pct_call(s, [0; 4], pa);
    let status = process::wait(s);
    let _ = vm::unmap_free(va);
    check(r == Err(Error::NotFound), "a write to a read-only grant was papered over")?;
    check(status.is_ok(), "the server was not reaped")
}
