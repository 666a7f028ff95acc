//! The screen demo (`fbdemo`, run from the shell): on QEMU `raspi4b` it must draw the frame
//! table by owner with a legend and keep it live; on virt, which has no screen, it must say
//! so and give the shell back.
//!
//! The raspi4b check reads the emulated display through QEMU's monitor (`screendump`, as
//! `test_screen.rs` does) and looks at the picture's fixed layout (`apps/src/picture.rs`).

use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::{Duration, Instant};

use crate::qemu::{self, Board, RunSpec, Session};
use crate::test_image::{card_copy, scratch, Extra};
use crate::test_screen::screendump;

// The picture's layout and colours, as `apps/src/picture.rs` defines them.
const MARGIN: usize = 8;
const HEADER_Y: usize = 4;
const GRID_Y: usize = 28;
const GRID_H: usize = 60 * 4;
const LEGEND_Y: usize = 300;
const LINE_H: usize = 18;
const SWATCH: usize = 12;
const PALETTE: [u32; 12] = [
    0xe6_194b, 0x3c_b44b, 0xff_e119, 0x43_63d8, 0xf5_8231, 0x91_1eb4, 0x46_f0f0, 0xf0_32e6, 0xbc_f60c,
    0xfa_bebe, 0x00_8080, 0xe6_beff,
];
const WIDTH: usize = exo_bsp::drivers::bcm2835_mbox::FB_WIDTH as usize;

pub fn tests(boards: &[Board], v: &mut Vec<Extra>) {
    if boards.contains(&Board::Rpi4) {
        v.push(Extra::new(
            "rpi4::fbdemo_draws_every_environments_frames_in_its_legend_colour_and_refreshes".into(),
            demo_on_rpi4,
        ));
        v.push(Extra::new(
            "rpi4::init_cfg_can_run_fbdemo_in_the_foreground_for_a_screen_only_pi".into(),
            demo_from_init_cfg,
        ));
    }
    if boards.contains(&Board::Virt) {
        v.push(Extra::new(
            "virt::fbdemo_says_there_is_no_screen_and_returns_to_the_shell".into(),
            demo_on_virt,
        ));
    }
}

fn demo_on_virt() -> Result<(), String> {
    let image = crate::build::build_all()?.image;
    let spec = RunSpec {
        board: Board::Virt,
        image: &image,
        bootargs: String::new(),
        timeout: Duration::from_secs(60),
        extra: vec![],
    };
    let mut s = Session::start(&spec)?;
    let r = s.script(&[
        ("exo> ", "run fbdemo\n"),
        ("fbdemo: this board has no screen", ""),
        ("exo> ", "echo still here\n"),
        ("still here", ""),
    ]);
    s.kill();
    r
}

/// Boots the production image on raspi4b with a monitor socket (and `card`, if any).
fn start_rpi4(card: Option<&Path>) -> Result<(Session, PathBuf), String> {
    let image = crate::build::build_all()?.image;
    let sock = std::env::temp_dir().join(format!("exo-demo-{}.sock", std::process::id()));
    let _ = std::fs::remove_file(&sock);
    let mut extra = vec!["-monitor".into(), format!("unix:{},server=on,wait=off", sock.display())];
    extra.extend(card.map(|c| Board::Rpi4.disk_args(c)).unwrap_or_default());
    let spec = RunSpec {
        board: Board::Rpi4,
        image: &image,
        bootargs: String::new(),
        timeout: Duration::from_secs(120),
        extra,
    };
    Ok((Session::start(&spec)?, sock))
}

/// What a Pi owner without a serial cable does (README): `fsd` and the demo in
/// `/init.cfg`, so that init runs the demo in the foreground with the screen.
fn demo_from_init_cfg() -> Result<(), String> {
    let card = card_copy("demo-init-cfg")?;
    let cfg = scratch().join("demo-init.cfg");
    std::fs::write(&cfg, "fsd\n/fat/apps/fbdemo\n").map_err(|e| e.to_string())?;
    let mut cp = Command::new("mcopy");
    cp.env("MTOOLS_SKIP_CHECK", "1")
        .arg("-o")
        .arg("-i")
        .arg(crate::card::fat(&card))
        .arg(&cfg)
        .arg("::/init.cfg");
    crate::sdtools::run(&mut cp)?;
    let (mut s, sock) = start_rpi4(Some(&card))?;
    let r = s
        .script(&[("from /fat/init.cfg", ""), ("fbdemo: drawing on the 640x480 screen", "")])
        .and_then(|_| look(&sock));
    let out = s.kill();
    let _ = std::fs::remove_file(&sock);
    let _ = std::fs::remove_file(&card);
    r.map_err(|e| format!("{e}\n{}", qemu::tail(&out, 10)))
}

fn demo_on_rpi4() -> Result<(), String> {
    let (mut s, sock) = start_rpi4(None)?;
    let started = s.script(&[("exo> ", "run fbdemo\n"), ("fbdemo: drawing on the 640x480 screen", "")]);
    let checked = started.and_then(|_| look(&sock));
    // A key stops the demo and the shell takes the console back.
    let back = checked.and_then(|_| s.script(&[("", "q"), ("fbdemo: stopped after", ""), ("exo> ", "")]));
    let out = s.kill();
    let _ = std::fs::remove_file(&sock);
    back.map_err(|e| format!("{e}\n{}", qemu::tail(&out, 10)))
}

/// Takes screendumps until the demo has drawn twice (its header changed), then checks the
/// legend against the frame table.
fn look(sock: &Path) -> Result<(), String> {
    let shot = scratch().join("demo.ppm");
    let until = Instant::now() + Duration::from_secs(60);
    let mut first: Option<Vec<u32>> = None;
    while Instant::now() < until {
        std::thread::sleep(Duration::from_millis(500));
        let Ok(px) = screendump(sock, &shot) else { continue };
        let px: Vec<u32> = px.iter().map(|p| u32::from_be_bytes([0, p[0], p[1], p[2]])).collect();
        if px.len() != WIDTH * 480 {
            return Err(format!("the screen has {} pixels", px.len()));
        }
        // Wait for the legend (the first refresh), then for the header to change.
        if swatch(&px, 0).is_none() {
            continue;
        }
        match &first {
            None => first = Some(px),
            Some(a) if header(a) != header(&px) => return check_legend(&px),
            Some(_) => {}
        }
    }
    Err(match first {
        None => "the demo's legend never appeared on the screen".into(),
        Some(_) => "the demo's picture did not change in 60 s (no refresh)".into(),
    })
}

fn header(px: &[u32]) -> &[u32] {
    &px[HEADER_Y * WIDTH..(HEADER_Y + 16) * WIDTH]
}

/// The colour of legend line `i`'s swatch, if it is an environment's. QEMU shows the
/// words the demo writes as 0xRRGGBB with red and blue swapped (the display takes the
/// mailbox's "RGB" order the other way round), so either order counts.
fn swatch(px: &[u32], i: usize) -> Option<u32> {
    let c = px[(LEGEND_Y + i * LINE_H + 2 + SWATCH / 2) * WIDTH + MARGIN + SWATCH / 2];
    let swapped = (c & 0x00ff00) | (c >> 16 & 0xff) | (c & 0xff) << 16;
    (PALETTE.contains(&c) || PALETTE.contains(&swapped)).then_some(c)
}

/// Every environment in the legend (init, the shell, the demo at least) has frames in the
/// frame table drawn in its colour.
fn check_legend(px: &[u32]) -> Result<(), String> {
    let legend: Vec<u32> = (0..8).map_while(|i| swatch(px, i)).collect();
    if legend.len() < 3 {
        return Err(format!("the legend shows {} environments, expected at least 3", legend.len()));
    }
    let grid = &px[GRID_Y * WIDTH..(GRID_Y + GRID_H) * WIDTH];
    for (i, c) in legend.iter().enumerate() {
        if !grid.contains(c) {
            return Err(format!("legend line {i}'s colour {c:06x} is nowhere in the frame table"));
        }
    }
    Ok(())
}
