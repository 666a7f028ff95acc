//! `cargo xtask profile`: where a benchmark's guest instructions go, per function and call
//! stack, kernel and programs alike.
//!
//! QEMU runs under `-icount` as for `cargo xtask bench`, with its execution log
//! (`-d in_asm,exec,nochain`) going into a pipe that `trace::Profiler` reads as it comes,
//! so nothing large touches the disk. Out come a table of functions (instructions spent in
//! the function itself, and with everything it called), the folded stacks
//! (`outer;inner;leaf COUNT`, what flame-graph tools read) and a flame graph drawn here.

use std::collections::BTreeMap;
use std::fmt::Write as _;
use std::io::BufRead;
use std::path::{Path, PathBuf};
use std::time::Duration;

use crate::build::{self, Variant};
use crate::qemu::{Board, RunSpec, Session};
use crate::test_image::card_copy;
use crate::trace::{Image, Profiler};
use crate::util;

const HELP: &str = "\
cargo xtask profile [options]: guest instructions per function and call stack

  --boot              Profile a boot of the production image until the shell's first
                      prompt appears (the default)
  --bench NAME        Profile the test image's benchmark mode with exo.filter=NAME (fs_*
                      and read_4k_* on a copy of the test card, the rest on a scratch disk)
  --board virt|rpi4   Machine (default: rpi4, whose figures are exact)
  --focus TEXT        Count only call stacks with a function whose name contains TEXT
  --append ARGS       More bootargs (e.g. exo.files=50 exo.mib=1 to shorten fs_* runs)
  --top N             Functions in the table (default 40)
  --annotate A,B      Also count each instruction of the functions whose name contains
                      A or B (per instruction: times run, in stacks --focus keeps)

Writes target/exo/profile/BOARD-WHAT.{txt,folded,svg} (and .annotated.txt).";

pub fn cmd_profile(args: &[String]) -> Result<(), String> {
    if cfg!(debug_assertions) && std::env::var_os("EXO_PROFILE_OPTIMISED").is_none() {
        // The log runs to tens of millions of lines: an unoptimised reader would hold QEMU up.
        eprintln!("xtask: building an optimised xtask to read QEMU's log");
        let mut cmd = util::cargo();
        cmd.args(["run", "--quiet", "--release", "--package", "xtask", "--", "profile"]);
        return util::run(cmd.args(args).env("EXO_PROFILE_OPTIMISED", "1"));
    }
    let (mut board, mut bench, mut focus, mut append, mut top) = (Board::Rpi4, None, None, String::new(), 40);
    let mut annotate = None;
    let mut it = args.iter();
    while let Some(a) = it.next() {
        let mut value = || it.next().cloned().ok_or(format!("{a} needs a value"));
        match a.as_str() {
            "--boot" => bench = None,
            "--bench" => bench = Some(value()?),
            "--board" => board = Board::parse(&value()?)?,
            "--focus" => focus = Some(value()?),
            "--append" => append = value()?,
            "--top" => top = value()?.parse().map_err(|_| "--top needs a number")?,
            "--annotate" => annotate = Some(value()?),
            "--help" | "-h" => {
                println!("{HELP}");
                return Ok(());
            }
            other => return Err(format!("unknown option `{other}`\n\n{HELP}")),
        }
    }
    let variant = if bench.is_some() { Variant::Test } else { Variant::Production };
    let art = variant.build()?;
    util::ensure_qemu()?;
    let what = bench.clone().unwrap_or_else(|| "boot".into());
    let (disk, bootargs, answer) = match &bench {
        None => (card_copy(&format!("profile-card-{}", board.name()))?, "exo.bench=boot".to_string(), true),
        Some(name) if ["fs_", "read_4k"].iter().any(|p| name.starts_with(p)) => (
            card_copy(&format!("profile-card-{}", board.name()))?,
            format!("exo.test=bench exo.filter={name}"),
            false,
        ),
        Some(name) => {
            let disk = util::out_dir().join(format!("profile-disk-{}.img", board.name()));
            std::fs::write(&disk, vec![0u8; 8 << 20]).map_err(|e| format!("{}: {e}", disk.display()))?;
            (disk, format!("exo.test=bench exo.bench=micro exo.filter={name}"), false)
        }
    };
    let mut images = vec![Image::load("kernel", &art.elf)?, Image::load("init", &art.init_elf)?];
    for app in build::APPS.iter().chain(&["shell"]) {
        images.push(Image::load(app, &util::release_dir().join(app))?);
    }
    let load = match board {
        Board::Virt => 0x4008_0000,
        Board::Rpi4 => 0x8_0000,
    };
    let profiler = Profiler::new(images, 0, load, focus.clone(), annotate.clone());

    let dir = util::out_dir().join("profile");
    std::fs::create_dir_all(&dir).map_err(|e| format!("{}: {e}", dir.display()))?;
    let fifo = dir.join(format!("qemu-log-{}.fifo", std::process::id()));
    let _ = std::fs::remove_file(&fifo);
    util::run(std::process::Command::new("mkfifo").arg(&fifo))?;
    let reader = {
        let fifo = fifo.clone();
        std::thread::spawn(move || read_log(&fifo, profiler))
    };
    eprintln!("xtask: profiling `{what}` on QEMU {} (every translation block logged: slow)", board.name());
    let spec = RunSpec {
        board,
        image: &art.image,
        bootargs: format!("{bootargs} {append}"),
        timeout: Duration::from_secs(4 * 3600),
        extra: [board.disk_args(&disk), vec!["-d".into(), "in_asm,exec,nochain".into(), "-D".into()]]
            .concat()
            .into_iter()
            .chain([fifo.display().to_string()])
            .collect(),
    };
    let run = Session::start(&spec).and_then(|mut s| {
        if answer {
            // Stop at the prompt: what follows (the shell waiting for a key) is not boot.
            s.script(&[("exo> ", "")])?;
            return Ok(s.kill());
        }
        Ok(s.finish().1)
    });
    // If QEMU never opened the log, the reader still waits in `open`: let it see an end.
    {
        use std::os::unix::fs::OpenOptionsExt;
        let _ = std::fs::OpenOptions::new().write(true).custom_flags(libc::O_NONBLOCK).open(&fifo);
    }
    let profiler = reader.join().map_err(|_| "the log reader panicked")?;
    let _ = std::fs::remove_file(&fifo);
    let out = run?;
    let rows: Vec<&str> = out.lines().filter(|l| l.starts_with("bench ")).collect();
    rows.iter().for_each(|l| println!("{l}"));
    if bench.is_some() && rows.is_empty() {
        return Err(format!(
            "no benchmark ran for `{what}`: name a row `cargo xtask bench` prints (or part of one), \
             or a group (fs_fat, fs_lfs, read_4k, http_get)"
        ));
    }
    let profiler = profiler?;
    let stem = dir.join(format!("{}-{}", board.name(), what.replace(['/', ','], "_")));
    let report = report(&profiler, top, focus.as_deref());
    print!("{report}");
    write(&stem.with_extension("txt"), &report)?;
    let folded = profiler.folded_text();
    write(&stem.with_extension("folded"), &folded)?;
    write(&stem.with_extension("svg"), &flame_graph(&folded, &format!("{} · {what}", board.name())))?;
    if annotate.is_some() {
        let listing = profiler.annotation();
        print!("{listing}");
        write(&stem.with_extension("annotated.txt"), &listing)?;
    }
    println!(
        "\nfolded stacks: {}\nflame graph:   {}",
        stem.with_extension("folded").display(),
        stem.with_extension("svg").display()
    );
    Ok(())
}

fn write(path: &Path, text: &str) -> Result<(), String> {
    std::fs::write(path, text).map_err(|e| format!("{}: {e}", path.display()))
}

fn read_log(fifo: &PathBuf, mut p: Profiler) -> Result<Profiler, String> {
    let f = std::fs::File::open(fifo).map_err(|e| format!("{}: {e}", fifo.display()))?;
    let mut r = std::io::BufReader::with_capacity(1 << 20, f);
    let mut line = Vec::with_capacity(256);
    loop {
        line.clear();
        match r.read_until(b'\n', &mut line) {
            Ok(0) => break,
            Ok(_) => p.line(std::str::from_utf8(&line).unwrap_or("").trim_end()),
            Err(e) => return Err(format!("reading QEMU's log: {e}")),
        }
    }
    p.finish();
    Ok(p)
}

/// The table of functions, heaviest first by their own instructions.
pub fn report(p: &Profiler, top: usize, focus: Option<&str>) -> String {
    let mut s = format!("guest instructions executed: {}\n", p.total);
    if let Some(f) = focus {
        let _ = writeln!(s, "in call stacks through `{f}`: {}", p.counted);
    }
    let _ = writeln!(s, "\n{:>14} {:>6} {:>14} {:>6}  function", "self", "%", "with callees", "%");
    let pct = |n: u64| n as f64 * 100.0 / p.counted.max(1) as f64;
    for (name, own, total) in p.functions().into_iter().take(top) {
        let _ = writeln!(s, "{own:>14} {:>5.1}% {total:>14} {:>5.1}%  {name}", pct(own), pct(total));
    }
    s
}

#[derive(Default)]
struct Node {
    value: u64,
    children: BTreeMap<String, Node>,
}

/// A flame graph of folded stacks: the outermost frame at the bottom, each frame as wide as
/// its share of the instructions, its name and figures in a tooltip.
pub fn flame_graph(folded: &str, title: &str) -> String {
    let mut root = Node::default();
    for line in folded.lines() {
        let Some((stack, n)) = line.rsplit_once(' ') else { continue };
        let Ok(n) = n.parse::<u64>() else { continue };
        root.value += n;
        let mut node = &mut root;
        for frame in stack.split(';') {
            node = node.children.entry(frame.to_string()).or_default();
            node.value += n;
        }
    }
    fn depth(n: &Node) -> usize {
        n.children.values().map(|c| 1 + depth(c)).max().unwrap_or(0)
    }
    let (width, row) = (1200.0, 16.0);
    let height = (depth(&root) as f64 + 3.0) * row + 20.0;
    let mut s = format!(
        "<svg xmlns=\"http://www.w3.org/2000/svg\" width=\"{width}\" height=\"{height}\" font-family=\"monospace\" font-size=\"11\">\n\
         <text x=\"10\" y=\"16\" font-size=\"13\">{} — {} guest instructions (hover for each frame)</text>\n",
        escape(title),
        root.value
    );
    /// Pixels per instruction, all instructions, the bottom row's baseline.
    struct Frame(f64, u64, f64);
    fn draw(s: &mut String, n: &Node, name: &str, x: f64, level: usize, f: &Frame) {
        let Frame(scale, total, h) = *f;
        let w = n.value as f64 * scale;
        if w < 0.3 {
            return;
        }
        let y = h - (level as f64 + 1.0) * 16.0;
        let hash = name.bytes().fold(5381u32, |h, b| h.wrapping_mul(33) ^ b as u32);
        let program = name.split_once(':').is_some_and(|(_, r)| !r.starts_with(':'));
        let (r, g, b) = if program {
            (80 + hash % 60, 140 + (hash >> 8) % 80, 190 + (hash >> 16) % 60)
        } else {
            (205 + hash % 50, 100 + (hash >> 8) % 110, 40 + (hash >> 16) % 50)
        };
        let pct = n.value as f64 * 100.0 / total.max(1) as f64;
        let _ = write!(
            s,
            "<g><title>{} — {} instructions ({pct:.2}%)</title><rect x=\"{x:.1}\" y=\"{y:.1}\" width=\"{w:.1}\" height=\"15\" fill=\"rgb({r},{g},{b})\"/>",
            escape(name),
            n.value
        );
        let chars = ((w - 4.0) / 6.6) as usize;
        if chars >= 3 {
            let label: String = if name.chars().count() > chars {
                name.chars().take(chars - 2).chain("..".chars()).collect()
            } else {
                name.to_string()
            };
            let _ = write!(s, "<text x=\"{:.1}\" y=\"{:.1}\">{}</text>", x + 2.0, y + 11.5, escape(&label));
        }
        s.push_str("</g>\n");
        let mut cx = x;
        for (child, c) in &n.children {
            draw(s, c, child, cx, level + 1, f);
            cx += c.value as f64 * scale;
        }
    }
    let scale = (width - 20.0) / root.value.max(1) as f64;
    let mut x = 10.0;
    for (name, c) in &root.children {
        draw(&mut s, c, name, x, 0, &Frame(scale, root.value, height - 10.0));
        x += c.value as f64 * scale;
    }
    s + "</svg>\n"
}

fn escape(s: &str) -> String {
    s.replace('&', "&amp;").replace('<', "&lt;").replace('>', "&gt;").replace('"', "&quot;")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn flame_graph_draws_each_frame_as_wide_as_its_share() {
        let svg = flame_graph("main;work<T> 300\nmain 100\nidle 100\n", "test");
        assert!(svg.contains("500 guest instructions"));
        assert!(svg.contains("work&lt;T&gt; — 300 instructions (60.00%)"), "{svg}");
        assert!(svg.contains("main — 400 instructions (80.00%)"));
        // 1180 pixels for 500 instructions: `main` is 944 wide, `idle` 236.
        assert!(svg.contains("width=\"944.0\"") && svg.contains("width=\"236.0\""), "{svg}");
    }
}
