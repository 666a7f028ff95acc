//! The create/read workload of the performance targets, measured in device transfers on the
//! host: 1000 × (create, write 1 KiB, close) in one directory and one sync; then a cold
//! mount and 1000 × (open, read 1 KiB, close). Prints per-file sector and call counts and
//! checks them against the budget the design promises (FAT rewrites a directory sector
//! and FAT sectors per file; this should stay near 2–3 sectors). Instruction counts come
//! from `examples/workload.rs` under callgrind.
mod common;
use exo_lfs::{Counting, FormatOptions, Fs, IoCounts, MemDevice, MountOptions};

const FILES: u32 = 1000;

fn diff(a: IoCounts, b: IoCounts) -> IoCounts {
    IoCounts {
        reads: b.reads - a.reads,
        writes: b.writes - a.writes,
        flushes: b.flushes - a.flushes,
        sectors_read: b.sectors_read - a.sectors_read,
        sectors_written: b.sectors_written - a.sectors_written,
    }
}

#[test]
fn thousand_small_files_sector_counts() {
    let dev = Counting::new(MemDevice::new(64 * 2048));
    let opts = FormatOptions { segment_bytes: 1 << 20, ..Default::default() };
    let mut fs = Fs::format(dev, opts).unwrap();
    fs.mkdir("/dir").unwrap();
    fs.sync().unwrap();
    let data = [0x5au8; 1024];
    let t0 = fs.device().counts;
    for i in 0..FILES {
        let h = fs.create(&format!("/dir/file{i:04}")).unwrap();
        fs.write(h, 0, &data).unwrap();
        fs.close(h);
    }
    let t1 = fs.device().counts;
    fs.sync().unwrap();
    let w = diff(t0, fs.device().counts);
    let before_sync = diff(t0, t1);
    let per_file = w.sectors_written as f64 / FILES as f64;
    println!(
        "create+write 1KiB+close x{FILES}, one sync: {} sectors in {} writes ({} before the sync), {:.2} sectors/file, {} flushes",
        w.sectors_written, w.writes, before_sync.writes, per_file, w.flushes
    );
    let dev = fs.into_device();
    let mut fs = Fs::mount(dev, MountOptions { read_only: true, clock: None }).unwrap();
    let t2 = fs.device().counts;
    let mut buf = [0u8; 1024];
    for i in 0..FILES {
        let h = fs.open(&format!("/dir/file{i:04}")).unwrap();
        assert_eq!(fs.read(h, 0, &mut buf).unwrap(), 1024);
        assert_eq!(buf, data);
        fs.close(h);
    }
    let r = diff(t2, fs.device().counts);
    println!(
        "cold open+read 1KiB+close x{FILES}: {} reads, {} sectors, {:.2} reads/file, {:.2} sectors/file",
        r.reads,
        r.sectors_read,
        r.reads as f64 / FILES as f64,
        r.sectors_read as f64 / FILES as f64
    );
    assert!(per_file <= 2.6, "{per_file:.2} sectors written per 1 KiB file");
    assert!(w.writes <= 4, "the sync should be a handful of large writes, was {}", w.writes);
    assert!(r.reads as f64 / (FILES as f64) < 1.2, "{} reads for {FILES} files", r.reads);
}

/// Host wall-clock per operation, printed only (never asserted): run with
/// `cargo test --release -p exo-lfs --test bench -- --nocapture --ignored`.
#[test]
#[ignore]
fn thousand_small_files_host_time() {
    let dev = MemDevice::new(64 * 2048);
    let opts = FormatOptions { segment_bytes: 1 << 20, ..Default::default() };
    let mut fs = Fs::format(dev, opts).unwrap();
    fs.mkdir("/dir").unwrap();
    let names: Vec<String> = (0..FILES).map(|i| format!("/dir/file{i:04}")).collect();
    let data = [0x5au8; 1024];
    let t = std::time::Instant::now();
    for n in &names {
        let h = fs.create(n).unwrap();
        fs.write(h, 0, &data).unwrap();
    }
    let before_sync = t.elapsed();
    fs.sync().unwrap();
    let create = t.elapsed();
    println!("host: {:?} per create+write before the sync", before_sync / FILES);
    let mut fs = Fs::mount(fs.into_device(), MountOptions { read_only: true, clock: None }).unwrap();
    let mut buf = [0u8; 1024];
    let t = std::time::Instant::now();
    for n in &names {
        let h = fs.open(n).unwrap();
        fs.read(h, 0, &mut buf).unwrap();
    }
    let read = t.elapsed();
    println!(
        "host: {:?} per create+write+share of sync, {:?} per cold open+read",
        create / FILES,
        read / FILES
    );
}
