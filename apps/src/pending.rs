//! A pending upcall comes first, also across a direct switch: an environment the kernel
//! has asked for frames back (a revocation request, which waits in `Env::pending` while the
//! environment does not run) must take that upcall before any other code of it runs. The
//! vector's fast paths switch to another environment without a pass of the scheduler:
//! `el0_call` into a parked server, `el0_reply` into a waiting caller, `el0_yield` into a
//! runnable environment; each must miss when its target has an upcall pending, and leave it
//! to the general path, which delivers it first (`Kernel::run`, `deliver_pending`). So must
//! `el0_resume`, which ends an upcall handler's run with no pass of `upcall_resume`: a
//! request that came while the handler ran waits until then.
//!
//! Each test gives a child every free frame (`FrameAlloc` for a descendant) until memory
//! runs out, so that the kernel asks that child, now holding the most, for frames back
//! while it is parked, waiting for a reply or runnable; then switches to it directly on
//! core 0. The child's hook counts the request; the code that runs after the switch (the
//! call's entry, the caller after its call, the yielder's loop) records what count it saw
//! first. It must have seen the request.

use core::sync::atomic::{AtomicU64, Ordering::SeqCst};

use crate::runner::{check, wait_for};
use exo_libos::abi::pte::Pte;
use exo_libos::abi::{env_state, upcall, EnvId, Error, Sys};
use exo_libos::ipc::{self, Call};
use exo_libos::process::{self, Fork};
use exo_libos::sys;
use exo_libos::upcall::{set_hook, Upcall};
use exo_libos::vm::{self, RW, SHARED};

/// Words of the shared page: revocation requests the child's hook saw; 1 + what that count
/// was when the child's code ran after the switch (0: not yet); two goes from the parent;
/// the child's progress.
const ASKED: usize = 0;
const SEEN: usize = 1;
const GO: usize = 2;
const TURNS: usize = 3;
const READY: usize = 4;
/// A frame the parent gave the child, for it to map at its fault (`resume_after_pending_upcall`).
const FRAME: usize = 5;

/// Where the page of words this environment shares read-write with its children is mapped
/// (0: not yet). A static, so that the hook, which may not allocate, finds it.
static WORDS_VA: AtomicU64 = AtomicU64::new(0);

fn words() -> Result<&'static [AtomicU64; 512], &'static str> {
    if WORDS_VA.load(SeqCst) == 0 {
        let va = vm::alloc_va(1);
        let pa = sys::frame_alloc(EnvId::SELF, None).map_err(|_| "shared frame")?;
        vm::map(va, Pte::user_page(pa, RW).0 | SHARED).map_err(|_| "map shared")?;
        WORDS_VA.store(va, SeqCst);
    }
    let w = shared();
    w.iter().for_each(|w| w.store(0, SeqCst));
    Ok(w)
}

/// The page [`words`] mapped: for the children's hooks and handlers, which run only in
/// children forked after it.
fn shared() -> &'static [AtomicU64; 512] {
    let va = WORDS_VA.load(SeqCst);
    assert!(va != 0, "the shared page is mapped before any child is forked");
    // SAFETY: `va` is not 0, so `words` mapped a page there read-write and shared with
    // every child forked since, and nothing unmaps it; its words are atomics, so the
    // parent's and the children's uses of it are well-defined.
    unsafe { &*(va as *const [AtomicU64; 512]) }
}

/// The children's upcall hook: counts revocation requests and answers them itself, giving
/// nothing back (the parent frees what it gave).
fn count_revocations(u: &Upcall) -> bool {
    if u.kind != upcall::REVOKE {
        return false;
    }
    shared()[ASKED].fetch_add(1, SeqCst);
    true
}

/// Records, once, what the hook's count was when the child's own code got to run.
fn record(w: &[AtomicU64; 512]) {
    let _ = w[SEEN].compare_exchange(0, 1 + w[ASKED].load(SeqCst), SeqCst, SeqCst);
}

/// Gives `child` frames until memory runs out, which makes the kernel ask it, holding the
/// most, for frames back; then frees the last ones given, so that the rest of the system
/// has some to spare. (The others go with the child.)
fn fill_memory_into(child: EnvId) -> Result<(), &'static str> {
    let mut last = [0u64; 256];
    let mut given = 0;
    let error = loop {
        match sys::frame_alloc(child, None) {
            Ok(pa) => {
                last[given % last.len()] = pa;
                given += 1;
            }
            Err(e) => break e,
        }
    };
    // (Its deadline, which stays set, rather than the frames wanted, which a tick may
    // already have taken by force.)
    let asked = vm::env_info(child).is_some_and(|i| i.revoke_deadline != 0);
    for &pa in &last[..given.min(last.len())] {
        let _ = sys::frame_free(child, pa);
    }
    check(error == Error::NoMemory, "giving frames stopped before memory ran out")?;
    check(asked, "the child holding all the memory was not asked for frames back")
}

/// Keeps the caller to core 0, where the vector's fast paths decide a switch between
/// environments that stay there too (children inherit it); returns its affinity before.
fn to_core_0() -> Result<u8, &'static str> {
    let mine = vm::env_info(vm::me()).map_or(0, |e| e.affinity);
    if mine & 1 == 0 || sys::env_set_affinity(EnvId::SELF, 1).is_err() {
        return Err("could not keep to core 0");
    }
    Ok(mine)
}

/// The call's entry of the server in [`call_after_pending_upcall`]: answers with what it
/// saw.
fn report(_: &Call) -> [u64; 4] {
    let w = shared();
    record(w);
    [w[SEEN].load(SeqCst), 0, 0, 0]
}

/// `el0_call`: a server parked in `Serve`, asked for frames back meanwhile, is called.
/// Its revocation upcall must run before the call's entry does.
pub fn call_after_pending_upcall() -> Result<(), &'static str> {
    let w = words()?;
    let mine = to_core_0()?;
    let s = match process::fork().map_err(|_| "fork")? {
        Fork::Child => {
            set_hook(Some(count_revocations));
            sys::exit(-(ipc::serve(report) as i32))
        }
        Fork::Parent(s) => s,
    };
    // A first call faults the server's call stack in: a fault in the entry would deliver
    // the pending upcall on its way back (`UpcallResume`), hiding a direct switch that
    // did not.
    let parked = wait_for(2000, || vm::env_info(s).is_some_and(|i| i.state == env_state::BLOCKED))
        && sys::pct_allow(EnvId::SELF, s).is_ok()
        && sys::pct_call(s, [0; 4], 0) == Ok([1, 0, 0, 0]);
    w[SEEN].store(0, SeqCst);
    let filled = if parked { fill_memory_into(s) } else { Err("the server did not park and serve") };
    let call = sys::pct_call(s, [0; 4], 0);
    let _ = sys::env_destroy(s);
    let _ = sys::env_set_affinity(EnvId::SELF, mine);
    filled?;
    let seen = call.map_err(|_| "the call to the server failed")?[0];
    check(seen > 1, "the call's entry ran before the server's pending revocation upcall")
}

/// The server of [`reply_after_pending_upcall`]: holds the call until [`GO`].
fn hold(_: &Call) -> [u64; 4] {
    let w = shared();
    w[TURNS].store(1, SeqCst);
    while w[GO].load(SeqCst) == 0 {
        sys::yield_now();
    }
    [7, 0, 0, 0]
}

/// `el0_reply`: a caller waiting for its server's reply, asked for frames back meanwhile,
/// is replied to. Its revocation upcall must run before its own code goes on after the
/// call.
pub fn reply_after_pending_upcall() -> Result<(), &'static str> {
    let w = words()?;
    let mine = to_core_0()?;
    let s = match process::fork().map_err(|_| "fork")? {
        Fork::Child => sys::exit(-(ipc::serve(hold) as i32)),
        Fork::Parent(s) => s,
    };
    let parked = wait_for(2000, || vm::env_info(s).is_some_and(|i| i.state == env_state::BLOCKED));
    let c = match process::fork().map_err(|_| "fork")? {
        Fork::Child => {
            set_hook(Some(count_revocations));
            while w[READY].load(SeqCst) == 0 {
                sys::yield_now(); // until it holds the right to call
            }
            let call = sys::pct_call(s, [0; 4], 0);
            record(w); // first thing after the call
            sys::exit(if call == Ok([7, 0, 0, 0]) { 0 } else { 1 })
        }
        Fork::Parent(c) => c,
    };
    // The caller (which will hold the most memory, so it is the one asked) calls.
    let allowed = sys::pct_allow(c, s).is_ok();
    w[READY].store(1, SeqCst);
    let waiting = parked
        && allowed
        && wait_for(2000, || {
            w[TURNS].load(SeqCst) == 1 && vm::env_info(c).is_some_and(|i| i.state == env_state::BLOCKED)
        });
    let filled =
        if waiting { fill_memory_into(c) } else { Err("the caller did not come to wait for a reply") };
    w[GO].store(1, SeqCst);
    let status = if waiting { sys::env_wait(c) } else { sys::env_destroy(c).and(Ok(1)) };
    let _ = sys::env_destroy(s);
    let _ = sys::env_set_affinity(EnvId::SELF, mine);
    filled?;
    check(status == Ok(0), "the call did not come back with the server's reply")?;
    check(w[SEEN].load(SeqCst) > 1, "the caller went on before its pending revocation upcall")
}

/// `el0_yield`: a runnable environment, asked for frames back meanwhile, is yielded to.
/// Its revocation upcall must run before its own code does.
pub fn yield_after_pending_upcall() -> Result<(), &'static str> {
    let (w, me) = (words()?, vm::me());
    let mine = to_core_0()?;
    let y = match process::fork().map_err(|_| "fork")? {
        Fork::Child => {
            set_hook(Some(count_revocations));
            loop {
                let _ = sys::yield_to(me);
                if w[GO].load(SeqCst) == 1 {
                    record(w); // first thing after the parent's yield
                }
                w[TURNS].fetch_add(1, SeqCst);
            }
        }
        Fork::Parent(y) => y,
    };
    let started = wait_for(2000, || w[TURNS].load(SeqCst) > 0);
    let filled = if started { fill_memory_into(y) } else { Err("the child never ran") };
    w[GO].store(1, SeqCst);
    let yielded = sys::raw(Sys::YieldTo as u64, [y.0 as u64, 0, 0, 0, 0, 0]) == 0;
    let recorded = wait_for(2000, || w[SEEN].load(SeqCst) != 0);
    let _ = sys::env_destroy(y);
    let _ = sys::env_set_affinity(EnvId::SELF, mine);
    filled?;
    check(yielded && recorded, "the yield to the child did not run it")?;
    check(w[SEEN].load(SeqCst) > 1, "the child's code ran before its pending revocation upcall")
}

/// The child's hook in [`resume_after_pending_upcall`]: counts revocation requests as
/// [`count_revocations`] does; at its page fault, says so and waits (yielding) for the
/// parent's go, then resumes with the frame the parent gave it mapped there.
fn fault_then_wait(u: &Upcall) -> bool {
    if count_revocations(u) {
        return true;
    }
    if u.kind != upcall::DATA_ABORT {
        return false;
    }
    let w = shared();
    w[TURNS].store(1, SeqCst);
    while w[GO].load(SeqCst) == 0 {
        sys::yield_now();
    }
    vm::map_and_resume(u.far & !0xfff, Pte::user_page(w[FRAME].load(SeqCst), RW).0);
    false // (it could not be mapped: the child dies, and the test fails)
}

/// `el0_resume`: an environment asked for frames back while its upcall handler runs ends
/// that run with `UpcallResume` and a page entry of its own (what the fast path decides
/// itself). Its revocation upcall must run before the code the handler interrupted goes on.
pub fn resume_after_pending_upcall() -> Result<(), &'static str> {
    let w = words()?;
    let mine = to_core_0()?;
    let c = match process::fork().map_err(|_| "fork")? {
        Fork::Child => {
            set_hook(Some(fault_then_wait));
            let va = vm::alloc_va(1);
            // Its table made now: the handler maps the page when memory has run out.
            let status = if vm::reserve(va).is_ok() {
                // SAFETY: `va` is unmapped until the hook maps the parent's frame there.
                let _ = unsafe { (va as *const u64).read_volatile() };
                record(w); // first thing after the resume
                0
            } else {
                1
            };
            sys::exit(status)
        }
        Fork::Parent(c) => c,
    };
    let given = sys::frame_alloc(c, None).map(|pa| w[FRAME].store(pa, SeqCst)).is_ok();
    let faulted = given && wait_for(2000, || w[TURNS].load(SeqCst) == 1);
    let filled = if faulted { fill_memory_into(c) } else { Err("the child did not come to its fault") };
    w[GO].store(1, SeqCst);
    let status = if faulted { sys::env_wait(c) } else { sys::env_destroy(c).and(Ok(1)) };
    let _ = sys::env_set_affinity(EnvId::SELF, mine);
    filled?;
    check(status == Ok(0), "the child did not go on after its fault")?;
    check(w[SEEN].load(SeqCst) > 1, "the interrupted code ran before its pending revocation upcall")
}
