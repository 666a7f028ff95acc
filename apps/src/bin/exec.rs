//! exec: becomes another program, in the same environment (`exec [-m MIB] PROGRAM ARGS`).
//! What the environment was given stays with the new program: its descriptors (a pipe
//! stays a pipe), its right to call the file service, the console input. With `-m MIB` it
//! first fills that much heap, to show that the old program's frames go.
// A program beside the `exo-apps` library sees that library and its dependencies; the
// library target is the one that must use them all (see the root Cargo.toml).
#![allow(unused_crate_dependencies)]
#![no_std]
#![no_main]

extern crate alloc;

use alloc::format;
use alloc::vec::Vec;

use exo_apps::tool::Args;
use exo_libos::{eprintln, exec, vm};

fn main(args: &str) -> i32 {
    let mut a = Args::parse(args);
    let Some(mib) = a.number("exec", "-m", 0) else { return 2 };
    let Some((name, rest)) = a.words.split_first() else {
        eprintln!("usage: exec [-m MIB] PROGRAM [ARGS]");
        return 2;
    };
    let path =
        if name.contains('/') { alloc::string::String::from(name) } else { format!("/fat/apps/{name}") };
    let elf = {
        // Dropped before the jump: it ends this program's grant to the file service.
        let mut vfs = a.files();
        match vfs.read_to_vec(&path) {
            Ok(v) => v,
            Err(e) => {
                eprintln!("exec: {path}: {e}");
                return 1;
            }
        }
    };
    let ballast: Vec<u8> = (0..mib << 20).map(|i| i as u8).collect();
    let me = vm::me();
    let frames = vm::env_info(me).map_or(0, |e| e.frames);
    eprintln!(
        "exec: env {:#x} holds {frames} frames ({} bytes of heap filled), becomes {name}",
        me.0,
        ballast.len()
    );
    let new_args = format!("{} {}", exo_libos::args::join(rest), a.passed_on());
    let e = exec::exec(&elf, new_args.trim());
    eprintln!("exec: {name}: {e:?}");
    drop(ballast);
    126
}

exo_libos::entry!(main);
