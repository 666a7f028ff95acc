//! Emulator tests of pipes and jobs at the shell, on the production image with a card: a
//! pipeline over a 1 MiB file the host put on the log partition (the host computes the
//! answer), redirections, and a background job that keeps running while the shell answers,
//! whose middle program is then killed.

use std::path::Path;
use std::time::Duration;

use crate::card::LfsPart;
use crate::qemu::{tail, Board, End, RunSpec, Session};
use crate::test_image::{built, card_copy, ensure, Extra};

pub fn tests(boards: &[Board], out: &mut Vec<Extra>) {
    for &b in boards {
        out.push(Extra::new(
            format!("{}::pipeline_of_three_programs_over_a_1_mib_log_file_gives_the_hosts_answer", b.name()),
            move || pipeline(b),
        ));
        out.push(Extra::new(
            format!(
                "{}::background_job_runs_while_the_shell_answers_and_killing_its_middle_ends_it",
                b.name()
            ),
            move || background(b),
        ));
        out.push(Extra::new(
            format!("{}::exec_keeps_the_pipes_and_drops_the_old_images_frames", b.name()),
            move || exec(b),
        ));
    }
}

/// The 1 MiB text file: numbered lines, every seventh with the word `needle`.
fn big_file() -> Vec<u8> {
    let mut v = Vec::new();
    let mut i = 0u64;
    while v.len() < 1 << 20 {
        let word = if i % 7 == 3 { "needle" } else { ["hay", "straw", "chaff"][(i % 3) as usize] };
        v.extend_from_slice(format!("line {i:06} of the {word} file\n").as_bytes());
        i += 1;
    }
    v.truncate(1 << 20);
    v
}

/// What `grep needle | wc` prints for `data`: lines, words, bytes of the matching lines.
fn grep_wc(data: &[u8], needle: &str) -> String {
    let text = String::from_utf8_lossy(data);
    let hits: Vec<&str> = text.split_terminator('\n').filter(|l| l.contains(needle)).collect();
    let words: usize = hits.iter().map(|l| l.split_whitespace().count()).sum();
    let bytes: usize = hits.iter().map(|l| l.len() + 1).sum();
    format!("{} {} {}", hits.len(), words, bytes)
}

fn put_lfs(card: &Path, path: &str, data: &[u8]) -> Result<(), String> {
    let f = std::fs::OpenOptions::new().read(true).write(true).open(card).map_err(|e| e.to_string())?;
    let opts = exo_lfs::MountOptions { read_only: false, clock: None };
    let mut fs = exo_lfs::Fs::mount(LfsPart::of(&f)?, opts).map_err(|e| format!("mount: {e:?}"))?;
    let h = fs.create(path).map_err(|e| format!("{path}: {e:?}"))?;
    fs.write(h, 0, data).map_err(|e| format!("{path}: {e:?}"))?;
    fs.unmount().map_err(|e| format!("unmount: {e:?}"))?;
    Ok(())
}

fn session(board: Board, card: &Path) -> Result<Session, String> {
    let spec = RunSpec {
        board,
        image: &built()?.kernel,
        bootargs: String::new(),
        timeout: Duration::from_secs(300),
        extra: board.disk_args(card),
    };
    Session::start(&spec)
}

fn pipeline(board: Board) -> Result<(), String> {
    let card = card_copy(&format!("pipes-{}", board.name()))?;
    let data = big_file();
    put_lfs(&card, "/big.txt", &data)?;
    let text = String::from_utf8_lossy(&data).into_owned();
    let want = grep_wc(&data, "needle");
    let count = text.split_terminator('\n').filter(|l| l.contains("needle")).count().to_string();
    let last = text.split_terminator('\n').next_back().unwrap_or("").to_string();
    let mut s = session(board, &card)?;
    let steps: &[(&str, &str)] = &[
        ("exo> ", "cat /log/big.txt | grep needle | wc\r"),
        (&want, ""),
        // The program `exec` becomes keeps its stdout pipe and its right to the file service.
        ("exo> ", "exec grep needle /log/big.txt | wc\r"),
        (&want, ""),
        ("exo> ", "head -n 2 < /log/big.txt\r"),
        ("line 000000 of the hay file", ""),
        ("line 000001 of the straw file", ""),
        ("exo> ", "tail -n 1 /log/big.txt\r"),
        (&last, ""),
        ("exo> ", "hexdump /log/big.txt | head -n 1\r"),
        ("00000000  6c 69 6e 65 20 30 30 30  30 30 30 20 6f 66 20 74  |line 000000 of t|", ""),
        ("exo> ", "grep -c needle /log/big.txt > /log/count.txt\r"),
        ("exo> ", "cat /log/count.txt\r"),
        (&count, ""),
        ("exo> ", "cat /log/missing.txt 2> /log/err.txt\r"),
        ("exo> ", "cat /log/err.txt\r"),
        ("/log/missing.txt: not found", ""),
        ("exo> ", "exit 0\r"),
    ];
    let r = s.script(steps);
    let (end, out) = s.finish();
    r?;
    ensure(end == End::Exited(0), || format!("ended {end:?}:\n{}", tail(&out, 20)))?;
    let _ = std::fs::remove_file(&card);
    Ok(())
}

/// The environments `ps` lists, and the owners `mem` lists, between two prompts.
fn census(s: &mut Session) -> Result<(Vec<String>, Vec<String>), String> {
    s.send("ps\r")?;
    let ps = s.read_until("exo> ")?;
    s.send("mem\r")?;
    let mem = s.read_until("exo> ")?;
    let envs =
        ps.lines().filter(|l| l.starts_with("0x")).map(|l| l.split_whitespace().next().unwrap_or("").into());
    let owners = mem
        .lines()
        .filter_map(|l| l.trim().strip_prefix("env "))
        .map(|l| l[..l.find(':').unwrap_or(0)].into());
    let (mut envs, mut owners): (Vec<String>, Vec<String>) = (envs.collect(), owners.collect());
    envs.sort();
    owners.sort();
    Ok((envs, owners))
}

fn background(board: Board) -> Result<(), String> {
    let card = card_copy(&format!("jobs-{}", board.name()))?;
    let mut s = session(board, &card)?;
    let r = (|| {
        s.expect("exo> ")?;
        let before = census(&mut s)?;
        s.send("yes | cat | wc &\r")?;
        s.expect("[1] 0x")?;
        s.expect("| cat ")?;
        let middle = s.read_until(" |")?;
        // The shell answers while the job runs.
        s.script(&[("exo> ", "echo the shell answers\r"), ("the shell answers", ""), ("exo> ", "jobs\r")])?;
        s.expect("[1] running  yes | cat | wc")?;
        s.expect("exo> ")?;
        s.send(&format!("kill {middle}\r"))?;
        let mut counted = s.read_until("exo> ")?;
        s.send("wait 1\r")?;
        // `yes` finds no reader and stops; `wc` sees the end of its input and says how
        // much went through while the shell was answering.
        counted += &s.read_until("[1] done (exit status 0)  yes | cat | wc")?;
        let lines: u64 = counted
            .lines()
            .filter_map(|l| l.split_whitespace().next().and_then(|n| n.parse().ok()))
            .next_back()
            .ok_or(format!("wc printed no count: {counted:?}"))?;
        ensure(lines > 0, || "nothing went through the pipeline".into())?;
        s.expect("exo> ")?;
        // A second job, killed whole.
        s.send("yes | cat &\r")?;
        s.expect("[2] 0x")?;
        s.script(&[("exo> ", "kill 2\r"), ("[2] killed  yes | cat", "")])?;
        s.expect("exo> ")?;
        let after = census(&mut s)?;
        ensure(after.0 == before.0, || format!("environments before {:?}, after {:?}", before.0, after.0))?;
        ensure(after.1 == before.1, || format!("frame owners before {:?}, after {:?}", before.1, after.1))?;
        s.send("exit 0\r")
    })();
    let (end, out) = s.finish();
    r.map_err(|e| format!("{e}\n{}", tail(&out, 25)))?;
    ensure(end == End::Exited(0), || format!("ended {end:?}:\n{}", tail(&out, 20)))?;
    let _ = std::fs::remove_file(&card);
    Ok(())
}

/// The frames `ps` shows for environment `id`.
/// The FRAMES column of environment `id` in the shell's `ps` table (found by its header, so
/// that columns added after it change nothing).
fn frames_of(ps: &str, id: &str) -> Option<u64> {
    let column = ps.lines().find_map(|l| l.split_whitespace().position(|w| w == "FRAMES"))?;
    ps.lines().find(|l| l.starts_with(id))?.split_whitespace().nth(column)?.parse().ok()
}

fn exec(board: Board) -> Result<(), String> {
    let card = card_copy(&format!("exec-{}", board.name()))?;
    let mut s = session(board, &card)?;
    let r = (|| {
        s.expect("exo> ")?;
        s.send("yes | exec -m 4 cat | wc &\r")?;
        s.expect("[1] 0x")?;
        s.expect("| exec ")?;
        let middle = s.read_until(" |")?;
        s.expect(&format!("exec: env {middle} holds "))?;
        let before: u64 = s.read_until(" frames")?.parse().map_err(|_| "no frame count")?;
        ensure(before > 1024, || format!("exec held only {before} frames with 4 MiB of heap"))?;
        // The prompt came before that line; `exec` and the new program's start-up take a
        // moment more: ask `ps` a few times.
        let mut after = before;
        for _ in 0..10 {
            s.send("ps\r")?;
            let ps = s.read_until("exo> ")?;
            after = frames_of(&ps, &middle).ok_or(format!("{middle} is not in ps:\n{ps}"))?;
            if after + 1024 <= before {
                break;
            }
        }
        ensure(after + 1024 <= before, || {
            format!("{middle} held {before} frames before exec, {after} after")
        })?;
        // What it became still passes the pipeline's data along.
        s.send(&format!("kill {middle}\r"))?;
        let mut counted = s.read_until("exo> ")?;
        s.send("wait 1\r")?;
        counted += &s.read_until("[1] done (exit status 0)")?;
        let lines: u64 = counted
            .lines()
            .filter_map(|l| l.split_whitespace().next().and_then(|n| n.parse().ok()))
            .next_back()
            .ok_or(format!("wc printed no count: {counted:?}"))?;
        ensure(lines > 0, || "nothing went through the program exec became".into())?;
        s.expect("exo> ")?;
        s.send("exit 0\r")
    })();
    let (end, out) = s.finish();
    r.map_err(|e| format!("{e}\n{}", tail(&out, 25)))?;
    ensure(end == End::Exited(0), || format!("ended {end:?}:\n{}", tail(&out, 20)))?;
    let _ = std::fs::remove_file(&card);
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_big_file_is_1_mib_and_every_seventh_line_has_the_needle() {
        let data = big_file();
        assert_eq!(data.len(), 1 << 20);
        let want = grep_wc(&data, "needle");
        let lines: usize = want.split(' ').next().unwrap().parse().unwrap();
        let total = data.iter().filter(|&&b| b == b'\n').count();
        assert!(lines * 7 >= total - 7 && lines * 7 <= total + 7, "{lines} of {total}");
    }
}
