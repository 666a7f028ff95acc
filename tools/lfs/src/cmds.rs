//! The commands: argument parsing and each operation on an opened image.

use crate::image::{size_arg, ImageDev, Spec};
use exo_lfs::{fsck, Error, FormatOptions, Fs, Kind, MountOptions};
use std::io::{Read, Write};
use std::time::{SystemTime, UNIX_EPOCH};

pub enum Fail {
    Usage(String),
    Op(String),
}

fn op<E: std::fmt::Display>(what: &str) -> impl FnOnce(E) -> Fail + '_ {
    move |e| Fail::Op(format!("{what}: {e}"))
}

fn now() -> i64 {
    SystemTime::now().duration_since(UNIX_EPOCH).map_or(0, |d| d.as_nanos() as i64)
}

/// Positional arguments, flags and `--key value` options.
struct Args {
    pos: Vec<String>,
    flags: Vec<String>,
    opts: Vec<(String, String)>,
}

fn parse(args: &[String], valued: &[&str], flags: &[&str]) -> Result<Args, Fail> {
    let mut a = Args { pos: Vec::new(), flags: Vec::new(), opts: Vec::new() };
    let mut it = args.iter();
    while let Some(x) = it.next() {
        if valued.contains(&x.as_str()) {
            let v = it.next().ok_or(Fail::Usage(format!("{x} needs a value")))?;
            a.opts.push((x.clone(), v.clone()));
        } else if flags.contains(&x.as_str()) {
            a.flags.push(x.clone());
        } else if x.starts_with('-') && x.len() > 1 {
            return Err(Fail::Usage(format!("unknown option {x}")));
        } else {
            a.pos.push(x.clone());
        }
    }
    Ok(a)
}

impl Args {
    fn opt(&self, k: &str) -> Option<&str> {
        self.opts.iter().find(|(key, _)| key == k).map(|(_, v)| v.as_str())
    }
    fn flag(&self, k: &str) -> bool {
        self.flags.iter().any(|f| f == k)
    }
    fn want(&self, min: usize, max: usize) -> Result<(), Fail> {
        if self.pos.len() < min || self.pos.len() > max {
            return Err(Fail::Usage("wrong number of arguments".into()));
        }
        Ok(())
    }
}

fn mount(spec: &str, writable: bool) -> Result<Fs<ImageDev>, Fail> {
    let spec = Spec::parse(spec).map_err(Fail::Usage)?;
    let dev = spec.open(writable, None).map_err(Fail::Op)?;
    let mut fs =
        Fs::mount(dev, MountOptions { read_only: !writable, clock: None }).map_err(op(&spec.path))?;
    fs.set_clock(now);
    Ok(fs)
}

fn finish(fs: Fs<ImageDev>) -> Result<u8, Fail> {
    fs.unmount().map_err(op("writing the checkpoint"))?;
    Ok(0)
}

pub fn run(cmd: &str, rest: &[String]) -> Result<u8, Fail> {
    match cmd {
        "mkfs" => mkfs(rest),
        "fsck" => check(rest),
        "ls" => ls(rest),
        "cat" => get(rest, true),
        "get" => get(rest, false),
        "put" => put(rest),
        "rm" => rm(rest),
        "mkdir" => mkdir(rest),
        "stat" => stat(rest),
        "df" => df(rest),
        "clean" => clean(rest),
        other => Err(Fail::Usage(format!("unknown command {other:?}"))),
    }
}

fn mkfs(rest: &[String]) -> Result<u8, Fail> {
    let a = parse(rest, &["--size", "--segment-size", "--inodes"], &[])?;
    a.want(1, 1)?;
    let spec = Spec::parse(&a.pos[0]).map_err(Fail::Usage)?;
    let size = a.opt("--size").map(size_arg).transpose().map_err(Fail::Usage)?;
    let seg = a.opt("--segment-size").map(size_arg).transpose().map_err(Fail::Usage)?.unwrap_or(1 << 20);
    let inodes = a
        .opt("--inodes")
        .map(|v| v.parse::<u32>())
        .transpose()
        .map_err(|_| Fail::Usage("bad --inodes".into()))?;
    let dev = spec.open(true, size).map_err(Fail::Op)?;
    let t = now();
    let opts = FormatOptions {
        segment_bytes: u32::try_from(seg).map_err(|_| Fail::Usage("segment size too large".into()))?,
        max_inodes: inodes,
        fs_id: (t as u64) ^ ((std::process::id() as u64) << 40),
        now: t,
    };
    let fs = Fs::format(dev, opts).map_err(|e| match e {
        Error::InvalidArgument => Fail::Op("the size or segment size is not usable (need a power-of-two segment of 64K-16M and at least 12 segments)".into()),
        e => Fail::Op(format!("mkfs: {e}")),
    })?;
    let st = fs.statfs();
    println!(
        "{}: {} segments of {} KiB, {} inodes, {} KiB usable",
        a.pos[0],
        st.segments,
        st.segment_bytes >> 10,
        st.inodes_max,
        st.capacity_bytes >> 10
    );
    finish(fs)
}

fn check(rest: &[String]) -> Result<u8, Fail> {
    let a = parse(rest, &[], &["-v"])?;
    a.want(1, 1)?;
    let spec = Spec::parse(&a.pos[0]).map_err(Fail::Usage)?;
    let mut dev = spec.open(false, None).map_err(Fail::Op)?;
    let r = fsck::check_device(&mut dev);
    for e in &r.errors {
        println!("error: {e}");
    }
    if r.problems as usize > r.errors.len() {
        println!("... and {} more", r.problems as usize - r.errors.len());
    }
    if a.flag("-v") {
        for n in &r.notes {
            println!("note: {n}");
        }
    }
    println!(
        "{}: {} files, {} directories, {} live bytes: {}",
        a.pos[0],
        r.files,
        r.dirs,
        r.live_bytes,
        if r.is_clean() { "clean".to_string() } else { format!("{} problem(s)", r.problems) }
    );
    Ok(if r.is_clean() { 0 } else { 1 })
}

fn ls(rest: &[String]) -> Result<u8, Fail> {
    let a = parse(rest, &[], &["-l"])?;
    a.want(1, 2)?;
    let mut fs = mount(&a.pos[0], false)?;
    let path = a.pos.get(1).map_or("/", String::as_str);
    let st = fs.stat(path).map_err(op(path))?;
    let mut entries = if st.kind == Kind::Dir {
        fs.read_dir(path).map_err(op(path))?
    } else {
        println!("{path}");
        return Ok(0);
    };
    entries.sort_by(|x, y| x.name.cmp(&y.name));
    for e in entries {
        let name = String::from_utf8_lossy(&e.name).into_owned();
        if a.flag("-l") {
            let full = format!("{}/{}", path.trim_end_matches('/'), name);
            let s = fs.stat(&full).map_err(op(&full))?;
            let kind = if s.kind == Kind::Dir { 'd' } else { '-' };
            println!("{kind} {:>10} {:>12} {name}", s.size, s.mtime / 1_000_000_000);
        } else {
            println!("{name}{}", if e.kind == Kind::Dir { "/" } else { "" });
        }
    }
    Ok(0)
}

fn get(rest: &[String], cat: bool) -> Result<u8, Fail> {
    let a = parse(rest, &[], &[])?;
    if cat {
        a.want(2, 2)?
    } else {
        a.want(2, 3)?
    }
    let mut fs = mount(&a.pos[0], false)?;
    let path = &a.pos[1];
    let h = fs.open(path).map_err(op(path))?;
    let size = fs.fstat(h).map_err(op(path))?.size;
    let mut out: Box<dyn Write> = match a.pos.get(2).map(String::as_str) {
        None | Some("-") => Box::new(std::io::stdout().lock()),
        Some(host) => Box::new(std::fs::File::create(host).map_err(op(host))?),
    };
    let mut buf = vec![0u8; 1 << 20];
    let mut off = 0;
    while off < size {
        let n = fs.read(h, off, &mut buf).map_err(op(path))?;
        if n == 0 {
            break;
        }
        out.write_all(&buf[..n]).map_err(op("writing output"))?;
        off += n as u64;
    }
    out.flush().map_err(op("writing output"))?;
    Ok(0)
}

fn put(rest: &[String]) -> Result<u8, Fail> {
    let a = parse(rest, &[], &[])?;
    a.want(3, 3)?;
    let data = if a.pos[1] == "-" {
        let mut v = Vec::new();
        std::io::stdin().read_to_end(&mut v).map_err(op("stdin"))?;
        v
    } else {
        std::fs::read(&a.pos[1]).map_err(op(&a.pos[1]))?
    };
    let mut fs = mount(&a.pos[0], true)?;
    let path = &a.pos[2];
    let h = match fs.open(path) {
        Ok(h) => {
            fs.truncate(h, 0).map_err(op(path))?;
            h
        }
        Err(Error::NotFound) => fs.create(path).map_err(op(path))?,
        Err(e) => return Err(Fail::Op(format!("{path}: {e}"))),
    };
    for (i, chunk) in data.chunks(1 << 20).enumerate() {
        fs.write(h, (i << 20) as u64, chunk).map_err(op(path))?;
    }
    finish(fs)
}

fn remove_tree(fs: &mut Fs<ImageDev>, path: &str) -> Result<(), Error> {
    if fs.stat(path)?.kind == Kind::Dir {
        for e in fs.read_dir(path)? {
            let child = format!("{}/{}", path.trim_end_matches('/'), String::from_utf8_lossy(&e.name));
            remove_tree(fs, &child)?;
        }
    }
    fs.remove(path)
}

fn rm(rest: &[String]) -> Result<u8, Fail> {
    let a = parse(rest, &[], &["-r"])?;
    a.want(2, 2)?;
    let mut fs = mount(&a.pos[0], true)?;
    let path = &a.pos[1];
    if a.flag("-r") { remove_tree(&mut fs, path) } else { fs.remove(path) }.map_err(op(path))?;
    finish(fs)
}

fn mkdir(rest: &[String]) -> Result<u8, Fail> {
    let a = parse(rest, &[], &["-p"])?;
    a.want(2, 2)?;
    let mut fs = mount(&a.pos[0], true)?;
    let path = &a.pos[1];
    if a.flag("-p") {
        let mut cur = String::new();
        for comp in path.split('/').filter(|c| !c.is_empty()) {
            cur = format!("{cur}/{comp}");
            match fs.mkdir(&cur) {
                Ok(_) => {}
                Err(Error::Exists) if fs.stat(&cur).map(|s| s.kind) == Ok(Kind::Dir) => {}
                Err(e) => return Err(Fail::Op(format!("{cur}: {e}"))),
            }
        }
    } else {
        fs.mkdir(path).map_err(op(path))?;
    }
    finish(fs)
}

fn stat(rest: &[String]) -> Result<u8, Fail> {
    let a = parse(rest, &[], &[])?;
    a.want(2, 2)?;
    let mut fs = mount(&a.pos[0], false)?;
    let s = fs.stat(&a.pos[1]).map_err(op(&a.pos[1]))?;
    println!("path:    {}", a.pos[1]);
    println!("inode:   {}", s.ino);
    println!("kind:    {}", if s.kind == Kind::Dir { "directory" } else { "file" });
    println!("size:    {}", s.size);
    println!("sectors: {}", s.sectors);
    println!("mode:    {:o}", s.mode);
    println!("mtime:   {}", s.mtime);
    println!("ctime:   {}", s.ctime);
    println!("btime:   {}", s.btime);
    Ok(0)
}

fn df(rest: &[String]) -> Result<u8, Fail> {
    let a = parse(rest, &[], &[])?;
    a.want(1, 1)?;
    let fs = mount(&a.pos[0], false)?;
    let s = fs.statfs();
    let w = s.stats;
    println!("capacity:        {} KiB", s.capacity_bytes >> 10);
    println!("used:            {} KiB", s.used_bytes >> 10);
    println!("available:       {} KiB", s.avail_bytes >> 10);
    println!("segments:        {} of {} KiB, {} free", s.segments, s.segment_bytes >> 10, s.free_segments);
    println!("inodes:          {} of {}", s.inodes_used, s.inodes_max);
    println!("user sectors:    {}", w.user_sectors);
    println!("log sectors:     {}", w.log_sectors);
    println!("cp sectors:      {}", w.checkpoint_sectors);
    println!(
        "write amp.:      {}.{:02}x",
        w.write_amplification_pct() / 100,
        w.write_amplification_pct() % 100
    );
    println!("cleaned:         {} segments ({} sectors copied)", w.segments_cleaned, w.cleaner_sectors);
    println!("checkpoints:     {}", w.checkpoints);
    Ok(0)
}

fn clean(rest: &[String]) -> Result<u8, Fail> {
    let a = parse(rest, &[], &[])?;
    a.want(1, 1)?;
    let mut fs = mount(&a.pos[0], true)?;
    let r = fs.clean().map_err(op("clean"))?;
    println!("cleaned {} segment(s); {} free", r.segments_cleaned, r.free_segments);
    finish(fs)
}
