// The body the two example apps share, included by each (`apps/fatnote`, `apps/lognote`):
// everything here goes through the runtime's `Vfs`, so it links no file system of its own;
// the including crate decides which one with `BACKEND` and its single file-system
// dependency.

use alloc::format;
use exo_libos::fs::disk::SectorBuf;
use exo_libos::fs::{mount, Vfs};
use exo_libos::{println, sys, vm};

/// Runs the commands in `args` in order; returns the exit status.
///
/// - `demo`: writes a new note under `ROOT/notes`, reads it back, lists the directory.
/// - `parts`: tries to read the first sector of every partition on the disk, and says which
///   its sector bindings let it reach (the kernel's error code for the others).
///
/// The app works on a partition of its own, with no file service: started with none (by
/// the shell, which holds none to give), it says how to start it instead of failing to mount.
fn run(name: &str, args: &str) -> i32 {
    let mut vfs = Vfs::new();
    let mut mounted = false;
    let held = vm::env_info(vm::me()).is_some_and(|i| i.sectors.iter().any(|b| b.count != 0));
    if !held {
        println!("{name}: no partition is bound to this program, and it uses no file service");
        println!("{name}: start it from /init.cfg: `wait disk={} /fat/apps/{name} demo parts`", &ROOT[1..]);
    } else {
        for (_, at, r) in mount::mount_disk(&mut vfs, &[BACKEND]) {
            match r {
                Ok(kind) => {
                    println!("{name}: mounted {kind} at {at}");
                    mounted |= at == ROOT;
                }
                Err(e) => println!("{name}: {at}: not mounted: {e}"),
            }
        }
    }
    let mut status = i32::from(!held);
    // (`fsd=0x...` and `cwd=...`: the file service and the current directory a shell names
    // to every program; unused here.)
    let words = exo_libos::args::split(args);
    for cmd in words.iter().filter(|a| !a.starts_with("fsd=") && !a.starts_with("cwd=")) {
        let ok = match cmd.as_str() {
            "demo" if mounted => demo(name, &mut vfs),
            "demo" => {
                println!("{name}: nothing mounted at {ROOT}");
                false
            }
            "parts" => {
                parts(name);
                true
            }
            _ => {
                println!("{name}: unknown command {cmd} (demo, parts)");
                false
            }
        };
        status |= i32::from(!ok);
    }
    status
}

fn demo(name: &str, vfs: &mut Vfs) -> bool {
    let dir = format!("{ROOT}/notes");
    if !vfs.exists(&dir) && vfs.mkdir(&dir).is_err() {
        println!("{name}: cannot make {dir}");
        return false;
    }
    let n = vfs.list_dir(&dir).map_or(0, |l| l.len());
    let path = format!("{dir}/note{n}.txt");
    let text = format!("note {n}, written by {name} (env {:#x}) with no file server", vm::me().0);
    let back = vfs.write_file(&path, text.as_bytes()).and_then(|_| vfs.sync()).and_then(|_| vfs.read_to_vec(&path));
    match back {
        Ok(b) if b == text.as_bytes() => println!("{name}: wrote and read back {path} ({} bytes)", b.len()),
        Ok(_) => {
            println!("{name}: {path} read back differently");
            return false;
        }
        Err(e) => {
            println!("{name}: {path}: {e}");
            return false;
        }
    }
    match vfs.list_dir(&dir) {
        Ok(list) => {
            for e in list {
                println!("{name}: ls {dir}: {} {}", e.name, e.size);
            }
            true
        }
        Err(e) => {
            println!("{name}: ls {dir}: {e}");
            false
        }
    }
}

fn parts(name: &str) {
    let mut buf = SectorBuf::new(512);
    for p in vm::kinfo().partitions.iter().filter(|p| p.sectors > 0) {
        match sys::sector_read(p.start, &mut buf) {
            Ok(_) => println!("{name}: partition {} (type {:#04x}): readable", p.index, p.kind),
            Err(e) => println!("{name}: partition {} (type {:#04x}): refused, error {}", p.index, p.kind, e as i32),
        }
    }
}
