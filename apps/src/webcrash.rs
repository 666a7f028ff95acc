//! `exo.test=webcrash`: the web server dies mid-download and everything else goes on.
//!
//! init starts `fsd` and `httpd` (as the default boot does) and then follows the host's
//! orders on the console: `k` kills httpd while the host holds connections to it, one of
//! them in the middle of a large download (`EnvDestroy`: in the kernel, the same teardown
//! a fault or a panic ends in, without any cleanup by httpd itself); init then checks that
//! fsd still serves files and starts a second httpd, which must be able to bind port 80
//! again; `q` ends the run. The host's side is `tools/xtask/src/test_net.rs`.

use alloc::format;

use exo_libos::abi::EnvId;
use exo_libos::fs::{service, Vfs};
use exo_libos::spawn::{self, Options};
use exo_libos::{println, sys, vm};

use crate::fstest::start_fsd;
use crate::runner::built_in;

/// Waits (blocking on the console) for the key `key`; other keys are ignored.
fn key(key: u8) {
    while sys::console_read(true).is_ok_and(|k| k != key) {}
}

fn httpd(elf: &[u8], fsd: EnvId) -> Result<EnvId, &'static str> {
    let opts = Options { calls: &[fsd], net: spawn::Net::All, ..Options::default() };
    spawn::spawn(elf, &format!("fsd={:#x}", fsd.0), opts).map_err(|_| "cannot start httpd")
}

fn steps(programs: &[(&str, &[u8])]) -> Result<(), &'static str> {
    let elf = built_in(programs, "httpd")?;
    let fsd = start_fsd(programs)?;
    let first = httpd(elf, fsd)?;
    println!("webcrash: httpd {:#x} started (k kills it)", first.0);
    key(b'k');
    sys::env_destroy(first).map_err(|_| "cannot kill httpd")?;
    let gone = vm::env_info(first).is_none_or(|i| i.id != first.0);
    println!("webcrash: httpd killed ({})", if gone { "gone" } else { "still there" });
    // The rest goes on: the file service still serves a file.
    sys::pct_allow(EnvId::SELF, fsd).map_err(|_| "pct_allow")?;
    let mut vfs = Vfs::new();
    service::mount_remote(&mut vfs, fsd).map_err(|_| "fsd no longer answers")?;
    let n = vfs.read_to_vec("/fat/config.txt").map_err(|_| "fsd cannot read config.txt")?.len();
    println!("webcrash: fsd still serves ({n} bytes of /fat/config.txt)");
    let second = httpd(elf, fsd)?;
    println!("webcrash: a new httpd {:#x} started (q ends)", second.0);
    key(b'q');
    let _ = sys::env_destroy(second);
    let _ = sys::env_destroy(fsd);
    Ok(())
}

/// The mode's entry: 0 if every step went through.
pub fn run(programs: &[(&str, &[u8])]) -> i32 {
    match steps(programs) {
        Ok(()) => 0,
        Err(e) => {
            println!("webcrash: {e}");
            1
        }
    }
}
