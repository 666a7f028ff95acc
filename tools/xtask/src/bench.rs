//! `cargo xtask bench`: boots the benchmark mode of init under `-icount` and reports.
//!
//! Under `-icount shift=0,align=off,sleep=off -seed 1` the PMU cycle counter counts guest
//! instructions, so every figure repeats exactly, run after run, on the same build. The
//! table goes to the terminal, the results to a JSON file, and a bar chart to an SVG file.

use std::fmt::Write as _;
use std::path::PathBuf;
use std::time::Duration;

use crate::qemu::{Board, RunSpec, Session};
use crate::test_image::card_copy;
use crate::{build, util};

/// One benchmark's result.
#[derive(Clone, Debug, PartialEq)]
pub struct Row {
    pub board: &'static str,
    pub name: String,
    pub ops: u64,
    pub per_op: u64,
    /// Extra `key=value` figures the benchmark printed (sectors per op, ...).
    pub extra: Vec<(String, u64)>,
}

/// Parses `bench NAME ops=N per_op=X [key=value ...]` lines.
pub fn parse(board: &'static str, out: &str) -> Vec<Row> {
    out.lines()
        .filter_map(|l| l.strip_prefix("bench "))
        .filter_map(|l| {
            let mut words = l.split_whitespace();
            let name = words.next()?.to_string();
            let mut row = Row { board, name, ops: 0, per_op: 0, extra: vec![] };
            for w in words {
                let (k, v) = w.split_once('=')?;
                let v: u64 = v.parse().ok()?;
                match k {
                    "ops" => row.ops = v,
                    "per_op" => row.per_op = v,
                    _ => row.extra.push((k.to_string(), v)),
                }
            }
            (row.ops > 0).then_some(row)
        })
        .collect()
}

/// Boots `board` three times and collects the rows: the test image (whose init has the
/// benchmark mode) for the kernel's paths and raw sector transfers on a scratch disk, then
/// for the file-system workloads on a fresh copy of the test card (FAT32 and LFS
/// partitions); and the production image, `production`, for boot to the shell's prompt.
pub fn run_board(
    board: Board,
    image: &std::path::Path,
    production: &std::path::Path,
    filter: Option<&str>,
    smp: Option<u32>,
) -> Result<Vec<Row>, String> {
    let wants = |name: &str| filter.is_none_or(|f| name.contains(f));
    let mut rows = vec![];
    // A blank disk: the sector-write benchmarks run only where no partition table is.
    let disk = util::out_dir().join(format!("bench-disk-{}.img", board.name()));
    std::fs::write(&disk, vec![0u8; 8 << 20]).map_err(|e| format!("{}: {e}", disk.display()))?;
    // `exo.bench=micro`: everything but the card's file-system workloads.
    let args = format!(
        "exo.test=bench exo.bench=micro{}",
        filter.map(|f| format!(" exo.filter={f}")).unwrap_or_default()
    );
    rows.extend(boot(board, image, &disk, &args, None, smp)?);
    let fs_filter: Vec<&str> =
        ["fs_fat", "fs_lfs", "read_4k", "http_get"].into_iter().filter(|n| wants(n)).collect();
    if !fs_filter.is_empty() {
        let card = card_copy(&format!("bench-card-{}", board.name()))?;
        rows.extend(boot(
            board,
            image,
            &card,
            &format!("exo.test=bench exo.filter={}", fs_filter.join(",")),
            None,
            smp,
        )?);
    }
    if wants("boot_to_shell_prompt") {
        let card = card_copy(&format!("bench-card-{}", board.name()))?;
        rows.extend(boot(board, production, &card, "exo.bench=boot", Some(("exo> ", "exit\r")), smp)?);
    }
    if rows.is_empty() {
        return Err(format!("{}: no benchmark matched", board.name()));
    }
    Ok(rows)
}

fn boot(
    board: Board,
    image: &std::path::Path,
    disk: &std::path::Path,
    bootargs: &str,
    answer: Option<(&str, &str)>,
    smp: Option<u32>,
) -> Result<Vec<Row>, String> {
    let mut extra = board.disk_args(disk);
    // A later `-smp` overrides the four cores `machine_args` asks for (virt only).
    extra.extend(
        smp.filter(|_| board == Board::Virt)
            .map(|n| ["-smp".to_string(), n.to_string()])
            .into_iter()
            .flatten(),
    );
    let spec = RunSpec { board, image, bootargs: bootargs.into(), timeout: Duration::from_secs(600), extra };
    let mut s = Session::start(&spec)?;
    if let Some(step) = answer {
        s.script(&[step])?;
    }
    let (_, out) = s.finish();
    let rows = parse(board.name(), &out);
    for skipped in out.lines().filter(|l| l.starts_with("bench ") && l.contains(" skipped")) {
        eprintln!("xtask: {}: {skipped}", board.name());
    }
    if out.contains(" failed") && out.lines().any(|l| l.starts_with("bench ") && l.ends_with("failed")) {
        return Err(format!("{}: a benchmark failed:\n{}", board.name(), crate::qemu::tail(&out, 15)));
    }
    Ok(rows)
}

pub fn cmd_bench(args: &[String]) -> Result<(), String> {
    let mut boards = Board::ALL.to_vec();
    let mut filter = None;
    let mut smp = None;
    let mut json = util::out_dir().join("bench.json");
    let mut it = args.iter();
    while let Some(a) = it.next() {
        match a.as_str() {
            "--board" => boards = vec![Board::parse(it.next().ok_or("--board needs a value")?)?],
            "--filter" => filter = Some(it.next().ok_or("--filter needs a value")?.clone()),
            "--smp" => {
                let n = it.next().ok_or("--smp needs a value")?;
                smp = Some(n.parse().ok().filter(|n| (1..=4).contains(n)).ok_or("--smp takes 1 to 4")?);
            }
            "--json" => json = PathBuf::from(it.next().ok_or("--json needs a file")?),
            other => return Err(format!("unknown option `{other}` (see `cargo xtask help`)")),
        }
    }
    let production = build::build_all()?;
    let test = build::build_test()?;
    util::ensure_qemu()?;
    let mut rows = vec![];
    for b in boards {
        eprintln!("xtask: benchmarking on QEMU {} (instructions, under -icount)", b.name());
        if let (Some(n), Board::Virt) = (smp, b) {
            eprintln!("xtask: virt with -smp {n}");
        }
        rows.extend(run_board(b, &test.image, &production.image, filter.as_deref(), smp)?);
    }
    print!("{}", table(&rows));
    println!(
        "\nAll figures are exact and repeat run after run, except those that wait for the disk on\n\
         virt (sector_*, fs_*, read_4k_*, boot_to_shell_prompt): QEMU's virtio-blk completes on\n\
         a host thread, so the polling there varies. raspi4b's SD card is emulated\n\
         synchronously: every rpi4 figure is exact."
    );
    std::fs::write(&json, to_json(&rows)).map_err(|e| format!("{}: {e}", json.display()))?;
    let svg = json.with_extension("svg");
    std::fs::write(&svg, chart(&rows)).map_err(|e| format!("{}: {e}", svg.display()))?;
    println!("\nresults: {}\nchart:   {}", json.display(), svg.display());
    Ok(())
}

pub fn table(rows: &[Row]) -> String {
    let mut s = format!("{:<6} {:<40} {:>8} {:>14}  {}\n", "board", "benchmark", "ops", "instr/op", "other");
    for r in rows {
        let extra: Vec<String> = r.extra.iter().map(|(k, v)| format!("{k}={v}")).collect();
        let _ =
            writeln!(s, "{:<6} {:<40} {:>8} {:>14}  {}", r.board, r.name, r.ops, r.per_op, extra.join(" "));
    }
    s
}

pub fn to_json(rows: &[Row]) -> String {
    let items: Vec<String> = rows
        .iter()
        .map(|r| {
            let extra: Vec<String> = r.extra.iter().map(|(k, v)| format!("\"{k}\": {v}")).collect();
            format!(
                "  {{\"board\": \"{}\", \"name\": \"{}\", \"ops\": {}, \"instructions_per_op\": {}, \"extra\": {{{}}}}}",
                r.board,
                r.name,
                r.ops,
                r.per_op,
                extra.join(", ")
            )
        })
        .collect();
    format!("[\n{}\n]\n", items.join(",\n"))
}

/// The file-system workloads that ran on both back ends: (board, workload, FAT row, LFS row).
fn fs_pairs(rows: &[Row]) -> Vec<(&'static str, String, &Row, &Row)> {
    let mut out = vec![];
    for fat in rows.iter().filter(|r| r.name.starts_with("fs_fat_")) {
        let work = &fat.name["fs_fat_".len()..];
        if let Some(lfs) = rows.iter().find(|r| r.board == fat.board && r.name == format!("fs_lfs_{work}")) {
            out.push((fat.board, work.to_string(), fat, lfs));
        }
    }
    out
}

/// Two charts, log scale (the figures span five orders of magnitude): FAT against the
/// log-structured file system, workload by workload; then every benchmark.
pub fn chart(rows: &[Row]) -> String {
    let (bar_h, label_w, plot_w) = (22, 360, 520);
    let pairs = fs_pairs(rows);
    let top = if pairs.is_empty() { 0 } else { 50 + pairs.len() * (2 * bar_h + 8) };
    let height = top + 40 + bar_h * rows.len() + 30;
    let max = rows.iter().map(|r| r.per_op.max(1)).max().unwrap_or(1) as f64;
    let scale = |v: u64| ((v.max(1) as f64).log10() / max.log10().max(1.0) * plot_w as f64) as usize;
    let mut s = format!(
        "<svg xmlns=\"http://www.w3.org/2000/svg\" width=\"{}\" height=\"{height}\" font-family=\"sans-serif\" font-size=\"12\">\n",
        label_w + plot_w + 120
    );
    if !pairs.is_empty() {
        s += "<text x=\"10\" y=\"20\" font-size=\"14\">FAT (grey) against the log-structured file system (green): instructions per operation, log scale</text>\n";
        for (i, (board, work, fat, lfs)) in pairs.iter().enumerate() {
            let y = 40 + i * (2 * bar_h + 8);
            let _ = writeln!(s, "<text x=\"10\" y=\"{}\">{board} · {work}</text>", y + bar_h);
            for (j, (r, colour)) in [(fat, "#999999"), (lfs, "#4f9a5a")].iter().enumerate() {
                let yy = y + j * bar_h;
                let _ = writeln!(
                    s,
                    "<rect x=\"{label_w}\" y=\"{}\" width=\"{}\" height=\"{}\" fill=\"{colour}\"/>",
                    yy + 3,
                    scale(r.per_op),
                    bar_h - 6
                );
                let _ = writeln!(
                    s,
                    "<text x=\"{}\" y=\"{}\">{}</text>",
                    label_w + scale(r.per_op) + 6,
                    yy + 15,
                    r.per_op
                );
            }
        }
    }
    let _ = writeln!(s, "<text x=\"10\" y=\"{}\" font-size=\"14\">exo: guest instructions per operation (QEMU -icount, log scale)</text>", top + 20);
    for (i, r) in rows.iter().enumerate() {
        let y = top + 40 + i * bar_h;
        let colour = if r.board == "virt" { "#4a7ab5" } else { "#c0504d" };
        let _ = writeln!(s, "<text x=\"10\" y=\"{}\">{} · {}</text>", y + 15, r.board, r.name);
        let _ = writeln!(
            s,
            "<rect x=\"{label_w}\" y=\"{}\" width=\"{}\" height=\"{}\" fill=\"{colour}\"/>",
            y + 3,
            scale(r.per_op),
            bar_h - 6
        );
        let _ =
            writeln!(s, "<text x=\"{}\" y=\"{}\">{}</text>", label_w + scale(r.per_op) + 6, y + 15, r.per_op);
    }
    s + "</svg>\n"
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_bench_lines_and_ignores_the_rest() {
        let out = "boot noise\nbench null_syscall ops=2000 per_op=41\nbench lfs_create ops=1000 per_op=6000 sectors=3\nbench broken ops=x\n";
        let rows = parse("virt", out);
        assert_eq!(rows.len(), 2);
        assert_eq!(
            rows[0],
            Row { board: "virt", name: "null_syscall".into(), ops: 2000, per_op: 41, extra: vec![] }
        );
        assert_eq!(rows[1].extra, vec![("sectors".to_string(), 3)]);
        let json = to_json(&rows);
        assert!(json.contains("\"instructions_per_op\": 41") && json.contains("\"sectors\": 3"));
        assert!(chart(&rows).starts_with("<svg") && table(&rows).contains("lfs_create"));
    }

    #[test]
    fn chart_pairs_fat_and_lfs_workloads() {
        let out =
            "bench fs_fat_create_1k ops=1000 per_op=3340820\nbench fs_lfs_create_1k ops=1000 per_op=11419\n\
                   bench fs_lfs_delete ops=1000 per_op=30914\nbench null_syscall ops=2000 per_op=41\n";
        let rows = parse("rpi4", out);
        let pairs = fs_pairs(&rows);
        assert_eq!(pairs.len(), 1); // delete ran on the LFS only
        assert_eq!(pairs[0].1, "create_1k");
        let svg = chart(&rows);
        std::fs::write(crate::util::out_dir().join("chart-test.svg"), &svg).unwrap();
        assert!(svg.contains("#999999") && svg.contains("#4f9a5a") && svg.contains("rpi4 · create_1k"));
    }
}
