//! Emulator tests of pipes and jobs at the shell, on the production image with a card: a
//! pipeline over a 1 MiB file the host put on the log partition (the host computes the
//! answer), the other tools and `echo` in pipelines, typing to a program and Ctrl-C,
//! redirections, an app that cannot work where the shell starts it, and a background job
//! that keeps running while the shell answers, whose middle program is then killed.

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

pub(crate) fn put_lfs(card: &Path, path: &str, data: &[u8]) -> Result<(), String> {
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
        // `echo` is a program too (apps/src/bin/echo.rs), so a pipeline can start with it.
        ("exo> ", "echo three little words | wc\r"),
        ("1 3 19", ""),
        // An app that works on its own partition says how to start it when the shell, which
        // holds none to give, runs it (apps/note/note.rs).
        ("exo> ", "fatnote demo\r"),
        ("fatnote: start it from /init.cfg: `wait disk=fat /fat/apps/fatnote demo parts`", ""),
        ("fatnote: exit status 1", ""),
        // A foreground job's keys reach the program reading them through the job
        // (edited and echoed there: "thr<DEL>ee" is "thee"), and Ctrl-C ends a job whose
        // programs never read their input (jobs.rs, `relay`).
        ("exo> ", "wc\r"),
        ("wc", "one two\rthr\x7fee\r\x04"),
        ("2 3 13", ""),
        // Keys typed during a job that its program leaves unread reach the shell afterwards.
        ("exo> ", "hello\recho typed-ahead\r"),
        ("echo typed-ahead\r\ntyped-ahead", ""),
        // `cat` alone is the tool, not the built-in that prints a file.
        ("exo> ", "cat\r"),
        ("cat", "typed back\r\x04"),
        ("typed back\r\ntyped back", ""),
        ("exo> ", "yes ctrl-c-me | cat\r"),
        ("ctrl-c-me\r\nctrl-c-me", "\x03"),
        ("cat: interrupted", ""),
        // With `<`, no program reads the keys, but Ctrl-C still ends the job.
        ("exo> ", "yes redirected < /log/big.txt\r"),
        ("redirected\r\nredirected", "\x03"),
        ("yes: interrupted", ""),
        ("exo> ", "head -n 2 < /log/big.txt\r"),
        ("line 000000 of the hay file", ""),
        ("line 000001 of the straw file", ""),
        ("exo> ", "tail -n 1 /log/big.txt\r"),
        (&last, ""),
        ("exo> ", "tail -n many /log/big.txt\r"),
        ("tail: -n needs a number", ""),
        ("exo> ", "hexdump /log/big.txt | head -n 1\r"),
        ("00000000  6c 69 6e 65 20 30 30 30  30 30 30 20 6f 66 20 74  |line 000000 of t|", ""),
        ("exo> ", "grep -c needle /log/big.txt > /log/count.txt\r"),
        ("exo> ", "cat /log/count.txt\r"),
        (&count, ""),
        // Several files: the tool, one after the other.
        ("exo> ", "cat /log/count.txt /log/count.txt | wc\r"),
        (&format!("2 2 {}", 2 * (count.len() + 1)), ""),
        ("exo> ", "cat /log/missing.txt 2> /log/err.txt\r"),
        ("exo> ", "cat /log/err.txt\r"),
        ("/log/missing.txt: not found", ""),
        // Programs take relative paths from the shell's current directory, and words in
        // quotes keep their spaces on the way to a program (`cwd=`, `exo_libos::args`).
        ("exo> ", "cd /log\r"),
        ("exo> ", "exec grep -c needle big.txt\r"),
        (&count, ""),
        ("exo> ", "echo a b > \"sp ace.txt\"\r"),
        ("exo> ", "wc \"sp ace.txt\" ../log/count.txt\r"),
        ("1 2 4 sp ace.txt", ""),
        ("exo> ", "head -n 1 < \"sp ace.txt\"\r"),
        ("\na b\r\n", ""),
        ("exo> ", "cd /\r"),
        ("exo> ", "wc < /log/missing.txt\r"),
    ];
    // An input file that cannot be read stops the job before it starts: no `wc` output.
    // Ctrl-C drops what was typed ahead.
    let r = s.script(steps).and_then(|_| {
        let out = s.read_until("exo> ")?;
        ensure(out.contains("/log/missing.txt: not found") && !out.contains("0 0 0"), || {
            format!("`wc < /log/missing.txt` printed {out:?}")
        })?;
        s.script(&[("", "yes\recho dropped\r"), ("y\r\ny", "\x03"), ("yes: interrupted", "")])?;
        s.send("echo end\r")?;
        let out = s.read_until("end\r\nexo> ")?;
        ensure(!out.contains("dropped"), || format!("the keys typed before Ctrl-C ran: {out:?}"))?;
        s.send("exit 0\r")
    });
    close(s, r)?;
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

/// Reads the console until every one of `needles` has appeared since `log` began, in any
/// order (programs on other cores print when they get there); `log` keeps what was read.
fn gather(s: &mut Session, log: &mut String, needles: &[&str]) -> Result<(), String> {
    for n in needles {
        if !log.contains(n) {
            *log += &s.read_until(n)?;
            *log += n;
        }
    }
    Ok(())
}

/// Ends a session: at once if the script failed (the rest of the deadline would only look
/// like a hang), else once the shell has exited.
fn close(s: Session, r: Result<(), String>) -> Result<(), String> {
    if let Err(e) = r {
        return Err(format!("{e}\n{}", tail(&s.kill(), 25)));
    }
    let (end, out) = s.finish();
    ensure(end == End::Exited(0), || format!("ended {end:?}:\n{}", tail(&out, 20)))
}

/// The id after `name ` in the job line `[N] 0x..: a 0x.. | name 0x.. | ...` in `log`.
fn id_in_job(log: &str, name: &str) -> Result<String, String> {
    let key = format!(" {name} 0x");
    let line = log.lines().find(|l| l.contains("] 0x") && l.contains(&key));
    let line = line.ok_or(format!("no job line with {name} in {log:?}"))?;
    let at = line.find(&key).unwrap_or(0) + key.len() - 2;
    Ok(line[at..].split(|c: char| !c.is_ascii_hexdigit() && c != 'x').next().unwrap_or("").into())
}

/// What flows out of the background job below once its first 4 KiB have passed through
/// its middle: the hex dump's line for offset 0x1000 (lines of "y").
const FLOWED: &str = "00001000  79 0a 79 0a";
/// The end of that line. It is 78 bytes, so it reaches the console in two writes (at most
/// 64 bytes each) and whatever the test types next could be echoed between them: the test
/// waits for the second write too.
const FLOWED_END: &str = ".y.y.y.y.y.y.|";

fn background(board: Board) -> Result<(), String> {
    let card = card_copy(&format!("jobs-{}", board.name()))?;
    let mut s = session(board, &card)?;
    let r = (|| {
        s.expect("exo> ")?;
        let before = census(&mut s)?;
        // The last program prints one line, once data has gone through the middle one: the
        // test waits for that, not for any amount of time.
        s.send("yes | cat | hexdump | grep 00001000 &\r")?;
        let mut log = String::new();
        // The prompt that follows the job's line, whenever it came.
        gather(&mut s, &mut log, &["| hexdump 0x", FLOWED, FLOWED_END, "exo> "])?;
        let middle = id_in_job(&log, "cat")?;
        // The shell answers while the job runs (it never ends by itself).
        s.send("echo the shell answers\r")?;
        let answer = s.read_until("exo> ")?;
        ensure(answer.matches("the shell answers").count() == 2, || format!("no answer: {answer:?}"))?;
        s.send("jobs\r")?;
        let jobs = s.read_until("exo> ")?;
        ensure(jobs.contains("[1] running  yes | cat | hexdump | grep 00001000"), || {
            format!("jobs said {jobs:?}")
        })?;
        // Killing the middle: `hexdump` sees the end of its input, `grep` then too (its
        // status, 0 as it found the line, is the job's); `yes` finds no reader and stops.
        s.send(&format!("kill {middle}\r"))?;
        s.expect("exo> ")?;
        s.send("wait 1\r")?;
        s.expect("[1] done (exit status 0)  yes | cat | hexdump | grep 00001000")?;
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
    close(s, r)?;
    let _ = std::fs::remove_file(&card);
    Ok(())
}

/// The frame counts `exec` reported for environment `id`, in the order it printed them.
fn exec_reports(log: &str, id: &str) -> Vec<u64> {
    let head = format!("exec: env {id} holds ");
    log.lines()
        .filter_map(|l| l.split_once(&head))
        .filter_map(|(_, rest)| rest.split_whitespace().next()?.parse().ok())
        .collect()
}

fn exec(board: Board) -> Result<(), String> {
    let card = card_copy(&format!("exec-{}", board.name()))?;
    let mut s = session(board, &card)?;
    let r = (|| {
        s.expect("exo> ")?;
        // `exec` fills 4 MiB of heap and becomes `exec` again, which reports the frames it
        // holds once started — after the start-up freed the old image's — and reads `head`
        // through the file service (a right the environment kept); `head` then passes a
        // known count of lines between the kept pipes and ends the job.
        s.send("yes | exec -m 4 exec head -n 20000 | wc &\r")?;
        let mut log = String::new();
        gather(&mut s, &mut log, &["| wc 0x", "becomes head"])?;
        s.send("wait 1\r")?;
        gather(&mut s, &mut log, &["[1] done (exit status 0)"])?;
        s.expect("exo> ")?;
        let middle = id_in_job(&log, "exec")?;
        let frames = exec_reports(&log, &middle);
        let [before, after] = frames[..] else {
            return Err(format!("exec reported {frames:?} for {middle}:\n{log}"));
        };
        ensure(before > 1024, || format!("exec held only {before} frames with 4 MiB of heap"))?;
        // The second `exec` holds its own image, stack and heap (with `head`'s file in it):
        // about 200 frames, and the 1,024 of the ballast only if the old frames stayed.
        ensure(after < 512, || format!("{middle} held {before} frames before exec, {after} after"))?;
        ensure(log.contains("20000 20000 40000"), || format!("wc did not count 20000 lines:\n{log}"))?;
        s.send("exit 0\r")
    })();
    close(s, r)?;
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
