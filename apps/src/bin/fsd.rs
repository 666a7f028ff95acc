//! fsd: the file service. It mounts the partitions init granted it and serves them to other
//! programs over protected control transfer (see `exo_libos::fs::service`), so several
//! programs can use one volume at once and see each other's writes.
// A program beside the `exo-apps` library sees that library and its dependencies; the
// library target is the one that must use them all (see the root Cargo.toml).
#![allow(unused_crate_dependencies)]
#![no_std]
#![no_main]

extern crate alloc;

use exo_libos::fs::service::Server;
use exo_libos::fs::{mount, Vfs};
use exo_libos::ipc::{self, Call};
use exo_libos::private::Private;
use exo_libos::{println, sys};

/// Set once before serving; afterwards only the (one-at-a-time) call contexts use it.
static SERVER: Private<Option<Server>> = Private::new(None);

fn handle(c: &Call) -> [u64; 4] {
    // SAFETY: calls are served one at a time, and the main context is parked for good.
    match unsafe { &mut *SERVER.get() } {
        Some(s) => s.handle(c.caller, c.args, c.frame),
        None => [exo_libos::fs::Error::Io.code() as u64, 0, 0, 0],
    }
}

fn main(_args: &str) -> i32 {
    // Registered before mounting: a client's call (init's, which waits for fsd to be ready)
    // then waits in the kernel until `pct_wait` below, instead of finding no server.
    if let Err(e) = ipc::register(handle) {
        println!("fsd: cannot serve: {e:?}");
        sys::exit(1)
    }
    let mut vfs = Vfs::new();
    for (_, at, r) in mount::mount_disk(&mut vfs, &[exo_fat::backend(), exo_logfs::backend()]) {
        match r {
            Ok(kind) => println!("fsd: serving {kind} at {at}"),
            Err(e) => println!("fsd: {at}: not mounted: {e}"),
        }
    }
    // SAFETY: no call can run before `pct_wait` parks this context, just below.
    unsafe { *SERVER.get() = Some(Server::new(vfs)) };
    let e = sys::pct_wait();
    println!("fsd: cannot serve: {e:?}");
    sys::exit(1)
}

exo_libos::entry!(main);
