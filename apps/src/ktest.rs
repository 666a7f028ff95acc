//! EL0 tests of the exokernel core: what a libOS can and cannot do with frames, tables,
//! environments, upcalls and the CPU. Run by init with `exo.test=core`; each test prints
//! `test NAME ... ok` or `test NAME ... FAILED: why`, and init exits 0 only if all pass.
//!
//! Helpers fork children (the libOS's copy-on-write fork), so most tests also exercise it.
//! Memory that a child and its parent must both write is mapped `SHARED`.

use exo_libos::abi::pte::{Perm, Pte};
use exo_libos::abi::{env_state, upcall, EnvId, Error, TableOp, STATUS_DESTROYED};
use exo_libos::process::{self, Fork};
use exo_libos::upcall::{set_hook, Upcall};
use exo_libos::vm::{self, PAGE, RO, RW, SHARED};
use exo_libos::{println, sys};

use crate::runner::{check, wait_for, Shared};

use core::sync::atomic::AtomicU64;
use core::sync::atomic::Ordering::SeqCst;

type Test = (&'static str, fn() -> Result<(), &'static str>);

pub const TESTS: &[Test] = &[
    ("null_syscall_returns_zero", null_syscall),
    ("cow_fork_gives_parent_and_child_separate_copies", cow_fork),
    ("forked_child_faults_in_its_stack_and_calls_the_kernel_with_buffers_there", owed_stack),
    ("stack_page_taken_from_a_forked_child_does_not_come_back_zeroed", taken_stack_page),
    ("wait_frees_the_frame_a_parents_copy_on_write_left_to_its_child", wait_frees_orphan),
    ("page_fault_upcall_maps_a_page_on_demand_and_resumes", lazy_fault),
    ("remapped_page_shows_new_contents", tlb_remap),
    ("preemption_switches_between_spinning_environments", preemption),
    ("yield_to_runs_the_named_environment", yield_to),
    ("net_wait_sleeps_unless_the_word_moved_and_yield_to_wakes_only_such_a_sleep", net_wait_wakes),
    ("slice_end_upcall_arrives_when_asked_for", slice_upcall),
    ("slice_end_during_the_handler_comes_at_its_resume_before_the_interrupted_code", slice_end_in_handler),
    ("core_index_register_cannot_be_written_by_a_program", core_index_register_is_not_the_programs),
    ("upcall_can_rewrite_the_interrupted_context", upcall_context),
    ("destroy_returns_every_frame_and_table", destroy_accounting),
    ("libos_cannot_map_a_sibling_frame", sibling_frame),
    ("libos_cannot_map_kernel_device_or_absent_frames", kernel_frames),
    ("frames_taken_by_address_from_deep_in_the_free_list_leave_it_whole", deep_free_frames),
    ("mapped_frame_cannot_become_a_table", mapped_as_table),
    ("table_pages_cannot_form_cycles_or_be_shared", table_cycles),
    ("kernel_half_unaligned_and_wrapped_addresses_are_refused", bad_addresses),
    ("bad_pointers_and_lengths_are_refused", bad_pointers),
    ("cannot_act_on_parent_or_sibling", foreign_envs),
    ("fault_without_handler_kills_only_that_environment", unhandled_fault),
    ("fault_in_the_upcall_handler_kills_the_environment", fault_in_handler),
    ("environment_can_destroy_itself_inside_its_upcall", destroy_in_upcall),
    ("revocation_request_is_honoured_under_memory_pressure", revoke_cooperative),
    ("revocation_deadline_missed_frames_are_repossessed", revoke_abort),
    ("child_forked_after_a_repossession_keeps_its_own_accounts", fork_after_repossession),
    ("memset_and_memcpy_touch_exactly_their_bytes_at_any_alignment", mem_routines),
    ("address_space_handed_out_stops_short_of_execs_area", address_space_ends),
];

/// `vm::alloc_va` hands out address space up to `exec`'s area and no further: a request
/// past it gets `NO_VA`, where nothing can be mapped, and uses nothing up.
fn address_space_ends() -> Result<(), &'static str> {
    let last = exo_libos::exec::AREA / PAGE;
    for pages in [last, 1 << 40, u64::MAX] {
        check(vm::alloc_va(pages) == vm::NO_VA, "address space past exec's area was handed out")?;
    }
    check(vm::map_new(vm::NO_VA, RW).is_err(), "a page was mapped at NO_VA")?;
    let va = vm::alloc_va(1);
    check(va != vm::NO_VA && va + PAGE <= exo_libos::exec::AREA, "a refused request used address space up")?;
    let pa = vm::map_new(va, RW).map_err(|_| "the next page could not be mapped")?;
    check(pa != 0 && vm::unmap_free(va).is_ok(), "the next page could not be unmapped")
}

/// Runs every test whose name contains `filter`; returns the number that failed.
pub fn run(filter: &str) -> usize {
    crate::runner::run_suite("ktest", TESTS, filter, |test| test())
        + crate::hostile::run(filter)
        + crate::pressure::run(filter)
        + crate::fptest::run(filter)
}

fn free_frames() -> u32 {
    vm::kinfo().free_frames
}

/// Forks a child that runs `f` and exits with its result.
fn spawn(f: impl FnOnce() -> i32) -> EnvId {
    match process::fork().expect("fork") {
        Fork::Parent(child) => child,
        Fork::Child => sys::exit(f()),
    }
}

/// The libOS's own `memset` and `memcpy` (`libos/src/mem.rs`, assembly) at every offset
/// and length around their 256-, 64- and 8-byte steps: exactly the bytes asked for change.
fn mem_routines() -> Result<(), &'static str> {
    use core::hint::black_box;
    let mut buf = [0u8; 1200];
    let src: [u8; 1200] = core::array::from_fn(|i| (i * 7 + 3 + i / 251) as u8);
    for off in 0..17 {
        let long = [255, 256, 257, 319, 320, 321, 511, 512, 513, 575, 777, 1024, 1100 - off];
        for len in (0..140).chain(long) {
            buf.fill(0xee);
            let (o, n) = (black_box(off), black_box(len));
            buf[o..o + n].fill(black_box(0x5a));
            let ok =
                buf.iter().enumerate().all(|(i, &b)| b == if (o..o + n).contains(&i) { 0x5a } else { 0xee });
            check(ok, "memset wrote the wrong bytes")?;
            buf.fill(0xee);
            buf[o..o + n].copy_from_slice(&src[black_box(17 - off)..17 - off + n]);
            let ok = buf
                .iter()
                .enumerate()
                .all(|(i, &b)| b == if (o..o + n).contains(&i) { src[17 - off + i - o] } else { 0xee });
            check(ok, "memcpy wrote the wrong bytes")?;
        }
    }
    Ok(())
}

fn null_syscall() -> Result<(), &'static str> {
    check(sys::nop() == Ok(0), "nop did not return 0")
}

static COW_VALUE: AtomicU64 = AtomicU64::new(1);

fn cow_fork() -> Result<(), &'static str> {
    COW_VALUE.store(1, SeqCst);
    let child = spawn(|| {
        if COW_VALUE.load(SeqCst) != 1 {
            return 10;
        }
        COW_VALUE.store(2, SeqCst); // a write to a copy-on-write page
        COW_VALUE.load(SeqCst) as i32
    });
    let status = process::wait(child).map_err(|e| {
        println!("  wait {child:?}: {e:?} {:?}", vm::env_info(child));
        "wait failed"
    })?;
    check(status == 2, "child did not see and change its own copy")?;
    check(COW_VALUE.load(SeqCst) == 1, "parent's copy changed")
}

static ORPHAN_VALUE: AtomicU64 = AtomicU64::new(1);

/// The parent writes a copy-on-write page while its child still maps the frame: the old
/// frame, the parent's, is left mapped by the child alone. `process::wait` frees it once
/// the child is gone (from the libOS's list of such frames, not a walk of the frame table).
fn wait_frees_orphan() -> Result<(), &'static str> {
    ORPHAN_VALUE.store(1, SeqCst); // the page is the parent's own before the fork
    let me = vm::me().0;
    let go = Shared::new()?;
    let child = spawn(|| if wait_for(2000, || go.get(0) == 1) { 0 } else { 1 });
    let va = &ORPHAN_VALUE as *const AtomicU64 as u64 & !(PAGE - 1);
    let old = Pte(vm::entry(va)).addr();
    let shared = vm::frame_entry(old).is_some_and(|f| f.owner == me && f.maps == 2);
    check(shared, "the page is not shared copy-on-write with the child")?;
    ORPHAN_VALUE.store(2, SeqCst); // the parent's copy
    check(Pte(vm::entry(va)).addr() != old, "the parent's write made no copy")?;
    let childs = vm::frame_entry(old).is_some_and(|f| f.owner == me && f.maps == 1);
    check(childs, "the old frame is not the parent's, mapped by the child alone")?;
    go.set(0, 1);
    check(process::wait(child) == Ok(0), "the child did not exit with 0")?;
    let kept = vm::frame_entry(old).is_some_and(|f| f.owner == me);
    check(!kept, "the frame only the child mapped is still the parent's after wait")
}

/// The lowest page of the main stack, never used by the tests' own depth.
const STACK_BASE: u64 = vm::STACK_TOP - vm::STACK_SIZE;

fn mapped(va: u64) -> bool {
    Pte(vm::entry(va)).is_valid()
}

/// Reads a byte at `va` through no Rust reference (an address below the stack pointer
/// holds no Rust object).
fn load(va: u64) -> u8 {
    let b: u32;
    // SAFETY: a one-byte load of `va`; it writes nothing. Where nothing is mapped, the
    // fault goes to the upcall handler as any other would.
    unsafe {
        core::arch::asm!("ldrb {b:w}, [{p}]", p = in(reg) va, b = out(reg) b, options(nostack, readonly))
    };
    b as u8
}

/// A forked child gets no frames for its main stack below the fork's stack pointer
/// (`libos/src/owed.rs`): it faults them in. It recurses a page a call to 20 KiB above the
/// stack's base, each call checking its page on the way back, then calls the kernel with
/// a buffer on a page still owed: the raw call is refused (the kernel faults nothing in),
/// the libOS's wrapper touches the page first. A grandchild forked at the child's own
/// depth does the same.
fn owed_stack() -> Result<(), &'static str> {
    fn in_child() -> i32 {
        let r = check(!mapped(STACK_BASE), "the stack's lowest page is mapped in a new child")
            .and_then(|_| deep(0).map(drop));
        r.map_or_else(
            |e| {
                println!("  {e}");
                1
            },
            |_| 0,
        )
    }
    let child = spawn(|| {
        let me = in_child();
        let grandchild = spawn(in_child);
        me + 2 * process::wait(grandchild).unwrap_or(1)
    });
    let status = process::wait(child).map_err(|_| "wait")?;
    check(status & 1 == 0, "the child's deep stack or its calls failed")?;
    check(status == 0, "the grandchild's deep stack or its calls failed")
}

/// A page a call, written and checked; at the bottom, the system calls.
#[inline(never)]
fn deep(level: u64) -> Result<u64, &'static str> {
    let mut page = [0u64; 512];
    for (i, w) in page.iter_mut().enumerate() {
        *w = level << 16 | i as u64;
    }
    let page = core::hint::black_box(&mut page);
    let here = page.as_ptr() as u64;
    let below = if here > STACK_BASE + 20 * 1024 { deep(level + 1)? } else { at_the_bottom()? };
    let ok = page.iter().enumerate().all(|(i, &w)| w == level << 16 | i as u64);
    check(ok, "a stack page lost what was written to it")?;
    Ok(below + 1)
}

#[inline(never)]
fn at_the_bottom() -> Result<u64, &'static str> {
    use exo_libos::abi::net::NetBind;
    use exo_libos::abi::{result, Sys};
    let (raw, wrapped) = (STACK_BASE, STACK_BASE + PAGE);
    check(!mapped(raw) && !mapped(wrapped), "the pages below a deep stack are mapped")?;
    // A receive ring there (the kernel checks it is mapped writable): flags nobody may
    // set, so that no binding is made.
    let b = NetBind { ring: raw, slots: 1, flags: u32::MAX, ..NetBind::default() };
    let r = result(sys::raw(Sys::NetBind as u64, [&raw const b as u64, 0, 0, 0, 0, 0]));
    check(r == Err(Error::Fault) && !mapped(raw), "the kernel took a buffer on an owed page")?;
    let b = NetBind { ring: wrapped, ..b };
    let r = sys::net_bind(&b);
    check(r.is_err() && r != Err(Error::Fault), "a ring on an owed stack page was refused")?;
    check(mapped(wrapped) && load(wrapped) == 0, "the call did not map a zeroed page under its ring")?;
    Ok(0)
}

/// A page the child faulted in and then lost (unmapped and freed, as a forced
/// repossession takes it) is not owed any more: touching it again ends the child, as for
/// any page a program lost, rather than giving it a zeroed page silently.
fn taken_stack_page() -> Result<(), &'static str> {
    let child = spawn(|| {
        let page = STACK_BASE + 2 * PAGE;
        if mapped(page) || load(page) != 0 || !mapped(page) {
            return 1; // not owed, or not faulted in
        }
        if vm::unmap_free(page).is_err() || mapped(page) {
            return 2;
        }
        load(page) as i32 + 3
    });
    let status = process::wait(child).map_err(|_| "wait")?;
    check(status == exo_libos::abi::killed_status(upcall::DATA_ABORT), "the taken page came back")
}

fn lazy_fault() -> Result<(), &'static str> {
    let base = vm::alloc_va(16);
    vm::add_lazy_region(base, base + 16 * PAGE).map_err(|_| "no lazy slot")?;
    let p = (base + 5 * PAGE + 8) as *mut u64;
    // SAFETY: `p` lies in the lazy region, whose pages the upcall handler maps read-write
    // on the first touch; this read is that touch.
    if unsafe { p.read_volatile() } != 0 {
        return Err("lazy page not zero");
    }
    // SAFETY: the page holding `p` is mapped read-write now (the read above mapped it).
    unsafe { p.write_volatile(0x1234) };
    // SAFETY: the same mapped page.
    check(unsafe { p.read_volatile() } == 0x1234, "write to lazy page lost")?;
    check(vm::entry(base + 5 * PAGE) != 0 && vm::entry(base + 4 * PAGE) == 0, "wrong pages mapped")?;
    vm::unmap_free(base + 5 * PAGE).map_err(|_| "unmap")
}

fn tlb_remap() -> Result<(), &'static str> {
    let va = vm::alloc_va(1);
    let a = vm::map_new(va, RW).map_err(|_| "map a")?;
    let p = va as *mut u64;
    // SAFETY: `va` is mapped read-write throughout.
    unsafe { p.write_volatile(0xaaaa) };
    let b = sys::frame_alloc(EnvId::SELF, None).map_err(|_| "alloc b")?;
    vm::map_frame(va, b, RW).map_err(|_| "remap b")?;
    // SAFETY: `va` is still mapped read-write, now to frame b.
    let seen_b = unsafe { p.read_volatile() };
    vm::map_frame(va, a, RW).map_err(|_| "remap a")?;
    // SAFETY: `va` is still mapped read-write, to frame a again.
    let seen_a = unsafe { p.read_volatile() };
    vm::unmap(va).map_err(|_| "unmap")?;
    sys::frame_free(EnvId::SELF, a).map_err(|_| "free a")?;
    sys::frame_free(EnvId::SELF, b).map_err(|_| "free b")?;
    check(seen_b == 0 && seen_a == 0xaaaa, "a stale translation survived a remap")
}

fn spinner(shared: &Shared, slot: usize) -> i32 {
    loop {
        shared.word(slot).fetch_add(1, core::sync::atomic::Ordering::Relaxed);
    }
}

fn preemption() -> Result<(), &'static str> {
    let s = Shared::new()?;
    let a = spawn(|| spinner(&s, 0));
    let b = spawn(|| spinner(&s, 1));
    // Neither spinner ever yields: only the timer can take the CPU from one to the other.
    let ok = wait_for(500, || s.get(0) > 1000 && s.get(1) > 1000);
    let _ = sys::env_destroy(a);
    let _ = sys::env_destroy(b);
    check(ok, "a spinning environment was never preempted")
}

fn yield_to() -> Result<(), &'static str> {
    let s = Shared::new()?;
    let child = spawn(|| {
        s.set(0, 1);
        loop {
            sys::yield_now();
        }
    });
    // Donate repeatedly: the child must have run by the time each call returns to us.
    let _ = sys::yield_to(child);
    let ran = wait_for(100, || s.get(0) == 1);
    let bad = sys::yield_to(EnvId(0x7fff_ffff));
    let _ = sys::env_destroy(child);
    check(ran, "the named environment never ran")?;
    check(bad == Err(Error::NotFound), "yield_to a bogus id did not fail")
}

/// `NetWait(word, expected)` returns at once when the word no longer holds `expected`, and
/// refuses a word it cannot read; a sleep in it ends at anyone's `YieldTo` (the caller goes
/// on), which wakes no other kind of wait (a parked server stays parked, and the yield is
/// refused).
fn net_wait_wakes() -> Result<(), &'static str> {
    let word = AtomicU64::new(7);
    let (hz, t0) = (vm::kinfo().counter_hz, sys::now());
    for _ in 0..100 {
        check(sys::wait_on(&word, 8).is_ok(), "NetWait on a word that moved failed")?;
    }
    // Asleep each time, the loop would take 100 ticks of 10 ms.
    check(sys::now() - t0 < hz / 2, "NetWait slept though the word had moved")?;
    let raw = |word: u64| sys::raw(exo_libos::abi::Sys::NetWait as u64, [word, 0, 0, 0, 0, 0]) as i64;
    for bad in [0xdead_0000_0000, 0xffff_0000_0000_0000, u64::MAX - 3, 8] {
        check(raw(bad) == Error::Fault as i64, "NetWait on an unreadable word did not fail with Fault")?;
    }
    // A sleeper on this core: the yield wakes it, and it runs at this one's next yield.
    let s = Shared::new()?;
    let cores = vm::env_info(vm::me()).map_or(1, |e| e.affinity);
    let _ = sys::env_set_affinity(EnvId::SELF, 1);
    let child = spawn(|| loop {
        s.add(0, 1);
        let _ = sys::net_wait();
    });
    let _ = sys::env_set_affinity(child, 1);
    let asleep = || vm::env_info(child).is_some_and(|i| i.state == env_state::BLOCKED) && s.get(0) > 0;
    let slept = wait_for(200, asleep);
    let before = s.get(0);
    let woken = sys::yield_to(child);
    let runnable = vm::env_info(child).is_some_and(|i| i.state == env_state::RUNNABLE);
    let ran = wait_for(100, || s.get(0) > before);
    let _ = sys::env_destroy(child);
    let _ = sys::env_set_affinity(EnvId::SELF, cores);
    check(slept, "the child never slept in NetWait")?;
    check(woken.is_ok(), "YieldTo refused a target asleep in NetWait")?;
    check(runnable, "the sleeper was not runnable when YieldTo returned")?;
    check(ran, "the woken sleeper did not run")?;
    // A parked server is blocked too, but not in NetWait: not woken, and still serving.
    fn echo(c: &exo_libos::ipc::Call) -> [u64; 4] {
        c.args
    }
    let server = crate::ipctest::server(echo)?;
    let refused = sys::yield_to(server);
    let parked = vm::env_info(server).is_some_and(|i| i.state == env_state::BLOCKED);
    let answered = sys::pct_call(server, [5, 0, 0, 0], 0);
    let _ = sys::env_destroy(server);
    check(refused == Err(Error::Invalid), "YieldTo to a parked server was not refused")?;
    check(parked, "YieldTo woke a parked server")?;
    check(answered.is_ok_and(|r| r[0] == 5), "the server did not answer after the refused yield")
}

fn slice_upcall() -> Result<(), &'static str> {
    let s = Shared::new()?;
    // The hook may only write memory that is never copy-on-write: the shared page.
    static COUNTER: AtomicU64 = AtomicU64::new(0);
    COUNTER.store(s.va, SeqCst);
    let child = spawn(|| {
        fn hook(u: &Upcall) -> bool {
            if u.kind == upcall::SLICE_END {
                // SAFETY: COUNTER holds the shared page's address, mapped read-write.
                unsafe { (COUNTER.load(SeqCst) as *mut u64).write_volatile(1) };
                return true;
            }
            false
        }
        set_hook(Some(hook));
        let entry = exo_libos::upcall::entry_address();
        if sys::env_set_upcall(EnvId::SELF, entry, exo_libos::upcall::stack_top(), true).is_err() {
            return 1;
        }
        loop {
            core::hint::spin_loop();
        }
    });
    let got = wait_for(500, || s.get(0) == 1);
    let _ = sys::env_destroy(child);
    check(got, "no slice-end upcall arrived")
}

/// A slice end while the handler runs waits for the handler's `UpcallResume`, and comes
/// before the interrupted code goes on: the hook stays in its first slice-end upcall for
/// three more ticks; the next one must find the main loop's count where that left it
/// (were it dropped instead, the next would come a whole slice of the loop later).
fn slice_end_in_handler() -> Result<(), &'static str> {
    let s = Shared::new()?;
    static WORDS: AtomicU64 = AtomicU64::new(0);
    WORDS.store(s.va, SeqCst);
    fn word(i: u64) -> &'static AtomicU64 {
        // SAFETY: WORDS holds the shared page's address, mapped read-write for the test.
        unsafe { &*((WORDS.load(SeqCst) + 8 * i) as *const AtomicU64) }
    }
    let child = spawn(|| {
        fn hook(u: &Upcall) -> bool {
            if u.kind != upcall::SLICE_END {
                return false;
            }
            let (n, loops) = (word(1).fetch_add(1, SeqCst), word(0).load(SeqCst));
            if n == 0 {
                word(2).store(loops, SeqCst);
                // SAFETY: a read of the kernel information page, mapped read-only.
                let ticks = || unsafe { core::ptr::read_volatile(&vm::kinfo().cpu_ticks[0]) };
                let t = ticks();
                while ticks() < t + 3 {
                    core::hint::spin_loop(); // (on core 0 only: its ticks end its slices)
                }
            } else if n == 1 {
                word(3).store(loops, SeqCst);
                word(4).store(1, SeqCst);
            }
            true
        }
        if sys::env_set_affinity(EnvId::SELF, 1).is_err() {
            return 1;
        }
        sys::yield_now();
        set_hook(Some(hook));
        let entry = exo_libos::upcall::entry_address();
        if sys::env_set_upcall(EnvId::SELF, entry, exo_libos::upcall::stack_top(), true).is_err() {
            return 1;
        }
        loop {
            word(0).fetch_add(1, SeqCst);
        }
    });
    let got = wait_for(2000, || s.get(4) == 1);
    let _ = sys::env_destroy(child);
    check(got, "no second slice-end upcall arrived")?;
    check(s.get(3) == s.get(2), "the interrupted code ran before the slice end that came during the handler")
}

fn upcall_context() -> Result<(), &'static str> {
    let child = spawn(|| {
        fn hook(u: &Upcall) -> bool {
            if u.kind != upcall::UNDEFINED {
                return false;
            }
            let mut c = exo_libos::abi::Context::default();
            if sys::upcall_context_get(&mut c).is_err() || c.pc != u.pc {
                return false;
            }
            c.pc += 4; // step over the undefined instruction
            c.x[0] = 42;
            sys::upcall_context_set(&c).is_ok()
        }
        set_hook(Some(hook));
        let r: u64;
        // SAFETY: `udf` traps; the hook skips it and sets x0, which we then read.
        unsafe { core::arch::asm!("mov x0, #0", "udf #0", out("x0") r) };
        if r == 42 {
            0
        } else {
            2
        }
    });
    check(process::wait(child) == Ok(0), "context was not rewritten")?;
    check(
        sys::upcall_context_set(&Default::default()) == Err(Error::Invalid),
        "context writable outside an upcall",
    )
}

fn destroy_accounting() -> Result<(), &'static str> {
    vm::env_info(vm::me()).ok_or("env info")?; // map the table before counting
    let before = free_frames();
    let child = sys::env_create(0).map_err(|_| "create")?;
    // Build a small address space for the child: four tables and a few pages.
    let root = sys::frame_alloc(child, None).map_err(|_| "alloc root")?;
    sys::table_bind(child, root, 0).map_err(|_| "bind root")?;
    let va = 0x40_0000;
    for level in 0..3 {
        let t = sys::frame_alloc(child, None).map_err(|_| "alloc table")?;
        sys::table_bind(child, t, level + 1).map_err(|_| "bind table")?;
        sys::table_set(child, va, level, Pte::table(t).0).map_err(|_| "link table")?;
    }
    for i in 0..5 {
        let f = sys::frame_alloc(child, None).map_err(|_| "alloc page")?;
        sys::table_set(child, va + i * PAGE, 3, Pte::user_page(f, RW).0).map_err(|_| "map page")?;
    }
    let used = before - free_frames();
    let info = vm::env_info(child).ok_or("no env info")?;
    check(used == 9 && info.frames == 9, "frame counts disagree")?;
    sys::env_destroy(child).map_err(|_| "destroy")?;
    check(free_frames() == before, "frames not all returned")?;
    check(vm::env_info(child).is_some_and(|i| i.state == env_state::FREE), "slot not freed")
}

fn sibling_frame() -> Result<(), &'static str> {
    let s = Shared::new()?;
    let a = spawn(|| {
        let pa = sys::frame_alloc(EnvId::SELF, None).unwrap_or(0);
        s.set(0, pa);
        loop {
            sys::yield_now();
        }
    });
    wait_for(100, || s.get(0) != 0);
    let pa = s.get(0);
    let b = spawn(|| {
        let va = vm::alloc_va(1);
        match vm::map_frame(va, pa, RO) {
            Err(Error::Denied) => 0,
            _ => 1,
        }
    });
    let status = process::wait(b);
    // Nor can the parent map its child's frame into itself.
    let va = vm::alloc_va(1);
    let parent_try = vm::map_frame(va, pa, RO);
    let _ = sys::env_destroy(a);
    check(pa != 0, "sibling did not allocate")?;
    check(status == Ok(0), "a sibling's frame was mappable")?;
    check(parent_try == Err(Error::Denied), "a child's frame was mappable by its parent")
}

fn kernel_frames() -> Result<(), &'static str> {
    let k = vm::kinfo();
    let va = vm::alloc_va(1);
    // The kernel image: RAM the frame table records as KERNEL, right before the tables.
    let kernel_frame = (0..k.frames)
        .map(|i| k.ram_base + i * PAGE)
        .find(|&pa| vm::frame_entry(pa).is_some_and(|f| f.kind == exo_libos::abi::frame::KERNEL))
        .ok_or("no kernel frame found")?;
    check(vm::map_frame(va, kernel_frame, RO) == Err(Error::Denied), "kernel frame mapped")?;
    // A device (this board's UART) is not RAM at all.
    let device = if k.board == exo_libos::abi::board::VIRT { 0x0900_0000 } else { 0xfe20_1000 };
    check(vm::map_frame(va, device, RO) == Err(Error::NotFound), "device frame mapped")?;
    // Public frames: readable, never writable.
    check(vm::map_frame(va, k.frame_table, RW) == Err(Error::Denied), "frame table mapped writable")?;
    check(vm::map_frame(va, k.frame_table, RO).is_ok(), "frame table not readable")?;
    vm::unmap(va).map(drop).map_err(|_| "unmap")?;
    check(sys::frame_alloc(EnvId::SELF, Some(kernel_frame)) == Err(Error::Busy), "kernel frame allocated")?;
    check(sys::frame_free(EnvId::SELF, kernel_frame) == Err(Error::Denied), "kernel frame freed")
}

/// Allocation is top-down, so the lowest free frames have sat since boot in a run whose
/// entries the kernel never wrote (their list links are implicit: `FrameEntry::link`).
/// Three of them in a row are taken by address, the middle one last, when its neighbours
/// on the list are already gone, then given back; the runner's audit then follows the
/// whole free list from its head.
fn deep_free_frames() -> Result<(), &'static str> {
    use exo_libos::abi::frame::{DATA, FREE};
    let k = vm::kinfo();
    let kind = |i: u64| vm::frame_entry(k.ram_base + i * PAGE).map(|f| (f.kind, f.owner));
    let free = |i: u64| kind(i).is_some_and(|f| f.0 == FREE);
    let lo =
        (0..k.frames - 2).find(|&i| free(i) && free(i + 1) && free(i + 2)).ok_or("no three free in a row")?;
    let before = free_frames();
    let pas = [lo + 2, lo, lo + 1].map(|i| k.ram_base + i * PAGE);
    for pa in pas {
        check(sys::frame_alloc(EnvId::SELF, Some(pa)) == Ok(pa), "a free frame refused by address")?;
    }
    let me = vm::me().0;
    check((0..3).all(|n| kind(lo + n) == Some((DATA, me))), "a frame taken is not our data")?;
    check(free_frames() == before - 3, "the free count did not fall by three")?;
    for pa in pas {
        sys::frame_free(EnvId::SELF, pa).map_err(|_| "free")?;
    }
    check(free_frames() == before, "the frames did not all come back")
}

fn mapped_as_table() -> Result<(), &'static str> {
    let va = vm::alloc_va(1);
    let pa = vm::map_new(va, RW).map_err(|_| "map")?;
    let r = sys::table_bind(EnvId::SELF, pa, 3);
    vm::unmap_free(va).map_err(|_| "unmap")?;
    check(r == Err(Error::Busy), "a mapped frame became a table")
}

fn table_cycles() -> Result<(), &'static str> {
    let me = EnvId::SELF;
    let root = vm::env_info(vm::me()).ok_or("env info")?.root;
    let l1 = Pte(sys::table_get(me, 0x40_0000, 0).map_err(|_| "get")?).addr();
    let far = 0x0000_5000_0000_0000;
    check(sys::table_set(me, far, 0, Pte::table(l1).0) == Err(Error::Busy), "an L1 table linked twice")?;
    check(
        sys::table_set(me, far, 0, Pte::table(root).0) == Err(Error::Invalid),
        "the root linked under itself",
    )?;
    // A fresh table at the wrong level.
    let t = sys::frame_alloc(me, None).map_err(|_| "alloc")?;
    sys::table_bind(me, t, 3).map_err(|_| "bind")?;
    check(
        sys::table_set(me, far, 0, Pte::table(t).0) == Err(Error::Invalid),
        "level-3 table linked at level 1",
    )?;
    check(sys::table_bind(me, t, 2) == Err(Error::Busy), "bound twice")?;
    check(sys::table_unbind(me, root) == Err(Error::Busy), "non-empty root unbound")?;
    sys::table_unbind(me, t).map_err(|_| "unbind")?;
    sys::frame_free(me, t).map_err(|_| "free")
}

fn bad_addresses() -> Result<(), &'static str> {
    let me = EnvId::SELF;
    let pa = sys::frame_alloc(me, None).map_err(|_| "alloc")?;
    let rw = Pte::user_page(pa, RW).0;
    let results = [
        sys::table_set(me, 0xffff_0000_0000_0000, 3, rw),
        sys::table_set(me, 0xffff_ffff_8000_0000, 3, rw),
        sys::table_set(me, exo_libos::abi::USER_VA_LIMIT, 3, rw),
        sys::table_set(me, !0xfff, 3, rw),
        sys::table_set(me, vm::alloc_va(1) + 8, 3, rw),
        sys::table_set(me, vm::alloc_va(1), 7, rw),
        sys::frame_alloc(me, Some(pa + 8)).map(drop),
        sys::frame_free(me, u64::MAX).map(drop),
        sys::table_bind(me, pa, 9),
    ];
    let wx = Pte::user_page(pa, Perm { write: true, exec: true });
    let va = vm::alloc_va(1);
    vm::map_new(va, RW).map_err(|_| "map")?;
    let wx_result = sys::table_set(me, va, 3, wx.0);
    vm::unmap_free(va).map_err(|_| "unmap")?;
    sys::frame_free(me, pa).map_err(|_| "free")?;
    check(results.iter().all(|r| r.is_err()), "a bad address was accepted")?;
    check(wx_result == Err(Error::Denied), "writable+executable page accepted")
}

fn bad_pointers() -> Result<(), &'static str> {
    let unmapped = vm::alloc_va(1);
    check(sys::raw(1, [unmapped, 16, 0, 0, 0, 0]) as i64 == Error::Fault as i64, "unmapped buffer")?;
    check(
        sys::raw(1, [0xffff_ffff_8000_0000, 16, 0, 0, 0, 0]) as i64 == Error::Fault as i64,
        "kernel buffer",
    )?;
    check(sys::raw(1, [u64::MAX - 4, 16, 0, 0, 0, 0]) as i64 == Error::Fault as i64, "wrapping buffer")?;
    check(sys::raw(1, [0x40_0000, 1 << 20, 0, 0, 0, 0]) as i64 == Error::Invalid as i64, "huge length")?;
    let op = [TableOp::default(); 1];
    check(sys::table_set_batch(EnvId::SELF, &op[..0]) == Err(Error::Invalid), "empty batch")?;
    check(
        sys::raw(8, [0, unmapped, 4, 0, 0, 0]) as i64 == Error::Fault as i64,
        "batch from unmapped memory",
    )?;
    // Writing a context into read-only memory (the text segment) is refused, not done.
    check(sys::raw(99, [0; 6]) as i64 == Error::NoSys as i64, "unknown call")?;
    check(sys::raw(u64::MAX, [0; 6]) as i64 == Error::NoSys as i64, "huge call number")
}

fn foreign_envs() -> Result<(), &'static str> {
    let s = Shared::new()?;
    let parent = vm::me();
    let a = spawn(|| loop {
        sys::yield_now();
    });
    let b = spawn(|| {
        let tries = [
            sys::frame_alloc(parent, None).map(drop),
            sys::env_destroy(parent),
            sys::env_destroy(a),
            sys::table_get(a, 0x40_0000, 0).map(drop),
            sys::env_set_upcall(a, 0x40_0000, 0x40_0000, false),
            sys::env_start(parent),
        ];
        let denied = tries.iter().all(|r| *r == Err(Error::Denied) || *r == Err(Error::Invalid));
        s.set(0, denied as u64 + 1);
        0
    });
    let _ = process::wait(b);
    let alive = vm::env_info(a).is_some_and(|i| i.state == env_state::RUNNABLE);
    let _ = sys::env_destroy(a);
    check(s.get(0) == 2, "an environment acted on its parent or sibling")?;
    check(alive, "the sibling was harmed")
}

/// The kernel's lock takes each core's index from TPIDRRO_EL0 (`boot.S`), which EL0 may
/// read but not write: a program that tries to write it is killed for an undefined
/// instruction, and the register still names the core this runs on.
fn core_index_register_is_not_the_programs() -> Result<(), &'static str> {
    let child = spawn(|| {
        let _ = sys::env_set_upcall(EnvId::SELF, 0, 0, false);
        // SAFETY: deliberately traps: TPIDRRO_EL0 is read-only at EL0.
        unsafe { core::arch::asm!("msr tpidrro_el0, {}", in(reg) 3u64) };
        0
    });
    let status = process::wait(child).map_err(|_| "wait")?;
    let index: u64;
    // SAFETY: a read of a register EL0 may read; it touches nothing else.
    unsafe { core::arch::asm!("mrs {}, tpidrro_el0", out(reg) index, options(nomem, nostack)) };
    let mine = vm::env_info(vm::me()).map_or(u64::MAX, |i| i.cpu as u64);
    check(
        status == exo_libos::abi::killed_status(upcall::UNDEFINED),
        "a write of TPIDRRO_EL0 was not refused",
    )?;
    check(index == mine, "TPIDRRO_EL0 does not name the core this runs on")
}

fn unhandled_fault() -> Result<(), &'static str> {
    let child = spawn(|| {
        let _ = sys::env_set_upcall(EnvId::SELF, 0, 0, false);
        // SAFETY: deliberately faults: nothing is mapped at address 8 (a dangling pointer).
        unsafe { core::ptr::dangling::<u64>().read_volatile() as i32 }
    });
    let status = process::wait(child).map_err(|_| "wait")?;
    check(status == exo_libos::abi::killed_status(upcall::DATA_ABORT), "not killed for its fault")
}

/// Where the page `fault_in_handler` shares with its child is (read by the child's hook,
/// which may not write a copy-on-write static).
static HANDLER_RUNS: core::sync::atomic::AtomicU64 = core::sync::atomic::AtomicU64::new(0);

/// A fault inside the upcall handler is not delivered to it again (which would start it
/// over on top of itself, the code it interrupted lost): the environment ends, killed for
/// that fault, having run its handler once. Bounded: a handler restarted at each fault
/// would never end.
fn fault_in_handler() -> Result<(), &'static str> {
    use core::sync::atomic::{AtomicU64, Ordering::SeqCst};
    let runs = Shared::new()?;
    HANDLER_RUNS.store(runs.va, SeqCst);
    let child = spawn(|| {
        fn hook(_: &Upcall) -> bool {
            // SAFETY: the parent's shared page, mapped read-write in this child too.
            let runs = unsafe { &*(HANDLER_RUNS.load(SeqCst) as *const AtomicU64) };
            runs.fetch_add(1, SeqCst);
            // SAFETY: deliberately faults, inside the handler: nothing is mapped at 24.
            unsafe { (24 as *const u64).read_volatile() == 0 }
        }
        set_hook(Some(hook));
        // SAFETY: deliberately faults into the hook above.
        unsafe { (16 as *const u64).read_volatile() as i32 }
    });
    let ended = wait_for(2000, || vm::env_info(child).is_none_or(|i| i.state == env_state::ZOMBIE));
    if !ended {
        let _ = sys::env_destroy(child);
        return Err("a fault in the handler did not end the environment");
    }
    let status = process::wait(child).map_err(|_| "wait")?;
    check(runs.get(0) == 1, "the handler's own fault started it again")?;
    check(status == exo_libos::abi::killed_status(upcall::DATA_ABORT), "not killed for the handler's fault")
}

fn destroy_in_upcall() -> Result<(), &'static str> {
    let child = spawn(|| {
        fn hook(_: &Upcall) -> bool {
            let _ = sys::env_destroy(EnvId::SELF);
            false
        }
        set_hook(Some(hook));
        // SAFETY: deliberately faults into the hook above.
        unsafe { (16 as *const u64).read_volatile() as i32 }
    });
    let status = process::wait(child).map_err(|_| "wait")?;
    check(status == STATUS_DESTROYED, "wrong status after destroying itself")
}

/// Hogs: allocate every free frame, keeping their addresses in a list in shared memory.
const LIST_PAGES: u64 = 128;

fn hog(list: u64, flag: &Shared) -> i32 {
    fill(list, flag);
    loop {
        sys::yield_now();
    }
}

/// Takes every free frame, the first of them listed at `list`; then flag word 0 is 1.
fn fill(list: u64, flag: &Shared) {
    let words = (LIST_PAGES * PAGE / 8) as usize;
    let mut n = 0;
    // Take every free frame; remember the first `words` of them.
    while let Ok(pa) = sys::frame_alloc(EnvId::SELF, None) {
        if n < words {
            // SAFETY: `n < words`, the number of words in the LIST_PAGES pages at `list`.
            let slot = unsafe { (list as *mut u64).add(n) };
            // SAFETY: `list` maps LIST_PAGES shared read-write pages.
            unsafe { slot.write_volatile(pa) };
        }
        n += 1;
    }
    flag.set(1, n as u64);
    flag.set(0, 1);
}

fn shared_list() -> Result<u64, &'static str> {
    let va = vm::alloc_va(LIST_PAGES);
    for p in 0..LIST_PAGES {
        let pa = sys::frame_alloc(EnvId::SELF, None).map_err(|_| "list frame")?;
        vm::map(va + p * PAGE, Pte::user_page(pa, RW).0 | SHARED).map_err(|_| "list map")?;
    }
    Ok(va)
}

fn free_list(va: u64) {
    for p in 0..LIST_PAGES {
        let _ = vm::unmap_free(va + p * PAGE);
    }
}

/// Fills memory with a hog, then asks for a frame until one comes back.
/// `answered`: the hook gives frames back, so none need be repossessed.
fn pressure(hook: Option<exo_libos::upcall::Hook>, answered: bool) -> Result<(EnvId, bool), &'static str> {
    let flag = Shared::new()?;
    let list = shared_list()?;
    LIST.store(list, SeqCst); // set before fork, only read afterwards
    let hogger = spawn(|| {
        set_hook(hook);
        hog(list, &flag)
    });
    check(wait_for(20_000, || flag.get(0) == 1), "hog never filled memory")?;
    // Memory is full: the hog's own failed request asked the biggest holder — the hog —
    // for frames back; keep asking (in virtual time, well past the deadline) until one
    // comes back.
    let got = core::cell::Cell::new(None);
    wait_for(2000, || {
        got.set(sys::frame_alloc(EnvId::SELF, None).ok());
        got.get().is_some()
    });
    if let Some(pa) = got.get() {
        let _ = sys::frame_free(EnvId::SELF, pa);
    }
    let ok = got.get().is_some();
    let info = vm::env_info(hogger).ok_or("env info")?;
    let _ = sys::env_destroy(hogger);
    free_list(list);
    Ok((hogger, ok && info.state != env_state::FREE && (answered || info.repossessed > 0)))
}

static LIST: AtomicU64 = AtomicU64::new(0);

fn give_back(u: &Upcall) -> bool {
    if u.kind != upcall::REVOKE {
        return false;
    }
    // LIST maps the shared list of this hog's frames; the hog is parked in yield.
    let list = LIST.load(SeqCst) as *mut u64;
    let mut freed = 0;
    let mut i = 0;
    while freed < u.arg && i < (LIST_PAGES * PAGE / 8) as usize {
        // SAFETY: `i` is below the number of words in the LIST_PAGES pages at `list`.
        let slot = unsafe { list.add(i) };
        // SAFETY: LIST maps the shared list read-write, and the hog that also holds it is
        // parked in yield, so nothing writes it meanwhile.
        let pa = unsafe { slot.read_volatile() };
        if pa != 0 && sys::frame_free(EnvId::SELF, pa).is_ok() {
            // SAFETY: the same mapped, read-write entry.
            unsafe { slot.write_volatile(0) };
            freed += 1;
        }
        i += 1;
    }
    true
}

fn revoke_cooperative() -> Result<(), &'static str> {
    let (hog, ok) = pressure(Some(give_back), true)?;
    let _ = hog;
    check(ok, "no frame came back under memory pressure")
}

/// A libOS that lets the request pass unanswered (the default one would give back what it
/// can drop: see `pressure.rs`).
fn ignore_revoke(u: &Upcall) -> bool {
    u.kind == upcall::REVOKE
}

/// A program the kernel took frames from forks: the child's accounts are its own, from 0.
/// (It copies its parent's: a parent's repossession count left in the child was subtracted
/// from the kernel's 0 for the child at its first stock-taking, and wrapped.)
fn fork_after_repossession() -> Result<(), &'static str> {
    let flag = Shared::new()?;
    let list = shared_list()?;
    let hogger = spawn(|| {
        set_hook(Some(ignore_revoke));
        fill(list, &flag);
        while flag.get(0) != 2 {
            sys::yield_now();
        }
        // Room for a child, then stock taken (`poll`, as at any upcall): the hog's own count.
        for i in 0..(LIST_PAGES * PAGE / 8) {
            // SAFETY: `i` is below the number of words in the LIST_PAGES shared pages at `list`.
            let slot = unsafe { (list as *const u64).add(i as usize) };
            // SAFETY: `list` maps LIST_PAGES shared pages, readable.
            let pa = unsafe { slot.read_volatile() };
            let _ = sys::frame_free(EnvId::SELF, pa); // (those the kernel took are refused)
        }
        exo_libos::reclaim::poll();
        let seen = exo_libos::reclaim::stats().repossessed;
        let child = match process::fork() {
            Ok(Fork::Child) => {
                // Nothing was asked of it or taken from it: all zero, before stock is
                // taken and after. (The parent's count left here made the stock-taking
                // report "18446744073709551600 frames" repossessed, and a loss that
                // cancelled the parent's own, copied, to zero.)
                let fresh = exo_libos::reclaim::stats() == Default::default();
                exo_libos::reclaim::poll();
                sys::exit((fresh && exo_libos::reclaim::stats() == Default::default()) as i32)
            }
            Ok(Fork::Parent(c)) => process::wait(c) == Ok(1),
            Err(_) => false,
        };
        flag.set(1, if seen == 0 { 2 } else { child as u64 });
        flag.set(0, 3);
        loop {
            sys::yield_now();
        }
    });
    check(wait_for(20_000, || flag.get(0) == 1), "hog never filled memory")?;
    // Memory is full: ask for a frame until the kernel takes some from the hog.
    let taken = wait_for(4000, || {
        if let Ok(pa) = sys::frame_alloc(EnvId::SELF, None) {
            let _ = sys::frame_free(EnvId::SELF, pa);
        }
        vm::env_info(hogger).is_some_and(|i| i.repossessed > 0)
    });
    flag.set(0, 2);
    let forked = wait_for(20_000, || flag.get(0) == 3);
    let status = flag.get(1);
    let _ = sys::env_destroy(hogger);
    free_list(list);
    check(taken, "no frame was repossessed from the hog")?;
    check(forked, "the hog did not fork")?;
    check(status != 2, "the hog's own stock-taking did not see its frames taken")?;
    check(status == 1, "the forked child's accounts were its parent's")
}

fn revoke_abort() -> Result<(), &'static str> {
    let (_, ok) = pressure(Some(ignore_revoke), false)?;
    check(ok, "frames were not repossessed after the deadline")
}
