//! The cleaner under a full disk with churn: files are created until the disk says NoSpace,
//! half are deleted, again and again until the device has been overwritten several times.
//! No corruption, no space leak, and the disk can be filled again at the end.
mod common;
use common::*;
use exo_lfs::{Error, Fs, MountOptions};
use std::collections::BTreeMap;

#[test]
fn full_disk_churn_keeps_working_and_leaks_nothing() {
    let mut fs = fresh(4, 64);
    let mut r = Rng::new(99);
    let disk = 4u64 << 20;
    let cap = fs.statfs().capacity_bytes;
    let mut files: BTreeMap<String, Vec<u8>> = BTreeMap::new();
    let mut written = 0u64;
    let mut next = 0u64;
    let mut rounds = 0;
    let mut nospace = 0;
    while written < 6 * disk * scale() {
        rounds += 1;
        // Fill until the file system refuses.
        loop {
            let name = format!("/f{next}");
            next += 1;
            let len = 1 + r.below(40_000) as usize;
            let data = r.bytes(len);
            let h = match fs.create(&name) {
                Ok(h) => h,
                Err(Error::NoSpace) => break,
                Err(e) => panic!("create: {e:?}"),
            };
            match fs.write(h, 0, &data) {
                Ok(_) => {
                    written += data.len() as u64;
                    files.insert(name, data);
                }
                Err(Error::NoSpace) => {
                    nospace += 1;
                    // The empty file stays; delete it to keep the model simple.
                    fs.unlink(&name).unwrap();
                    break;
                }
                Err(e) => panic!("write: {e:?}"),
            }
        }
        let used = fs.statfs().used_bytes;
        assert!(
            used > cap / 2,
            "round {rounds}: disk refused writes while only {used} of {cap} bytes were used"
        );
        // Delete about half, at random.
        let names: Vec<String> = files.keys().cloned().collect();
        for n in names {
            if r.chance(50) {
                fs.unlink(&n).unwrap();
                files.remove(&n);
            }
        }
        if rounds % 4 == 0 {
            fs.sync().unwrap();
            assert_clean(&mut fs, &format!("round {rounds}"));
        }
    }
    let st = fs.statfs();
    println!(
        "{rounds} rounds, {} MiB written to a 4 MiB disk, {nospace} NoSpace, cleaned {} segments, write amplification {}%",
        written >> 20,
        st.stats.segments_cleaned,
        st.stats.write_amplification_pct()
    );
    assert!(st.stats.segments_cleaned > 20, "the cleaner hardly ran: {:?}", st.stats);
    // Contents survive a remount.
    fs.sync().unwrap();
    let mut fs = Fs::mount(fs.into_device(), MountOptions::default()).unwrap();
    for (name, data) in &files {
        let h = fs.open(name).unwrap();
        let mut buf = vec![0u8; data.len()];
        assert_eq!(fs.read(h, 0, &mut buf).unwrap(), data.len());
        assert!(buf == *data, "{name} differs");
    }
    assert_clean(&mut fs, "after churn");
    // Delete everything: live bytes go back to (almost) nothing and the disk fills again.
    for name in files.keys() {
        fs.unlink(name).unwrap();
    }
    fs.clean().unwrap();
    let st = fs.statfs();
    assert!(st.used_bytes < 64 * 1024, "space leak: {} bytes still live with no files", st.used_bytes);
    assert!(
        st.free_segments + 6 >= st.segments - fs.statfs().segments / 8,
        "free segments {} of {}",
        st.free_segments,
        st.segments
    );
    let mut refill = 0u64;
    for i in 0.. {
        let h = fs.create(&format!("/g{i}")).unwrap();
        match fs.write(h, 0, &vec![7u8; 32 * 1024]) {
            Ok(n) => refill += n as u64,
            Err(Error::NoSpace) => break,
            Err(e) => panic!("{e:?}"),
        }
    }
    assert!(refill > cap * 8 / 10, "could only refill {refill} of {cap} bytes");
    fs.sync().unwrap();
    assert_clean(&mut fs, "after refill");
}
