//! The exo shell: commands typed on the UART console, run by a libOS program.
//!
//! Built-in commands manage files through the libOS's file-system interface, inspect the
//! machine through the kernel's public tables (`ps`, `mem`), and start programs (`run`) —
//! embedded ones by name, or ELF files from a file system by path. A failing command
//! prints a message; nothing a command does can take the shell down.
#![no_std]
#![no_main]
#![forbid(unsafe_code)]

extern crate alloc;

mod cmds;
mod files;
mod jobs;
mod line;
mod net;

use exo_libos::println;

include!(concat!(env!("OUT_DIR"), "/embedded.rs"));

fn main(args: &str) -> i32 {
    let mut shell = cmds::Shell::new(args);
    if exo_libos::vm::kinfo().bootargs().contains("exo.bench=boot") {
        // Under -icount, virtual time is instructions: the counter says how many ran since
        // the machine started.
        let t = exo_libos::sys::now();
        let hz = exo_libos::vm::kinfo().counter_hz.max(1) as u128;
        println!("bench boot_to_shell_prompt ops=1 per_op={}", (t as u128 * 1_000_000_000 / hz) as u64);
    }
    println!("exo shell — type `help` for the commands");
    let mut editor = line::Editor::new();
    loop {
        let Some(line) = editor.read_line("exo> ") else { return 0 };
        if let Some(status) = shell.execute(&line) {
            return status;
        }
        editor.feed(shell.typed_ahead());
    }
}

exo_libos::entry!(main);
