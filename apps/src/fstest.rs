//! EL0 tests of the file systems as programs use them: through the file service shared by
//! two clients, linked directly, and programs spawned from a file system. Run by init with
//! `exo.test=fs` on a card image with a FAT32 partition and an LFS partition.

use alloc::format;
use alloc::vec::Vec;
use core::sync::atomic::{AtomicU64, Ordering::SeqCst};

use crate::runner::{built_in, check};
use exo_libos::abi::pte::Pte;
use exo_libos::abi::{EnvId, SECTOR_READ, SECTOR_WRITE};
use exo_libos::format::elf::ElfError;
use exo_libos::format::mbr;
use exo_libos::fs::{self, service, OpenFlags, Vfs};
use exo_libos::process::{self, Fork};
use exo_libos::spawn::{self, Options, SpawnError};
use exo_libos::vm::{self, RW, SHARED};
use exo_libos::{println, sys};

type Test = (&'static str, fn(&[(&str, &[u8])]) -> Result<(), &'static str>);

pub const TESTS: &[Test] = &[
    ("two_clients_share_one_volume_through_the_file_service", two_clients),
    ("a_client_cannot_use_another_clients_handle", foreign_handle),
    ("a_call_that_leaves_out_its_buffer_gets_no_other_clients_buffer", buffer_left_out),
    ("malformed_calls_neither_crash_nor_hang_the_file_service", malformed_calls),
    ("a_freed_buffer_frame_is_refused_without_its_grant", freed_buffer),
    ("one_client_cannot_take_every_open_file_of_the_file_service", open_file_hog),
    ("a_family_of_clients_cannot_take_every_open_file_of_the_file_service", family_open_file_hog),
    ("files_survive_a_remount_through_the_libos_linked_directly", direct_remount),
    ("the_block_cache_gives_its_pages_back_and_reads_stay_right", crate::cachetest::given_back),
    ("spawn_runs_an_elf_from_the_fat_partition_and_wait_returns_its_status", spawn_from_fat),
    ("spawn_refuses_malformed_elf_files", malformed_elf),
    ("exec_in_a_forked_child_replaces_its_shared_text_table", crate::sharing::exec_over_a_shared_text_table),
];

/// Runs the suite; `programs` are the ELF files init carries (fsd, hello, crash, ...).
pub fn run(filter: &str, programs: &[(&str, &[u8])]) -> usize {
    crate::runner::run_suite("fstest", TESTS, filter, |test| test(programs))
}

fn partitions() -> Vec<(u64, u64, u32)> {
    let kinds = [mbr::TYPE_FAT32_LBA, 0x0b, mbr::TYPE_EXO_LFS];
    vm::kinfo()
        .partitions
        .iter()
        .filter(|p| p.sectors > 0 && kinds.contains(&p.kind))
        .map(|p| (p.start, p.sectors, SECTOR_READ | SECTOR_WRITE))
        .collect()
}

/// Starts fsd with the disk's partitions; returns once it serves.
pub(crate) fn start_fsd(programs: &[(&str, &[u8])]) -> Result<EnvId, &'static str> {
    let grants = partitions();
    let fsd =
        spawn::spawn(built_in(programs, "fsd")?, "", Options { sectors: &grants, ..Options::default() })
            .map_err(|_| "cannot start fsd")?;
    // Until it parks: blocked, but not on the disk (`SectorWait`) while it mounts.
    while vm::env_info(fsd)
        .is_some_and(|i| i.state == exo_libos::abi::env_state::RUNNABLE || i.disk_wait != 0)
    {
        sys::yield_now();
    }
    Ok(fsd)
}

static FLAGS: AtomicU64 = AtomicU64::new(0);

fn flags() -> &'static [AtomicU64; 8] {
    // SAFETY: FLAGS holds the address of a page shared read-write with forked children.
    unsafe { &*(FLAGS.load(SeqCst) as *const [AtomicU64; 8]) }
}

fn shared_flags() {
    if FLAGS.load(SeqCst) == 0 {
        let va = vm::alloc_va(1);
        let pa = sys::frame_alloc(EnvId::SELF, None).expect("frame");
        vm::map(va, Pte::user_page(pa, RW).0 | SHARED).expect("map");
        FLAGS.store(va, SeqCst);
    }
    for f in flags() {
        f.store(0, SeqCst);
    }
}

/// Client `me` (0 or 1): writes its files, waits for the other, reads both.
fn client(fsd: EnvId, me: usize) -> i32 {
    let mut vfs = Vfs::new();
    if service::mount_remote(&mut vfs, fsd).is_err() {
        return 10;
    }
    let body = |who: usize| format!("client {who} was here\n").repeat(200 + who * 50);
    for dir in ["/fat", "/log"] {
        if vfs.write_file(&format!("{dir}/c{me}.txt"), body(me).as_bytes()).is_err() {
            return 11;
        }
    }
    if vfs.sync().is_err() {
        return 12;
    }
    flags()[me].store(1, SeqCst);
    while flags()[1 - me].load(SeqCst) == 0 {
        sys::yield_now();
    }
    for dir in ["/fat", "/log"] {
        for who in 0..2 {
            match vfs.read_to_vec(&format!("{dir}/c{who}.txt")) {
                Ok(v) if v == body(who).as_bytes() => {}
                _ => return 20 + who as i32,
            }
        }
    }
    0
}

fn two_clients(programs: &[(&str, &[u8])]) -> Result<(), &'static str> {
    shared_flags();
    let fsd = start_fsd(programs)?;
    sys::pct_allow(EnvId::SELF, fsd).map_err(|_| "allow")?;
    let mut kids = Vec::new();
    for me in 0..2 {
        // Allowed before it runs: on another core it would call fsd at once.
        match process::fork_allowing(&[fsd]).map_err(|_| "fork")? {
            Fork::Child => sys::exit(client(fsd, me)),
            Fork::Parent(c) => kids.push(c),
        }
    }
    let statuses: Vec<i32> = kids.iter().map(|&c| process::wait(c).unwrap_or(-1)).collect();
    // And the parent sees both clients' files too.
    let mut vfs = Vfs::new();
    service::mount_remote(&mut vfs, fsd).map_err(|_| "mount")?;
    let both = (0..2)
        .all(|w| vfs.stat(&format!("/log/c{w}.txt")).is_ok() && vfs.stat(&format!("/fat/c{w}.txt")).is_ok());
    for w in 0..2 {
        let _ = vfs.remove(&format!("/log/c{w}.txt"));
        let _ = vfs.remove(&format!("/fat/c{w}.txt"));
    }
    let _ = vfs.sync();
    drop(vfs);
    let _ = sys::env_destroy(fsd);
    if statuses != [0, 0] {
        println!("  client statuses: {statuses:?}");
    }
    check(statuses == [0, 0], "a client did not read back both files")?;
    check(both, "the parent does not see the clients' files")
}

fn foreign_handle(programs: &[(&str, &[u8])]) -> Result<(), &'static str> {
    shared_flags();
    let fsd = start_fsd(programs)?;
    sys::pct_allow(EnvId::SELF, fsd).map_err(|_| "allow")?;
    let mut mine = service::RemoteFs::discover(fsd).map_err(|_| "discover")?;
    let (_, fs) = mine.iter_mut().find(|(at, _)| at == "/log").ok_or("no /log")?;
    let h = fs::FileSystem::open(fs, "/secret.txt", OpenFlags::RW | OpenFlags::CREATE).map_err(|_| "open")?;
    let _ = fs::FileSystem::write(fs, h, 0, b"mine");
    let thief = match process::fork_allowing(&[fsd]).map_err(|_| "fork")? {
        Fork::Child => {
            let Ok(mut theirs) = service::RemoteFs::discover(fsd) else { sys::exit(1) };
            let Some((_, fs)) = theirs.iter_mut().find(|(at, _)| at == "/log") else { sys::exit(2) };
            let mut buf = [0u8; 4];
            let stolen = fs::FileSystem::read(fs, h, 0, &mut buf);
            sys::exit((stolen == Err(fs::Error::BadHandle)) as i32)
        }
        Fork::Parent(c) => c,
    };
    let refused = process::wait(thief) == Ok(1);
    let _ = fs::FileSystem::close(fs, h);
    let _ = fs::FileSystem::remove(fs, "/secret.txt");
    drop(mine);
    let _ = sys::env_destroy(fsd);
    check(refused, "another client's handle worked")
}

/// A call may leave out the grant of its buffer once the server holds it mapped: never
/// another client's. A child that names each of its parent's frames in turn, without a
/// grant, is told to grant every time (`NEED_BUFFER`, nothing done) though its parent's
/// buffers are mapped; granted once, its own buffer may be left out; and more buffers
/// than the server has window pages push one another out, each then granted again,
/// every call still answered from its own buffer.
fn buffer_left_out(programs: &[(&str, &[u8])]) -> Result<(), &'static str> {
    use exo_libos::abi::frame::DATA;
    use service::protocol::{op, NEED_BUFFER, WINDOWS};
    let fsd = start_fsd(programs)?;
    sys::pct_allow(EnvId::SELF, fsd).map_err(|_| "allow")?;
    let mut mine = service::RemoteFs::discover(fsd).map_err(|_| "discover")?;
    let listed = |fs: &mut Vec<(alloc::string::String, service::RemoteFs)>| {
        fs.iter_mut().find(|(at, _)| at == "/log").map(|(_, f)| fs::FileSystem::statfs(f).is_ok())
    };
    let mounts = |word: u64| sys::pct_call(fsd, [word, 0, 0, 0], 0).map_or(u64::MAX, |r| r[0]);
    let parent = vm::me();
    // Its `/log` buffer granted, and mapped in the server's window, before the child tries.
    check(listed(&mut mine) == Some(true), "the parent's first call failed")?;
    let child = match process::fork_allowing(&[fsd]).map_err(|_| "fork")? {
        Fork::Child => {
            let k = vm::kinfo();
            let parents =
                |pa: &u64| vm::frame_entry(*pa).is_some_and(|e| e.kind == DATA && e.owner == parent.0);
            let mut frames = (0..k.frames).map(|i| k.ram_base + i * vm::PAGE).filter(parents);
            let refused =
                frames.clone().count() > 0 && frames.all(|pa| mounts(op::MOUNTS | pa) == NEED_BUFFER);
            let Ok(mut theirs) = service::RemoteFs::discover(fsd) else { sys::exit(2) };
            let served = listed(&mut theirs) == Some(true) && listed(&mut theirs) == Some(true);
            sys::exit(refused as i32 | (served as i32) << 1)
        }
        Fork::Parent(c) => c,
    };
    let status = process::wait(child).map_err(|_| "wait")?;
    // More buffers than window pages (a client holds two grants at a server at most, and
    // each of these children two buffers), each granted once and then left out: the
    // parent's are pushed out of the window, and its next calls grant them again.
    let mut crowd = 0;
    for _ in 0..WINDOWS {
        let c = match process::fork_allowing(&[fsd]).map_err(|_| "fork")? {
            Fork::Child => {
                let Ok(mut theirs) = service::RemoteFs::discover(fsd) else { sys::exit(2) };
                sys::exit((listed(&mut theirs) == Some(true) && listed(&mut theirs) == Some(true)) as i32)
            }
            Fork::Parent(c) => c,
        };
        crowd += (process::wait(c) == Ok(1)) as usize;
    }
    let all = crowd == WINDOWS && listed(&mut mine) == Some(true) && listed(&mut mine) == Some(true);
    drop(mine);
    let _ = sys::env_destroy(fsd);
    check(status & 1 == 1, "a call without a grant was served from another client's buffer")?;
    check(status & 2 == 2, "a client that granted its buffer once could not leave it out after")?;
    check(all, "a client pushed out of the window was not served again")
}

fn direct_remount(_: &[(&str, &[u8])]) -> Result<(), &'static str> {
    let data: Vec<u8> = (0..300_000u32).map(|i| (i * 7 + i / 251) as u8).collect();
    {
        let mut vfs = Vfs::new();
        fs::mount::mount_disk(&mut vfs, &[exo_fat::backend(), exo_logfs::backend()]);
        for dir in ["/fat", "/log"] {
            vfs.mkdir(&format!("{dir}/sub")).map_err(|_| "mkdir")?;
            vfs.write_file(&format!("{dir}/sub/big.bin"), &data).map_err(|_| "write")?;
        }
        vfs.sync().map_err(|_| "sync")?;
    }
    let mut vfs = Vfs::new();
    fs::mount::mount_disk(&mut vfs, &[exo_fat::backend(), exo_logfs::backend()]);
    let mut ok = true;
    for dir in ["/fat", "/log"] {
        ok &= vfs.read_to_vec(&format!("{dir}/sub/big.bin")).is_ok_and(|v| v == data);
        let _ = vfs.remove(&format!("{dir}/sub/big.bin"));
        let _ = vfs.remove(&format!("{dir}/sub"));
    }
    let _ = vfs.sync();
    check(ok, "a file read back differently after a remount")
}

fn spawn_from_fat(programs: &[(&str, &[u8])]) -> Result<(), &'static str> {
    let mut vfs = Vfs::new();
    fs::mount::mount_disk(&mut vfs, &[exo_fat::backend(), exo_logfs::backend()]);
    vfs.write_file("/fat/hello", built_in(programs, "hello")?).map_err(|_| "write hello")?;
    vfs.write_file("/fat/crash", built_in(programs, "crash")?).map_err(|_| "write crash")?;
    vfs.sync().map_err(|_| "sync")?;
    let hello = vfs.read_to_vec("/fat/hello").map_err(|_| "read hello")?;
    let crash = vfs.read_to_vec("/fat/crash").map_err(|_| "read crash")?;
    let _ = vfs.remove("/fat/hello");
    let _ = vfs.remove("/fat/crash");
    let _ = vfs.sync();
    drop(vfs);
    let h = spawn::spawn(&hello, "from the FAT partition", Options::default()).map_err(|_| "spawn hello")?;
    let c = spawn::spawn(&crash, "", Options::default()).map_err(|_| "spawn crash")?;
    let hs = process::wait(h).map_err(|_| "wait hello")?;
    let cs = process::wait(c).map_err(|_| "wait crash")?;
    check(hs == 0, "hello did not exit 0")?;
    check(
        cs == exo_libos::abi::killed_status(exo_libos::abi::upcall::DATA_ABORT),
        "crash was not killed by its fault",
    )
}

fn malformed_elf(programs: &[(&str, &[u8])]) -> Result<(), &'static str> {
    let good = built_in(programs, "hello")?;
    let mut bad = good.to_vec();
    bad[18] = 62; // x86-64
    let results = [
        spawn::spawn(&bad, "", Options::default()),
        spawn::spawn(&good[..200], "", Options::default()),
        spawn::spawn(b"#!/bin/sh\necho hi\n", "", Options::default()),
        spawn::spawn(&[0u8; 4096], "", Options::default()),
    ];
    check(results.iter().all(|r| matches!(r, Err(SpawnError::BadElf(_)))), "a malformed ELF was started")?;
    // Text made writable too: refused by the parser before anything is built.
    let mut wx = good.to_vec();
    let phoff = exo_libos::format::le::read_u64(&wx, 32).ok_or("no program header offset")? as usize;
    *wx.get_mut(phoff + 4).ok_or("no program header")? |= 7; // the first PT_LOAD: read, write, execute
    let r = spawn::spawn(&wx, "", Options::default());
    check(r == Err(SpawnError::BadElf(ElfError::WriteExec)), "a writable and executable segment was loaded")?;
    // A segment moved onto the libOS's own regions (the windows on the tables): refused by
    // `spawn`, and by `exec` in a child (which would otherwise replace it).
    let mut high = good.to_vec();
    let vaddr = phoff + 16;
    let at = exo_libos::vm::TABLE_WINDOW.to_le_bytes();
    high.get_mut(vaddr..vaddr + 8).ok_or("no program header")?.copy_from_slice(&at);
    check(
        spawn::spawn(&high, "", Options::default()) == Err(SpawnError::Layout),
        "spawn loaded over the windows",
    )?;
    let status = match process::fork().map_err(|_| "fork")? {
        Fork::Child => sys::exit((exo_libos::exec::exec(&high, "") == SpawnError::Layout) as i32),
        Fork::Parent(c) => process::wait(c).map_err(|_| "wait")?,
    };
    check(status == 1, "exec loaded over the windows")
}

/// A fresh page of ours, mapped, and its frame.
fn raw_buffer() -> Result<(&'static mut [u8; 4096], u64), &'static str> {
    let va = vm::alloc_va(1);
    let pa = vm::map_new(va, RW).map_err(|_| "map")?;
    // SAFETY: va maps a fresh page read-write, used only by this test.
    Ok((unsafe { &mut *(va as *mut [u8; 4096]) }, pa))
}

/// Hostile calls, each made with the buffer granted: out-of-range lengths, handles, counts
/// and offsets, paths that are not UTF-8, too long, or full of `..`, unknown operations.
/// fsd must answer every one and still serve after.
fn malformed_calls(programs: &[(&str, &[u8])]) -> Result<(), &'static str> {
    use exo_libos::abi::PCT_GRANT_RW;
    use service::protocol::op;
    let fsd = start_fsd(programs)?;
    sys::pct_allow(EnvId::SELF, fsd).map_err(|_| "allow")?;
    let (buf, pa) = raw_buffer()?;
    let call = |w: [u64; 4]| sys::pct_call(fsd, [w[0] | pa, w[1], w[2], w[3]], pa | PCT_GRANT_RW);
    let put = |buf: &mut [u8; 4096], s: &[u8]| {
        buf.fill(0);
        buf[..s.len()].copy_from_slice(s);
        s.len() as u64
    };
    let alive = |i: usize| -> Result<(), &'static str> {
        match call([op::MOUNTS, 0, 0, 0]) {
            Ok(r) if r[0] == 0 => Ok(()),
            r => {
                println!("  fsd stopped serving after case {i}: {r:?}");
                Err("fsd did not survive a malformed call")
            }
        }
    };
    alive(0)?;
    let mut cases: Vec<(Vec<u8>, [u64; 4])> = Vec::new();
    let dots = b"/fat".iter().copied().chain(b"/..".repeat(1300)).collect::<Vec<u8>>();
    let ldots = b"/log".iter().copied().chain(b"/..".repeat(1300)).collect::<Vec<u8>>();
    let deep = b"/log".iter().copied().chain(b"/a".repeat(2040)).collect::<Vec<u8>>();
    let long = b"/fat/".iter().copied().chain(b"x".repeat(4000)).collect::<Vec<u8>>();
    let llong = b"/log/".iter().copied().chain(b"x".repeat(4000)).collect::<Vec<u8>>();
    let bad = [0xffu8; 64].to_vec();
    for (p, n) in [
        (&dots, dots.len()),
        (&ldots, ldots.len()),
        (&deep, deep.len()),
        (&long, long.len()),
        (&llong, llong.len()),
        (&bad, 64),
    ] {
        for o in [op::OPEN, op::STAT, op::LIST, op::MKDIR, op::REMOVE, op::STATFS, op::ATTR, op::VERSION] {
            cases.push((p.clone(), [o, n as u64, 4 | 3, 0]));
        }
        cases.push((p.clone(), [op::RENAME, 4, n as u64 - 4, 0]));
        cases.push((p.clone(), [op::SET_ATTR, 4, u64::MAX, 0]));
    }
    let f = b"/fat/x".to_vec();
    for w in [
        [op::OPEN, u64::MAX, 0, 0],
        [op::OPEN, 4097, 0, 0],
        [op::OPEN, 6, u64::MAX, u64::MAX],
        [op::RENAME, 1, u64::MAX, 0],
        [op::RENAME, u64::MAX, 1, 0],
        [op::RENAME, 4096, 4096, 0],
        [op::SET_ATTR, 6, u64::MAX - 10, 0],
        [op::SET_ATTR, 6, 4096, 0],
        [op::LIST, 4, u64::MAX, 0],
        [op::READ, u64::MAX, u64::MAX, u64::MAX],
        [op::READ, 0, 0, u64::MAX],
        [op::WRITE, u64::MAX, 0, u64::MAX],
        [op::WRITE, 0, u64::MAX, u64::MAX],
        [op::CLOSE, u64::MAX, 0, 0],
        [op::CLOSE, 1 << 32, 0, 0],
        [op::FSTAT, u32::MAX as u64, 0, 0],
        [0, 0, 0, 0],
        [0xfff, u64::MAX, u64::MAX, u64::MAX],
    ] {
        cases.push((f.clone(), w));
    }
    for (i, (p, w)) in cases.iter().enumerate() {
        put(buf, p);
        let _ = call(*w);
        alive(i + 1)?;
    }
    // A file of our own, then reads and writes at offsets at the end of the range.
    let mut done = true;
    for dir in [&b"/log/m.bin"[..], &b"/fat/m.bin"[..]] {
        let n = put(buf, dir);
        let r = call([op::OPEN, n, 3 | 4, 0]).map_err(|_| "open")?;
        check(r[0] == 0, "cannot open a file")?;
        let h = r[1];
        for (i, off) in
            [u64::MAX, u64::MAX - 1, u64::MAX - 4095, 1 << 63, (1 << 32) - 1, 1 << 40].into_iter().enumerate()
        {
            let _ = call([op::WRITE, h, off, 4096]);
            alive(1000 + i)?;
            let _ = call([op::READ, h, off, 4096]);
            alive(2000 + i)?;
        }
        let _ = call([op::CLOSE, h, 0, 0]);
        let n = put(buf, dir);
        done &= call([op::REMOVE, n, 0, 0]).is_ok_and(|r| r[0] == 0);
    }
    let _ = call([op::SYNC, 0, 0, 0]);
    alive(9999)?;
    let _ = sys::env_destroy(fsd);
    check(done, "could not remove the test files")
}

/// A client that grants its buffer and then frees the frame: a later call naming that
/// frame without its grant must be told to grant it (`NEED_BUFFER`), not served through a
/// frame that is no longer the caller's.
fn freed_buffer(programs: &[(&str, &[u8])]) -> Result<(), &'static str> {
    use exo_libos::abi::PCT_GRANT_RW;
    use service::protocol::{op, NEED_BUFFER};
    let fsd = start_fsd(programs)?;
    sys::pct_allow(EnvId::SELF, fsd).map_err(|_| "allow")?;
    let pa = sys::frame_alloc(EnvId::SELF, None).map_err(|_| "alloc")?;
    let first = sys::pct_call(fsd, [op::MOUNTS | pa, 0, 0, 0], pa | PCT_GRANT_RW).map_err(|_| "call")?;
    check(first[0] == 0, "the granted call failed")?;
    let kept = sys::pct_call(fsd, [op::MOUNTS | pa, 0, 0, 0], 0).map_err(|_| "call")?;
    check(kept[0] == 0, "the buffer could not be left out once granted")?;
    let freed = sys::frame_free(EnvId::SELF, pa);
    println!("  frame_free of the granted buffer: {freed:?}");
    let after = sys::pct_call(fsd, [op::MOUNTS | pa, 0, 0, 0], 0);
    println!("  a call naming it without the grant: {after:?}");
    let regrant = sys::pct_call(fsd, [op::MOUNTS | pa, 0, 0, 0], pa | PCT_GRANT_RW);
    println!("  with the grant: {regrant:?}");
    let alive = sys::pct_call(fsd, [op::MOUNTS, 0, 0, 0], 0);
    let _ = sys::env_destroy(fsd);
    check(alive.is_ok(), "fsd died")?;
    check(
        freed.is_err() || after.is_ok_and(|r| r[0] == NEED_BUFFER),
        "fsd served a call through a freed frame",
    )
}

/// One client opens `/fat` files until fsd refuses it, and holds them: another client must
/// still be able to open a file there.
fn open_file_hog(programs: &[(&str, &[u8])]) -> Result<(), &'static str> {
    open_hog(programs, 1)
}

/// The same with the hog's own children as more clients: five of them, each within its own
/// limit, held 64 together, every handle FAT had. Every client there can be together now
/// holds fewer than a mount may have open.
fn family_open_file_hog(programs: &[(&str, &[u8])]) -> Result<(), &'static str> {
    let slots = vm::kinfo().max_envs as usize;
    check(slots - 1 <= service::server::CLIENTS, "more environment slots than fsd's tables count clients")?;
    open_hog(programs, 5)
}

/// `clients` clients (a program and its children) open one file as often as fsd lets each.
fn open_hog(programs: &[(&str, &[u8])], clients: u64) -> Result<(), &'static str> {
    shared_flags();
    let fsd = start_fsd(programs)?;
    sys::pct_allow(EnvId::SELF, fsd).map_err(|_| "allow")?;
    let mut mine = service::RemoteFs::discover(fsd).map_err(|_| "discover")?;
    let (_, fs) = mine.iter_mut().find(|(at, _)| at == "/fat").ok_or("no /fat")?;
    let h = fs::FileSystem::open(fs, "/hog.txt", OpenFlags::RW | OpenFlags::CREATE).map_err(|_| "create")?;
    let _ = fs::FileSystem::close(fs, h);
    let hog = match process::fork_allowing(&[fsd]).map_err(|_| "fork")? {
        Fork::Child => {
            for _ in 1..clients {
                if let Ok(Fork::Child) = process::fork_allowing(&[fsd]) {
                    break; // a child opens as a client of its own
                }
            }
            let Ok(mut theirs) = service::RemoteFs::discover(fsd) else { sys::exit(2) };
            let Some((_, fs)) = theirs.iter_mut().find(|(at, _)| at == "/fat") else { sys::exit(3) };
            let mut n = 0u64;
            while n < 1000 && fs::FileSystem::open(fs, "/hog.txt", OpenFlags::READ).is_ok() {
                n += 1;
            }
            flags()[0].fetch_add(n, SeqCst);
            flags()[1].fetch_add(1, SeqCst);
            loop {
                sys::yield_now();
            }
        }
        Fork::Parent(c) => c,
    };
    let ready = crate::runner::wait_for(2000, || flags()[1].load(SeqCst) == clients);
    let held = flags()[0].load(SeqCst);
    let r = fs::FileSystem::open(fs, "/hog.txt", OpenFlags::READ);
    println!("  the hog holds {held} handles; another client's open: {r:?}");
    if let Ok(h) = r {
        let _ = fs::FileSystem::close(fs, h);
    }
    let _ = sys::env_destroy(hog);
    let _ = fs::FileSystem::remove(fs, "/hog.txt");
    let _ = fs::FileSystem::sync(fs);
    drop(mine);
    let _ = sys::env_destroy(fsd);
    check(ready && held > 0, "the hog could not open its file")?;
    check(r.is_ok(), "one client's open files left none for another")
}
