//! The `lfs` binary end to end: mkfs → put → ls → get round trip, fsck exit codes on a
//! clean and a damaged image, and the same inside an MBR partition.
// An integration test sees every dependency of its package; the library target is the
// one that must use them all (see `[workspace.lints]` in the root Cargo.toml).
#![allow(unused_crate_dependencies)]
use std::path::PathBuf;
use std::process::{Command, Output};

fn lfs(args: &[&str]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_lfs")).args(args).output().expect("run lfs")
}

fn ok(args: &[&str]) -> String {
    let o = lfs(args);
    assert!(o.status.success(), "lfs {args:?} failed: {}", String::from_utf8_lossy(&o.stderr));
    String::from_utf8(o.stdout).unwrap()
}

fn tmpdir(name: &str) -> PathBuf {
    let d = std::env::temp_dir().join(format!("lfs-cli-{}-{name}", std::process::id()));
    let _ = std::fs::remove_dir_all(&d);
    std::fs::create_dir_all(&d).unwrap();
    d
}

fn s(p: &std::path::Path) -> String {
    p.to_str().unwrap().to_string()
}

#[test]
fn round_trip_and_fsck_exit_codes() {
    let d = tmpdir("rt");
    let img = s(&d.join("fs.img"));
    let host = d.join("hello.bin");
    let data: Vec<u8> = (0..200_000u32).map(|i| (i * 31 % 253) as u8).collect();
    std::fs::write(&host, &data).unwrap();
    ok(&["mkfs", &img, "--size", "8M", "--segment-size", "64K"]);
    ok(&["mkdir", &img, "/etc/conf", "-p"]);
    ok(&["put", &img, &s(&host), "/etc/conf/hello.bin"]);
    let listing = ok(&["ls", &img, "/etc/conf", "-l"]);
    assert!(listing.contains("hello.bin") && listing.contains("200000"), "{listing}");
    assert_eq!(ok(&["ls", &img]).trim(), "etc/");
    let back = d.join("back.bin");
    ok(&["get", &img, "/etc/conf/hello.bin", &s(&back)]);
    assert!(std::fs::read(&back).unwrap() == data);
    let cat = lfs(&["cat", &img, "/etc/conf/hello.bin"]);
    assert!(cat.status.success() && cat.stdout == data);
    assert!(ok(&["stat", &img, "/etc/conf/hello.bin"]).contains("size:    200000"));
    assert!(ok(&["df", &img]).contains("segments:"));
    assert!(ok(&["fsck", &img]).contains("clean"));
    // Missing file: exit 1 with a message. Bad usage: exit 2.
    let miss = lfs(&["get", &img, "/nope"]);
    assert_eq!(miss.status.code(), Some(1));
    assert!(String::from_utf8_lossy(&miss.stderr).contains("NotFound"));
    assert_eq!(lfs(&["frobnicate", &img]).status.code(), Some(2));
    assert!(ok(&["--help"]).contains("mkfs"));
    ok(&["rm", &img, "/etc", "-r"]);
    assert_eq!(ok(&["ls", &img]).trim(), "");
    ok(&["clean", &img]);
    assert_eq!(lfs(&["fsck", &img]).status.code(), Some(0));
    // Damage the file system: fsck must fail.
    ok(&["put", &img, &s(&host), "/again"]);
    let mut raw = std::fs::read(&img).unwrap();
    // One flipped byte every 8 KiB of the log area: some must land in live blocks.
    for at in (64 * 1024 + 777..raw.len()).step_by(8192) {
        raw[at] ^= 0x55;
    }
    std::fs::write(&img, &raw).unwrap();
    let r = lfs(&["fsck", &img]);
    assert_eq!(r.status.code(), Some(1), "{}", String::from_utf8_lossy(&r.stdout));
    assert!(String::from_utf8_lossy(&r.stdout).contains("error"));
    let _ = std::fs::remove_dir_all(&d);
}

#[test]
fn partitions_by_mbr_and_by_offset() {
    let d = tmpdir("mbr");
    let disk = d.join("disk.img");
    // 1 MiB gap, then an 8 MiB exo-lfs partition at sector 2048.
    let mut raw = vec![0u8; 10 << 20];
    let e = &mut raw[446..462];
    e[4] = 0x7f;
    e[8..12].copy_from_slice(&2048u32.to_le_bytes());
    e[12..16].copy_from_slice(&16384u32.to_le_bytes());
    raw[510] = 0x55;
    raw[511] = 0xaa;
    std::fs::write(&disk, &raw).unwrap();
    let part = format!("{}#1", s(&disk));
    let at = format!("{}@1M", s(&disk));
    ok(&["mkfs", &part, "--segment-size", "256K"]);
    let host = d.join("x");
    std::fs::write(&host, b"inside a partition").unwrap();
    ok(&["put", &part, &s(&host), "/x"]);
    // The same file system seen through its byte offset.
    assert_eq!(lfs(&["cat", &at, "/x"]).stdout, b"inside a partition");
    ok(&["fsck", &at]);
    // The MBR is untouched.
    let after = std::fs::read(&disk).unwrap();
    assert_eq!(&after[..512], &raw[..512]);
    assert_eq!(lfs(&["ls", &format!("{}#2", s(&disk))]).status.code(), Some(1));
    let _ = std::fs::remove_dir_all(&d);
}
