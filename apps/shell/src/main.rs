//! The exo shell: commands typed on the UART console, run by a libOS program.
//!
//! Built-in commands manage files through the libOS's file-system interface, inspect the
//! machine through the kernel's public tables (`ps`, `mem`), and start programs (`run`) —
//! embedded ones by name, or ELF files from a file system by path. A failing command
//! prints a message; nothing a command does can take the shell down.
#![no_std]
#![no_main]

extern crate alloc;

mod cmds;
mod files;
mod line;

use exo_libos::println;

include!(concat!(env!("OUT_DIR"), "/embedded.rs"));

fn main(args: &str) -> i32 {
    let mut shell = cmds::Shell::new(args);
    println!("exo shell — type `help` for the commands");
    let mut editor = line::Editor::new();
    loop {
        let Some(line) = editor.read_line("exo> ") else { return 0 };
        if let Some(status) = shell.execute(&line) {
            return status;
        }
    }
}

exo_libos::entry!(main);
