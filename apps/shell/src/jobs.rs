//! Pipelines and jobs: `a | b | c`, `< FILE`, `> FILE`, `>> FILE`, `2> FILE`, `&`, and the
//! `jobs`, `wait` and `kill` commands.
//!
//! A command line that runs programs becomes a *job*: the shell forks a child (the job's
//! environment), which owns the pipes, starts every program of the pipeline as its own
//! child with its descriptors wired, waits for them all and exits with the last one's
//! status. The pipes' frames are the job's, so no program outside the job can map them
//! (the sharing rule), and destroying the job ends every program in it and frees them.
//! Redirections are programs too: `< FILE` reads through `cat FILE`, `> FILE` writes
//! through `save FILE`, each at its end of a pipe.

use alloc::format;
use alloc::string::String;
use alloc::vec::Vec;

use exo_libos::abi::{env_state, killed_status, upcall, EnvId, Error, STATUS_DESTROYED};
use exo_libos::args;
use exo_libos::fd::{self, Stdio};
use exo_libos::pipe::{End, Mapped, Pipe};
use exo_libos::process::{self, Fork};
use exo_libos::rt::PANIC_STATUS;
use exo_libos::spawn::{self, SpawnError};
use exo_libos::{println, sys, vm};

use crate::files::Files;
use crate::EMBEDDED;

/// Where a program's descriptor leads, before the pipes exist.
#[derive(Clone, Copy, PartialEq, Eq)]
enum Io {
    Console,
    Null,
    /// Pipe `n`'s read end.
    From(usize),
    /// Pipe `n`'s write end.
    To(usize),
}

/// One program of a job.
struct Proc {
    name: String,
    elf: Vec<u8>,
    args: String,
    io: [Io; 3],
    /// Its status is the job's (the last program of the pipeline the user typed).
    main: bool,
    /// The cores it may run on (`run -c CORE`; 0: the job's own).
    cores: u8,
}

/// A job started with `&`.
pub struct Job {
    pub n: u32,
    pub env: EnvId,
    pub line: String,
}

/// How a program ended, in words.
fn describe_status(status: i32) -> String {
    if let Some(kind) = (upcall::DATA_ABORT..=upcall::OTHER).find(|&k| killed_status(k) == status) {
        return format!("killed by a fault ({})", exo_libos::upcall::name(kind));
    }
    match status {
        STATUS_DESTROYED => "destroyed".into(),
        PANIC_STATUS => "panicked".into(),
        INTERRUPTED => "interrupted".into(),
        // The kernel's, at a revocation deadline: what it still owed was held as tables.
        s if s == killed_status(upcall::REVOKE) => "killed for memory it would not give back".into(),
        s => format!("exit status {s}"),
    }
}

/// Whether `words` ask for a job: a pipe, a redirection, `&`, or a program to run.
pub fn is_job(words: &[String], builtin: bool) -> bool {
    let op = words.iter().any(|w| matches!(w.as_str(), "|" | "<" | "2>" | "&"));
    let out = !builtin && words.iter().any(|w| matches!(w.as_str(), ">" | ">>"));
    op || out || !builtin || words.first().is_some_and(|w| w == "run")
}

/// The ELF of program `name`: built into the shell, a path, or `/fat/apps/NAME`.
fn program(files: &mut Files, name: &str) -> Result<Vec<u8>, String> {
    if let Some((_, elf)) = EMBEDDED.iter().find(|(n, _)| *n == name) {
        return Ok(elf.to_vec());
    }
    let path = if name.contains('/') { files.abs(name) } else { format!("/fat/apps/{name}") };
    match files.vfs.read_to_vec(&path) {
        Ok(v) => Ok(v),
        Err(_) if !name.contains('/') => Err(format!("{name}: no such program")),
        Err(e) => Err(format!("{name}: {e}")),
    }
}

/// Turns a command line into the job's programs (reading their ELFs).
fn plan(files: &mut Files, words: &[String], background: bool) -> Result<Vec<Proc>, String> {
    let segments: Vec<&[String]> = words.split(|w| w == "|").collect();
    let last = segments.len() - 1;
    let mut procs: Vec<Proc> = Vec::new();
    let mut pipes = 0;
    let mut new_pipe = || {
        pipes += 1;
        pipes - 1
    };
    let mut stdin = if background { Io::Null } else { Io::Console };
    for (i, seg) in segments.iter().enumerate() {
        let (mut argv, mut input, mut output, mut errors) = (Vec::new(), None, None, None);
        let mut it = seg.iter();
        while let Some(w) = it.next() {
            let mut target = || it.next().map(|f| files.abs(f)).ok_or(format!("{w}: which file?"));
            match w.as_str() {
                "<" if i == 0 => input = Some(target()?),
                ">" | ">>" if i == last => output = Some((target()?, w == ">>")),
                "2>" => errors = Some(target()?),
                "<" | ">" | ">>" => return Err(format!("{w}: only at the pipeline's start (<) or end (>)")),
                _ => argv.push(w.as_str()),
            }
        }
        let run = argv.first() == Some(&"run");
        if run {
            argv.remove(0);
        }
        let mut cores = 0;
        if let ["-c", core, ..] = argv[..] {
            let c = core.parse::<u8>().ok().filter(|c| *c < 8).ok_or("run: -c takes a core number")?;
            cores = 1 << c;
            argv.drain(..2);
        }
        let Some((&name, rest)) = argv.split_first() else {
            return Err("an empty command in the pipeline".into());
        };
        if !run && !name.contains('/') && program(files, name).is_err() {
            return Err(format!("{name}: no such command (try `help`)"));
        }
        if let Some(f) = input {
            // A file that cannot be read is the shell's error: the job does not start.
            files.vfs.stat(&f).map_err(|e| format!("{f}: {e}"))?;
            let p = new_pipe();
            let io = [Io::Null, Io::To(p), Io::Console];
            let elf = program(files, "cat")?;
            procs.push(Proc { name: "cat".into(), elf, args: args::join(&[f]), io, main: false, cores: 0 });
            stdin = Io::From(p);
        }
        let mut io = [stdin, Io::Console, Io::Console];
        let mut helpers = Vec::new();
        if i < last {
            let p = new_pipe();
            io[1] = Io::To(p);
            stdin = Io::From(p);
        } else if let Some((f, append)) = output {
            let p = new_pipe();
            io[1] = Io::To(p);
            let args = if append { args::join(&["-a", f.as_str()]) } else { args::join(&[f]) };
            helpers.push(("save", args, [Io::From(p), Io::Console, Io::Console]));
        }
        if let Some(f) = errors {
            let p = new_pipe();
            io[2] = Io::To(p);
            helpers.push(("save", args::join(&[f]), [Io::From(p), Io::Console, Io::Console]));
        }
        // Words as typed (quoted again where they hold spaces), and the current directory
        // for relative paths, when it is not `/` (`tool::Args` takes it).
        let mut args = args::join(rest);
        if files.cwd != "/" {
            args = format!("{args} {}", args::join(&[format!("cwd={}", files.cwd)]));
        }
        procs.push(Proc { name: name.into(), elf: program(files, name)?, args, io, main: i == last, cores });
        for (name, args, io) in helpers {
            procs.push(Proc {
                name: name.into(),
                elf: program(files, name)?,
                args,
                io,
                main: false,
                cores: 0,
            });
        }
    }
    Ok(procs)
}

/// Waits (a bounded number of turns) until `ready` holds: for what the shell hands the job
/// right after `fork` returns to it.
fn await_handover(mut ready: impl FnMut() -> bool) -> bool {
    for _ in 0..100_000 {
        if ready() {
            return true;
        }
        sys::yield_now();
    }
    false
}

/// The job's side, in the forked child: pipes, programs, waiting. Returns the job's status.
fn run(n: u32, procs: &[Proc], fsd: Option<EnvId>, background: bool, typeahead: u64) -> i32 {
    if let Some(f) = fsd {
        if !await_handover(|| sys::pct_allow(EnvId::SELF, f).is_ok()) {
            println!("[{n}] the file service's right never came");
        }
    }
    // In the foreground the shell hands the job the console input (and the screen, before
    // it). The job keeps the input and is its programs' terminal (`relay`); the program that
    // would read the console gets the screen.
    if !background && !await_handover(|| sys::console_give(EnvId::SELF).is_ok()) {
        println!("[{n}] the console never came");
    }
    let typed = !background && procs.iter().any(|p| p.io[0] == Io::Console);
    let count = procs.iter().flat_map(|p| p.io).filter(|io| matches!(io, Io::To(_))).count() + typed as usize;
    let mut pipes = Vec::new();
    for _ in 0..count {
        match Pipe::new() {
            Ok(p) => pipes.push(p),
            Err(e) => {
                println!("[{n}] no memory for a pipe: {e:?}");
                return 126;
            }
        }
    }
    let calls: Vec<EnvId> = fsd.into_iter().collect();
    let mut ids: Vec<EnvId> = Vec::new();
    // The keys' pipe: its write end is the job's own, mapped before any reader starts (a
    // reader finding no writer would see end of file).
    let keys = typed.then(|| &pipes[count - 1]);
    let end = Mapped { va: fd::slot_va(fd::COUNT) }; // the slot after the standard three
    let mapped = keys.is_some_and(|k| k.attach(EnvId::SELF, end.va, End::Write).is_ok());
    for p in procs {
        let mut stdio = p.io.map(|io| match io {
            Io::Console => Stdio::Console,
            Io::Null => Stdio::Null,
            Io::From(i) => Stdio::Read(&pipes[i]),
            Io::To(i) => Stdio::Write(&pipes[i]),
        });
        if let (Io::Console, Some(k)) = (p.io[0], keys) {
            stdio[0] = Stdio::Tty(k);
        }
        let args = match fsd {
            Some(f) => format!("{} fsd={:#x}", p.args, f.0),
            None => p.args.clone(),
        };
        let screen = p.io[0] == Io::Console && exo_libos::screen::held();
        let opts = spawn::Options {
            calls: &calls,
            screen,
            stdio,
            hold: true,
            cores: p.cores,
            net: spawn::Net::All, // what the shell may bind, its programs may
            ..Default::default()
        };
        match spawn::spawn(&p.elf, args.trim(), opts) {
            Ok(id) => ids.push(id),
            Err(e) => {
                match e {
                    SpawnError::BadElf(e) => println!("{}: not a program ({})", p.name, e.why()),
                    SpawnError::Layout => {
                        println!("{}: not a program for exo (a segment lies above 0x1000_0000)", p.name)
                    }
                    e => println!("{}: cannot start: {e:?}", p.name),
                }
                for &id in &ids {
                    let _ = sys::env_destroy(id);
                }
                return 127;
            }
        }
    }
    for &id in &ids {
        let _ = sys::env_start(id);
    }
    if background {
        let list: Vec<String> =
            procs.iter().zip(&ids).map(|(p, id)| format!("{} {:#x}", p.name, id.0)).collect();
        println!("[{n}] {:#x}: {}", vm::me().0, list.join(" | "));
    }
    let left = if background { Some(Vec::new()) } else { relay(mapped.then_some(end), &ids) };
    if let Some(keys) = &left {
        typeahead::leave(typeahead, keys);
    }
    let interrupted = left.is_none();
    let mut status = 0;
    for (p, &id) in procs.iter().zip(&ids) {
        // A program someone destroyed was reaped with it: `NotFound`.
        let s = sys::env_wait(id).unwrap_or(exo_libos::abi::STATUS_DESTROYED);
        if p.main {
            status = s;
        }
    }
    if interrupted {
        INTERRUPTED
    } else {
        status
    }
}

/// The status of a job ended with Ctrl-C (128 + Unix's SIGINT, as a shell reports it).
const INTERRUPTED: i32 = 130;

/// The job's terminal, until every one of its programs `ids` has ended: keys typed at the
/// console go into the keys' pipe (`end`, its write end; none when no program reads the
/// console, as with `<`) as they come (the program reading them edits and echoes them:
/// `fd::kind::TTY`), but Ctrl-C ends every program at once, so that one which never reads
/// its input can be stopped too. It looks once a tick of the clock
/// (`NetWait`: a sleep until the next tick). Returns the keys no program read, in the order
/// typed (for the shell's next line, as a terminal keeps them), or `None` if Ctrl-C ended
/// the job (which drops them).
fn relay(end: Option<Mapped>, ids: &[EnvId]) -> Option<Vec<u8>> {
    let ended = |id: EnvId| vm::env_info(id).is_none_or(|e| e.id != id.0 || e.state == env_state::ZOMBIE);
    let mut held = Vec::new(); // typed, not yet taken by the ring
    while !ids.iter().all(|&id| ended(id)) {
        while let Ok(c) = sys::console_read(false) {
            if c == 0x03 {
                for &id in ids {
                    let _ = sys::env_destroy(id);
                }
                println!("^C");
                return None;
            }
            if held.len() < 4096 {
                held.push(c);
            }
        }
        // What the ring takes now. The rest waits; with no reader (none from the start, as
        // with `<`, or none left) it all waits, and goes back to the shell.
        let taken = end.and_then(|e| e.offer(&held).ok()).unwrap_or(0);
        held.drain(..taken);
        let _ = sys::net_wait();
    }
    // Unread: what is still in the ring (the write end maps it too), then what never fit.
    let mut left = unread(end);
    left.extend_from_slice(&held);
    Some(left)
}

/// What is in the ring of the pipe end `end` maps (4 KiB at most), taken out of it.
fn unread(end: Option<Mapped>) -> Vec<u8> {
    let mut keys = alloc::vec![0; 4096];
    let n = end.map_or(0, |e| e.try_read(&mut keys));
    keys.truncate(n);
    keys
}

/// Keys typed during a foreground job that none of its programs read, handed back to the
/// shell: a pipe of the shell's whose read end it maps into itself before it forks its first
/// job. Pipe pages are mapped shared, so each forked job writes into the shell's own ring;
/// the shell reads it only after the job has exited, one at a time.
pub mod typeahead {
    use exo_libos::abi::EnvId;
    use exo_libos::pipe::{End, Mapped, Pipe};
    use exo_libos::{fd, vm};

    /// The pipe's end, mapped in the slot after the job's keys' (0 if no pipe could be
    /// made: then nothing is handed back). The table under it is made through `vm` first,
    /// so that a fork sees the pages.
    pub fn make() -> u64 {
        let va = fd::slot_va(fd::COUNT + 1);
        match Pipe::new() {
            Ok(p) if vm::reserve(va).is_ok() && p.attach(EnvId::SELF, va, End::Read).is_ok() => va,
            Ok(p) => {
                p.free();
                0
            }
            Err(_) => 0,
        }
    }

    /// The job's side: leaves `keys` (as many as fit) for the shell.
    pub fn leave(va: u64, keys: &[u8]) {
        if va != 0 {
            let _ = Mapped { va }.offer(keys);
        }
    }

    /// The shell's side: takes what the last job left.
    pub fn take(va: u64) -> alloc::vec::Vec<u8> {
        super::unread((va != 0).then_some(Mapped { va }))
    }
}

/// The shell's side of jobs.
#[derive(Default)]
pub struct Jobs {
    list: Vec<Job>,
    next: u32,
    /// The page foreground jobs hand unread keys back in (`typeahead`; 0 until made).
    typeahead: u64,
}

impl Jobs {
    /// Starts the command line `words` as a job; waits for it unless it ends in `&`.
    pub fn start(&mut self, files: &mut Files, words: &[String]) {
        let background = words.last().is_some_and(|w| w == "&");
        let words = if background { &words[..words.len() - 1] } else { words };
        let procs = match plan(files, words, background) {
            Ok(p) => p,
            Err(e) => return println!("{e}"),
        };
        self.next += 1;
        let n = self.next;
        let fsd = files.fsd;
        if !background && self.typeahead == 0 {
            self.typeahead = typeahead::make();
        }
        let job = match process::fork() {
            Ok(Fork::Child) => sys::exit(run(n, &procs, fsd, background, self.typeahead)),
            Ok(Fork::Parent(job)) => job,
            Err(e) => return println!("cannot start a job: {e:?}"),
        };
        drop(procs);
        if let Some(f) = fsd {
            let _ = sys::pct_allow(job, f);
        }
        if !background {
            if exo_libos::screen::held() {
                let _ = exo_libos::screen::give(job);
            }
            let _ = sys::console_give(job);
            let last = words.split(|w| w == "|").next_back().unwrap_or_default();
            let last = last.iter().find(|w| *w != "run").cloned().unwrap_or_default();
            match process::wait(job) {
                Ok(0) => {}
                Ok(status) => println!("{last}: {}", describe_status(status)),
                Err(e) => println!("{last}: wait failed: {e:?}"),
            }
            return;
        }
        // The job prints its programs' ids once it has started them all, then blocks
        // waiting for them: the prompt comes after that line.
        for _ in 0..100_000 {
            match vm::env_info(job) {
                Some(e) if e.id == job.0 && e.state != env_state::BLOCKED && e.state != env_state::ZOMBIE => {
                    sys::yield_now()
                }
                _ => break,
            }
        }
        self.list.push(Job { n, env: job, line: words.join(" ") });
    }

    /// Keys the last foreground job's programs left unread, for the shell's next line.
    pub fn typed_ahead(&self) -> Vec<u8> {
        typeahead::take(self.typeahead)
    }

    /// `jobs`: every background job, running or done (done ones are then forgotten).
    pub fn list(&mut self) {
        let mut keep = Vec::new();
        for j in core::mem::take(&mut self.list) {
            let zombie = vm::env_info(j.env).is_some_and(|e| e.id == j.env.0 && e.state == env_state::ZOMBIE);
            if zombie {
                let status = process::wait(j.env).unwrap_or(0);
                println!("[{}] done ({})  {}", j.n, describe_status(status), j.line);
            } else {
                println!("[{}] running  {}", j.n, j.line);
                keep.push(j);
            }
        }
        self.list = keep;
    }

    /// `wait [N]`: waits for job N (or every job) to end.
    pub fn wait(&mut self, args: &[&str]) {
        let which: Option<u32> = match args.first().map(|a| a.trim_start_matches('%').parse()) {
            None => None,
            Some(Ok(n)) => Some(n),
            Some(Err(_)) => return println!("usage: wait [N]"),
        };
        let (waited, rest): (Vec<Job>, Vec<Job>) =
            core::mem::take(&mut self.list).into_iter().partition(|j| which.is_none_or(|n| j.n == n));
        self.list = rest;
        if waited.is_empty() && which.is_some() {
            return println!("wait: no job {}", which.unwrap_or(0));
        }
        for j in waited {
            match process::wait(j.env) {
                Ok(status) => println!("[{}] done ({})  {}", j.n, describe_status(status), j.line),
                Err(e) => println!("[{}] {e:?}", j.n),
            }
        }
    }

    /// `kill N` ends job N and every program in it; `kill 0xID` ends one environment (a
    /// program of a job: its pipe neighbours then see end of file, or a broken pipe).
    pub fn kill(&mut self, args: &[&str]) {
        let [arg] = args else { return println!("usage: kill N | kill 0xENV") };
        if let Some(hex) = arg.strip_prefix("0x") {
            let Ok(id) = u32::from_str_radix(hex, 16) else { return println!("kill: {arg}: not an id") };
            if self.list.iter().any(|j| j.env.0 == id) || id == vm::me().0 {
                return println!("kill: {arg} is a job (kill it by number) or the shell");
            }
            return match sys::env_destroy(EnvId(id)) {
                Ok(()) => {}
                Err(Error::Denied) => println!("kill: {arg}: not one of the shell's programs"),
                Err(e) => println!("kill: {arg}: {e:?}"),
            };
        }
        let Ok(n) = arg.trim_start_matches('%').parse::<u32>() else {
            return println!("kill: {arg}: not a job");
        };
        let Some(i) = self.list.iter().position(|j| j.n == n) else { return println!("kill: no job {n}") };
        let j = self.list.remove(i);
        match sys::env_destroy(j.env) {
            Ok(()) => {
                process::reclaim_orphans(); // as `wait` does: no walk of the frame table
                println!("[{n}] killed  {}", j.line);
            }
            Err(e) => println!("kill: {n}: {e:?}"),
        }
    }
}
