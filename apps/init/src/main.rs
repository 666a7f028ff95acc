//! init: the first environment. It holds the whole disk and all the authority there is,
//! and decides what runs: by default the file service (`fsd`, given every file-system
//! partition), the web server (`httpd`) and the shell (both given the right to call fsd,
//! and each the part of the network it uses); or what `/init.cfg` on the FAT
//! partition lists; or, when the bootargs say `exo.test=...`, one of the EL0 test suites,
//! whose verdict becomes init's exit status (and so the machine's).
#![no_std]
#![no_main]
#![forbid(unsafe_code)]

extern crate alloc;

use alloc::format;
use alloc::string::String;
use alloc::vec::Vec;

use exo_fat::{FatFs, FatOptions};
use exo_libos::abi::net::NetScope;
use exo_libos::abi::{EnvId, SECTOR_READ, SECTOR_WRITE};
use exo_libos::fs::{disk, mount, parts, FileSystem};
use exo_libos::nic::{self, IP_ICMP, IP_TCP, IP_UDP};
use exo_libos::spawn::{self, Net, Options};
use exo_libos::{println, process, sys, vm};

include!(concat!(env!("OUT_DIR"), "/embedded.rs"));

/// What runs when there is no `/init.cfg`: one program per line, the last in the
/// foreground (init waits for it and ends with its status). The web server gets ARP, DHCP
/// and TCP port 80; the shell ARP, DHCP and ICMP, which it passes on to what it runs (`ping`).
const DEFAULT_CONFIG: &str = "fsd\nnet=arp,dhcp,tcp:80 httpd\nnet=arp,dhcp,icmp shell\n";

fn main(args: &str) -> i32 {
    #[cfg(feature = "tests")]
    if let Some(status) = exo_apps::suites::run(args, EMBEDDED) {
        return status;
    }
    #[cfg(not(feature = "tests"))]
    if let Some(mode) = args.split_ascii_whitespace().find_map(|w| w.strip_prefix("exo.test=")) {
        println!(
            "init: exo.test={mode} needs the test image (cargo xtask qemu --test-image); booting normally"
        );
    }
    boot()
}

/// Reads `/init.cfg` from the first FAT partition, read-only, if there is one.
fn config() -> Option<String> {
    let index =
        vm::kinfo().partitions.iter().position(|p| mount::FAT_TYPES.contains(&p.kind) && p.sectors > 0)?;
    let part = disk::open_partition(index)?;
    let mut fat = FatFs::mount(part, FatOptions { read_only: true, ..FatOptions::default() }).ok()?;
    let h = fat.open("/init.cfg", exo_libos::fs::OpenFlags::READ).ok()?;
    let mut buf = alloc::vec![0u8; 4096];
    let n = fat.read(h, 0, &mut buf).ok()?;
    let _ = fat.close(h);
    Some(String::from_utf8_lossy(&buf[..n]).into_owned())
}

/// A program by name: built into init, or (a path) read from the FAT partition.
fn program(name: &str) -> Option<Vec<u8>> {
    if let Some((_, elf)) = EMBEDDED.iter().find(|(n, _)| *n == name) {
        return Some(elf.to_vec());
    }
    let path = name.strip_prefix("/fat")?;
    let index =
        vm::kinfo().partitions.iter().position(|p| mount::FAT_TYPES.contains(&p.kind) && p.sectors > 0)?;
    let mut fat =
        FatFs::mount(disk::open_partition(index)?, FatOptions { read_only: true, ..FatOptions::default() })
            .ok()?;
    let h = fat.open(path, exo_libos::fs::OpenFlags::READ).ok()?;
    let size = fat.fstat(h).ok()?.size as usize;
    let mut elf = alloc::vec![0u8; size];
    let n = fat.read(h, 0, &mut elf).ok()?;
    let _ = fat.close(h);
    elf.truncate(n);
    Some(elf)
}

/// Starts what the configuration lists and waits for the last program.
fn boot() -> i32 {
    let cfg = config();
    let source = if cfg.is_some() { "/fat/init.cfg" } else { "built-in defaults" };
    let cfg = cfg.unwrap_or_else(|| String::from(DEFAULT_CONFIG));
    let lines: Vec<&str> =
        cfg.lines().map(|l| l.split('#').next().unwrap_or("").trim()).filter(|l| !l.is_empty()).collect();
    println!("init: starting {} program(s) from {source}", lines.len());
    let disk = vm::kinfo().disk_sectors > 0;
    let table = vm::kinfo().partitions;
    let mut grants = Vec::new();
    for p in table.iter().filter(|p| p.sectors > 0 && mount::is_file_system(p.kind)) {
        grants.push((p.start, p.sectors, SECTOR_READ | SECTOR_WRITE));
    }
    let (mut fsd, mut started): (Option<EnvId>, Vec<EnvId>) = (None, Vec::new());
    let mut last_name = "?";
    for (i, line) in lines.iter().enumerate() {
        let Some(line) = Line::parse(line) else {
            println!("init: {line}: a line is `[wait] [quiet] [disk=PARTS] [net=SCOPES] PROGRAM [ARGS]`");
            continue;
        };
        let (name, rest) = (line.program, line.args);
        if name == "fsd" && !disk {
            continue; // no disk, nothing to serve
        }
        let own = match line.disk.map(|spec| parts::resolve(spec, &table)) {
            Some(Err(e)) => {
                println!("init: {name}: disk={e}");
                continue;
            }
            r => r.map(Result::unwrap_or_default),
        };
        let Some(elf) = program(name) else {
            println!("init: {name}: no such program");
            continue;
        };
        let is_fsd = name == "fsd";
        let args = match fsd {
            Some(f) if !is_fsd => format!("{rest} fsd={:#x}", f.0),
            _ => String::from(rest),
        };
        let calls: Vec<EnvId> = if is_fsd { Vec::new() } else { fsd.into_iter().collect() };
        let spec = line.net.unwrap_or("");
        let Some(scopes) = net_scopes(spec) else {
            println!("init: {name}: net={spec}: a scope is arp, dhcp, icmp, tcp:PORT, udp:PORT or all");
            continue;
        };
        let net = if spec.split(',').any(|w| w == "all") { Net::All } else { Net::Only(&scopes) };
        // `disk=` binds exactly what it names; without it fsd gets every file-system
        // partition and other programs none.
        let sectors: &[(u64, u64, u32)] = match &own {
            Some(g) => g,
            None if is_fsd => &grants,
            None => &[],
        };
        // The program in the foreground, the last, gets the console input and the screen
        // (the shell, which hands both to what it runs).
        let console = i == lines.len() - 1;
        match spawn::spawn(
            &elf,
            args.trim(),
            Options {
                sectors,
                calls: &calls,
                console,
                screen: console,
                net,
                quiet: line.quiet,
                ..Options::default()
            },
        ) {
            Ok(child) if line.wait && !console => {
                let status = process::wait(child).unwrap_or(-1);
                println!("init: {name} exited with status {status}");
            }
            Ok(child) => {
                if is_fsd {
                    fsd = Some(child);
                    wait_until_parked(child);
                }
                started.push(child);
                last_name = name;
            }
            Err(e) => println!("init: cannot start {name}: {e:?}"),
        }
    }
    let Some(&last) = started.last() else {
        println!("init: nothing to run");
        return 1;
    };
    let status = process::wait(last).unwrap_or(-1);
    println!("init: {last_name} exited with status {status}");
    for &child in &started[..started.len() - 1] {
        let _ = sys::env_destroy(child);
    }
    status
}

/// The scopes `net=` names, comma-separated (docs/apps.md); `all` and "" are none here
/// (`all` is every scope init holds, granted whole); `None` for a name it does not know.
fn net_scopes(spec: &str) -> Option<Vec<NetScope>> {
    let port = |p: &str| p.parse::<u16>().ok();
    spec.split(',')
        .filter(|w| !w.is_empty() && *w != "all")
        .map(|w| match w.split_once(':') {
            None if w == "arp" => Some(nic::arp_scope()),
            None if w == "dhcp" => Some(nic::dhcp_scope()),
            None if w == "icmp" => Some(nic::protocol_scope(IP_ICMP)),
            Some(("tcp", p)) => port(p).map(|p| nic::port_scope(IP_TCP, p)),
            Some(("udp", p)) => port(p).map(|p| nic::port_scope(IP_UDP, p)),
            _ => None,
        })
        .collect()
}

/// One line of `/init.cfg`: `[wait] [quiet] [disk=PARTS] [net=SCOPES] PROGRAM [ARGS]` (docs/apps.md).
struct Line<'a> {
    /// Wait for it to exit before starting the next line.
    wait: bool,
    /// It may not write to the console (`ConsoleAllow`): its output goes nowhere.
    quiet: bool,
    /// The partitions it may touch (`fs::parts` names), instead of the default.
    disk: Option<&'a str>,
    /// The parts of the network it may bind (none without it).
    net: Option<&'a str>,
    program: &'a str,
    args: &'a str,
}

impl<'a> Line<'a> {
    fn parse(mut line: &'a str) -> Option<Line<'a>> {
        let (mut wait, mut quiet, mut disk, mut net) = (false, false, None, None);
        loop {
            let (word, rest) = line.split_once(' ').unwrap_or((line, ""));
            match word {
                "wait" => wait = true,
                "quiet" => quiet = true,
                _ if word.starts_with("disk=") => disk = Some(&word[5..]),
                _ if word.starts_with("net=") => net = Some(&word[4..]),
                "" => return None,
                _ => return Some(Line { wait, quiet, disk, net, program: word, args: rest.trim() }),
            }
            line = rest.trim_start();
        }
    }
}

/// Waits until a server is parked, ready for calls (or gone). A call to a server that has
/// registered its entry but not parked yet waits in the kernel, costing nothing while the
/// server works (fsd mounting on another core: polling here spent as many instructions as
/// the mount itself). Its answer does not matter: fsd refuses a call without a buffer.
fn wait_until_parked(server: EnvId) {
    use exo_libos::abi::{env_state, Error};
    let _ = sys::pct_allow(sys::env_self(), server);
    let alive = || {
        let state = vm::env_info(server).filter(|i| i.id == server.0).map(|i| i.state);
        matches!(state, Some(env_state::RUNNABLE | env_state::BLOCKED))
    };
    // `NotFound` until the server has registered (its first thing; it may not have run yet).
    while sys::pct_call(server, [0; 4], 0) == Err(Error::NotFound) && alive() {
        sys::yield_now();
    }
}

exo_libos::entry!(main);
