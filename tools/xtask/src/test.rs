//! `cargo xtask test`: host unit tests, lints, and boot tests on every QEMU board.
//!
//! A boot test starts QEMU with bootargs that tell the kernel what to do, reads the console,
//! and checks both what was printed and how the machine ended (the kernel's semihosting exit
//! status). A run that does not end in time is a hang, reported with the last console lines.
//!
//! A boot test whose bootargs name a test mode (`exo.test=...`) boots the test image
//! (`target/exo/test/kernel8.img`, see `build.rs`); every other boots the production image,
//! the `kernel8.img` people run.

use std::sync::Mutex;
use std::time::{Duration, Instant};

use crate::build::Variant;
use crate::qemu::{self, Board, End, RunSpec};
use crate::symbols::Symbols;
use crate::test_image::{contains, Extra};
use crate::{lints, util};

/// One check of a finished run.
type Check = fn(Board, &End, &str) -> Result<(), String>;

struct BootTest {
    name: &'static str,
    /// With `exo.test=NAME`, the test boots the test image.
    bootargs: &'static str,
    timeout_s: u64,
    /// An EL0 suite run by init: each `test NAME ... ok|FAILED` line counts as a test.
    suite: bool,
    /// Run on this board only (`None`: every board).
    only: Option<Board>,
    /// Attach a fresh copy of the test disk (see `test_disk`).
    disk: bool,
    /// Console interaction before waiting for the end: wait for the first string, type
    /// the second.
    script: &'static [(&'static str, &'static str)],
    check: Check,
}

const BOOT_TESTS: &[BootTest] = &[
    BootTest {
        name: "boot_shows_banner_memory_and_timer_ticks",
        bootargs: "exo.test=boot",
        timeout_s: 30,
        suite: false,
        only: None,
        disk: false,
        script: &[],
        check: |board, end, out| {
            exited(end, 0)?;
            contains(out, "exo 0.1.0 — an exokernel for 64-bit ARM")?;
            contains(out, &format!("board {}", board.name()))?;
            contains(out, &format!("memory: {} MiB RAM", board.expected_ram_mib()))?;
            let ticks = number_after(out, "timer: ").ok_or("no `timer: N ticks` line")?;
            if ticks == 0 {
                return Err("the timer interrupt never arrived (0 ticks)".into());
            }
            contains(out, "test: boot ok")
        },
    },
    BootTest {
        name: "hwcheck_reports_every_board_fact_and_none_fails",
        bootargs: "exo.test=hwcheck",
        timeout_s: 60,
        suite: false,
        only: None,
        disk: true,
        script: &[],
        check: hwcheck_check,
    },
    BootTest {
        name: "el1_fault_is_reported_with_esr_and_far_then_fails",
        bootargs: "exo.test=el1-fault",
        timeout_s: 30,
        suite: false,
        only: None,
        disk: false,
        script: &[],
        check: |_, end, out| {
            exited(end, 1)?;
            contains(out, "KERNEL FAULT: EL1h sync: data abort")?;
            contains(out, "FAR 0xffff8000dead0000")?;
            contains(out, "ESR 0x0000000096")?; // EC 0x25: data abort at EL1
            contains(out, "<kmain+")?; // the backtrace names the faulting function
            not_contains(out, "the fault did not happen")
        },
    },
    BootTest {
        name: "kernel_panic_prints_location_and_backtrace_then_fails",
        bootargs: "exo.test=panic",
        timeout_s: 30,
        suite: false,
        only: None,
        disk: false,
        script: &[],
        check: |_, end, out| {
            exited(end, 1)?;
            contains(out, "KERNEL PANIC: test: a deliberate kernel panic")?;
            contains(out, "at kernel/src/selftests.rs:")?;
            contains(out, "<kmain+")
        },
    },
    BootTest {
        name: "runner_reports_a_hang_with_the_console_tail",
        bootargs: "exo.test=hang",
        timeout_s: 4,
        suite: false,
        only: None,
        disk: false,
        // Typing at a program that reads no input must not disturb anything.
        script: &[("idling forever", "hello\r")],
        check: |_, end, out| {
            if *end != End::Hung {
                return Err(format!("an idle kernel should be reported as hung, got {end:?}"));
            }
            contains(out, "idling forever")
        },
    },
    BootTest {
        name: "core",
        bootargs: "exo.test=core",
        timeout_s: 240,
        suite: true,
        only: None,
        disk: false,
        script: &[],
        check: |_, end, out| {
            contains(out, "init exited with status")?;
            exited(end, 0)
        },
    },
    BootTest {
        // Four cores: QEMU emulates the broadcast TLB invalidations slowly with several
        // vCPUs (docs/multicore.md), so fewer calls than the 100k of one core, and the oracle
        // more often.
        name: "syscall_fuzzer_20k_calls_on_four_cores_leaves_the_kernel_up_and_frames_balanced",
        bootargs: "exo.test=fuzz exo.fuzz.calls=20000 exo.fuzz.check=5000 exo.log=error",
        timeout_s: 600,
        suite: false,
        only: Some(Board::Virt),
        disk: false,
        script: &[],
        check: fuzz_check,
    },
    BootTest {
        name: "syscall_fuzzer_10k_calls_on_four_cores_leaves_the_kernel_up_and_frames_balanced",
        bootargs: "exo.test=fuzz exo.fuzz.calls=10000 exo.fuzz.check=5000 exo.log=error",
        timeout_s: 600,
        suite: false,
        only: Some(Board::Rpi4),
        disk: false,
        script: &[],
        check: fuzz_check,
    },
    BootTest {
        name: "shell_runs_programs_reports_a_crash_and_keeps_going",
        bootargs: "",
        timeout_s: 60,
        suite: false,
        only: None,
        disk: false,
        script: SHELL_SESSION,
        check: |_, end, out| {
            contains(out, "hello from env")?;
            contains(out, "from a test")?;
            contains(out, "unhandled data abort")?;
            contains(out, "init: shell exited with status 0")?;
            exited(end, 0)
        },
    },
    BootTest {
        name: "ipc",
        bootargs: "exo.test=ipc",
        timeout_s: 120,
        suite: true,
        only: None,
        disk: false,
        script: &[],
        check: |_, end, out| {
            contains(out, "init exited with status")?;
            exited(end, 0)
        },
    },
    BootTest {
        name: "smp",
        bootargs: "exo.test=smp",
        timeout_s: 180,
        suite: true,
        only: None,
        disk: false,
        script: &[],
        check: |_, end, out| {
            contains(out, "cores: 4 of 4 up")?;
            console_lines_whole(out)?;
            contains(out, "init exited with status")?;
            exited(end, 0)
        },
    },
    BootTest {
        name: "bench_runs_and_reports_well_formed_results",
        bootargs: "exo.test=bench",
        timeout_s: 120,
        suite: false,
        only: Some(Board::Virt),
        disk: false,
        script: &[],
        check: |_, end, out| {
            let rows = crate::bench::parse("virt", out);
            let names: Vec<&str> = rows.iter().map(|r| r.name.as_str()).collect();
            for want in [
                "null_syscall",
                "fault_upcall_map_resume",
                "env_switch",
                "pct_round_trip",
                "pct_call",
                "pct_reply",
                "pipe_round_trip",
                "pipe_stream_1m",
            ] {
                if !names.contains(&want) {
                    return Err(format!("no `{want}` result"));
                }
            }
            let per = |n: &str| rows.iter().find(|r| r.name == n).map_or(0, |r| r.per_op);
            // Each leg is timed across two environments; either one is a part of the round trip.
            for leg in ["pct_call", "pct_reply"] {
                if per(leg) >= per("pct_round_trip") {
                    return Err(format!("{leg} is not less than pct_round_trip"));
                }
            }
            if rows.iter().any(|r| r.per_op == 0) {
                return Err("a benchmark reported 0 instructions per operation".into());
            }
            exited(end, 0)
        },
    },
    BootTest {
        name: "net",
        bootargs: "exo.test=net",
        timeout_s: 120,
        suite: true,
        // QEMU's raspi4b emulates no NIC.
        only: Some(Board::Virt),
        disk: false,
        script: &[],
        check: |_, end, out| {
            contains(out, "init exited with status")?;
            exited(end, 0)
        },
    },
    BootTest {
        name: "disk",
        bootargs: "exo.test=disk",
        timeout_s: 120,
        suite: true,
        // virt: virtio-blk; rpi4: the SD card on QEMU's legacy EMMC, found by probing.
        only: None,
        disk: true,
        script: &[],
        check: |_, end, out| {
            contains(out, "init exited with status")?;
            exited(end, 0)
        },
    },
    BootTest {
        // Every other test asks QEMU for the modern virtio-mmio transport; this one keeps
        // QEMU's default, the legacy one, which the block driver also takes
        // (`drivers/virtio_mmio.rs`). The disk suite runs whole over it.
        name: "disk_on_a_legacy_virtio_slot",
        bootargs: "exo.test=disk",
        timeout_s: 120,
        suite: false,
        only: Some(Board::Virt),
        disk: true,
        script: &[],
        check: |_, end, out| {
            contains(out, "disk: virtio-blk (legacy transport)")?;
            contains(out, "0 failed")?;
            contains(out, "init exited with status")?;
            exited(end, 0)
        },
    },
];

/// The test disk: 8 MiB (a power of two, as the Pi's SD model wants), with an MBR holding
/// a FAT32-typed partition at sector 2048 (4096 sectors) and an LFS-typed one at 6144
/// (8192 sectors). The disk suite checks the kernel publishes exactly this. With `scratch`
/// (for `hwcheck`), a third, of type 0xDA, fills the rest: the scratch area the sector
/// test may write.
fn test_disk(path: &std::path::Path, scratch: bool) -> Result<(), String> {
    let mut img = vec![0u8; 8 << 20];
    let entry = |img: &mut Vec<u8>, i: usize, kind: u8, start: u32, len: u32| {
        let e = &mut img[446 + 16 * i..446 + 16 * (i + 1)];
        e[4] = kind;
        e[8..12].copy_from_slice(&start.to_le_bytes());
        e[12..16].copy_from_slice(&len.to_le_bytes());
    };
    entry(&mut img, 0, 0x0c, 2048, 4096);
    entry(&mut img, 1, 0x7f, 6144, 8192);
    if scratch {
        entry(&mut img, 2, 0xda, 14336, 2048);
    }
    img[510] = 0x55;
    img[511] = 0xaa;
    std::fs::write(path, img).map_err(|e| format!("{}: {e}", path.display()))
}

/// Types at the shell like a person: runs programs, looks at the machine, leaves.
const SHELL_SESSION: &[(&str, &str)] = &[
    ("exo> ", "run hello from a test\r"),
    ("hello from env", ""),
    ("exo> ", "run crash\r"),
    ("crash: killed by a fault (data abort)", ""),
    ("exo> ", "ps\r"),
    ("runnable", ""),
    ("busy ticks by core  0: ", ""),
    ("exo> ", "nosuchthing\r"),
    ("no such command", ""),
    ("exo> ", "run nosuchprogram\r"),
    ("no such program", ""),
    ("exo> ", "exit 0\r"),
];

/// The production image's board report (`docs/qemu-vs-pi4.md`): every fact a line, the
/// facts each board is known to have as PASS, and no FAIL.
fn hwcheck_check(board: Board, end: &End, out: &str) -> Result<(), String> {
    let mut want = vec![
        "hwcheck: PASS counter: ".to_string(),
        "hwcheck: PASS gic: v2".into(),
        format!("hwcheck: PASS ram: {} MiB", board.expected_ram_mib()),
        "hwcheck: INFO cores: ".into(),
        "hwcheck: INFO uart: PL011".into(),
        "hwcheck: PASS sector test: sector 14336 written, read back, compared, restored".into(),
    ];
    match board {
        Board::Virt => want.extend([
            "hwcheck: PASS disk: virtio-blk, 16384 sectors".into(),
            "hwcheck: INFO mailbox: none".into(),
            "hwcheck: INFO framebuffer: none".into(),
        ]),
        Board::Rpi4 => want.extend([
            "hwcheck: PASS counter: 62500000 Hz".into(),
            "hwcheck: PASS sd: legacy emmc".into(),
            "hwcheck: PASS disk: sdhci (legacy emmc), 16384 sectors".into(),
            "hwcheck: PASS firmware clock: emmc (id 1)".into(),
        ]),
    }
    for w in &want {
        contains(out, w)?;
    }
    not_contains(out, "hwcheck: FAIL")?;
    let pass = number_after(out, "hwcheck: done: ").ok_or("no `hwcheck: done` line")?;
    if pass < want.iter().filter(|w| w.contains("PASS")).count() as u64 {
        return Err(format!("only {pass} PASS lines counted"));
    }
    exited(end, 0)
}

fn fuzz_check(_: Board, end: &End, out: &str) -> Result<(), String> {
    not_contains(out, "KERNEL")?;
    not_contains(out, "ISOLATION BROKEN")?;
    contains(out, "oracle passes")?;
    contains(out, "frame table balanced")?;
    // Worker i starts pinned to core i (apps/src/fuzz.rs).
    contains(out, "fuzz: workers ran on 4 cores")?;
    exited(end, 0)
}

/// `cargo xtask fuzz`: one long seeded fuzzer run per board and seed (the isolation oracle
/// walks every worker's tables along the way), each reported like a boot test.
pub fn cmd_fuzz(args: &[String]) -> Result<(), String> {
    // The fuzzer seeds its generator with `seed | 1`: 2 and 3 give the same stream, so the
    // default seeds are 1, 2 and 4.
    let (mut calls, mut seeds, mut boards) = (1_000_000u64, vec![1u64, 2, 4], Board::ALL.to_vec());
    let mut it = args.iter();
    while let Some(a) = it.next() {
        let mut value = || it.next().ok_or(format!("{a} needs a value"));
        match a.as_str() {
            "--calls" => calls = value()?.parse().map_err(|_| "--calls takes a number")?,
            "--seed" => {
                seeds = value()?
                    .split(',')
                    .map(|s| s.parse().map_err(|_| "--seed takes numbers"))
                    .collect::<Result<_, _>>()?
            }
            "--board" => boards = vec![Board::parse(value()?)?],
            other => return Err(format!("unknown option `{other}` (see `cargo xtask help`)")),
        }
    }
    util::ensure_toolchain()?;
    util::ensure_qemu()?;
    // The fuzzer is a test mode: it runs on the test image.
    let art = Variant::Test.build()?;
    let mut tally = Tally::default();
    for board in boards {
        for &seed in &seeds {
            let t = Instant::now();
            let spec = RunSpec {
                board,
                image: &art.image,
                bootargs: format!("exo.test=fuzz exo.fuzz.calls={calls} exo.fuzz.seed={seed} exo.log=error"),
                // Generous: under -icount a million calls take many minutes on a loaded host.
                timeout: Duration::from_secs(600 + calls / 100),
                extra: vec![],
            };
            let result = run_script(&spec, &[]).and_then(|(end, out)| {
                if let Some(line) =
                    out.lines().find(|l| l.starts_with("fuzz: ") && l.contains("oracle passes"))
                {
                    println!("  {}: seed {seed}: {line}", board.name());
                }
                fuzz_check(board, &end, &out).map_err(|why| format!("{why}\n{}", qemu::tail(&out, 25)))
            });
            report(&mut tally, &format!("{}::fuzz_{calls}_calls_seed_{seed}", board.name()), t, result);
        }
    }
    println!("{} passed, {} failed", tally.passed, tally.failed);
    if tally.failed > 0 {
        Err(format!("{} run(s) failed", tally.failed))
    } else {
        Ok(())
    }
}

fn exited(end: &End, want: i32) -> Result<(), String> {
    match end {
        End::Exited(code) if *code == want => Ok(()),
        End::Exited(code) => Err(format!("exit status {code}, expected {want}")),
        End::Hung => Err(format!("hang: no exit within the time limit (expected status {want})")),
    }
}

/// `console_writes_from_four_cores_at_once_come_out_whole` (smp suite): four cores each
/// wrote 20 lines of "console-mix c=N " and 47 N's, one `ConsoleWrite` each, at once; the
/// console lock must keep every line whole.
fn console_lines_whole(out: &str) -> Result<(), String> {
    let whole = |l: &str| {
        let b = l.as_bytes();
        b.len() == 63
            && l.starts_with("console-mix c=")
            && b[15] == b' '
            && b[16..].iter().all(|&x| x == b[14])
    };
    let lines: Vec<&str> = out.lines().filter(|l| l.contains("console-mix")).collect();
    match lines.iter().find(|l| !whole(l)) {
        Some(bad) => Err(format!("a console write came out mixed: {bad:?}")),
        None if lines.len() != 80 => Err(format!("{} whole console-mix lines, expected 80", lines.len())),
        None => Ok(()),
    }
}

/// Every test of the card, of chainloading and of what boots from a card, for these boards.
fn extras(boards: &[Board]) -> Vec<Extra> {
    crate::progress::QUIET.store(true, std::sync::atomic::Ordering::Relaxed);
    let mut v = vec![];
    crate::test_image::tests(&mut v);
    crate::test_split::tests(boards, &mut v);
    crate::test_fs::tests(boards, &mut v);
    crate::test_choice::tests(boards, &mut v);
    crate::test_pipes::tests(boards, &mut v);
    crate::test_chainload::tests(boards, &mut v);
    crate::test_screen::tests(boards, &mut v);
    crate::test_net::tests(boards, &mut v);
    crate::test_determinism::tests(boards, &mut v);
    crate::test_demo::tests(boards, &mut v);
    v
}

fn not_contains(out: &str, needle: &str) -> Result<(), String> {
    (!out.contains(needle)).then_some(()).ok_or_else(|| format!("console showed {needle:?}"))
}

fn number_after(out: &str, prefix: &str) -> Option<u64> {
    let rest = &out[out.find(prefix)? + prefix.len()..];
    rest.split(|c: char| !c.is_ascii_digit()).next()?.parse().ok()
}

struct Opts {
    filter: Option<String>,
    host: bool,
    boards: Vec<Board>,
}

fn parse(args: &[String]) -> Result<Opts, String> {
    let mut o = Opts { filter: None, host: true, boards: Board::ALL.to_vec() };
    let mut it = args.iter();
    while let Some(a) = it.next() {
        match a.as_str() {
            "--filter" => o.filter = Some(it.next().ok_or("--filter needs a value")?.clone()),
            "--no-host" => o.host = false,
            "--board" => o.boards = vec![Board::parse(it.next().ok_or("--board needs a value")?)?],
            other => return Err(format!("unknown option `{other}` (see `cargo xtask help`)")),
        }
    }
    Ok(o)
}

#[derive(Default)]
struct Tally {
    passed: usize,
    failed: usize,
    failures: Vec<String>,
    /// Tests that did not run, with the reason they gave.
    skipped: Vec<String>,
}

pub fn cmd_test(args: &[String]) -> Result<(), String> {
    let opts = parse(args)?;
    let started = Instant::now();
    let mut tally = Tally::default();
    // Everything the run needs, before the first step that needs it: the toolchain's target
    // and components (lints, builds), dosfstools and mtools (host FAT tests, card tests), QEMU.
    util::ensure_toolchain()?;
    crate::sdtools::ensure()?;
    util::ensure_qemu()?;
    if opts.host {
        host_tests(&opts, &mut tally);
    }
    let mut images = vec![];
    for variant in [Variant::Production, Variant::Test] {
        let art = variant.build()?;
        images.push((variant, art.image, Symbols::load(&art.elf)?));
    }
    boot_tests(&opts, &images, &mut tally);
    // The SD card, chainloading and the boots from a card (`extras`, below).
    for t in extras(&opts.boards).into_iter().filter(|t| wanted(&opts, &t.name)) {
        let started = Instant::now();
        report(&mut tally, &t.name, started, (t.run)());
    }

    if !tally.failures.is_empty() {
        println!("\nfailed:");
        for f in &tally.failures {
            println!("  {f}");
        }
    }
    if !tally.skipped.is_empty() {
        println!("\nskipped:");
        for s in &tally.skipped {
            println!("  {s}");
        }
    }
    println!("\ntook {:.0} s", started.elapsed().as_secs_f64());
    let skipped = tally.skipped.len();
    if skipped == 0 {
        println!("{} passed, {} failed", tally.passed, tally.failed);
    } else {
        println!("{} passed, {} failed, {skipped} skipped", tally.passed, tally.failed);
    }
    if tally.failed > 0 {
        Err(format!("{} test(s) failed", tally.failed))
    } else if skipped > 0 && std::env::var_os("CI").is_some() {
        Err(format!("{skipped} test(s) skipped: in CI every test must run"))
    } else {
        Ok(())
    }
}

fn wanted(opts: &Opts, name: &str) -> bool {
    opts.filter.as_deref().is_none_or(|f| name.contains(f))
}

/// `cargo test` over the host crates, then formatting and clippy. Each counts its own tests.
fn host_tests(opts: &Opts, tally: &mut Tally) {
    if wanted(opts, "host") {
        println!("host unit tests (cargo test)");
        // The workspace's default members are exactly the crates that build for the host.
        // A test that skips itself (a host tool missing) says so in EXO_SKIP_LOG.
        let skip_log = util::out_dir().join("skipped-host-tests.txt");
        let _ = std::fs::remove_file(&skip_log);
        let out = util::cargo().arg("test").env("EXO_SKIP_LOG", &skip_log).output();
        let skipped: Vec<String> =
            std::fs::read_to_string(&skip_log).unwrap_or_default().lines().map(str::to_string).collect();
        match out {
            Ok(out) => {
                let text =
                    String::from_utf8_lossy(&out.stdout).into_owned() + &String::from_utf8_lossy(&out.stderr);
                let (p, f) = count_cargo_results(&text);
                // A test that skips itself passes in cargo's count: take it out of that.
                tally.passed += p.saturating_sub(skipped.len());
                tally.failed += f;
                tally.skipped.extend(skipped);
                if !out.status.success() {
                    if f == 0 {
                        tally.failed += 1; // a build error: no test ran
                    }
                    tally.failures.push("host unit tests (see the output above)".into());
                    println!("{text}");
                }
                println!(
                    "  {p} passed, {f} failed ({} of the passed skipped themselves)",
                    tally.skipped.len()
                );
            }
            Err(e) => {
                tally.failed += 1;
                tally.failures.push(format!("host unit tests: could not run cargo: {e}"));
            }
        }
    }
    // The lints themselves are in the root Cargo.toml's `[workspace.lints]`; `-D warnings`
    // makes clippy's other warnings errors too.
    let mut target = vec!["clippy", "--release", "--target", util::TARGET];
    target.extend(lints::TARGET_CRATES.iter().flat_map(|c| ["-p", c]));
    target.extend(["--", "-D", "warnings"]);
    // Rustdoc's warnings (a link to a private or missing item) as errors, for the same
    // crates: `RUSTDOCFLAGS` below.
    let mut doc = vec!["doc", "--no-deps", "--release", "--target", util::TARGET];
    doc.extend(lints::TARGET_CRATES.iter().flat_map(|c| ["-p", c]));
    let lints: [(&str, Vec<&str>); 5] = [
        ("lint::rustfmt", vec!["fmt", "--all", "--", "--check"]),
        ("lint::clippy_host", vec!["clippy", "--all-targets", "--", "-D", "warnings"]),
        ("lint::clippy_target", target),
        // The test image's code: the crates whose features add it (see build.rs).
        (
            "lint::clippy_target_test_image",
            vec![
                "clippy",
                "--release",
                "--target",
                util::TARGET,
                "-p",
                "exo-kernel",
                "-p",
                "exo-init",
                "--features",
                "exo-kernel/test-modes,exo-init/tests",
                "--",
                "-D",
                "warnings",
            ],
        ),
        ("lint::rustdoc", doc),
    ];
    for (name, args) in lints {
        if !wanted(opts, name) {
            continue;
        }
        let t = Instant::now();
        let out = util::cargo().args(&args).env("RUSTDOCFLAGS", "-D warnings").output();
        let ok = matches!(&out, Ok(o) if o.status.success());
        report(tally, name, t, if ok { Ok(()) } else { Err(format!("`cargo {}` failed", args.join(" "))) });
        if let (false, Ok(o)) = (ok, out) {
            println!("{}{}", String::from_utf8_lossy(&o.stdout), String::from_utf8_lossy(&o.stderr));
        }
    }
}

fn count_cargo_results(text: &str) -> (usize, usize) {
    let mut totals = (0, 0);
    for line in text.lines().filter(|l| l.starts_with("test result:")) {
        totals.0 += number_after(line, ". ").unwrap_or(0) as usize;
        totals.1 += number_after(line, "passed; ").unwrap_or(0) as usize;
    }
    totals
}

fn report(tally: &mut Tally, name: &str, started: Instant, result: Result<(), String>) {
    let secs = started.elapsed().as_secs_f64();
    match result {
        Ok(()) => {
            tally.passed += 1;
            println!("  ok    {name} ({secs:.1} s)");
        }
        Err(why) => {
            tally.failed += 1;
            println!("  FAIL  {name} ({secs:.1} s): {why}");
            tally.failures.push(name.to_string());
        }
    }
}

/// Runs the boot tests on each board, two QEMUs at a time. `images` are the production
/// image and the test image, each with its kernel's symbols.
fn boot_tests(opts: &Opts, images: &[(Variant, std::path::PathBuf, Symbols)], tally: &mut Tally) {
    let jobs: Vec<(Board, &BootTest)> = opts
        .boards
        .iter()
        .flat_map(|&b| BOOT_TESTS.iter().filter(move |t| t.only.is_none_or(|o| o == b)).map(move |t| (b, t)))
        .filter(|(b, t)| wanted(opts, &format!("{}::{}", b.name(), t.name)))
        .collect();
    if jobs.is_empty() {
        return;
    }
    println!("boot tests ({} on QEMU)", jobs.len());
    let next = Mutex::new(0usize);
    let shared = Mutex::new(std::mem::take(tally));
    let workers = std::thread::available_parallelism().map_or(2, |n| n.get()).clamp(1, 4);
    std::thread::scope(|s| {
        for _ in 0..workers {
            s.spawn(|| loop {
                let i = {
                    let mut n = next.lock().unwrap();
                    *n += 1;
                    *n - 1
                };
                let Some(&(board, test)) = jobs.get(i) else {
                    break;
                };
                let t = Instant::now();
                let mut extra = vec![];
                if test.disk {
                    let path = util::out_dir().join(format!("test-disk-{}-{}.img", board.name(), test.name));
                    if let Err(e) = test_disk(&path, test.name.starts_with("hwcheck")) {
                        report(&mut shared.lock().unwrap(), test.name, t, Err(e));
                        continue;
                    }
                    extra = board.disk_args_with(&path, !test.name.contains("legacy"));
                }
                let variant =
                    if test.bootargs.contains("exo.test=") { Variant::Test } else { Variant::Production };
                let Some((_, image, syms)) = images.iter().find(|i| i.0 == variant) else { continue };
                let spec = RunSpec {
                    board,
                    image,
                    bootargs: test.bootargs.to_string(),
                    timeout: Duration::from_secs(test.timeout_s),
                    extra,
                };
                let name = format!("{}::{}", board.name(), test.name);
                let result = run_script(&spec, test.script).and_then(|(end, out)| {
                    let out = syms.annotate(&out);
                    if test.suite {
                        suite_results(&mut shared.lock().unwrap(), &name, &out);
                    }
                    (test.check)(board, &end, &out).map_err(|why| format!("{why}\n{}", qemu::tail(&out, 25)))
                });
                report(&mut shared.lock().unwrap(), &name, t, result);
            });
        }
    });
    *tally = shared.into_inner().unwrap();
}

/// Counts each `test NAME ... ok` / `... FAILED: why` line of an EL0 suite as a test, found
/// anywhere in a line (another environment's output cut short may run into it). Each suite
/// also prints `SUITE: N passed, M failed`; fewer test lines than those add up to (lines
/// lost on the console) count as a failure, so that no FAILED line can go missing unseen.
fn suite_results(tally: &mut Tally, suite: &str, out: &str) {
    let (mut found, mut claimed) = (0, 0);
    for line in out.lines() {
        if let Some(n) = summary_count(line) {
            claimed += n;
        }
        let Some((name, verdict)) = test_line(line) else { continue };
        found += 1;
        let full = format!("{suite}::{name}");
        if verdict.starts_with("ok") {
            tally.passed += 1;
            println!("  ok    {full}");
        } else {
            tally.failed += 1;
            println!("  FAIL  {full}: {verdict}");
            tally.failures.push(full);
        }
    }
    if found < claimed {
        let full = format!("{suite}::(console)");
        tally.failed += 1;
        println!("  FAIL  {full}: the suites report {claimed} tests, {found} test lines arrived");
        tally.failures.push(full);
    }
}

/// `(NAME, verdict)` of a `test NAME ... verdict` line, wherever in the line it starts.
fn test_line(line: &str) -> Option<(&str, &str)> {
    line.match_indices("test ").find_map(|(i, _)| {
        let (name, verdict) = line[i + 5..].split_once(" ... ")?;
        let ident = !name.is_empty() && name.chars().all(|c| c.is_ascii_alphanumeric() || c == '_');
        ident.then_some((name, verdict))
    })
}

/// `passed + failed` of a suite's `SUITE: N passed, M failed` line.
fn summary_count(line: &str) -> Option<u64> {
    let (head, rest) = line.rsplit_once(" passed, ")?;
    let passed = head.rsplit_once(": ")?.1.parse::<u64>().ok()?;
    let failed = rest.strip_suffix(" failed")?.parse::<u64>().ok()?;
    Some(passed + failed)
}

fn run_script(spec: &RunSpec, script: &[(&str, &str)]) -> Result<(End, String), String> {
    let mut session = qemu::Session::start(spec)?;
    if let Err(e) = session.script(script) {
        let _ = session.finish();
        return Err(e);
    }
    Ok(session.finish())
}

#[cfg(test)]
mod suite_line_tests {
    use super::{suite_results, summary_count, test_line, Tally};

    #[test]
    fn a_test_line_is_found_where_another_line_ran_into_it() {
        assert_eq!(test_line("test a_b1 ... ok"), Some(("a_b1", "ok")));
        let glued = "env 0x2005 killed: data abort at 0x1000test droppable_mark ... FAILED: why ... so";
        assert_eq!(test_line(glued), Some(("droppable_mark", "FAILED: why ... so")));
        assert_eq!(test_line("a test of nothing ... ok"), None);
        assert_eq!(test_line("test  ... ok"), None);
        assert_eq!(summary_count("[ 1.5] ktest: 19 passed, 2 failed"), Some(21));
        assert_eq!(summary_count("19 passed, 2 failed"), None);
    }

    #[test]
    fn test_lines_lost_on_the_console_count_as_a_failure() {
        let mut tally = Tally::default();
        suite_results(&mut tally, "virt::core", "test a ... ok\ntest b ... ok\nktest: 2 passed, 0 failed\n");
        assert_eq!((tally.passed, tally.failed), (2, 0));
        let mut tally = Tally::default();
        suite_results(&mut tally, "virt::core", "test a ... ok\nktest: 1 passed, 1 failed\n");
        assert_eq!((tally.passed, tally.failed), (1, 1));
        assert_eq!(tally.failures, ["virt::core::(console)"]);
    }
}
