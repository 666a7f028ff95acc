//! `exo.test=hwcheck`: every board fact exo assumes or reads, one line each, for a person
//! to paste back (see `docs/qemu-vs-pi4.md`).
//!
//! A line reads `hwcheck: PASS|FAIL|INFO what: value`. PASS means the fact is one exo can
//! work with, FAIL one it cannot (or a device that should answer and did not), INFO a fact
//! that is only reported. The report is written through any [`fmt::Write`]; it reads the
//! hardware but changes nothing a user keeps (no sector of the card is written).

use core::fmt::{self, Write};

use crate::disk::{Disk, ProbeLog};
use crate::drivers::bcm2835_mbox::{Framebuffer, Mailbox, STATIC_BUFFER};
use crate::drivers::generic_timer;
use crate::dt::{Gic, PsciConduit};
use crate::{BlockDevice, Board};

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Verdict {
    Pass,
    Fail,
    Info,
}

/// The firmware clocks worth knowing on a Pi 4 (the firmware's numbering).
const FIRMWARE_CLOCKS: [(u32, &str); 6] =
    [(1, "emmc"), (2, "uart"), (3, "arm"), (4, "core"), (9, "pixel"), (12, "emmc2")];

/// Facts the kernel gathered before the report.
pub struct Facts<'a> {
    pub board: &'a Board,
    /// What each SD controller said when the disk was probed.
    pub probes: &'a ProbeLog,
    /// The disk attached (written only inside a scratch partition, see [`SCRATCH_TYPE`]).
    pub disk: Option<&'a mut Disk>,
    /// The framebuffer the console draws on.
    pub framebuffer: Option<Framebuffer>,
}

/// Counts of each verdict, and where the lines go.
pub struct Report<W: Write> {
    out: W,
    pub counts: [u32; 3],
}

impl<W: Write> Report<W> {
    pub fn new(out: W) -> Self {
        Report { out, counts: [0; 3] }
    }

    /// One line: `hwcheck: VERDICT what: value`.
    pub fn line(&mut self, v: Verdict, what: &str, value: fmt::Arguments) {
        self.counts[v as usize] += 1;
        let tag = ["PASS", "FAIL", "INFO"][v as usize];
        let _ = writeln!(self.out, "hwcheck: {tag} {what}: {value}");
    }

    pub fn fails(&self) -> u32 {
        self.counts[Verdict::Fail as usize]
    }

    /// The closing line, with the counts.
    pub fn finish(&mut self) {
        let [pass, fail, info] = self.counts;
        let _ = writeln!(self.out, "hwcheck: done: {pass} PASS, {fail} FAIL, {info} INFO");
    }
}

/// The MBR partition type of a scratch area `hwcheck` may write to: 0xDA, "non-FS data".
/// Only a card that has one gets the sector test, and only its first sector is touched
/// (its contents are put back).
pub const SCRATCH_TYPE: u8 = 0xda;

/// The `hwcheck` boot mode: reports everything the board tells on `out`, then ends the
/// machine with the verdict under a test runner (semihosting, as the bootargs say), or
/// idles so that a person can read the screen. `virt` maps a physical MMIO address to where
/// the kernel mapped it; `virt_to_phys` turns a kernel address into a physical one (for the
/// property calls that read a Pi's firmware clocks).
///
/// # Safety
/// As for [`Board::new`] (every device region mapped at `virt(base)`), and nothing else
/// may make property calls meanwhile.
pub unsafe fn run(
    facts: Facts,
    virt: impl Fn(u64) -> usize,
    virt_to_phys: fn(usize) -> u64,
    out: impl Write,
) -> ! {
    let board = facts.board;
    let mut r = Report::new(out);
    // SAFETY: the caller's contract is `report`'s.
    unsafe { report(facts, virt, virt_to_phys, &mut r) };
    r.finish();
    if crate::platform::config().semihosting {
        board.power_off(true, u32::from(r.fails() > 0));
    }
    loop {
        aarch64_cpu::asm::wfi(); // idle, so that a person can read the screen
    }
}

/// The report itself, one line per fact.
///
/// # Safety
/// As for [`run`].
pub unsafe fn report(
    facts: Facts,
    virt: impl Fn(u64) -> usize,
    virt_to_phys: fn(usize) -> u64,
    r: &mut Report<impl Write>,
) {
    use Verdict::*;
    let info = &facts.board.info;
    r.line(Info, "board", format_args!("{}", info.kind.name()));
    let hz = generic_timer::frequency();
    r.line(if hz > 0 { Pass } else { Fail }, "counter", format_args!("{hz} Hz (CNTFRQ_EL0)"));
    match info.gic {
        Some(Gic::V2 { dist, cpu }) => {
            let lines = facts.board.gic.lines();
            let ok = lines >= 64 && info.uart_intid.is_none_or(|i| (i as usize) < lines);
            let v = if ok { Pass } else { Fail };
            r.line(v, "gic", format_args!("v2, distributor {dist:#x}, cpu {cpu:#x}, {lines} lines"));
        }
        Some(Gic::V3 { dist, .. }) => r.line(Fail, "gic", format_args!("v3 at {dist:#x} (exo drives v2)")),
        None => r.line(Fail, "gic", format_args!("none in the device tree")),
    }
    r.line(Info, "timer", format_args!("virtual timer INTID {}", info.timer_intid));
    let ram = info.memory.total();
    let v = if ram >= 64 << 20 { Pass } else { Fail };
    r.line(v, "ram", format_args!("{} MiB in {} region(s)", ram >> 20, info.memory.as_slice().len()));
    for m in info.memory.as_slice() {
        r.line(Info, "ram region", format_args!("{:#x}..{:#x}", m.base, m.base + m.size));
    }
    for m in info.reserved.as_slice() {
        r.line(Info, "reserved", format_args!("{:#x}..{:#x}", m.base, m.base + m.size));
    }
    let start = match info.psci {
        Some(PsciConduit::Hvc) => "PSCI CPU_ON over hvc",
        Some(PsciConduit::Smc) => "PSCI CPU_ON over smc",
        None if !info.spin_table.as_slice().is_empty() => "their spin-table release addresses",
        None => "nothing (no way to start them)",
    };
    r.line(Info, "cores", format_args!("{} listed; the others started through {start}", info.cpus.len()));
    match (info.uart, info.kind.uart_clock()) {
        (Some(u), Some(c)) => {
            r.line(Info, "uart", format_args!("PL011 at {:#x}, clock {c} Hz assumed", u.base))
        }
        (Some(u), None) => r.line(Info, "uart", format_args!("PL011 at {:#x}, clock left as found", u.base)),
        (None, _) => r.line(Fail, "uart", format_args!("none in the device tree")),
    }
    for p in facts.probes.sd() {
        r.line(if p.result.is_ok() { Pass } else { Info }, "sd", format_args!("{p}"));
    }
    match facts.disk {
        Some(d) => {
            let sectors = d.sectors();
            r.line(Pass, "disk", format_args!("{}, {sectors} sectors ({} MiB)", d.name(), sectors >> 11));
            sector_test(d, r);
        }
        None => r.line(Info, "disk", format_args!("none found")),
    }
    if let Some(region) = info.mailbox {
        let Some(buf) = STATIC_BUFFER.get(virt_to_phys, info.soc_dma) else {
            r.line(Fail, "mailbox", format_args!("its buffer is outside the VideoCore's view of RAM"));
            return framebuffer(facts.framebuffer, info.mailbox.is_some(), r);
        };
        // SAFETY: the mailbox region is mapped at `virt(base)` (the caller's contract).
        let mailbox = unsafe { Mailbox::new(virt(region.base)) };
        for (id, name) in FIRMWARE_CLOCKS {
            // SAFETY: nothing else makes property calls meanwhile (caller's contract), so the
            // static buffer is ours; `buf.bus` is its VideoCore address.
            match unsafe { mailbox.get_clock_rate(buf, id) } {
                Ok(hz) => r.line(Pass, "firmware clock", format_args!("{name} (id {id}): {hz} Hz")),
                Err(e) => r.line(Fail, "firmware clock", format_args!("{name} (id {id}): {e:?}")),
            }
        }
    } else {
        r.line(Info, "mailbox", format_args!("none (not a Raspberry Pi)"));
    }
    framebuffer(facts.framebuffer, info.mailbox.is_some(), r)
}

/// The first sector of the scratch partition, if the disk's MBR has one.
pub fn scratch_sector(sector0: &[u8; 512]) -> Option<u64> {
    if sector0[510..] != [0x55, 0xaa] {
        return None;
    }
    let entries = sector0[446..510].chunks_exact(16);
    let e = entries.into_iter().find(|e| e[4] == SCRATCH_TYPE)?;
    let (start, len) = (u32::from_le_bytes([e[8], e[9], e[10], e[11]]), e[12..16] != [0; 4]);
    (start > 0 && len).then_some(u64::from(start))
}

/// Write, read back, compare, and put back the first sector of the scratch partition.
fn sector_test(d: &mut Disk, r: &mut Report<impl Write>) {
    use Verdict::*;
    let mut s0 = [0u8; 512];
    if let Err(e) = d.read(0, &mut [&mut s0[..]]) {
        return r.line(Fail, "sector test", format_args!("sector 0 unreadable: {e:?}"));
    }
    let Some(lba) = scratch_sector(&s0) else {
        return r.line(Info, "sector test", format_args!("skipped: no scratch partition (MBR type 0xda)"));
    };
    let (mut keep, mut back) = ([0u8; 512], [0u8; 512]);
    let pattern: [u8; 512] = core::array::from_fn(|i| (i as u8) ^ 0xa5 ^ (lba as u8));
    let step = d
        .read(lba, &mut [&mut keep[..]])
        .and_then(|_| d.write(lba, &[&pattern[..]]))
        .and_then(|_| d.read(lba, &mut [&mut back[..]]))
        .and_then(|_| d.write(lba, &[&keep[..]]))
        .and_then(|_| d.flush());
    match step {
        Ok(()) if back == pattern => {
            r.line(Pass, "sector test", format_args!("sector {lba} written, read back, compared, restored"))
        }
        Ok(()) => r.line(Fail, "sector test", format_args!("sector {lba} read back different")),
        Err(e) => r.line(Fail, "sector test", format_args!("sector {lba}: {e:?}")),
    }
}

fn framebuffer(fb: Option<Framebuffer>, mailbox: bool, r: &mut Report<impl Write>) {
    match (fb, mailbox) {
        (Some(f), _) => r.line(
            Verdict::Pass,
            "framebuffer",
            format_args!("{}x{} at 32 bpp, pitch {} bytes, at {:#x}", f.width, f.height, f.pitch, f.pa),
        ),
        (None, true) => {
            r.line(Verdict::Info, "framebuffer", format_args!("the firmware gave none (no screen?)"))
        }
        (None, false) => r.line(Verdict::Info, "framebuffer", format_args!("none (no screen on this board)")),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_a_partition_of_the_scratch_type_is_written() {
        let mut s0 = [0u8; 512];
        let entry = |s0: &mut [u8; 512], i: usize, kind: u8, start: u32, len: u32| {
            let e = &mut s0[446 + 16 * i..446 + 16 * (i + 1)];
            e[4] = kind;
            e[8..12].copy_from_slice(&start.to_le_bytes());
            e[12..16].copy_from_slice(&len.to_le_bytes());
        };
        entry(&mut s0, 0, 0x0c, 2048, 4096);
        assert_eq!(scratch_sector(&s0), None, "no signature");
        s0[510..].copy_from_slice(&[0x55, 0xaa]);
        assert_eq!(scratch_sector(&s0), None, "a FAT partition is a user's data");
        entry(&mut s0, 2, 0xda, 14336, 0);
        assert_eq!(scratch_sector(&s0), None, "an empty scratch entry");
        entry(&mut s0, 2, 0xda, 14336, 2048);
        assert_eq!(scratch_sector(&s0), Some(14336));
    }

    #[test]
    fn lines_are_tagged_and_counted() {
        let mut s = String::new();
        let mut r = Report::new(&mut s);
        r.line(Verdict::Pass, "counter", format_args!("{} Hz", 54_000_000));
        r.line(Verdict::Fail, "gic", format_args!("none"));
        r.line(Verdict::Info, "disk", format_args!("none found"));
        r.line(Verdict::Info, "sd", format_args!("x"));
        assert_eq!(r.counts, [1, 1, 2]);
        assert_eq!(r.fails(), 1);
        assert_eq!(
            s,
            "hwcheck: PASS counter: 54000000 Hz\nhwcheck: FAIL gic: none\n\
             hwcheck: INFO disk: none found\nhwcheck: INFO sd: x\n"
        );
    }
}
