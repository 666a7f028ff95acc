//! Namespace operations: open (create, truncate), mkdir, remove and rename.
//!
//! Making a directory goes through the crate, and so does creating a file's entry when
//! its directory has no free slot (the crate grows it); otherwise the entry is written
//! here. Removing and renaming are done here, because the crate's delete leaves the clusters allocated and the long
//! name's slots behind, and it has no rename: both would show as errors in `fsck.vfat`.

extern crate alloc;

use super::bpb::{FatType, Geometry};
use super::dir::{self, Dir, DirLoc, Entry, ATTR_READ_ONLY};
use super::name::{alias, display, long_name, long_slots, short_name};
use super::table::{Chain, Fat};
use super::{sd, FatFs, Node};
use embedded_sdmmc::Mode;
use exo_libos::fs::disk::{BlockDevice, Partition, SECTOR};
use exo_libos::fs::path::normalize;
use exo_libos::fs::{Error, Handle, OpenFlags, Result};

impl<S: BlockDevice> FatFs<S> {
    pub(super) fn open_file(&mut self, path: &str, flags: OpenFlags) -> Result<Handle> {
        flags.check()?;
        if self.read_only && flags.contains(OpenFlags::WRITE) {
            return Err(Error::ReadOnly);
        }
        let p = normalize(path)?;
        let (mut d, names, name) = self.parent(&p)?;
        let name = name.ok_or(Error::IsDir)?;
        let slot = self.free_handle()?;
        let mut e = match d.find(name) {
            Some(e) if e.is_dir() => return Err(Error::IsDir),
            Some(_) if flags.contains(OpenFlags::CREATE | OpenFlags::EXCLUSIVE) => return Err(Error::Exists),
            Some(e) if flags.contains(OpenFlags::WRITE) && e.attr & ATTR_READ_ONLY != 0 => {
                return Err(Error::ReadOnly)
            }
            Some(e) => {
                d.check(e, &self.geo)?;
                e.clone()
            }
            None if flags.contains(OpenFlags::CREATE) => self.create_entry(&mut d, &names, name)?,
            None => return Err(Error::NotFound),
        };
        let pos = d.slot_pos(e.slot).ok_or(Error::Corrupt)?;
        if flags.contains(OpenFlags::TRUNCATE) && (e.size != 0 || e.cluster != 0) {
            self.truncate_entry(&mut d, &e)?;
            e.cluster = 0;
            e.size = 0;
        }
        let i = match self.nodes.iter().position(|n| n.as_ref().is_some_and(|n| n.pos == pos)) {
            Some(i) => i,
            None => {
                let node = Node {
                    dir_path: names,
                    pos,
                    cluster: e.cluster,
                    size: e.size,
                    mtime: e.mtime,
                    chain: Chain::new(&self.geo, e.cluster)?,
                    refs: 0,
                };
                match self.nodes.iter().position(Option::is_none) {
                    Some(i) => {
                        self.nodes[i] = Some(node);
                        i
                    }
                    None => {
                        self.nodes.push(Some(node));
                        self.nodes.len() - 1
                    }
                }
            }
        };
        let geo = self.geo;
        let n = self.node_mut(i)?;
        if n.cluster != e.cluster || n.size != e.size {
            n.cluster = e.cluster;
            n.size = e.size;
            n.chain = Chain::new(&geo, e.cluster)?;
        }
        n.refs += 1;
        self.handles[slot] = Some((i, flags));
        Ok(Handle(slot as u32))
    }

    fn free_handle(&mut self) -> Result<usize> {
        match self.handles.iter().position(Option::is_none) {
            Some(i) => Ok(i),
            None if self.handles.len() < super::MAX_OPEN => {
                self.handles.push(None);
                Ok(self.handles.len() - 1)
            }
            None => Err(Error::TooManyOpenFiles),
        }
    }

    /// Creates an empty file `name` in `d` (reached by 8.3 `names`) with its lower-case
    /// flags: in a free slot of `d` here, else through the crate (`d` is then re-read); a
    /// name with no 8.3 form goes to `create_long`.
    fn create_entry(&mut self, d: &mut Dir, names: &[[u8; 11]], name: &str) -> Result<Entry> {
        let Ok((sfn, case)) = short_name(name) else { return self.create_long(d, name) };
        if d.entries.iter().any(|e| e.sfn == sfn) {
            // A volume label of that name (the caller looked for files).
            return Err(Error::Exists);
        }
        self.begin_change()?;
        if let Some(slot) = d.free_slot() {
            return self.own_entry(d, slot, &[], (sfn, case), name, 0);
        }
        // The directory needs one more cluster for the entry: the crate grows it.
        self.reserve(1)?;
        let n = Self::crate_name(&sfn)?;
        let r = self.in_crate_dir(names, |cd| {
            let f = self.vm.open_file_in_dir(cd, n, Mode::ReadWriteCreate).map_err(sd)?;
            self.vm.close_file(f).map_err(sd)
        });
        let settled = self.settle();
        r?;
        settled?;
        self.finish_new(d, sfn, case)
    }

    /// Creates an empty file `name`, which has no 8.3 form, under that long name: its
    /// long-name slots and an 8.3 alias no other entry of `d` has, in a free run of slots
    /// of `d` (`long_run`).
    fn create_long(&mut self, d: &mut Dir, name: &str) -> Result<Entry> {
        let (long, sfn) = long_entry(d, name)?;
        self.begin_change()?;
        let first = self.long_run(d, long.len() + 1)?;
        self.own_entry(d, first, &long, (sfn, 0), name, 0)
    }

    /// Makes directory `name`, which has no 8.3 form, under that long name: its cluster
    /// (`.` and `..`, the rest zeroed) written and marked a chain's end before its entry
    /// goes in as a long-named file's does (a cut before leaves a lost cluster).
    fn make_dir_long(&mut self, d: &mut Dir, name: &str) -> Result<()> {
        let (long, sfn) = long_entry(d, name)?;
        self.begin_change()?;
        let first = self.long_run(d, long.len() + 1)?;
        let parent = d.loc.dotdot();
        let (date, time) = exo_libos::fs::time::to_fat((self.clock)());
        let ft = self.geo.fat_type;
        let mut dots = [0u8; SECTOR];
        fill_entry(&mut dots[..32], b".          ", 0, (dir::ATTR_DIR, 0), (date, time), ft);
        fill_entry(&mut dots[32..64], b"..         ", 0, (dir::ATTR_DIR, parent), (date, time), ft);
        let c = self.new_cluster(|c, first| dir::set_cluster(&mut first[..32], ft, c), &mut dots)?;
        self.own_entry(d, first, &long, (sfn, 0), name, c).map(drop)
    }

    /// The first slot of a run of `n` free slots of `d`: the directory's next clusters read,
    /// or grown by a cluster of the libOS's choosing when it has none (the crate grows only
    /// a full directory, and `d` may have free slots, just not enough in a row). The
    /// grown cluster is zeroed, marked the chain's end, then linked from the old end (a cut
    /// before the link leaves a lost cluster, which `fsck.vfat -a` gathers), then read into
    /// `d`. FAT16's root cannot grow: `NoSpace`.
    fn long_run(&mut self, d: &mut Dir, n: usize) -> Result<usize> {
        for _ in 0..3 {
            // (A run takes 21 slots at most, a cluster holds 16 at least.)
            if let Some(first) = d.free_run(n) {
                return Ok(first);
            }
            if self.with_part(|p, g| d.read_more(p, g))? {
                continue;
            }
            let tail = d.last_cluster(&self.geo)?.ok_or(Error::NoSpace)?; // (FAT16's root)
            let c = self.new_cluster(|_, _| {}, &mut [0u8; SECTOR])?;
            self.with_fat(|fat| fat.set(alloc::vec![(tail, c)]))?;
            self.dirs.get_mut().forget(d.loc);
            if !self.with_part(|p, g| d.read_more(p, g))? {
                return Err(Error::Corrupt);
            }
        }
        Err(Error::NoSpace)
    }

    /// Takes a free cluster (searched from the next-free hint) for a directory: its first sector is
    /// `first` (after `fix(cluster, first)`), the rest zero, all written before the FAT marks
    /// it a chain's end. Counted out of the free clusters; one stays free (`reserve`).
    fn new_cluster(
        &mut self,
        fix: impl FnOnce(u32, &mut [u8; SECTOR]),
        first: &mut [u8; SECTOR],
    ) -> Result<u32> {
        self.reserve(1)?;
        let hint = self.next_free;
        let c = self.with_fat(|fat| fat.find_free(hint, 1))?.first().ok_or(Error::NoSpace)?.0;
        fix(c, first);
        self.with_part(|p, g| {
            let mut cluster = alloc::vec![0u8; g.cluster_bytes() as usize];
            cluster[..SECTOR].copy_from_slice(first);
            Ok(p.write(u64::from(g.cluster_sector(c)), &cluster)?)
        })?;
        self.with_fat(|fat| {
            let end = fat.eoc();
            fat.set(alloc::vec![(c, end)])
        })?;
        self.next_free = c + 1;
        if let Some(f) = &mut self.free {
            *f -= 1;
        }
        Ok(c)
    }

    /// Grows full directory `d` (reached by 8.3 `names`) by a cluster, re-reads it, and
    /// returns its first free slot. The crate grows a full directory (the libOS grows one
    /// itself only for a long name's run of slots, `long_run`), and only to create an
    /// entry: it creates `sfn` (not in `d`) and deletes it again before its writes, held
    /// for the operation, go out (see `FatDev::write_key`): the new cluster, its first slot
    /// already deleted, then the links to it. So no entry appears at any moment, and a cut
    /// leaves at most a cluster not yet linked, which `fsck.vfat -a` gathers.
    fn grow_dir(&mut self, d: &mut Dir, names: &[[u8; 11]], sfn: [u8; 11]) -> Result<usize> {
        self.begin_change()?;
        self.reserve(1)?;
        let n = Self::crate_name(&sfn)?;
        let r = self.in_crate_dir(names, |cd| {
            let f = self.vm.open_file_in_dir(cd, n, Mode::ReadWriteCreate).map_err(sd)?;
            self.vm.close_file(f).map_err(sd)?;
            self.vm.delete_entry_in_dir(cd, n).map_err(sd)
        });
        let settled = self.settle();
        r?;
        settled?;
        *d = self.read_dir(d.loc)?;
        d.free_slot().ok_or(Error::Corrupt)
    }

    /// Writes a new empty file's entry into free slot `first` of `d`, or (with `long`
    /// slots for its long name `name`) the free run from `first`, the long-name slots before
    /// the 8.3 one; keeps `d` (so the next lookup in it parses nothing).
    fn own_entry(
        &mut self,
        d: &mut Dir,
        first: usize,
        long: &[[u8; 32]],
        (sfn, case): ([u8; 11], u8),
        name: &str,
        dir_cluster: u32,
    ) -> Result<Entry> {
        let slot = first + long.len();
        let attr = if dir_cluster != 0 { dir::ATTR_DIR } else { dir::ATTR_ARCHIVE };
        let ft = self.geo.fat_type;
        let (date, time) = exo_libos::fs::time::to_fat((self.clock)());
        let w0 = self.writes()?;
        self.dirs.get_mut().forget(d.loc);
        let mut short = [0u8; 32];
        fill_entry(&mut short, &sfn, case, (attr, dir_cluster), (date, time), ft);
        self.with_part(|p, g| {
            d.keep_end_run(p, g, first..=slot)?;
            d.write_run(p, first, (long, Some(&short)), NONE)
        })?;
        let e = Entry {
            name: if long.is_empty() { display(&sfn, case) } else { name.into() },
            sfn,
            case,
            attr,
            cluster: dir_cluster,
            size: 0,
            mtime: exo_libos::fs::time::from_fat(date, time),
            slot,
            first,
            label: false,
        };
        let at = d.entries.partition_point(|x| x.slot < slot);
        alloc::rc::Rc::make_mut(&mut d.entries).insert(at, e.clone());
        let w1 = self.writes()?;
        self.dirs.get_mut().carry(w0, w1, d.clone());
        Ok(e)
    }

    /// Re-reads `d`, finds the entry the crate just made as `sfn`, and sets `case`.
    fn finish_new(&mut self, d: &mut Dir, sfn: [u8; 11], case: u8) -> Result<Entry> {
        *d = self.read_dir(d.loc)?;
        let mut e = d.live().find(|e| e.sfn == sfn).cloned().ok_or(Error::Corrupt)?;
        if case != 0 {
            self.with_part(|p, _| d.patch(p, e.slot..=e.slot, |_, s| s[12] = case))?;
            e.case = case;
            e.name = display(&sfn, case);
        }
        Ok(e)
    }

    /// Cuts a file to length 0: the entry first (cluster 0, size 0, new time), then its
    /// clusters are freed.
    fn truncate_entry(&mut self, d: &mut Dir, e: &Entry) -> Result<()> {
        self.begin_change()?;
        let (date, time) = exo_libos::fs::time::to_fat((self.clock)());
        let ft = self.geo.fat_type;
        let n = self.with_part(|p, g| {
            d.patch(p, e.slot..=e.slot, |_, s| {
                dir::set_cluster(s, ft, 0);
                s[28..32].fill(0);
                s[22..24].copy_from_slice(&time.to_le_bytes());
                s[24..26].copy_from_slice(&date.to_le_bytes());
            })?;
            Fat::new(p, g).free_chain(e.cluster)
        })?;
        self.freed(n);
        Ok(())
    }

    pub(super) fn make_dir(&mut self, path: &str) -> Result<()> {
        let p = normalize(path)?;
        let (mut d, names, name) = self.parent(&p)?;
        let name = name.ok_or(Error::Exists)?;
        if d.find(name).is_some() {
            return Err(Error::Exists);
        }
        let Ok((sfn, case)) = short_name(name) else { return self.make_dir_long(&mut d, name) };
        self.begin_change()?;
        // One cluster for the new directory, and maybe one for its parent's entry.
        self.reserve(2)?;
        // The crate writes the entry into the same slot `free_slot` gives, and leaves no
        // new end mark after it: the libOS writes that mark first. (The chain is checked
        // first so that a looping one fails, as it will in the crate, before any write.)
        if let Some(slot) = d.free_slot() {
            self.with_part(|p, g| {
                dir::check_chain(p, g, d.loc)?;
                d.keep_end(p, g, slot)
            })?;
        }
        let n = Self::crate_name(&sfn)?;
        let r = self.in_crate_dir(&names, |cd| self.vm.make_dir_in_dir(cd, n).map_err(sd));
        let settled = self.settle();
        r?;
        settled?;
        self.finish_new(&mut d, sfn, case).map(drop)
    }

    /// Fails unless entry `e` of `d` (at 8.3 path `names`) may go: a file, or an empty
    /// directory, not open nor with anything open below it.
    fn removable(&self, d: &Dir, names: &[[u8; 11]], e: &Entry) -> Result<()> {
        d.check(e, &self.geo)?;
        let pos = d.slot_pos(e.slot).ok_or(Error::Corrupt)?;
        let mut below = names.to_vec();
        below.push(e.sfn);
        if self.in_use(pos, e.is_dir().then_some(&below[..])) {
            return Err(Error::Busy);
        }
        if e.is_dir() && self.read_dir(DirLoc::Cluster(e.cluster))?.live().next().is_some() {
            return Err(Error::NotEmpty);
        }
        Ok(())
    }

    /// Removes entry `e` of `d` (at 8.3 path `names`): a file, or an empty directory.
    fn remove_entry(&mut self, d: &mut Dir, names: &[[u8; 11]], e: &Entry) -> Result<()> {
        self.removable(d, names, e)?;
        self.begin_change()?;
        let w0 = self.writes()?;
        let memo = self.dirs.get_mut();
        memo.forget(d.loc);
        if e.is_dir() {
            memo.forget(DirLoc::Cluster(e.cluster));
        }
        // The entry goes first: a crash in between leaves lost clusters, never a name
        // pointing at free ones.
        let n = self.with_part(|p, g| {
            d.delete(p, e)?;
            Fat::new(p, g).free_chain(e.cluster)
        })?;
        self.freed(n);
        alloc::rc::Rc::make_mut(&mut d.entries).retain(|x| x.slot != e.slot);
        let w1 = self.writes()?;
        self.dirs.get_mut().carry(w0, w1, d.clone());
        Ok(())
    }

    pub(super) fn remove_path(&mut self, path: &str) -> Result<()> {
        let p = normalize(path)?;
        let (mut d, names, name) = self.parent(&p)?;
        let name = name.ok_or(Error::Busy)?;
        let e = d.find(name).cloned().ok_or(Error::NotFound)?;
        self.remove_entry(&mut d, &names, &e)
    }

    pub(super) fn rename_path(&mut self, from: &str, to: &str) -> Result<()> {
        let (f, t) = (normalize(from)?, normalize(to)?);
        if f == t {
            return exo_libos::fs::FileSystem::stat(self, &f).map(drop);
        }
        let (mut sdir, snames, sname) = self.parent(&f)?;
        let se = sdir.find(sname.ok_or(Error::Busy)?).cloned().ok_or(Error::NotFound)?;
        sdir.check(&se, &self.geo)?;
        let mut below = snames.clone();
        below.push(se.sfn);
        let (mut td, tnames, tname) = self.parent(&t)?;
        let tname = tname.ok_or(Error::Busy)?;
        if se.is_dir() && tnames.starts_with(&below) {
            return Err(Error::InvalidArgument);
        }
        let spos = sdir.slot_pos(se.slot).ok_or(Error::Corrupt)?;
        if self.in_use(spos, se.is_dir().then_some(&below[..])) {
            return Err(Error::Busy);
        }
        let target = td.find(tname).cloned();
        let same = td.loc == sdir.loc;
        // The same entry under another spelling (ASCII letters in another case).
        let itself = target.as_ref().is_some_and(|te| same && te.slot == se.slot);
        if let Some(te) = target.as_ref().filter(|_| !itself) {
            match (se.is_dir(), te.is_dir()) {
                (false, true) => return Err(Error::IsDir),
                (true, false) => return Err(Error::NotDir),
                _ => {}
            }
            self.removable(&td, &tnames, te)?;
        }
        // Over an entry, a long name is kept as that entry has it, respelled: the moved
        // entry goes into its 8.3 slot, as an 8.3 name does.
        let (tsfn, tcase, keep_long) = match (short_name(tname), &target) {
            (Ok((s, c)), _) if same && (itself || target.is_none()) => {
                return self.rename_in_place(&mut sdir, &se, s, c)
            }
            (Ok((s, c)), _) => (s, c, false),
            (Err(_), Some(te)) if !itself => {
                self.respell(&mut td, te, tname)?;
                (te.sfn, te.case, true)
            }
            (Err(_), _) => return self.rename_long(&mut sdir, &se, &mut td, tname),
        };
        // The new entry is written whole, in one write: over the entry it replaces, else
        // into a free slot, which a full directory is first grown to have.
        let slot = match (&target, td.free_slot()) {
            (Some(te), _) => {
                self.begin_change()?;
                te.slot
            }
            (None, _) if td.entries.iter().any(|e| e.sfn == tsfn) => return Err(Error::Exists),
            (None, Some(slot)) => {
                self.begin_change()?;
                self.with_part(|p, g| td.keep_end(p, g, slot))?;
                slot
            }
            (None, None) => self.grow_dir(&mut td, &tnames, tsfn)?,
        };
        let mut tail = [0u8; 21];
        tail.copy_from_slice(&sdir.data[se.slot * 32 + 11..se.slot * 32 + 32]);
        let parent_cluster = td.loc.dotdot();
        // The replaced entry's long-name slots go with it.
        let first = target.as_ref().map_or(slot, |te| if keep_long { te.slot } else { te.first });
        let per = SECTOR / 32;
        // New entry pointing at the data, then the old one gone, then the clusters of the
        // entry replaced freed: a crash leaves the data under one name or two, never
        // without a name, and the replaced file whole until its entry is overwritten. In
        // one directory, where both entries lie in one sector, that is one write: nothing
        // in between. Otherwise (across directories, or two sectors of one) FAT cannot do
        // better, and `fsck.vfat -a` keeps both names (the one it reaches second cut to no
        // clusters: an empty file, or a directory entry its next run deletes).
        let n = self.with_part(|p, g| {
            let put = |i: usize, s: &mut [u8]| {
                if i == slot {
                    s[..11].copy_from_slice(&tsfn);
                    s[11..32].copy_from_slice(&tail);
                    s[12] = tcase;
                } else if (first..slot).contains(&i) || (same && (se.first..=se.slot).contains(&i)) {
                    s[0] = 0xe5;
                }
            };
            let one = [first, slot, se.first, se.slot].iter().all(|&i| i / per == slot / per);
            if same && one {
                td.patch(p, first.min(se.first)..=slot.max(se.slot), put)?;
            } else {
                td.patch(p, first..=slot, put)?;
                if same {
                    td.delete(p, &se)?;
                } else {
                    sdir.delete(p, &se)?;
                }
            }
            if se.is_dir() && !same {
                set_dotdot(p, g, se.cluster, parent_cluster)?;
            }
            match &target {
                Some(te) => Fat::new(p, g).free_chain(te.cluster),
                None => Ok(0),
            }
        })?;
        self.freed(n);
        Ok(())
    }

    /// Renames entry `se` of `sdir` to `name`, which has no 8.3 form, in `td` (the same
    /// directory or another) where no other entry has that name: a run of slots, the long
    /// name's and then the moved 8.3 entry under a new alias (`write_run`), then the old
    /// slots deleted. In one directory the run goes, where the slots allow, so that its 8.3
    /// slot shares a sector with the old one ([`near_run`]): that sector's one write puts the
    /// new name in and takes the old one out, and a cut leaves the entry under one name
    /// or the other (the other's long-name slots, if in another sector, orphaned). Else
    /// the run goes where `long_run` finds room (growing the directory if it must) and,
    /// as for any move across directories, a cut between the run's last write and the old
    /// slots' deletion leaves one chain under two names.
    fn rename_long(&mut self, sdir: &mut Dir, se: &Entry, td: &mut Dir, name: &str) -> Result<()> {
        let (long, sfn) = long_entry(td, name)?;
        let mut moved = [0u8; 32];
        moved.copy_from_slice(&sdir.data[se.slot * 32..se.slot * 32 + 32]);
        moved[..11].copy_from_slice(&sfn);
        moved[12] = 0; // (the long name holds the case)
        let run = (&long[..], Some(&moved));
        self.begin_change()?;
        let same = td.loc == sdir.loc;
        let n = long.len() + 1;
        let near = if same { near_run(td, se, n) } else { None };
        let first = match near {
            Some(first) => first,
            None => self.long_run(td, n)?,
        };
        let own = se.slot / (SECTOR / 32) * (SECTOR / 32);
        let parent = td.loc.dotdot();
        self.with_part(|p, g| {
            td.keep_end_run(p, g, first..=first + n - 1)?;
            if near.is_some() {
                td.write_run(p, first, run, se.first.max(own)..=se.slot)?;
                if se.first < own {
                    td.patch(p, se.first..=own - 1, |_, s| s[0] = 0xe5)?;
                }
            } else {
                td.write_run(p, first, run, NONE)?;
                // (In one directory, `td` holds every slot `sdir` does, and any it grew by.)
                if same { td.delete(p, se) } else { sdir.delete(p, se) }?;
            }
            if se.is_dir() && !same {
                set_dotdot(p, g, se.cluster, parent)?;
            }
            Ok(())
        })
    }

    /// Spells the long name of entry `te` of `d` as `name`, the same name to a lookup
    /// (ASCII letters may change case): its long-name slots rewritten for its own alias,
    /// as `write_run` writes a run, if they change. A cut leaves `te` under one spelling
    /// or, with a name over two sectors, one of each sector's. [`Error::Unsupported`] if
    /// `te`'s long name has not as many slots as `name` needs (another system's entry).
    fn respell(&mut self, d: &mut Dir, te: &Entry, name: &str) -> Result<()> {
        let long = long_slots(&long_name(name)?, &te.sfn);
        if long.len() != te.slot - te.first {
            return Err(Error::Unsupported);
        }
        if d.data[te.first * 32..te.slot * 32] == *long.concat() {
            return Ok(());
        }
        self.begin_change()?;
        self.with_part(|p, _| d.write_run(p, te.first, (&long, None), NONE))
    }

    /// Gives entry `e` of `d` the 8.3 name `sfn`; its long name, if any, is dropped.
    ///
    /// When the long name's slots begin in an earlier sector than the 8.3 slot, no order of
    /// the two writes is safe in place: the long name's sector first leaves, after a cut,
    /// the file under its 8.3 alias alone; the 8.3 sector first leaves the long name in
    /// front of an 8.3 entry whose checksum it no longer matches, which `fsck.vfat -a` does
    /// not repair. So the renamed 8.3 entry moves to a free slot of its own sector, in the
    /// write that marks its old slot deleted (that sector goes first, see [`Dir::patch`]):
    /// the long name is then followed by a deleted slot, an orphan that readers skip and
    /// `fsck.vfat -a` removes. With no free slot there, the long name's sector goes first
    /// (the alias alone is a clean volume).
    fn rename_in_place(&mut self, d: &mut Dir, e: &Entry, sfn: [u8; 11], case: u8) -> Result<()> {
        self.begin_change()?;
        let slot = e.slot;
        let per = SECTOR / 32;
        let rename = |s: &mut [u8]| {
            s[..11].copy_from_slice(&sfn);
            s[12] = case;
        };
        if e.first / per == slot / per {
            return self.with_part(|p, _| {
                d.patch(p, e.first..=slot, |i, s| if i == slot { rename(s) } else { s[0] = 0xe5 })
            });
        }
        let own = slot / per * per..(slot / per + 1) * per;
        let free = own.clone().find(|&i| d.data.get(i * 32).is_some_and(|&b| b == 0 || b == 0xe5));
        let mut old = [0u8; 32];
        old.copy_from_slice(&d.data[slot * 32..slot * 32 + 32]);
        if let Some(to) = free {
            self.with_part(|p, g| d.keep_end(p, g, to))?;
        }
        self.with_part(|p, _| match free {
            Some(to) => d.patch(p, e.first..=slot.max(to), |i, s| {
                if i == to {
                    s.copy_from_slice(&old);
                    rename(s);
                } else if i <= slot {
                    s[0] = 0xe5;
                }
            }),
            None => {
                d.patch(p, e.first..=own.start - 1, |_, s| s[0] = 0xe5)?;
                d.patch(p, own.start..=slot, |i, s| if i == slot { rename(s) } else { s[0] = 0xe5 })
            }
        })
    }
}

/// The first slot of a run of `n` slots of `d` for entry `e`'s new name in the same
/// directory (see `rename_long`), with the run's last slot in the sector of `e`'s 8.3
/// slot: slots free to take (deleted, or from the end mark on, which the run must then
/// hold), and in that sector `e`'s own, which the write of that sector replaces or marks
/// deleted. Before that sector, free slots only, and then the sector's first slot free
/// too: the long-name slots written before it are followed by a free slot until it
/// goes in. When `e`'s slots begin before the sector, the run does not start at its first
/// slot: that one is marked deleted, ending `e`'s orphaned slots. A run within the sector
/// (one write) comes first; `None` if there is no such run.
fn near_run(d: &Dir, e: &Entry, n: usize) -> Option<usize> {
    let per = SECTOR / 32;
    let own = e.slot / per * per;
    let slots = d.data.len() / 32;
    let mark = d.data.chunks_exact(32).position(|s| s[0] == 0).unwrap_or(slots);
    let free = |i: usize| i >= mark || d.data[i * 32] == 0xe5;
    let ok = |&a: &usize| {
        a <= mark
            && (a..a + n).all(|i| free(i) || (i >= own && (e.first..=e.slot).contains(&i)))
            && (a >= own || free(own))
            && !(a == own && e.first < own)
    };
    let starts = (own..(own + per).min(slots)).filter(|&last| last + 1 >= n).map(|last| last + 1 - n);
    starts.clone().filter(|&a| a >= own).find(ok).or_else(|| starts.filter(|&a| a < own).find(ok))
}

/// Points the `..` entry of directory `cluster` at `parent` (0: the root).
fn set_dotdot<S: BlockDevice>(p: &Partition<S>, g: &Geometry, cluster: u32, parent: u32) -> Result<()> {
    let mut sub = dir::read(p, g, DirLoc::Cluster(cluster))?;
    match sub.data.chunks(32).position(|s| &s[..11] == b"..         ") {
        Some(i) => sub.patch(p, i..=i, |_, s| dir::set_cluster(s, g.fat_type, parent)),
        None => Ok(()),
    }
}

/// No slots (for [`Dir::write_run`]'s `gone`).
#[allow(clippy::reversed_empty_ranges)]
const NONE: core::ops::RangeInclusive<usize> = 1..=0;

/// A long name's slots for `name` and the 8.3 alias they end in, one no entry of `d` has.
fn long_entry(d: &Dir, name: &str) -> Result<(alloc::vec::Vec<[u8; 32]>, [u8; 11])> {
    let units = long_name(name)?;
    let sfn = alias(name, |s| d.entries.iter().any(|e| e.sfn == *s))?;
    Ok((long_slots(&units, &sfn), sfn))
}

/// A new entry's 32 bytes: 8.3 name, lower-case flags, attributes and first cluster,
/// creation and modification time, size 0.
fn fill_entry(
    s: &mut [u8],
    sfn: &[u8; 11],
    case: u8,
    (attr, cluster): (u8, u32),
    (date, time): (u16, u16),
    ft: FatType,
) {
    s.fill(0);
    s[..11].copy_from_slice(sfn);
    (s[11], s[12]) = (attr, case);
    for at in [14, 22] {
        s[at..at + 2].copy_from_slice(&time.to_le_bytes());
        s[at + 2..at + 4].copy_from_slice(&date.to_le_bytes());
    }
    s[18..20].copy_from_slice(&date.to_le_bytes());
    dir::set_cluster(s, ft, cluster);
}
