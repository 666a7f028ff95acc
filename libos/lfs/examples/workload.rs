//! The create/read workload of the performance targets, for instruction counting on the
//! host: `valgrind --tool=callgrind target/release/examples/workload PHASE` with PHASE
//! `setup`, `sync` (creates and the sync), `create` (plus a cold mount) or `read`; the differences between phases give each phase's cost.
// An example sees all of the crate's dependencies, and uses only the crate itself.
#![allow(unused_crate_dependencies)]
use exo_lfs::{FormatOptions, Fs, MemDevice, MountOptions};

fn main() {
    let phase = std::env::args().nth(1).unwrap_or_else(|| "read".into());
    let files: usize = std::env::args().nth(2).and_then(|s| s.parse().ok()).unwrap_or(1000);
    let names: Vec<String> = (0..files).map(|i| format!("/dir/file{i:04}")).collect();
    let opts = FormatOptions { segment_bytes: 1 << 20, ..Default::default() };
    let mut fs = Fs::format(MemDevice::new(64 * 2048), opts).unwrap();
    fs.mkdir("/dir").unwrap();
    fs.sync().unwrap();
    let data = [0x5au8; 1024];
    if phase == "setup" {
        return;
    }
    for n in &names {
        let h = fs.create(n).unwrap();
        fs.write(h, 0, &data).unwrap();
        fs.close(h);
    }
    fs.sync().unwrap();
    if phase == "sync" {
        return;
    }
    let mut fs = Fs::mount(fs.into_device(), MountOptions { read_only: true, clock: None }).unwrap();
    if phase == "create" {
        return;
    }
    let mut buf = [0u8; 1024];
    for n in &names {
        let h = fs.open(n).unwrap();
        fs.read(h, 0, &mut buf).unwrap();
        fs.close(h);
    }
    assert_eq!(buf, data);
}
