//! EL0 tests of disk access through sector bindings. Run by init with `exo.test=disk` on
//! the test runner's disk image: 16384 sectors, an MBR with a FAT32-typed partition at
//! 2048 (4096 sectors) and an LFS-typed one at 6144 (8192 sectors).

use core::sync::atomic::{AtomicU64, Ordering::SeqCst};

use crate::runner::{check, wait_for};
use exo_libos::abi::{env_state, EnvId, Error, SECTOR_READ, SECTOR_WRITE};
use exo_libos::format::mbr;
use exo_libos::fs::parts;
use exo_libos::process::{self, Fork};
use exo_libos::sys;
use exo_libos::vm::{self, PAGE, RW};

type Test = (&'static str, fn() -> Result<(), &'static str>);

pub const TESTS: &[Test] = &[
    ("disk_size_and_partitions_are_published", partitions),
    ("write_then_read_back_across_the_whole_disk", round_trip),
    ("multi_sector_transfers_span_pages_in_any_alignment", multi_sector),
    ("largest_transfer_is_accepted_and_one_more_is_not", largest),
    ("grants_narrow_rights_and_die_with_the_environment", grants),
    ("reads_land_in_copy_on_write_pages_at_any_offset", cow_read),
    ("out_of_range_and_malformed_requests_are_refused", bad_requests),
    ("bad_buffers_are_refused_and_nothing_is_transferred", bad_buffers),
    ("a_program_given_only_the_fat_partition_cannot_read_the_log_partition", fat_only),
    ("another_core_keeps_making_system_calls_while_one_streams_1_mib_writes", stream_vs_calls),
    ("the_streamers_own_core_runs_a_counter_while_the_disk_moves_its_writes", stream_vs_same_core),
];

const DISK: u64 = 16384;

pub fn run(filter: &str) -> usize {
    crate::runner::run_suite("disktest", TESTS, filter, |test| test()) + crate::hostile::run_disk(filter)
}

/// A fresh mapped buffer of `pages` pages.
fn buffer(pages: u64) -> &'static mut [u8] {
    let va = vm::alloc_va(pages);
    for p in 0..pages {
        vm::map_new(va + p * PAGE, RW).expect("buffer page");
    }
    // SAFETY: just mapped read-write, used by nothing else.
    unsafe { core::slice::from_raw_parts_mut(va as *mut u8, (pages * PAGE) as usize) }
}

fn release(buf: &mut [u8]) {
    let va = buf.as_ptr() as u64;
    for p in 0..(buf.len() as u64).div_ceil(PAGE) {
        let _ = vm::unmap_free(va + p * PAGE);
    }
}

fn fill(buf: &mut [u8], seed: u64) {
    for (i, b) in buf.iter_mut().enumerate() {
        *b = (seed.wrapping_mul(31).wrapping_add(i as u64 * 7) >> 3) as u8;
    }
}

fn partitions() -> Result<(), &'static str> {
    let k = vm::kinfo();
    check(k.disk_sectors == DISK, "wrong disk size")?;
    let p = &k.partitions;
    check(p[0].start == 2048 && p[0].sectors == 4096 && p[0].kind == mbr::TYPE_FAT32_LBA, "partition 1")?;
    check(p[1].start == 6144 && p[1].sectors == 8192 && p[1].kind == mbr::TYPE_EXO_LFS, "partition 2")?;
    check(p[2].sectors == 0 && p[3].sectors == 0, "phantom partitions")
}

fn round_trip() -> Result<(), &'static str> {
    let buf = buffer(1);
    let sector = &mut buf[..512];
    for (i, lba) in [1u64, 2047, 2048, 6143, 9000, DISK - 1].into_iter().enumerate() {
        fill(sector, i as u64 + 1);
        sys::sector_write(lba, sector).map_err(|_| "write")?;
    }
    sys::sector_flush().map_err(|_| "flush")?;
    let mut ok = true;
    for (i, lba) in [1u64, 2047, 2048, 6143, 9000, DISK - 1].into_iter().enumerate() {
        sector.fill(0);
        sys::sector_read(lba, sector).map_err(|_| "read")?;
        let mut want = [0u8; 512];
        fill(&mut want, i as u64 + 1);
        ok &= sector == &want[..];
    }
    release(buf);
    check(ok, "read back something else")
}

fn multi_sector() -> Result<(), &'static str> {
    let out = buffer(18);
    let back = buffer(18);
    // 64 KiB starting 512 bytes into a page: 17 page pieces.
    let n = 128 * 512;
    fill(&mut out[512..512 + n], 99);
    sys::sector_write(3000, &out[512..512 + n]).map_err(|_| "write")?;
    // Read it back starting 3 KiB into a page.
    sys::sector_read(3000, &mut back[3072..3072 + n]).map_err(|_| "read")?;
    let same = out[512..512 + n] == back[3072..3072 + n];
    release(out);
    release(back);
    check(same, "data differs after a page-spanning transfer")
}

fn largest() -> Result<(), &'static str> {
    let buf = buffer(257);
    let max = 2048 * 512;
    let r = sys::sector_read(4000, &mut buf[..max]);
    let too_many = sys::sector_read(4000, &mut buf[..max + 512]);
    release(buf);
    check(r == Ok(2048), "a 1 MiB read failed")?;
    check(too_many == Err(Error::Invalid), "2049 sectors accepted")
}

fn grants() -> Result<(), &'static str> {
    let (start, count) = (6144u64, 8192u64);
    let child = match process::fork().map_err(|_| "fork")? {
        Fork::Child => {
            wait_for_binding(start);
            let buf = buffer(1);
            let s = &mut buf[..512];
            let me = EnvId::SELF;
            let checks = [
                sys::sector_read(start, s).is_ok(),
                sys::sector_read(start + count - 1, s).is_ok(),
                sys::sector_read(start - 1, s) == Err(Error::Denied),
                sys::sector_read(start + count, s) == Err(Error::Denied),
                sys::sector_write(start, s) == Err(Error::Denied),
                // Passing on more rights than it holds, or more sectors, is refused.
                sys::sector_grant(me, start, 1, SECTOR_READ) == Err(Error::Invalid),
            ];
            let grandchild = match process::fork() {
                Ok(Fork::Child) => {
                    wait_for_binding(start + 10);
                    let ok = sys::sector_read(start + 10, s).is_ok()
                        && sys::sector_read(start, s) == Err(Error::Denied);
                    sys::exit(ok as i32)
                }
                Ok(Fork::Parent(g)) => g,
                Err(_) => sys::exit(90),
            };
            let more = [
                sys::sector_grant(grandchild, start + 10, 5, SECTOR_READ | SECTOR_WRITE)
                    == Err(Error::Denied),
                sys::sector_grant(grandchild, start - 1, 5, SECTOR_READ) == Err(Error::Denied),
                sys::sector_grant(grandchild, start + 10, 5, SECTOR_READ).is_ok(),
            ];
            let grandchild_ok = process::wait(grandchild) == Ok(1);
            let all = checks.iter().chain(more.iter()).all(|&c| c) && grandchild_ok;
            sys::exit(all as i32)
        }
        Fork::Parent(c) => c,
    };
    // A fork does not copy bindings: the parent grants them.
    sys::sector_grant(child, start, count, SECTOR_READ).map_err(|_| "grant")?;
    let info = vm::env_info(child).ok_or("env info")?;
    check(info.sectors.iter().any(|b| b.start == start && b.count as u64 == count), "binding not published")?;
    let status = process::wait(child).map_err(|_| "wait")?;
    check(status == 1, "a binding rule was not enforced in the child")?;
    check(
        sys::sector_grant(child, start, 1, SECTOR_READ) == Err(Error::NotFound),
        "granted to a dead child",
    )?;
    check(
        sys::sector_revoke(EnvId::SELF, 1, 1) == Err(Error::NotFound),
        "revoked a binding that is not there",
    )
}

/// What init does for a `/init.cfg` line `disk=fat PROGRAM`: the name resolves to the FAT
/// partition alone, and a program holding just that gets `Denied` on the log partition.
fn fat_only() -> Result<(), &'static str> {
    let grants = parts::resolve("fat", &vm::kinfo().partitions).map_err(|_| "resolve")?;
    check(grants == [(2048, 4096, SECTOR_READ | SECTOR_WRITE)], "`fat` is not the FAT partition")?;
    let s = buffer(1);
    let child = match process::fork().map_err(|_| "fork")? {
        Fork::Child => {
            wait_for_binding(2048);
            let fat = sys::sector_read(2048 + 4095, &mut s[..512]);
            let log = sys::sector_read(6144, &mut s[..512]);
            let next = sys::sector_read(2048 + 4096, &mut s[..512]);
            sys::exit(match (fat, log, next) {
                (Ok(_), Err(a), Err(b)) if a == b => a as i32,
                _ => 1,
            })
        }
        Fork::Parent(c) => c,
    };
    for (start, count, rights) in grants {
        sys::sector_grant(child, start, count, rights).map_err(|_| "grant")?;
    }
    let status = process::wait(child).map_err(|_| "wait")?;
    check(status == Error::Denied as i32, "the log partition was readable, or the FAT one was not")
}

/// After a fork every page is copy-on-write: a read into a buffer that starts late in one
/// page and ends in the next must privatise both (the kernel writes only writable pages).
fn cow_read() -> Result<(), &'static str> {
    let sector = 9000u64;
    let buf = buffer(2);
    let pattern: [u8; 1024] = core::array::from_fn(|i| (i * 7 + 3) as u8);
    buf[..1024].copy_from_slice(&pattern);
    sys::sector_write(sector, &buf[..1024]).map_err(|_| "write")?;
    buf.fill(0xee);
    let child = match process::fork().map_err(|_| "fork")? {
        Fork::Child => {
            wait_for_binding(sector);
            let part = &mut buf[0xe00..0x1200];
            let ok = sys::sector_read(sector, part) == Ok(2) && part[..] == pattern[..];
            sys::exit(ok as i32)
        }
        Fork::Parent(c) => c,
    };
    sys::sector_grant(child, sector, 2, SECTOR_READ).map_err(|_| "grant")?;
    let status = process::wait(child).map_err(|_| "wait")?;
    let untouched = buf.iter().all(|&b| b == 0xee);
    release(buf);
    check(status == 1, "the child's read across two copy-on-write pages failed")?;
    check(untouched, "the child's read showed through in the parent's pages")
}

/// Yields until this environment holds a binding starting at `start` (its parent grants
/// it after `fork` returns).
fn wait_for_binding(start: u64) {
    let me = vm::me();
    while !vm::env_info(me).is_some_and(|i| i.sectors.iter().any(|b| b.count != 0 && b.start == start)) {
        sys::yield_now();
    }
}

fn bad_requests() -> Result<(), &'static str> {
    let buf = buffer(1);
    let p = buf.as_mut_ptr() as u64;
    let raw = |start: u64, count: u64, buf: u64| sys::raw(17, [start, count, buf, 0, 0, 0]) as i64;
    let results = [
        raw(DISK, 1, p),
        raw(DISK - 1, 2, p),
        raw(u64::MAX, 1, p),
        raw(0, 0, p),
        raw(0, u64::MAX, p),
        raw(0, 1, p + 1),
    ];
    release(buf);
    check(results.iter().all(|&r| r == Error::Invalid as i64), "a malformed request was accepted")
}

fn bad_buffers() -> Result<(), &'static str> {
    let buf = buffer(1);
    let lba = 5000;
    fill(&mut buf[..512], 7);
    sys::sector_write(lba, &buf[..512]).map_err(|_| "write")?;
    let raw = |num: u64, buf: u64| sys::raw(num, [lba, 1, buf, 0, 0, 0]) as i64;
    let unmapped = vm::alloc_va(1);
    let results = [
        raw(17, unmapped),                   // read into memory not mapped
        raw(17, 0xffff_ffff_8000_0000),      // into the kernel
        raw(17, 0x40_0000),                  // into read-only text
        raw(18, unmapped),                   // write from memory not mapped
        raw(18, 0xffff_0000_4000_0000),      // from the kernel's physmap
        raw(17, buf.as_ptr() as u64 + 3584), // the second sector falls off the page
    ];
    let spans = sys::raw(17, [lba, 2, buf.as_ptr() as u64 + 3584, 0, 0, 0]) as i64;
    let mut check_buf = [0u8; 512];
    fill(&mut check_buf, 7);
    sys::sector_read(lba, &mut buf[..512]).map_err(|_| "read")?;
    let unchanged = buf[..512] == check_buf[..];
    release(buf);
    check(results[..5].iter().all(|&r| r == Error::Fault as i64), "a bad buffer was accepted")?;
    let one = results[5] as u64 & !exo_libos::abi::SECTOR_PENDING == 1;
    check(one && spans == Error::Fault as i64, "page-crossing buffer handled wrongly")?;
    check(unchanged, "a refused write changed the disk")
}

/// Writes of 1 MiB the streaming test makes, and the calls the other core must complete
/// *during* them (on average, at least [`CALLS_PER_WRITE`] inside each write).
const STREAM_WRITES: u64 = 8;
const CALLS_PER_WRITE: u64 = 16;

/// One environment on core 1 streams 1 MiB writes while another on core 2 makes system
/// calls that take the kernel lock: the calls go on *during* each write, because a write
/// holds the lock only to check and pin, never while the device works. Counted (calls
/// that began and ended while the same write was in progress), not timed.
fn stream_vs_calls() -> Result<(), &'static str> {
    let mine = vm::env_info(vm::me()).map_or(0, |e| e.affinity);
    if mine & 0b110 != 0b110 {
        return Ok(()); // needs cores 1 and 2
    }
    let w = shared();
    let caller = match process::fork().map_err(|_| "fork")? {
        Fork::Child => loop {
            let before = w[1].load(SeqCst);
            let _ = sys::env_self(); // takes the kernel lock
            let inside = before & 1 == 1 && w[1].load(SeqCst) == before;
            w[2].fetch_add(inside as u64, SeqCst);
            w[3].fetch_add(1, SeqCst);
        },
        Fork::Parent(c) => c,
    };
    sys::env_set_affinity(caller, 0b100).map_err(|_| "caller to core 2")?;
    let at = DISK - 2048;
    let streamer = match process::fork().map_err(|_| "fork")? {
        Fork::Child => {
            let buf = buffer(256);
            fill(buf, 5);
            while w[0].load(SeqCst) == 0 {
                sys::yield_now();
            }
            for _ in 0..STREAM_WRITES {
                w[1].fetch_add(1, SeqCst); // odd: a write in progress
                let ok = sys::sector_write(at, buf) == Ok(2048);
                w[1].fetch_add(1, SeqCst);
                w[4].fetch_add(ok as u64, SeqCst);
            }
            sys::exit(0)
        }
        Fork::Parent(c) => c,
    };
    sys::env_set_affinity(streamer, 0b10).map_err(|_| "streamer to core 1")?;
    sys::sector_grant(streamer, at, 2048, SECTOR_WRITE).map_err(|_| "grant")?;
    let calling = wait_for(2000, || w[3].load(SeqCst) > 100);
    w[0].store(1, SeqCst);
    let status = process::wait(streamer);
    let (inside, written) = (w[2].load(SeqCst), w[4].load(SeqCst));
    let _ = sys::env_destroy(caller);
    exo_libos::println!(
        "    {written} writes of 1 MiB on core 1; core 2 completed {inside} calls during them"
    );
    check(calling && status == Ok(0) && written == STREAM_WRITES, "the stream or the caller did not run")?;
    check(inside >= STREAM_WRITES * CALLS_PER_WRITE, "the other core stalled while the disk was written")
}

/// A counter and a streamer of 1 MiB writes pinned to the same core (1): the counter runs
/// while the streamer waits for the disk (it sees the streamer blocked, which a transfer
/// polled inside the call never is), and keeps at least 40% of its rate alone. Its rate
/// alone and beside the stream, in counts per tick of core 1, are printed. Only `virt`'s
/// disk moves data in the background; on `raspi4b` the test checks the rate alone.
/// The most 1 MiB writes the streamer makes: under QEMU virtio-blk often finishes a chunk
/// before the streamer reaches `SectorWait`, so a wait the counter can see may take a while.
const SAME_CORE_WRITES: u64 = 64;

fn stream_vs_same_core() -> Result<(), &'static str> {
    let mine = vm::env_info(vm::me()).map_or(0, |e| e.affinity);
    if mine & 0b110 != 0b110 {
        return Ok(()); // needs cores 1 and 2
    }
    let w = shared();
    let core1 = || {
        // SAFETY: a plain read of the kernel information page, which stays mapped; volatile
        // because the kernel updates it behind the compiler's back.
        unsafe { core::ptr::read_volatile(&vm::kinfo().cpu_ticks[1]) }
    };
    let counter = match process::fork().map_err(|_| "fork")? {
        Fork::Child => loop {
            w[10].fetch_add(1, SeqCst);
            let s = w[11].load(SeqCst) as u32;
            let blocked =
                vm::env_info(EnvId(s)).is_some_and(|e| s != 0 && e.id == s && e.state == env_state::BLOCKED);
            w[12].fetch_add(blocked as u64, SeqCst);
        },
        Fork::Parent(c) => c,
    };
    let at = DISK - 2048;
    let streamer = match process::fork().map_err(|_| "fork")? {
        Fork::Child => {
            let buf = buffer(256);
            fill(buf, 7);
            while w[0].load(SeqCst) == 0 {
                let _ = sys::net_wait(); // asleep until the next tick: the counter has the core
            }
            w[11].store(vm::me().0 as u64, SeqCst); // from now on blocked means on the disk
                                                    // Until the counter has seen it wait for the disk (on `virt`), or the most writes.
            let background = vm::kinfo().board == exo_libos::abi::board::VIRT;
            for _ in 0..SAME_CORE_WRITES {
                if sys::sector_write(at, buf) != Ok(2048) {
                    sys::exit(1);
                }
                w[13].fetch_add(1, SeqCst);
                if (w[12].load(SeqCst) > 0 || !background) && w[13].load(SeqCst) >= 2 {
                    break;
                }
            }
            sys::exit(0)
        }
        Fork::Parent(c) => c,
    };
    // Children first: a mask is set within the parent's, which then leaves core 1 to them.
    sys::env_set_affinity(counter, 0b10).map_err(|_| "counter to core 1")?;
    sys::env_set_affinity(streamer, 0b10).map_err(|_| "streamer to core 1")?;
    sys::env_set_affinity(EnvId::SELF, 0b100).map_err(|_| "self to core 2")?;
    sys::sector_grant(streamer, at, 2048, SECTOR_WRITE).map_err(|_| "grant")?;
    // The counter alone on core 1 for 20 of its ticks.
    let (t0, c0) = (core1(), w[10].load(SeqCst));
    let alone = wait_for(2000, || core1() >= t0 + 20);
    let solo = (w[10].load(SeqCst) - c0) / (core1() - t0).max(1);
    let (t1, c1) = (core1(), w[10].load(SeqCst));
    w[0].store(1, SeqCst);
    let status = process::wait(streamer);
    let (ticks, counted, seen) = (core1() - t1, w[10].load(SeqCst) - c1, w[12].load(SeqCst));
    let writes = w[13].load(SeqCst);
    let _ = sys::env_destroy(counter);
    let _ = sys::env_set_affinity(EnvId::SELF, mine);
    let beside = counted / ticks.max(1);
    exo_libos::println!(
        "    counter on core 1: {solo} counts per tick alone, {beside} beside {writes} writes of 1 MiB \
         ({ticks} ticks); it saw the streamer blocked {seen} times"
    );
    let background = vm::kinfo().board == exo_libos::abi::board::VIRT;
    check(alone && status == Ok(0), "the counter or the stream did not run")?;
    check(!background || seen > 0, "the counter never ran while the streamer waited for the disk")?;
    check(beside * 5 >= solo * 2, "the counter got less than 40% of its rate alone beside the stream")
}

/// This module's page shared with its forked children, zeroed ([`crate::runner::shared_page`]).
fn shared() -> &'static [AtomicU64; 512] {
    static VA: AtomicU64 = AtomicU64::new(0);
    crate::runner::shared_page(&VA)
}
