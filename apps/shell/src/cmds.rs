//! The shell's commands.

use alloc::string::String;
use alloc::vec::Vec;

use exo_libos::abi::{env_state, frame, EnvId};
use exo_libos::vm::{self, PAGE};
use exo_libos::{print, println};

use crate::files::Files;
use crate::jobs::{self, Jobs};
use crate::EMBEDDED;

pub struct Shell {
    files: Files,
    jobs: Jobs,
}

/// The commands the shell answers itself; any other first word names a program.
const BUILTINS: &[&str] = &[
    "ls", "cat", "write", "cp", "mv", "rm", "mkdir", "stat", "sum", "df", "sync", "cd", "pwd", "help",
    "echo", "exit", "programs", "ps", "mem", "net", "jobs", "wait", "kill",
];

const HELP: &str = "\
commands (paths are absolute, or relative to the current directory):
  ls [PATH]            list a directory (`ls /` lists the mounted file systems)
  cat FILE...          print files (`cat` alone: the tool, copying what you type)
  write FILE WORDS...  replace FILE with the words (also: echo WORDS > FILE, >> appends)
  cp FROM TO           copy a file, across file systems too (into TO if a directory)
  mv FROM TO           move or rename a file (into TO if a directory)
  rm PATH...           remove files or empty directories
  mkdir PATH           make a directory
  stat PATH            size, kind and modification time
  sum FILE             CRC-32 and size of a file
  df                   size and free space of each file system
  sync                 write everything to the disk
  cd [PATH], pwd       change or show the current directory
  PROGRAM [ARGS]       run a program (built in, see `programs`; in /fat/apps; or an ELF
                       file by path) and wait for it; `run PROGRAM [ARGS]` says the same
  run -c CORE PROGRAM  the same, on that core alone
  A | B | C            a pipeline: each program's output is the next one's input
  A < FILE, A > FILE   input from a file, output to one (>> appends, 2> sends errors)
  LINE &               run in the background; the shell goes on at once
  jobs, wait [N]       the background jobs; wait for job N (or all)
  kill N, kill 0xENV   end job N (all its programs), or one program of a job
  tools (/fat/apps)    cat grep head tail wc hexdump yes echo save (see docs/apps.md)
  programs             list the programs built into the shell
  ps                   environments: id, parent, state, frames, core last run on, cores allowed
  mem                  frames by kind and by owner
  net                  the network interface: MAC address and counters
  echo WORDS...        print the words
  help                 this text
  exit [STATUS]        leave the shell (init then powers off)";

fn state_name(s: u8) -> &'static str {
    match s {
        env_state::BLANK => "blank",
        env_state::RUNNABLE => "runnable",
        env_state::BLOCKED => "blocked",
        env_state::ZOMBIE => "zombie",
        _ => "free",
    }
}

impl Shell {
    pub fn new(args: &str) -> Shell {
        Shell { files: Files::mount_all(args), jobs: Jobs::default() }
    }

    /// Keys typed during the last job that none of its programs read.
    pub fn typed_ahead(&self) -> Vec<u8> {
        self.jobs.typed_ahead()
    }

    /// Runs one command line. `Some(status)` when the shell should exit.
    pub fn execute(&mut self, line: &str) -> Option<i32> {
        let w = exo_libos::args::split(line);
        let cmd = w.first()?;
        // The built-in `cat` prints one file; alone (copying what is typed) or with several
        // files (one after the other) it is the tool.
        let builtin = BUILTINS.contains(&cmd.as_str()) && !(cmd == "cat" && w.len() != 2);
        if jobs::is_job(&w, builtin) {
            self.jobs.start(&mut self.files, &w);
            return None;
        }
        let args: Vec<&str> = w[1..].iter().map(|s| s.as_str()).collect();
        if let Some(r) = self.files.run(cmd, &args) {
            if let Err(e) = r {
                println!("{e}");
            }
            return None;
        }
        match cmd.as_str() {
            "help" => println!("{HELP}"),
            "echo" => match args.iter().position(|a| *a == ">" || *a == ">>") {
                Some(i) if i + 2 == args.len() => {
                    if let Err(e) = self.files.redirect(&args[..i].join(" "), args[i + 1], args[i] == ">>") {
                        println!("{e}");
                    }
                }
                Some(_) => println!("echo: usage: echo WORDS > FILE"),
                None => println!("{}", args.join(" ")),
            },
            "exit" => return Some(args.first().and_then(|s| s.parse().ok()).unwrap_or(0)),
            "programs" => {
                for (name, elf) in EMBEDDED {
                    println!("{name:<12} {} bytes", elf.len());
                }
            }
            "jobs" => self.jobs.list(),
            "wait" => self.jobs.wait(&args),
            "kill" => self.jobs.kill(&args),
            "ps" => ps(),
            "mem" => mem(),
            "net" => crate::net::net(),
            other => println!("{other}: no such command (try `help`)"),
        }
        None
    }
}

fn ps() {
    let k = vm::kinfo();
    println!("{:<10} {:<10} {:<9} {:>7} {:>4} {:>5}", "ENV", "PARENT", "STATE", "FRAMES", "CORE", "CORES");
    for slot in 0..k.max_envs as u32 {
        let Some(e) = vm::env_info(EnvId(slot)) else { continue };
        if e.state != env_state::FREE {
            let (id, parent, state) = (e.id, e.parent, state_name(e.state));
            println!("{id:<#10x} {parent:<#10x} {state:<9} {:>7} {:>4} {:>#5x}", e.frames, e.cpu, e.affinity);
        }
    }
    // Each core's load since it came up: ticks that found it running something, of all.
    // The boot core is always up, before its first tick too (the others show from theirs).
    let up = (0..exo_libos::abi::MAX_CPUS).filter(|&c| c == 0 || k.cpu_ticks[c] != 0);
    let load: Vec<String> = up.map(|c| alloc::format!("{c}: {}/{}", k.cpu_busy[c], k.cpu_ticks[c])).collect();
    println!("busy ticks by core  {}", load.join("  "));
}

fn mem() {
    let mut kinds = [0u64; 6];
    let mut owners: Vec<(u32, u64)> = Vec::new();
    for (_, f) in vm::frames() {
        if let Some(n) = kinds.get_mut(f.kind as usize) {
            *n += 1;
        }
        if f.kind == frame::DATA || f.kind == frame::TABLE {
            match owners.iter_mut().find(|(o, _)| *o == f.owner) {
                Some((_, n)) => *n += 1,
                None => owners.push((f.owner, 1)),
            }
        }
    }
    let mib = |n: u64| n * PAGE / 1024;
    println!(
        "free {} KiB, kernel {} KiB, public {} KiB, owned {} KiB",
        mib(kinds[0]),
        mib(kinds[1]),
        mib(kinds[2]),
        mib(kinds[3] + kinds[4])
    );
    for (owner, n) in owners {
        print!("  env {owner:#x}: {n} frames\n");
    }
}
