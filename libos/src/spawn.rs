//! `spawn`: starting a program from an ELF file in a new, blank child environment.
//!
//! Library code from start to end: the parent checks the ELF, fills frames of its own with
//! the segments through a scratch mapping, gives each to the child and maps it there,
//! builds the child's stack with a [`StartInfo`] on top, grants it disk extents, and starts
//! it. The kernel only sees checked frame, table and environment calls.

use exo_abi::pte::{Perm, Pte};
use exo_abi::{EnvId, Error};
use exo_format::elf::{Elf, ElfError};

use crate::rt::{StartInfo, START_MAGIC};
use crate::sys;
use crate::vm::{self, PAGE, RW, STACK_SIZE, STACK_TOP};

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum SpawnError {
    /// The file is not a loadable AArch64 executable (or a segment asks to be writable and
    /// executable: [`ElfError::WriteExec`]).
    BadElf(ElfError),
    /// A segment reaches past the program's part of the address space (it must end by
    /// [`vm::PUBLIC_BASE`]: the libOS's windows, stack and heap lie above).
    Layout,
    /// The arguments do not fit in [`StartInfo`].
    ArgsTooLong,
    /// The kernel refused something (out of memory, quota, no slot, ...).
    Sys(Error),
}

impl From<Error> for SpawnError {
    fn from(e: Error) -> Self {
        SpawnError::Sys(e)
    }
}

/// What the child gets besides its program.
#[derive(Clone, Copy, Default)]
pub struct Options<'a> {
    /// Frames the child may hold (0: only the parent's limit).
    pub quota: u32,
    /// Disk extents to grant: (first sector, count, rights).
    pub sectors: &'a [(u64, u64, u32)],
    /// Environments the child may make protected control transfers to.
    pub calls: &'a [EnvId],
    /// Hand the child the console input before it starts (the caller must hold it): for a
    /// program run in the foreground. It comes back to the caller when the child dies.
    pub console: bool,
    /// The cores the child may run on (bit i: core i; 0: the caller's own cores).
    pub cores: u8,
    /// The child's stdin, stdout and stderr (by default, the caller's own).
    pub stdio: [crate::fd::Stdio<'a>; crate::fd::COUNT],
    /// Build the child but do not start it: the caller starts it (`sys::env_start`) once
    /// everything it is to be connected with exists (a pipeline's other programs).
    pub hold: bool,
    /// The parts of the network the child may bind (see [`Net`]): none by default.
    pub net: Net<'a>,
    /// Give the child the frames of the screen the caller holds (see [`crate::screen`]):
    /// for a program run in the foreground. They come back when the child dies.
    pub screen: bool,
    /// The child may not write to the console (its `ConsoleWrite`s are refused). By
    /// default it may, if the caller may ([`pass_console`]).
    pub quiet: bool,
}

/// Lets `child` write to the console if the caller may (`ConsoleAllow`); a caller that may
/// not has nothing to pass on, and its child is as quiet as it is.
pub fn pass_console(child: EnvId) -> Result<(), Error> {
    match sys::console_allow(child, true) {
        Err(Error::Denied) => Ok(()), // (a child of the caller's: only the caller's own right is missing)
        r => r,
    }
}

/// What of the caller's network a child gets ([`crate::sys::net_grant`]).
#[derive(Clone, Copy, Debug, Default)]
pub enum Net<'a> {
    /// Nothing: its `NetBind`s are refused.
    #[default]
    None,
    /// Every scope the caller holds.
    All,
    /// These scopes, each within one of the caller's.
    Only(&'a [exo_abi::net::NetScope]),
}

/// Loads `file` into a new child and starts it with `args`. The child is the caller's to
/// wait for.
pub fn spawn(file: &[u8], args: &str, opts: Options) -> Result<EnvId, SpawnError> {
    let elf = parse(file, args)?;
    let child = sys::env_create(opts.quota)?;
    match build(child, &elf, args, opts) {
        Ok(()) => Ok(child),
        Err(e) => {
            let _ = sys::env_destroy(child);
            Err(e)
        }
    }
}

/// `file` parsed and checked, with `args`, before anything is built (for `exec` too).
pub(crate) fn parse<'a>(file: &'a [u8], args: &str) -> Result<Elf<'a>, SpawnError> {
    let elf = Elf::parse(file).map_err(SpawnError::BadElf)?;
    if elf.segments().any(|s| s.vaddr + s.mem_size > vm::PUBLIC_BASE) {
        return Err(SpawnError::Layout); // (the parser checked that the sum does not overflow)
    }
    if args.len() > 1024 {
        return Err(SpawnError::ArgsTooLong);
    }
    Ok(elf)
}

fn build(child: EnvId, elf: &Elf, args: &str, opts: Options) -> Result<(), SpawnError> {
    let root = sys::frame_alloc(child, None)?;
    sys::table_bind(child, root, 0)?;
    let mut tables = Tables { child, covered: u64::MAX };
    for p in elf.pages() {
        tables.give_page(p.va, p.perm, |page| {
            crate::mem::copy(&mut page[p.at..p.at + p.bytes.len()], p.bytes)
        })?;
    }
    let fds = crate::fd::give(child, &opts.stdio)?;
    // The stack: the top page holds the StartInfo, the stack grows down below it.
    let info_va = STACK_TOP - PAGE;
    tables.give_page(info_va, RW, |page| start_info(page, args, fds, 0))?;
    let mut va = STACK_TOP - STACK_SIZE;
    while va < info_va {
        let pa = sys::frame_alloc(child, None)?;
        tables.map(va, Pte::user_page(pa, RW))?;
        va += PAGE;
    }
    for &(start, count, rights) in opts.sectors {
        sys::sector_grant(child, start, count, rights)?;
    }
    for &target in opts.calls {
        sys::pct_allow(child, target)?;
    }
    grant_net(child, opts.net)?;
    if !opts.quiet {
        pass_console(child)?;
    }
    sys::env_set_entry(child, elf.entry, info_va, info_va, START_MAGIC)?;
    if opts.cores != 0 {
        sys::env_set_affinity(child, opts.cores)?;
    }
    if opts.console {
        sys::console_give(child)?;
    }
    if opts.screen {
        crate::screen::give(child)?;
    }
    if !opts.hold {
        sys::env_start(child)?;
    }
    Ok(())
}

/// The StartInfo page's contents, for a program given `args` and descriptors `fds`.
pub(crate) fn start_info(page: &mut [u8], args: &str, fds: [u32; crate::fd::COUNT], exec_pages: u64) {
    let mut si = StartInfo {
        kinfo_pa: vm::with(|s| s.kinfo_pa),
        args_len: args.len() as u64,
        args: [0; 1024],
        fds,
        exec_pages,
    };
    si.args[..args.len()].copy_from_slice(args.as_bytes());
    // SAFETY: StartInfo is plain data smaller than a page; we copy its bytes.
    let raw = unsafe {
        core::slice::from_raw_parts(&si as *const StartInfo as *const u8, core::mem::size_of::<StartInfo>())
    };
    page[..raw.len()].copy_from_slice(raw);
}

/// The child's tables, made sure of once per 2 MiB region as pages go in (pages arrive in
/// address order, so each region's tables are walked for once, not once per page).
struct Tables {
    child: EnvId,
    covered: u64,
}

impl Tables {
    fn map(&mut self, va: u64, pte: Pte) -> Result<(), Error> {
        let region = va & !(vm::REGION - 1);
        if self.covered != region {
            vm::ensure_tables(self.child, va)?;
            self.covered = region;
        }
        sys::table_set(self.child, va, 3, pte.0)
    }

    /// Fills a fresh frame, gives it to the child and maps it at `va`.
    fn give_page(&mut self, va: u64, perm: Perm, fill: impl FnOnce(&mut [u8])) -> Result<(), Error> {
        let pa = vm::fill_new_frame(fill)?;
        sys::frame_give(pa, self.child)?;
        self.map(va, Pte::user_page(pa, perm))
    }
}

/// Gives `child` what `net` says of the caller's network; a machine without a network
/// device has none to give, which is no error.
pub(crate) fn grant_net(child: EnvId, net: Net) -> Result<(), Error> {
    let r = match net {
        Net::None => Ok(()),
        Net::All => sys::net_grant(child, None),
        Net::Only(scopes) => scopes.iter().try_for_each(|s| sys::net_grant(child, Some(s))),
    };
    r.or_else(|e| if e == Error::NotFound { Ok(()) } else { Err(e) })
}
