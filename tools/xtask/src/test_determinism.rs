//! Determinism under `-icount` with four cores: the same test-image run, booted twice,
//! prints the same console output byte for byte — boot log, instruction counts and all.
//! The run keeps all four cores busy across each other: a PCT round trip to a server on
//! another core, four environments doing null system calls and frame cycles on four
//! cores. No disk is attached: virtio-blk completes on a QEMU host thread, which no
//! `-icount` setting makes repeatable (docs/multicore.md).

use std::time::Duration;

use crate::build::Variant;
use crate::qemu::{Board, End, RunSpec, Session};
use crate::test_image::{ensure, Extra};

/// The benchmarks the run does (bench.rs / smpbench.rs in apps).
const WORK: &str = "pct_round_trip_cross_core,scale_null_syscall_4_cores,scale_frame_cycle_4_cores";

pub fn tests(boards: &[Board], out: &mut Vec<Extra>) {
    for &b in boards {
        out.push(Extra::new(
            format!("{}::two_runs_on_four_cores_under_icount_print_the_same_output_and_counts", b.name()),
            move || twice(b),
        ));
    }
}

fn run(board: Board) -> Result<String, String> {
    let image = Variant::Test.artifacts().image;
    let spec = RunSpec {
        board,
        image: &image,
        bootargs: format!("exo.test=bench exo.bench=micro exo.filter={WORK}"),
        timeout: Duration::from_secs(300),
        extra: vec![],
    };
    let (end, out) = Session::start(&spec)?.finish();
    ensure(end == End::Exited(0), || format!("the run ended with {end:?}\n{}", crate::qemu::tail(&out, 20)))?;
    Ok(out)
}

/// `out` without QEMU's own messages on its stderr (raspi4b warns that it disabled the
/// PCIe controller): they come through another pipe, so they land among the guest's output
/// wherever the host's scheduling puts them, even mid-line. Each is one write, to its
/// newline.
fn guest_output(out: &str) -> String {
    let mut rest = out;
    let mut kept = String::with_capacity(out.len());
    while let Some(i) = rest.find("qemu-system-aarch64: ") {
        kept.push_str(&rest[..i]);
        rest = rest[i..].split_once('\n').map_or("", |(_, after)| after);
    }
    kept + rest
}

fn twice(board: Board) -> Result<(), String> {
    let (a, b) = (guest_output(&run(board)?), guest_output(&run(board)?));
    let rows = crate::bench::parse(board.name(), &a);
    ensure(rows.len() == 3, || format!("expected 3 benchmark results, got {}:\n{a}", rows.len()))?;
    ensure(a.contains("cores: 4 of 4 up"), || "not four cores up".into())?;
    if a == b {
        return Ok(());
    }
    let (i, (x, y)) = a
        .lines()
        .zip(b.lines())
        .enumerate()
        .find(|(_, (x, y))| x != y)
        .unwrap_or((a.lines().count().min(b.lines().count()), ("(end)", "(end)")));
    Err(format!("the two runs differ first at line {}:\n  first:  {x}\n  second: {y}", i + 1))
}

#[cfg(test)]
mod tests {
    #[test]
    fn qemus_own_messages_are_taken_out_wherever_they_land() {
        let warn = "qemu-system-aarch64: warning: bcm2711-pcie has been disabled\n";
        let guest = "exo 0.1.0\nbench a ops=1 per_op=2\n";
        for at in [0, 4, 10, guest.len()] {
            let mixed = format!("{}{warn}{}", &guest[..at], &guest[at..]);
            assert_eq!(super::guest_output(&mixed), guest, "{mixed:?}");
        }
    }
}
