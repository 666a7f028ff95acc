//! `cargo xtask bench`: boots the benchmark mode of init under `-icount` and reports.
//!
//! Under `-icount shift=0,align=off,sleep=off -seed 1` the PMU cycle counter counts guest
//! instructions, so every figure repeats exactly, run after run, on the same build. The
//! table goes to the terminal, the results to a JSON file, and a bar chart to an SVG file.

use std::fmt::Write as _;
use std::path::PathBuf;
use std::time::Duration;

use crate::qemu::{Board, RunSpec, Session};
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

/// Boots the benchmark build on `board` and collects its rows.
pub fn run_board(board: Board, image: &std::path::Path, filter: Option<&str>) -> Result<Vec<Row>, String> {
    let mut bootargs = "exo.test=bench".to_string();
    if let Some(f) = filter {
        bootargs += &format!(" exo.filter={f}");
    }
    let disk = util::out_dir().join(format!("bench-disk-{}.img", board.name()));
    crate::test::test_disk(&disk)?;
    let extra = board.disk_args(&disk);
    let spec = RunSpec { board, image, bootargs, timeout: Duration::from_secs(300), extra };
    let (_, out) = Session::start(&spec)?.finish();
    let rows = parse(board.name(), &out);
    if rows.is_empty() {
        return Err(format!(
            "{}: no benchmark results; the console ended with:\n{}",
            board.name(),
            tail(&out)
        ));
    }
    Ok(rows)
}

fn tail(out: &str) -> String {
    let lines: Vec<&str> = out.lines().collect();
    lines[lines.len().saturating_sub(15)..].join("\n")
}

pub fn cmd_bench(args: &[String]) -> Result<(), String> {
    let mut boards = Board::ALL.to_vec();
    let mut filter = None;
    let mut json = util::out_dir().join("bench.json");
    let mut it = args.iter();
    while let Some(a) = it.next() {
        match a.as_str() {
            "--board" => boards = vec![Board::parse(it.next().ok_or("--board needs a value")?)?],
            "--filter" => filter = Some(it.next().ok_or("--filter needs a value")?.clone()),
            "--json" => json = PathBuf::from(it.next().ok_or("--json needs a file")?),
            other => return Err(format!("unknown option `{other}` (see `cargo xtask help`)")),
        }
    }
    let art = build::build_all()?;
    util::ensure_qemu()?;
    let mut rows = vec![];
    for b in boards {
        eprintln!("xtask: benchmarking on QEMU {} (instructions, under -icount)", b.name());
        rows.extend(run_board(b, &art.image, filter.as_deref())?);
    }
    print!("{}", table(&rows));
    println!(
        "\nAll figures are exact and repeat run after run, except disk transfers on virt: QEMU's\n\
         virtio-blk completes on a host thread, so the polling there varies; raspi4b's SD card\n\
         is emulated synchronously and its figures are exact."
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

/// A horizontal bar chart, log scale (the figures span five orders of magnitude).
pub fn chart(rows: &[Row]) -> String {
    let (bar_h, label_w, plot_w) = (22, 360, 520);
    let height = 40 + bar_h * rows.len() + 30;
    let max = rows.iter().map(|r| r.per_op.max(1)).max().unwrap_or(1) as f64;
    let scale = |v: u64| ((v.max(1) as f64).log10() / max.log10().max(1.0) * plot_w as f64) as usize;
    let mut s = format!(
        "<svg xmlns=\"http://www.w3.org/2000/svg\" width=\"{}\" height=\"{height}\" font-family=\"sans-serif\" font-size=\"12\">\n",
        label_w + plot_w + 120
    );
    s += "<text x=\"10\" y=\"20\" font-size=\"14\">exo: guest instructions per operation (QEMU -icount, log scale)</text>\n";
    for (i, r) in rows.iter().enumerate() {
        let y = 40 + i * bar_h;
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
}
