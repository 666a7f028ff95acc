//! `cargo xtask`: builds exo, boots it under QEMU, and runs every test.
//!
//! Run `cargo xtask help` for the commands. Each command sets up what it needs (the Rust
//! target through rustup, QEMU through `tools/install-qemu.sh`) or says exactly what to run.

mod bench;
mod build;
mod card;
mod chainboot;
mod doclinks;
mod image;
mod lints;
mod loader;
mod profile;
mod progress;
mod qemu;
mod sdtools;
mod serial;
mod symbols;
mod test;
mod test_chainload;
mod test_choice;
mod test_demo;
mod test_determinism;
mod test_fs;
mod test_image;
mod test_net;
mod test_pipes;
mod test_screen;
mod test_split;
mod trace;
mod util;

use std::process::ExitCode;

const HELP: &str = "\
cargo xtask <command> [options]

Commands:
  build                 Build the kernel, apps and chainloader; writes target/exo/kernel8.img
                        and target/exo/chainloader.img (no test code in either)
  image [options]       Write target/exo/sdcard.img, a card for a Raspberry Pi 4 and QEMU
                        (see `cargo xtask image --help`, docs/sdcard.md)
  chainboot --port DEV  Send the kernel to a board running the chainloader, then be its
                        terminal (see `cargo xtask chainboot --help`, docs/chainload.md)
  qemu [options]        Build, then boot exo in QEMU with the console on this terminal;
                        target/exo/sdcard.img is attached as its SD card (made if missing)
      --board virt|rpi4   Machine to emulate (default: virt)
      --gdb               Wait for a debugger on localhost:1234 (see `cargo xtask gdb`)
      --smp N             Cores on virt, 1 to 4 (default: 4; raspi4b always has 4)
      --test-image        Boot the test image, target/exo/test/kernel8.img, which has the
                          kernel's self-tests and init's test suites (exo.test=NAME)
      --append ARGS       Extra kernel bootargs (e.g. exo.log=debug)
      --http-port N       Host port (on 127.0.0.1) forwarded to the guest's port 80 on
                          virt's restricted user network (default: 8080)
      -- QEMU-ARGS        Anything after -- goes to QEMU as is
  test [options]        Run every test: host unit tests, lints, boot tests on both boards
                        (builds both images: the production one and the test image)
      --filter TEXT       Only tests whose name contains TEXT
      --no-host           Skip host unit tests and lints
      --board virt|rpi4   Only boot tests on this board
  bench [options]       Benchmarks under -icount: a table, target/exo/bench.json, bench.svg
      --board virt|rpi4   Only this board (default: both)
      --filter TEXT       Only benchmarks whose name contains TEXT
      --json FILE         Write the results here instead (the chart goes next to it)
      --smp N             Boot virt with N cores (default 4; raspi4b always has four)
  profile [options]     Guest instructions per function and call stack, kernel and programs,
                        with folded stacks and a flame graph (see `cargo xtask profile --help`)
      --boot | --bench NAME   What to profile (default: boot to the shell's prompt)
  fuzz [options]        Long seeded fuzzer runs with the isolation oracle, per board and seed
      --calls N           Calls per run (default 1000000)
      --seed S[,S..]      Seeds (default 1,2,4)
      --board virt|rpi4   Only this board (default: both)
  gdb [--test-image]    Attach gdb-multiarch to a QEMU started with `qemu --gdb`
  symbolize [--test-image] [FILE]
                        Add function names to kernel addresses in a log (stdin by default)
  help                  This text
";

fn main() -> ExitCode {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let (cmd, rest) = match args.split_first() {
        Some((c, r)) => (c.as_str(), r),
        None => ("help", &[][..]),
    };
    let result = match cmd {
        "build" => build::build_all().and_then(|_| loader::build()).map(|_| ()),
        "image" => image::cmd_image(rest),
        "chainboot" => chainboot::cmd_chainboot(rest),
        "qemu" => qemu::cmd_qemu(rest),
        "test" => test::cmd_test(rest),
        "gdb" => qemu::cmd_gdb(rest),
        "bench" => bench::cmd_bench(rest),
        "fuzz" => test::cmd_fuzz(rest),
        "profile" => profile::cmd_profile(rest),
        "symbolize" => symbols::cmd_symbolize(rest),
        "help" | "--help" | "-h" => {
            print!("{HELP}");
            Ok(())
        }
        other => Err(format!("unknown command `{other}`\n\n{HELP}")),
    };
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("error: {e}");
            ExitCode::FAILURE
        }
    }
}
