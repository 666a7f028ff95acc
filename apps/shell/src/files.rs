//! The shell's file commands, over the libOS's `Vfs` (mount points `/fat`, `/log`, ...).

use alloc::format;
use alloc::string::String;
use alloc::vec::Vec;

use exo_libos::format::crc32::Crc32;
use exo_libos::fs::{self, FileKind, OpenFlags, SeekFrom, Vfs};
use exo_libos::println;

/// The file side of the shell: the mount table and the current directory.
pub struct Files {
    pub vfs: Vfs,
    pub cwd: String,
    /// The file service, when the files come through one.
    pub fsd: Option<exo_libos::abi::EnvId>,
}

type Out = Result<(), String>;

fn err(what: &str, e: fs::Error) -> String {
    format!("{what}: {e}")
}

impl Files {
    /// Mounts the file systems of the file service `fsd` (when init named one in the
    /// arguments, `fsd=ID`), or else every partition this environment was granted.
    pub fn mount_all(args: &str) -> Files {
        let mut vfs = Vfs::new();
        let fsd = args.split_whitespace().find_map(|w| w.strip_prefix("fsd=0x"));
        let fsd = fsd.and_then(|id| u32::from_str_radix(id, 16).ok());
        match fsd {
            Some(id) => match fs::service::mount_remote(&mut vfs, exo_libos::abi::EnvId(id)) {
                Ok(at) => println!("using the file service (env {id:#x}): {}", at.join(" ")),
                Err(e) => println!("the file service did not answer: {e}"),
            },
            None => {
                for (_, at, r) in fs::mount::mount_disk(&mut vfs, &[exo_fat::backend(), exo_logfs::backend()])
                {
                    match r {
                        Ok(kind) => println!("mounted {kind} at {at}"),
                        Err(e) => println!("{at}: not mounted: {e}"),
                    }
                }
            }
        }
        Files { vfs, cwd: String::from("/"), fsd: fsd.map(exo_libos::abi::EnvId) }
    }

    /// `p` made absolute against the current directory.
    pub fn abs(&self, p: &str) -> String {
        if p.starts_with('/') {
            String::from(p)
        } else if self.cwd.ends_with('/') {
            format!("{}{p}", self.cwd)
        } else {
            format!("{}/{p}", self.cwd)
        }
    }

    pub fn run(&mut self, cmd: &str, args: &[&str]) -> Option<Out> {
        let a = |i: usize| args.get(i).copied();
        Some(match (cmd, args.len()) {
            ("ls", 0 | 1) => self.ls(&self.abs(a(0).unwrap_or("."))),
            ("cat", 1) => self.cat(&self.abs(args[0])),
            ("write", n) if n >= 1 => self.write(&self.abs(args[0]), &args[1..].join(" "), false),
            ("cp", 2) => {
                let (from, to) = self.endpoints(args[0], args[1]);
                self.vfs.copy(&from, &to).map(drop).map_err(|e| err("cp", e))
            }
            ("mv", 2) => {
                let (from, to) = self.endpoints(args[0], args[1]);
                self.mv(&from, &to)
            }
            ("rm", n) if n >= 1 => {
                let failed: Vec<String> = args
                    .iter()
                    .filter_map(|p| self.vfs.remove(&self.abs(p)).err().map(|e| err(&format!("rm: {p}"), e)))
                    .collect();
                if failed.is_empty() {
                    Ok(())
                } else {
                    Err(failed.join("\n"))
                }
            }
            ("mkdir", 1) => self.vfs.mkdir(&self.abs(args[0])).map_err(|e| err("mkdir", e)),
            ("stat", 1) => self.stat(&self.abs(args[0])),
            ("sum", 1) => self.sum(&self.abs(args[0])),
            ("df", 0) => self.df(),
            ("sync", 0) => self.vfs.sync().map_err(|e| err("sync", e)),
            ("cd", 0 | 1) => self.cd(a(0).unwrap_or("/")),
            ("pwd", 0) => {
                println!("{}", self.cwd);
                Ok(())
            }
            (
                "ls" | "cat" | "write" | "cp" | "mv" | "rm" | "mkdir" | "stat" | "sum" | "df" | "sync" | "cd"
                | "pwd",
                _,
            ) => Err(format!("{cmd}: wrong number of arguments (see `help`)")),
            _ => return None,
        })
    }

    /// `echo WORDS > FILE` and `echo WORDS >> FILE`.
    pub fn redirect(&mut self, text: &str, file: &str, append: bool) -> Out {
        self.write(&self.abs(file), text, append)
    }

    fn ls(&mut self, p: &str) -> Out {
        if fs::path::normalize(p).map_err(|e| err("ls", e))? == "/" {
            for (at, kind) in self.vfs.mounts() {
                println!("{:<6} {:>12}  {at}/", "mount", kind);
            }
            return Ok(());
        }
        let mut entries = self.vfs.list_dir(p).map_err(|e| err(p, e))?;
        entries.sort_by(|a, b| a.name.cmp(&b.name));
        for e in entries {
            match e.kind {
                FileKind::Dir => println!("{:<6} {:>12}  {}/", "dir", "", e.name),
                FileKind::File => println!("{:<6} {:>12}  {}", "file", e.size, e.name),
            }
        }
        Ok(())
    }

    fn cat(&mut self, p: &str) -> Out {
        let fd = self.vfs.open(p, OpenFlags::READ).map_err(|e| err(p, e))?;
        let mut buf = [0u8; 512];
        let mut r = Ok(());
        loop {
            match self.vfs.read(fd, &mut buf) {
                Ok(0) => break,
                Ok(n) => exo_libos::rt::print(format_args!("{}", String::from_utf8_lossy(&buf[..n]))),
                Err(e) => {
                    r = Err(err(p, e));
                    break;
                }
            }
        }
        let _ = self.vfs.close(fd);
        r
    }

    fn write(&mut self, p: &str, text: &str, append: bool) -> Out {
        let mode = if append { OpenFlags::APPEND } else { OpenFlags::TRUNCATE };
        let fd = self.vfs.open(p, OpenFlags::WRITE | OpenFlags::CREATE | mode).map_err(|e| err(p, e))?;
        let line = format!("{text}\n");
        let r = self.vfs.seek(fd, SeekFrom::End(0)).and_then(|_| self.vfs.write(fd, line.as_bytes()));
        let c = self.vfs.close(fd);
        r.and(c.map(|_| 0)).map(drop).map_err(|e| err(p, e))
    }

    /// `cp` and `mv`'s paths, absolute: into a directory that exists, `to` means a file of
    /// `from`'s name in it (`cp /fat/config.txt /log` makes `/log/config.txt`).
    fn endpoints(&mut self, from: &str, to: &str) -> (String, String) {
        let (from, to) = (self.abs(from), self.abs(to));
        let name = fs::path::normalize(&from).ok().and_then(|f| f.rsplit('/').next().map(String::from));
        match name.filter(|n| !n.is_empty()) {
            Some(n) if self.vfs.stat(&to).is_ok_and(|m| m.is_dir()) => {
                let into = format!("{}/{n}", to.trim_end_matches('/'));
                (from, into)
            }
            _ => (from, to),
        }
    }

    /// Rename within one file system; copy and remove across two.
    fn mv(&mut self, from: &str, to: &str) -> Out {
        match self.vfs.rename(from, to) {
            Err(fs::Error::CrossDevice) => {
                self.vfs.copy(from, to).map_err(|e| err("mv", e))?;
                self.vfs.remove(from).map_err(|e| err("mv", e))
            }
            r => r.map_err(|e| err("mv", e)),
        }
    }

    fn stat(&mut self, p: &str) -> Out {
        let m = self.vfs.stat(p).map_err(|e| err(p, e))?;
        let kind = if m.is_dir() { "directory" } else { "file" };
        let when =
            m.modified.map(|ns| fs::time::to_civil(ns / 1_000_000_000)).map_or(String::from("-"), |c| {
                format!(
                    "{}-{:02}-{:02} {:02}:{:02}:{:02}",
                    c.year, c.month, c.day, c.hour, c.minute, c.second
                )
            });
        println!("{p}: {kind}, {} bytes, modified {when}", m.size);
        Ok(())
    }

    /// The file's CRC-32 (IEEE, as zlib and `crc32` compute it) and size.
    fn sum(&mut self, p: &str) -> Out {
        let fd = self.vfs.open(p, OpenFlags::READ).map_err(|e| err(p, e))?;
        let (mut crc, mut size) = (Crc32::new(), 0u64);
        let mut buf = alloc::vec![0u8; 64 * 1024];
        let r = loop {
            match self.vfs.read(fd, &mut buf) {
                Ok(0) => break Ok(()),
                Ok(n) => {
                    crc.update(&buf[..n]);
                    size += n as u64;
                }
                Err(e) => break Err(err(p, e)),
            }
        };
        let _ = self.vfs.close(fd);
        r?;
        println!("{:08x} {size} {p}", crc.finish());
        Ok(())
    }

    fn df(&mut self) -> Out {
        let mounts: Vec<String> = self.vfs.mounts().map(|(at, _)| String::from(at)).collect();
        println!("{:<8} {:<6} {:>12} {:>12} {:>8}", "MOUNT", "TYPE", "SIZE KiB", "FREE KiB", "BLOCK");
        for at in mounts {
            let s = self.vfs.statfs(&at).map_err(|e| err(&at, e))?;
            println!(
                "{at:<8} {:<6} {:>12} {:>12} {:>8}",
                s.fs_type,
                s.total_bytes / 1024,
                s.free_bytes / 1024,
                s.block_size
            );
        }
        Ok(())
    }

    fn cd(&mut self, p: &str) -> Out {
        let target = fs::path::normalize(&self.abs(p)).map_err(|e| err(p, e))?;
        if target != "/" && !self.vfs.stat(&target).map_err(|e| err(p, e))?.is_dir() {
            return Err(format!("{p}: not a directory"));
        }
        self.cwd = target;
        Ok(())
    }
}
