//! The runner every EL0 test suite shares: runs a suite's table of tests, reclaims what
//! each test left behind, audits the whole frame table after each one, and prints the
//! `test NAME ... ok` / `test NAME ... FAILED: why` lines `cargo xtask test` counts.

use exo_libos::abi::{env_state, EnvId};
use exo_libos::vm::{self, PAGE};
use exo_libos::{println, process, sys};

/// Runs a suite: each test of `tests` whose name contains `filter` runs
/// through `call`; afterwards its children are reclaimed and the whole frame table is
/// audited. Prints a line per test and a summary; returns the number that failed.
pub fn run_suite<T>(
    suite: &str,
    tests: &[(&str, T)],
    filter: &str,
    call: impl Fn(&T) -> Result<(), &'static str>,
) -> usize {
    let (mut passed, mut failed) = (0, 0);
    for (name, test) in tests.iter().filter(|(n, _)| n.contains(filter)) {
        let result = call(test);
        process::reclaim();
        match result.and_then(|()| audit()) {
            Ok(()) => {
                passed += 1;
                println!("test {name} ... ok");
            }
            Err(why) => {
                failed += 1;
                println!("test {name} ... FAILED: {why}");
            }
        }
    }
    println!("{suite}: {passed} passed, {failed} failed");
    failed
}

/// Every frame is accounted for: free frames match the free count, and every data or
/// table frame belongs to a live environment whose published count matches.
pub fn audit() -> Result<(), &'static str> {
    let k = vm::kinfo();
    // Map every page of the tables first: mapping takes frames, which would move the counts.
    for i in (0..k.frames).step_by((PAGE / 16) as usize) {
        vm::frame_entry(k.ram_base + i * PAGE).ok_or("frame table unreadable")?;
    }
    vm::env_info(vm::me()).ok_or("env table unreadable")?;
    let mut owned = [0u32; 64];
    let mut free = 0;
    let mut seen = 0;
    for (_, f) in vm::frames() {
        seen += 1;
        match f.kind {
            exo_libos::abi::frame::FREE => free += 1,
            exo_libos::abi::frame::DATA | exo_libos::abi::frame::TABLE => {
                let id = EnvId(f.owner);
                let live = vm::env_info(id).is_some_and(|e| e.id == f.owner && e.state != env_state::FREE);
                check(live, "a frame is owned by an environment that is gone")?;
                owned[id.slot() % 64] += 1;
            }
            _ => {}
        }
    }
    check(seen == k.frames, "frame table unreadable")?;
    check(free == k.free_frames, "free frames disagree with the free count")?;
    free_list_intact()?;
    for (slot, &n) in owned.iter().enumerate().take(k.max_envs as usize) {
        let e = vm::env_info(EnvId(slot as u32)).ok_or("env table unreadable")?;
        if e.state != env_state::FREE {
            check(n == e.frames, "an environment's frame count is wrong")?;
        }
    }
    Ok(())
}

/// The kernel's free list, followed from its head through the public table (its pages
/// mapped already: `audit`): every frame on it is free and links back to the one before,
/// and it holds as many frames as the free count, which `audit` has matched to the free
/// frames, so every free frame is on it once and the list ends.
fn free_list_intact() -> Result<(), &'static str> {
    let k = vm::kinfo();
    let (mut at, mut prev, mut n) = (k.free_head, 0, 0);
    while at != 0 {
        check(n < k.free_frames, "the free list is longer than the free count, or loops")?;
        let i = at as usize - 1;
        let f = vm::frame_entry(k.ram_base + i as u64 * PAGE).ok_or("a free-list link leaves the table")?;
        check(f.kind == exo_libos::abi::frame::FREE, "a frame on the free list is not free")?;
        check(f.free_prev(i) == prev, "a free frame's back link is wrong")?;
        (prev, at, n) = (at, f.free_next(i), n + 1);
    }
    check(n == k.free_frames, "the free list is shorter than the free count")
}

/// Yields until `done` holds, for `ms` milliseconds of virtual time at most; returns
/// whether it held (asked once more at the end, so that a change made just then counts).
pub fn wait_for(ms: u64, mut done: impl FnMut() -> bool) -> bool {
    let end = sys::now() + vm::kinfo().counter_hz / 1000 * ms;
    while sys::now() < end {
        if done() {
            return true;
        }
        sys::yield_now();
    }
    done()
}

/// The ELF of program `name` among those built into init (`programs`).
pub fn built_in<'a>(programs: &[(&str, &'a [u8])], name: &str) -> Result<&'a [u8], &'static str> {
    programs.iter().find(|(n, _)| *n == name).map(|(_, e)| *e).ok_or("program not built in")
}

/// A page both a parent and its forked children can write.
pub struct Shared {
    /// Where it is mapped.
    pub va: u64,
}

impl Shared {
    pub fn new() -> Result<Shared, &'static str> {
        let va = vm::alloc_va(1);
        vm::map_new(va, vm::RW).map_err(|_| "shared page")?;
        let e = vm::entry(va);
        vm::map(va, e | vm::SHARED).map_err(|_| "share page")?;
        Ok(Shared { va })
    }
    pub fn word(&self, i: usize) -> &'static core::sync::atomic::AtomicU64 {
        // SAFETY: the page is mapped read-write and shared for the test's life; atomics make
        // use from several environments well-defined.
        unsafe { &*((self.va + 8 * i as u64) as *const core::sync::atomic::AtomicU64) }
    }
    pub fn get(&self, i: usize) -> u64 {
        self.word(i).load(core::sync::atomic::Ordering::SeqCst)
    }
    pub fn set(&self, i: usize, v: u64) {
        self.word(i).store(v, core::sync::atomic::Ordering::SeqCst)
    }
    pub fn add(&self, i: usize, v: u64) {
        self.word(i).fetch_add(v, core::sync::atomic::Ordering::SeqCst);
    }
}

impl Drop for Shared {
    fn drop(&mut self) {
        let _ = vm::unmap_free(self.va);
    }
}

/// `Ok` if `ok`, else the failure `why`.
pub fn check(ok: bool, why: &'static str) -> Result<(), &'static str> {
    if ok {
        Ok(())
    } else {
        Err(why)
    }
}

/// A page shared read-write with every child forked after the first call, zeroed on each
/// call. `va` remembers where it is mapped: one static per suite, so suites never share a
/// page.
pub fn shared_page(va: &core::sync::atomic::AtomicU64) -> &'static [core::sync::atomic::AtomicU64; 512] {
    use core::sync::atomic::Ordering::SeqCst;
    use exo_libos::abi::pte::Pte;
    if va.load(SeqCst) == 0 {
        let at = vm::alloc_va(1);
        let pa = exo_libos::sys::frame_alloc(EnvId::SELF, None).expect("shared frame");
        vm::map(at, Pte::user_page(pa, vm::RW).0 | vm::SHARED).expect("map shared");
        va.store(at, SeqCst);
    }
    // SAFETY: `va` holds the address of a page mapped read-write and shared with every forked
    // child, for good; atomics make use from several environments well-defined.
    let s = unsafe { &*(va.load(SeqCst) as *const [core::sync::atomic::AtomicU64; 512]) };
    s.iter().for_each(|w| w.store(0, SeqCst));
    s
}
