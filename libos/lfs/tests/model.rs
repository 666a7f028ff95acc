//! Model-based test: random operations against the file system and an in-memory model of
//! the tree, with the same error for the same mistake, remounts and fsck along the way.
mod common;
use common::*;
use exo_lfs::{Error, Fs, MemDevice, MountOptions};
use std::collections::BTreeMap;

/// The expected tree: path ("/a/b") → None for directories, Some(bytes) for files.
#[derive(Default, Clone)]
struct Model {
    t: BTreeMap<String, Option<Vec<u8>>>,
}

fn split(path: &str) -> (&str, &str) {
    let i = path.rfind('/').unwrap();
    (&path[..i], &path[i + 1..])
}

impl Model {
    fn is_dir(&self, p: &str) -> bool {
        p.is_empty() || matches!(self.t.get(p), Some(None))
    }
    /// Walks like the file system does: NotDir when passing through a file, NotFound
    /// when a component is missing.
    fn resolve(&self, p: &str) -> Result<(), Error> {
        let mut cur = String::new();
        for comp in p.split('/').filter(|c| !c.is_empty()) {
            if comp.len() > 255 {
                return Err(Error::NameTooLong);
            }
            if !self.is_dir(&cur) {
                return Err(Error::NotDir);
            }
            cur = format!("{cur}/{comp}");
            if !self.t.contains_key(&cur) {
                return Err(Error::NotFound);
            }
        }
        Ok(())
    }
    fn parent(&self, p: &str) -> Result<(), Error> {
        let (d, name) = split(p);
        if name.len() > 255 {
            return Err(Error::NameTooLong);
        }
        self.resolve(d)?;
        if !self.is_dir(d) {
            return Err(Error::NotDir);
        }
        Ok(())
    }
    fn children(&self, p: &str) -> Vec<String> {
        let pre = format!("{p}/");
        self.t.keys().filter(|k| k.starts_with(&pre)).cloned().collect()
    }
    fn make(&mut self, p: &str, dir: bool) -> Result<(), Error> {
        self.parent(p)?;
        if self.t.contains_key(p) {
            return Err(Error::Exists);
        }
        self.t.insert(p.into(), if dir { None } else { Some(Vec::new()) });
        Ok(())
    }
    fn remove(&mut self, p: &str, dir: bool) -> Result<(), Error> {
        self.parent(p)?;
        match self.t.get(p) {
            None => Err(Error::NotFound),
            Some(None) if !dir => Err(Error::IsDir),
            Some(Some(_)) if dir => Err(Error::NotDir),
            Some(None) if !self.children(p).is_empty() => Err(Error::NotEmpty),
            _ => {
                self.t.remove(p);
                Ok(())
            }
        }
    }
    fn rename(&mut self, from: &str, to: &str) -> Result<(), Error> {
        self.parent(from)?;
        let src_dir = match self.t.get(from) {
            None => return Err(Error::NotFound),
            Some(v) => v.is_none(),
        };
        self.parent(to)?;
        let (to_parent, _) = split(to);
        if src_dir && (to_parent == from || to_parent.starts_with(&format!("{from}/"))) {
            return Err(Error::InvalidArgument);
        }
        if let Some(v) = self.t.get(to) {
            if from == to {
                return Ok(());
            }
            match (src_dir, v.is_none()) {
                (false, true) => return Err(Error::IsDir),
                (true, false) => return Err(Error::NotDir),
                (true, true) if !self.children(to).is_empty() => return Err(Error::NotEmpty),
                _ => {}
            }
            self.t.remove(to);
        }
        let mut moved = vec![(from.to_string(), to.to_string())];
        for c in self.children(from) {
            moved.push((c.clone(), format!("{to}{}", &c[from.len()..])));
        }
        let vals: Vec<_> = moved.iter().map(|(f, _)| self.t.remove(f).unwrap()).collect();
        for ((_, t), v) in moved.into_iter().zip(vals) {
            self.t.insert(t, v);
        }
        Ok(())
    }
    fn file(&mut self, p: &str) -> Result<&mut Vec<u8>, Error> {
        self.resolve(p)?;
        match self.t.get_mut(p) {
            Some(Some(v)) => Ok(v),
            Some(None) => Err(Error::IsDir),
            None => Err(Error::NotFound),
        }
    }
    fn bytes(&self) -> usize {
        self.t.values().map(|v| v.as_ref().map_or(4096, |d| d.len() + 512)).sum()
    }
}

fn random_path(r: &mut Rng, m: &Model) -> String {
    let dirs: Vec<&String> = m.t.iter().filter(|(_, v)| v.is_none()).map(|(k, _)| k).collect();
    let base = if dirs.is_empty() || r.chance(30) {
        String::new()
    } else {
        dirs[r.below(dirs.len() as u64) as usize].clone()
    };
    let name = match r.below(20) {
        0 => "x".repeat(256),
        1 => format!("f{}/g", r.below(4)),
        n if n < 10 => format!("d{}", r.below(5)),
        _ => format!("f{}", r.below(8)),
    };
    format!("{base}/{name}")
}

fn fs_file<D: exo_lfs::BlockDevice>(fs: &mut Fs<D>, p: &str) -> Result<exo_lfs::Handle, Error> {
    fs.open(p)
}

fn run(seed: u64, ops: u64) {
    let seed = seed.wrapping_add(seed_base().wrapping_mul(1000));
    let mut r = Rng::new(seed);
    let mut fs = fresh(24, 64);
    let mut m = Model::default();
    let budget = fs.statfs().capacity_bytes as usize / 3;
    let mut oks = 0u64;
    let debug_from: Option<u64> = std::env::var("LFS_DEBUG_STEP").ok().and_then(|s| s.parse().ok());
    for step in 0..ops {
        if std::env::var("LFS_CHECK_AT").ok().and_then(|s| s.parse::<u64>().ok()) == Some(step) {
            let r = fs.check();
            println!("CHECK {step} clean={} {:?}", r.is_clean(), r.errors.first());
        }
        let p = random_path(&mut r, &m);
        let what = r.below(100);
        if debug_from.is_some_and(|d| step >= d) {
            println!("begin step {step}: op {what} {p}");
        }
        let (got, want): (Result<(), Error>, Result<(), Error>) = match what {
            0..=11 => (fs.create(&p).map(|_| ()), m.make(&p, false)),
            12..=17 => (fs.mkdir(&p).map(|_| ()), m.make(&p, true)),
            18..=45 => {
                let big = r.chance(5);
                let off = if big { r.below(2_400_000) } else { r.below(20_000) };
                let len = if r.chance(10) { r.below(40_000) } else { r.below(3000) } as usize;
                if m.bytes() + off as usize + len > budget {
                    continue;
                }
                let data = r.bytes(len);
                let got = fs_file(&mut fs, &p).and_then(|h| fs.write(h, off, &data)).map(|_| ());
                let want = m.file(&p).map(|f| {
                    let end = off as usize + len;
                    if len > 0 {
                        if f.len() < end {
                            f.resize(end, 0);
                        }
                        f[off as usize..end].copy_from_slice(&data);
                    }
                });
                (got, want)
            }
            46..=53 => {
                let size = r.below(30_000);
                let got = fs_file(&mut fs, &p).and_then(|h| fs.truncate(h, size));
                let want = m.file(&p).map(|f| f.resize(size as usize, 0));
                (got, want)
            }
            54..=61 => {
                let want = m.file(&p).map(|f| f.clone());
                let got = fs_file(&mut fs, &p).and_then(|h| {
                    let mut buf = vec![0u8; fs.fstat(h)?.size as usize + 10];
                    let n = fs.read(h, 0, &mut buf)?;
                    buf.truncate(n);
                    Ok(buf)
                });
                assert_eq!(got, want, "seed {seed} step {step}: read {p}");
                continue;
            }
            62..=69 => (fs.unlink(&p), m.remove(&p, false)),
            70..=74 => (fs.rmdir(&p), m.remove(&p, true)),
            75..=86 => {
                let q = if r.chance(50) { random_path(&mut r, &m) } else { p.clone() };
                let from = random_path(&mut r, &m);
                let from = if r.chance(60) {
                    m.t.keys().nth(r.below(m.t.len() as u64) as usize).cloned().unwrap_or(from)
                } else {
                    from
                };
                (fs.rename(&from, &q), m.rename(&from, &q))
            }
            87..=90 => {
                let got = fs.stat(&p).map(|s| (s.kind == exo_lfs::Kind::Dir, s.size));
                let want = m.resolve(&p).and_then(|_| match m.t.get(&p) {
                    Some(None) => Ok((true, 0)),
                    Some(Some(d)) => Ok((false, d.len() as u64)),
                    None => Err(Error::NotFound),
                });
                let got = got.map(|(d, s)| (d, if d { 0 } else { s }));
                assert_eq!(got, want, "seed {seed} step {step}: stat {p}");
                continue;
            }
            91..=93 => (fs.sync(), Ok(())),
            94..=95 => {
                fs.sync().unwrap();
                let dev: MemDevice = fs.into_device();
                fs = Fs::mount(dev, MountOptions::default()).expect("remount");
                continue;
            }
            96 => {
                let dev = fs.unmount().unwrap();
                fs = Fs::mount(dev, MountOptions::default()).expect("remount after unmount");
                continue;
            }
            97 => {
                fs.clean().unwrap();
                continue;
            }
            _ => {
                let expect: Tree = m.t.clone();
                assert_eq!(dump(&mut fs), expect, "seed {seed} step {step}: tree differs");
                continue;
            }
        };
        if got != want {
            println!("{:#?}", fs.check().errors);
        }
        assert_eq!(got, want, "seed {seed} step {step}: op {what} on {p}");
        oks += got.is_ok() as u64;
        if debug_from.is_some_and(|d| step >= d) {
            println!("step {step}: op {what} {p} -> {got:?}");
        }
        if std::env::var("LFS_DEBUG_CHECK").is_ok() && debug_from.is_some_and(|d| step >= d) {
            let r = fs.check();
            assert!(r.is_clean(), "after step {step}: {:#?}", r.errors);
        }
        if step % 700 == 699 {
            assert_clean(&mut fs, &format!("seed {seed} step {step}"));
        }
    }
    fs.sync().unwrap();
    let st = fs.statfs();
    println!("seed {seed}: {oks} successful mutations, {} entries, stats {:?}", m.t.len(), st.stats);
    assert!(oks > ops / 5, "seed {seed}: too few operations succeeded ({oks})");
    assert_eq!(dump(&mut fs), m.t, "seed {seed}: final tree");
    let dev = fs.into_device();
    let mut fs = Fs::mount(dev, MountOptions::default()).unwrap();
    assert_eq!(dump(&mut fs), m.t, "seed {seed}: tree after final mount");
    assert_clean(&mut fs, "final");
}

#[test]
fn model_seed_1() {
    run(1, 3000 * scale());
}

#[test]
fn model_seed_2() {
    run(2, 3000 * scale());
}

#[test]
fn model_seed_3() {
    run(3, 3000 * scale());
}

#[test]
fn model_seed_4() {
    run(0xdead_beef, 3000 * scale());
}
