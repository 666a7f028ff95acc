//! Power loss at every write of a workload (the littlefs way): after each cut, with the
//! unflushed writes lost, torn or reordered, the file system must mount, pass fsck, hold
//! exactly the state after some operation no older than the last completed sync, and keep
//! working.
mod common;
use common::fault::{FaultDev, Loss};
use common::*;
use exo_lfs::{Error, FormatOptions, Fs, MemDevice, MountOptions};

/// One step of a workload.
#[derive(Clone, Debug)]
enum Op {
    Create(String),
    Mkdir(String),
    Write(String, u64, Vec<u8>),
    Truncate(String, u64),
    Unlink(String),
    Rename(String, String),
    Sync,
    Clean,
}

/// Builds a deterministic workload. `churn` makes it overwrite the disk several times.
fn workload(seed: u64, ops: usize, churn: bool) -> Vec<Op> {
    let mut r = Rng::new(seed);
    let mut w = vec![Op::Mkdir("/d".into()), Op::Mkdir("/d/e".into())];
    let names = ["/a", "/b", "/c", "/d/x", "/d/y", "/d/e/z"];
    for _ in 0..ops {
        let n = names[r.below(names.len() as u64) as usize].to_string();
        let op = match r.below(20) {
            0..=2 => Op::Create(n),
            3..=9 => {
                let len = if churn {
                    4000 + r.below(16_000)
                } else if r.chance(20) {
                    r.below(30_000)
                } else {
                    r.below(3000)
                };
                let off = if r.chance(30) { r.below(8000) } else { 0 };
                Op::Write(n, off, r.bytes(len as usize))
            }
            10 => Op::Truncate(n, r.below(5000)),
            11..=12 => Op::Unlink(n),
            13 => Op::Rename(n, names[r.below(names.len() as u64) as usize].to_string()),
            14 if churn => Op::Clean,
            _ => Op::Sync,
        };
        w.push(op);
    }
    w.push(Op::Sync);
    w
}

/// Runs `op`, creating the file first for writes; NotFound/Exists are part of the workload.
fn apply<D: exo_lfs::BlockDevice>(fs: &mut Fs<D>, op: &Op) -> Result<(), Error> {
    let ok = |r: Result<(), Error>| match r {
        Err(Error::NotFound | Error::Exists | Error::IsDir | Error::NotDir | Error::NoSpace) => Ok(()),
        r => r,
    };
    match op {
        Op::Create(p) => ok(fs.create(p).map(|_| ())),
        Op::Mkdir(p) => ok(fs.mkdir(p).map(|_| ())),
        Op::Write(p, off, d) => {
            ok(fs.open(p).or_else(|_| fs.create(p)).and_then(|h| fs.write(h, *off, d)).map(|_| ()))
        }
        Op::Truncate(p, s) => ok(fs.open(p).and_then(|h| fs.truncate(h, *s))),
        Op::Unlink(p) => ok(fs.unlink(p)),
        Op::Rename(a, b) => ok(fs.rename(a, b)),
        Op::Sync => fs.sync(),
        Op::Clean => fs.clean().map(|_| ()),
    }
}

fn base_image(mib: u64) -> Vec<u8> {
    let opts = FormatOptions { segment_bytes: 64 * 1024, max_inodes: Some(1024), fs_id: 7, now: 0 };
    Fs::format(MemDevice::new(mib * 2048), opts).unwrap().into_device().data
}

/// What a crash may leave: `after[i]`, the tree after the first `i` ops; and `created[i]`,
/// the tree inside op `i` when it is a write that made its file. Creating and writing are two
/// operations of the file system, and a commit may fall between them (the checkpoint that
/// `reserve` makes room with, as the write begins), so that state may be the one recovered.
struct States {
    after: Vec<Tree>,
    created: Vec<Option<Tree>>,
}

/// Runs the workload without faults: the states along the way, and the writes issued.
fn reference(img: &[u8], w: &[Op]) -> (States, u64) {
    let mut fs = Fs::mount(FaultDev::new(img.to_vec(), None), MountOptions::default()).unwrap();
    let base = fs.device().writes;
    let mut st = States { after: vec![dump(&mut fs)], created: vec![] };
    for op in w {
        // As `apply` does it: the write's own open, then the create.
        let made = matches!(op, Op::Write(p, ..) if fs.open(p).is_err() && fs.create(p).is_ok());
        st.created.push(made.then(|| dump(&mut fs)));
        apply(&mut fs, op).unwrap_or_else(|e| panic!("reference run: {op:?}: {e:?}"));
        st.after.push(dump(&mut fs));
    }
    (st, fs.device().writes - base)
}

fn cut_and_check(img: &[u8], w: &[Op], st: &States, cut: u64, loss: Loss, seed: u64) {
    let mut fs = Fs::mount(FaultDev::new(img.to_vec(), None), MountOptions::default()).unwrap();
    let base = fs.device().writes;
    fs.device_mut().cut_at = Some(base + cut);
    let mut synced = 0;
    let mut inflight = w.len();
    for (i, op) in w.iter().enumerate() {
        if apply(&mut fs, op).is_err() {
            inflight = i;
            break;
        }
        if matches!(op, Op::Sync | Op::Clean) {
            synced = i + 1;
        }
    }
    let mut rng = Rng::new(seed ^ cut);
    let mut dev = fs.device().crash(loss, &mut rng);
    let mut what = format!("cut at write {cut} ({loss:?}) during op {inflight}");
    if cut.is_multiple_of(4) {
        // Power fails again while the recovering mount writes its checkpoint.
        let again = 1 + (cut / 4) % 2;
        let mut faulty = FaultDev::new(dev.data.clone(), Some(again));
        let _ = Fs::mount(&mut faulty, MountOptions::default()).map(Fs::into_device);
        dev = faulty.crash(Loss::Reordered, &mut rng);
        what = format!("{what}, then again at recovery write {again}");
    }
    let mut fs = Fs::mount(dev, MountOptions::default()).unwrap_or_else(|e| panic!("{what}: mount: {e:?}"));
    assert_clean(&mut fs, &what);
    let got = dump(&mut fs);
    let last = (inflight + 1).min(w.len());
    let made = || st.created[synced..last].iter().flatten().any(|t| *t == got);
    assert!(
        st.after[synced..=last].contains(&got) || made(),
        "{what}: recovered tree is not a state between the last sync (op {synced}) and the cut"
    );
    // The recovered file system keeps working, and what it writes next survives.
    let h = fs.create("/after-crash").or_else(|_| fs.open("/after-crash")).unwrap();
    fs.write(h, 0, b"still alive").unwrap();
    fs.sync().unwrap();
    let mut fs = Fs::mount(fs.into_device(), MountOptions::default()).unwrap();
    let h = fs.open("/after-crash").unwrap();
    let mut b = [0u8; 11];
    fs.read(h, 0, &mut b).unwrap();
    assert_eq!(&b, b"still alive", "{what}");
    assert_clean(&mut fs, &format!("{what}, after recovery and more writes"));
}

#[test]
fn power_loss_at_every_write_small_workload() {
    let img = base_image(4);
    for seed in 1..=3 * scale() {
        let seed = seed + seed_base() * 1000;
        let w = workload(seed, 120, false);
        let (states, writes) = reference(&img, &w);
        assert!(writes > 10, "workload too small ({writes} writes)");
        for cut in 1..=writes {
            for loss in [Loss::All, Loss::TornLast, Loss::Reordered] {
                cut_and_check(&img, &w, &states, cut, loss, seed);
            }
        }
        println!("seed {seed}: {} ops, {writes} writes, each cut three ways", w.len());
    }
}

/// Large writes of whole blocks (direct partial segments: data first, then a flush, then the
/// header) mixed with small ones, overwrites and truncations.
fn large_workload(seed: u64, ops: usize) -> Vec<Op> {
    let mut r = Rng::new(seed);
    let mut w = vec![Op::Mkdir("/d".into())];
    let names = ["/a", "/b", "/d/x"];
    for _ in 0..ops {
        let n = names[r.below(names.len() as u64) as usize].to_string();
        let op = match r.below(12) {
            0..=5 => {
                let blocks = 4 + r.below(40) as usize;
                let off = r.below(4) * 4096 * (1 + r.below(8));
                Op::Write(n, off, r.bytes(blocks * 4096))
            }
            6..=7 => {
                let len = 1 + r.below(9000) as usize;
                Op::Write(n, r.below(20_000), r.bytes(len))
            }
            8 => Op::Truncate(n, r.below(100_000)),
            9 => Op::Unlink(n),
            _ => Op::Sync,
        };
        w.push(op);
    }
    w.push(Op::Sync);
    w
}

#[test]
fn power_loss_during_large_writes() {
    let img = base_image(4);
    for seed in 20..20 + 2 * scale() {
        let seed = seed + seed_base() * 1000;
        let w = large_workload(seed, 30);
        let (states, writes) = reference(&img, &w);
        for cut in 1..=writes {
            cut_and_check(&img, &w, &states, cut, Loss::All, seed);
            cut_and_check(&img, &w, &states, cut, Loss::TornLast, seed);
            // Several random reorderings: the case that matters (a direct PS's header on
            // disk, its data not, the commit after it whole) is one draw in dozens.
            for k in 0..8 {
                cut_and_check(&img, &w, &states, cut, Loss::Reordered, seed + k * 7919);
            }
        }
        println!("seed {seed}: {} ops, {writes} writes, each cut three ways", w.len());
    }
}

#[test]
fn power_loss_during_cleaning_and_checkpoints() {
    let img = base_image(1);
    for seed in 10..10 + 2 * scale() {
        let seed = seed + seed_base() * 1000;
        let w = workload(seed, 150, true);
        let (states, writes) = reference(&img, &w);
        let mut fs = Fs::mount(FaultDev::new(img.clone(), None), MountOptions::default()).unwrap();
        for op in &w {
            apply(&mut fs, op).unwrap();
        }
        let st = fs.statfs().stats;
        assert!(st.segments_cleaned > 0, "workload never cleaned: {st:?}");
        for cut in 1..=writes {
            let loss = [Loss::All, Loss::TornLast, Loss::Reordered][(cut % 3) as usize];
            cut_and_check(&img, &w, &states, cut, loss, seed);
        }
        println!("seed {seed}: {} ops, {writes} writes, {} segments cleaned", w.len(), st.segments_cleaned);
    }
}

/// A writable mount of a clean file system writes nothing until something changes (reading,
/// listing and a sync with nothing to commit leave the card alone), and the checkpoint
/// naming its new epoch still reaches the disk before the first partial segment: a cut at
/// each write of the first change, and after its sync, recovers the state before or after.
#[test]
fn a_clean_mount_writes_nothing_until_its_first_change() {
    let mut fs = Fs::mount(MemDevice { data: base_image(4) }, MountOptions::default()).unwrap();
    let h = fs.create("/a").unwrap();
    fs.write(h, 0, b"one").unwrap();
    let img = fs.unmount().unwrap().data; // clean: nothing for the next mount to replay
    let before = {
        let mut fs = Fs::mount(FaultDev::new(img.clone(), None), MountOptions::default()).unwrap();
        let t = dump(&mut fs);
        fs.sync().unwrap();
        assert_eq!(fs.device().writes, 0, "a mount that changed nothing wrote to the card");
        t
    };
    let change = |fs: &mut Fs<FaultDev>| -> Result<(), Error> {
        let h = fs.open("/a")?;
        fs.write(h, 0, b"two")?;
        fs.sync()
    };
    let mut fs = Fs::mount(FaultDev::new(img.clone(), None), MountOptions::default()).unwrap();
    change(&mut fs).unwrap();
    let (after, writes) = (dump(&mut fs), fs.device().writes);
    assert!(writes >= 2, "the epoch's checkpoint and the change: {writes} writes");
    let mut rng = Rng::new(11);
    for cut in 1..=writes + 1 {
        for loss in [Loss::All, Loss::TornLast, Loss::Reordered] {
            let mut fs = Fs::mount(FaultDev::new(img.clone(), Some(cut)), MountOptions::default()).unwrap();
            let done = change(&mut fs).is_ok();
            let dev = fs.device().crash(loss, &mut rng);
            let what = format!("cut at write {cut} of {writes} ({loss:?})");
            let mut fs = Fs::mount(dev, MountOptions::default()).unwrap_or_else(|e| panic!("{what}: {e:?}"));
            assert_clean(&mut fs, &what);
            let got = dump(&mut fs);
            assert!(got == after || !done && got == before, "{what}: recovered neither state");
        }
    }
}
