//! `exec`: replacing this environment's program with another ELF, in place.
//!
//! Everything the kernel attaches to an environment stays, because the environment does:
//! its id (its parent still waits for it), its frame quota, its sector bindings, its call
//! rights, the console input if it holds it, and its children. The standard descriptors
//! stay too: their pipe pages are not touched. What goes is the old program's address
//! space — image, heap, stack, other mappings — and the frames it owned there.
//!
//! The libOS does it with ordinary calls. The old program loads the new one's pages into
//! frames of its own (unmapped), builds a list of table changes — every old mapping
//! cleared, every new page mapped — and jumps to a few instructions it copied to a page of
//! their own (`AREA`), outside both images. They apply the list with `TableSetBatch` and
//! start the new program on its new stack. The new program's start-up frees the frames the
//! old program mapped — their addresses are in `AREA` too, gathered with the list — then
//! `AREA` itself. Freeing by that list costs a call per old frame: 0.34 ms of guest time
//! for the 1,200 frames of the exec test on `virt`, where a walk of the whole frame table
//! (`process::reclaim`) took 30 ms with 256 MiB, and grows with the RAM. The kernel needs
//! no call of its own for this.

extern crate alloc;

use alloc::vec::Vec;

use exo_abi::pte::{Perm, Pte};
use exo_abi::{EnvId, Error, TableOp};
use exo_format::elf::Elf;

use crate::spawn::{self, SpawnError};
use crate::vm::{self, PAGE, RW, STACK_SIZE, STACK_TOP};
use crate::{fd, sys};

/// Where `exec` puts its trampoline (first page) and its list of table changes: past the
/// other mappings, in the last 4 GiB of the first 512 GiB, outside both programs' layouts.
pub const AREA: u64 = 0x7f_0000_0000;

#[cfg(target_os = "none")]
core::arch::global_asm!(
    ".section .text.exo_exec, \"ax\"",
    ".global exo_exec_stub",
    ".global exo_exec_stub_end",
    // x0: the list, x1: its length, x2: the entry, x3: the StartInfo (and stack top),
    // x4: START_MAGIC. Uses no memory of the old program: registers and this page only.
    "exo_exec_stub:",
    "    mov x19, x0",
    "    mov x20, x1",
    "    mov x21, x2",
    "    mov x22, x3",
    "    mov x23, x4",
    "1:  cbz x20, 2f",
    "    mov x24, #512",
    "    cmp x20, x24",
    "    csel x24, x20, x24, lo",
    "    mov x0, xzr",
    "    mov x1, x19",
    "    mov x2, x24",
    "    mov x8, #8", // TableSetBatch
    "    svc #0",
    "    cmp x0, x24",
    "    b.ne 3f",
    "    mov x25, #24",
    "    madd x19, x24, x25, x19",
    "    sub x20, x20, x24",
    "    b 1b",
    "2:  mov sp, x22",
    "    mov x0, x22",
    "    mov x1, x23",
    "    mov x29, xzr",
    "    mov x30, xzr",
    "    br x21",
    // The old program is half gone: nothing to return to.
    "3:  mov x0, #126",
    "    mov x8, #34", // Exit
    "    svc #0",
    "    b 3b",
    "exo_exec_stub_end:",
);

unsafe extern "C" {
    static exo_exec_stub: u8;
    static exo_exec_stub_end: u8;
}

/// Replaces this program with `file`, started with `args`. Returns only if it could not
/// (the old program is then intact).
pub fn exec(file: &[u8], args: &str) -> SpawnError {
    match prepare(file, args) {
        // SAFETY: `stub` is the trampoline's copy, mapped executable at AREA; it takes
        // these five arguments, applies the list (which `prepare` checked fits the pages
        // mapped for it) and never returns.
        Ok((stub, list, count, entry)) => unsafe {
            let f: extern "C" fn(u64, u64, u64, u64, u64) -> ! = core::mem::transmute(stub as usize);
            f(list, count, entry, STACK_TOP - PAGE, crate::rt::START_MAGIC)
        },
        Err(e) => e,
    }
}

/// Everything but the jump: the trampoline's address, the list's and its length, and the
/// new program's entry.
fn prepare(file: &[u8], args: &str) -> Result<(u64, u64, u64, u64), SpawnError> {
    let elf = crate::spawn::parse(file, args)?;
    let me = vm::me();
    // Stack pages still owed (a forked child's) are mapped now, so that the walks below
    // see every page there will be: one faulted in after them would stay mapped, its frame
    // never freed. Nothing is owed again in this program (only a fork's child is owed).
    crate::owed::touch(0, u64::MAX);
    let mut new: Vec<TableOp> = Vec::new();
    let mut made: Vec<u64> = Vec::new();
    let r = load(&elf, args, me, &mut new, &mut made);
    let built = r.and_then(|(pages, count)| trampoline(&new, pages, count as usize));
    match built {
        Ok((stub, list, count)) => {
            // No calls may reach the old program's code any more.
            let _ = sys::pct_register(0, 0);
            Ok((stub, list, count, elf.entry))
        }
        Err(e) => {
            for pa in made {
                let _ = sys::table_unbind(me, pa); // the fresh tables for frozen ones
                let _ = sys::frame_free(me, pa);
            }
            Err(e.into())
        }
    }
}

/// Fills frames with the new program and its stack; `new` gets their mappings, `made` the
/// frames. Returns how many pages `AREA` will need for the whole list, and how many
/// changes it may hold.
fn load(
    elf: &Elf,
    args: &str,
    me: EnvId,
    new: &mut Vec<TableOp>,
    made: &mut Vec<u64>,
) -> Result<(u64, u64), Error> {
    // The whole list's size first (old mappings to clear, new pages), for the StartInfo;
    // the vectors are sized now so that loading maps no more heap pages.
    let n_new = STACK_SIZE / PAGE + elf.pages().count() as u64;
    new.reserve(n_new as usize);
    made.reserve(n_new as usize);
    let mut count = n_new + SLACK;
    vm::for_each_mapping(|va, _| count += !kept(va) as u64);
    vm::for_each_mapping_in(true, |_| false, |_, _| count += 1);
    let exec_pages = 1 + list_pages(count) + (count * 24).div_ceil(PAGE);
    let fds = core::array::from_fn(fd::kind_of);
    // A frozen table (shared whole with children, or an ancestor's) cannot be cleared
    // entry by entry: the list unlinks it and links a fresh one in its place. The kernel
    // empties it once nothing shares it any more.
    let mut frozen = Ok(());
    vm::regions(|region, l3| {
        if frozen.is_ok() && region != vm::TABLE_WINDOW && vm::frozen(l3) {
            frozen = sys::frame_alloc(me, None).and_then(|pa| {
                made.push(pa);
                sys::table_bind(me, pa, 3)?;
                new.push(TableOp { va: region, level: 2, pte: 0 });
                new.push(TableOp { va: region, level: 2, pte: Pte::table(pa).0 });
                Ok(())
            });
        }
    });
    frozen?;
    let mut page = |va: u64, perm: Perm, fill: &dyn Fn(&mut [u8])| -> Result<(), Error> {
        let pa = vm::fill_new_frame(|p| fill(p))?;
        made.push(pa);
        vm::ensure_tables(me, va)?;
        new.push(TableOp { va, level: 3, pte: Pte::user_page(pa, perm).0 });
        Ok(())
    };
    for p in elf.pages() {
        page(p.va, p.perm, &|f: &mut [u8]| crate::mem::copy(&mut f[p.at..p.at + p.bytes.len()], p.bytes))?;
    }
    let mut va = STACK_TOP - STACK_SIZE;
    while va < STACK_TOP - PAGE {
        page(va, RW, &|_: &mut [u8]| {})?;
        va += PAGE;
    }
    page(STACK_TOP - PAGE, RW, &|p: &mut [u8]| spawn::start_info(p, args, fds, exec_pages))?;
    Ok((exec_pages, count))
}

/// Room in the list for heap pages mapped between counting and listing.
const SLACK: u64 = 64;

/// Pages at `AREA + PAGE` for the old frames' list (a count, then up to `count` addresses);
/// the table changes follow it.
fn list_pages(count: u64) -> u64 {
    (8 + count * 8).div_ceil(PAGE)
}

/// Mappings `exec` leaves alone: the descriptors' pipe pages, and its own area (all of it:
/// the list takes more than one 2 MiB region for a program with over 87,000 mappings).
fn kept(va: u64) -> bool {
    va & !(vm::REGION - 1) == fd::FD_BASE & !(vm::REGION - 1) || va >= AREA
}

/// Maps the trampoline and the list (old mappings cleared, then `new`) at `AREA`.
fn trampoline(new: &[TableOp], pages: u64, count: usize) -> Result<(u64, u64, u64), Error> {
    // Both allocated before the walk (the heap maps what it grows by at once), so the walk
    // sees every heap page there will be. `old`: the old frames' count, then each.
    let mut list: Vec<TableOp> = Vec::with_capacity(count);
    let mut old: Vec<u64> = Vec::with_capacity(count + 1);
    old.push(0);
    vm::for_each_mapping(|va, e| {
        if !kept(va) {
            list.push(TableOp { va, level: 3, pte: 0 });
            old.push(Pte(e).addr());
        }
    });
    // Pages of frozen tables go with the unlinking (`load`); those still shared with a
    // child stay mapped there, and the kernel refuses to free them.
    vm::for_each_mapping_in(true, |_| false, |_, e| old.push(Pte(e).addr()));
    old[0] = old.len() as u64 - 1;
    list.extend_from_slice(new);
    let skip = list_pages(count as u64);
    let bytes = (list.len() * 24) as u64;
    if list.len() > count || 1 + skip + bytes.div_ceil(PAGE) > pages {
        return Err(Error::Invalid); // the space changed while loading
    }
    // The trampoline: copied, then mapped read-only and executable.
    let (start, end) = (&raw const exo_exec_stub as u64, &raw const exo_exec_stub_end as u64);
    // SAFETY: the trampoline's instructions, in this program's text (readable), between
    // two symbols of the same section.
    let code = unsafe { core::slice::from_raw_parts(start as *const u8, (end - start) as usize) };
    let stub = vm::fill_new_frame(|p| p[..code.len()].copy_from_slice(code))?;
    vm::map(AREA, Pte::user_page(stub, Perm { write: false, exec: true }).0)?;
    for p in 1..pages {
        vm::map_new(AREA + p * PAGE, RW)?;
    }
    let at = AREA + (1 + skip) * PAGE;
    // SAFETY: `pages - 1` pages are mapped read-write at AREA + PAGE just above; the old
    // frames' list (at most `count` + 1 words) fits in the first `skip` of them and the
    // table changes in the rest (both checked); u64 and TableOp are plain data.
    let frames = unsafe { core::slice::from_raw_parts_mut((AREA + PAGE) as *mut u64, old.len()) };
    frames.copy_from_slice(&old);
    // SAFETY: as above: `at` is past the old frames' list, inside the mapped pages.
    let dst = unsafe { core::slice::from_raw_parts_mut(at as *mut TableOp, list.len()) };
    dst.copy_from_slice(&list);
    Ok((AREA, at, list.len() as u64))
}

/// In the new program, from start-up: frees what `exec` left — the frames the old program
/// mapped (those still mapped elsewhere, or not ours, stay: the kernel refuses them), then
/// its area.
pub(crate) fn finish(pages: u64) -> Result<(), Error> {
    if pages == 0 {
        return Ok(());
    }
    vm::reserve(AREA)?;
    let me = vm::me();
    let room = ((pages.saturating_sub(1)) * PAGE / 8).saturating_sub(1);
    // SAFETY: the old program mapped `pages` pages at AREA, which the list of changes left
    // alone; past the trampoline's page comes the count of old frames, then their
    // addresses (bounded by the pages mapped, in case the count were wrong).
    let n = unsafe { ((AREA + PAGE) as *const u64).read() }.min(room);
    for i in 1..=n {
        // SAFETY: i <= n <= room: a word inside the mapped pages.
        let pa = unsafe { ((AREA + PAGE + i * 8) as *const u64).read() };
        if sys::frame_free(me, pa) == Err(Error::Busy) {
            crate::process::orphaned(pa); // a child still maps it
        }
    }
    for p in 0..pages {
        vm::unmap_free(AREA + p * PAGE)?;
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_old_frames_list_and_its_count_fit_the_pages_set_aside_for_them() {
        for count in [0, 1, 510, 511, 512, 1273, 4096, 100_000] {
            assert!(list_pages(count) * PAGE >= 8 * (count + 1), "{count} frames");
        }
    }
}
