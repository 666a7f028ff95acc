//! `lfs`: the host tool for exo's log-structured file system — make, check, inspect and fill
//! images (whole files, byte offsets, or MBR partitions) with the same core the libOS uses.
#![forbid(unsafe_code)]

mod cmds;
mod image;

use std::process::ExitCode;

const HELP: &str = "\
lfs — exo log-structured file system tool

USAGE: lfs COMMAND IMAGE [ARGS] [OPTIONS]

IMAGE is one of
  FILE            the whole file holds the file system
  FILE@OFFSET     it starts OFFSET bytes into FILE (K/M/G suffixes allowed)
  FILE#N          it is MBR primary partition N (1-4) of the disk image FILE

COMMANDS
  mkfs IMAGE [--size SIZE] [--segment-size SIZE] [--inodes N]
                      make a new, empty file system (SIZE like 64M; segment 64K..16M,
                      default 1M; --size creates or grows FILE)
  fsck IMAGE [-v]     check every invariant; exit 0 only when clean
  ls IMAGE [PATH] [-l]
  cat IMAGE PATH      write a file to stdout
  get IMAGE PATH [HOSTFILE]   copy a file out (stdout when HOSTFILE is missing or -)
  put IMAGE HOSTFILE PATH     copy a host file in (HOSTFILE - reads stdin); replaces PATH
  rm IMAGE PATH [-r]  remove a file or empty directory (-r: a whole tree)
  mkdir IMAGE PATH [-p]
  stat IMAGE PATH
  df IMAGE            space, segments and write-amplification counters
  clean IMAGE         run the segment cleaner
  help                this text

EXIT STATUS: 0 success, 1 the operation failed or fsck found problems, 2 bad usage.
";

fn main() -> ExitCode {
    let args: Vec<String> = std::env::args().skip(1).collect();
    match args.first().map(String::as_str) {
        None | Some("help" | "--help" | "-h") => {
            print!("{HELP}");
            if args.is_empty() {
                return ExitCode::from(2);
            }
            ExitCode::SUCCESS
        }
        Some(cmd) => match cmds::run(cmd, &args[1..]) {
            Ok(code) => ExitCode::from(code),
            Err(cmds::Fail::Usage(m)) => {
                eprintln!("lfs: {m}\nTry `lfs --help`.");
                ExitCode::from(2)
            }
            Err(cmds::Fail::Op(m)) => {
                eprintln!("lfs: {m}");
                ExitCode::from(1)
            }
        },
    }
}
