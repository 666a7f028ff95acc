//! A FAT16 or FAT32 image read straight from its bytes, apart from the libOS: the first
//! FAT and the directories' entries, for checks of what a power cut left on the disk
//! before any repair.

/// The layout of a FAT volume that fills an image, from its boot sector.
pub struct RawFat<'a> {
    img: &'a [u8],
    fat32: bool,
    /// Sectors per cluster.
    spc: usize,
    /// First sector of the first FAT.
    fat_start: usize,
    /// FAT16: the fixed root directory's first sector and length in sectors.
    root_start: usize,
    root_sectors: usize,
    /// FAT32: the root directory's first cluster, and the FSInfo sector (0: none).
    root_cluster: u32,
    fsinfo: usize,
    /// First sector of cluster 2.
    data_start: usize,
    /// Data clusters: valid cluster numbers are `2 ..= clusters + 1`.
    clusters: u32,
}

/// A live entry of the root directory.
#[derive(Debug)]
pub struct RawEntry {
    /// Its slot in the directory (32-byte entries from 0).
    pub slot: usize,
    /// The 8.3 name as stored, blanks and all.
    pub name: String,
    pub attr: u8,
    pub cluster: u32,
    pub size: u32,
}

fn u16_at(b: &[u8], at: usize) -> u32 {
    u32::from(u16::from_le_bytes([b[at], b[at + 1]]))
}

fn u32_at(b: &[u8], at: usize) -> u32 {
    u32::from_le_bytes([b[at], b[at + 1], b[at + 2], b[at + 3]])
}

impl<'a> RawFat<'a> {
    /// Reads the boot sector of `img` (512-byte sectors only). The FAT type is the one the
    /// cluster count gives, as the specification has it; FAT12 panics.
    pub fn parse(img: &'a [u8]) -> RawFat<'a> {
        let b = &img[..512];
        assert_eq!(u16_at(b, 11), 512, "bytes per sector");
        let spc = b[13] as usize;
        let reserved = u16_at(b, 14) as usize;
        let nfats = b[16] as usize;
        let root_sectors = (u16_at(b, 17) as usize * 32).div_ceil(512);
        let total = match u16_at(b, 19) {
            0 => u32_at(b, 32),
            n => n,
        } as usize;
        let fat_size = match u16_at(b, 22) {
            0 => u32_at(b, 36),
            n => n,
        } as usize;
        let root_start = reserved + nfats * fat_size;
        let data_start = root_start + root_sectors;
        let clusters = ((total - data_start) / spc) as u32;
        assert!(clusters >= 4085, "a FAT12 volume ({clusters} clusters)");
        let fat32 = clusters >= 65525;
        let (root_cluster, fsinfo) = if fat32 { (u32_at(b, 44), u16_at(b, 48) as usize) } else { (0, 0) };
        RawFat {
            img,
            fat32,
            spc,
            fat_start: reserved,
            root_start,
            root_sectors,
            root_cluster,
            fsinfo,
            data_start,
            clusters,
        }
    }

    /// Whether `c` is a data cluster of the volume.
    pub fn valid(&self, c: u32) -> bool {
        (2..=self.clusters + 1).contains(&c)
    }

    /// Entry `c` of the first FAT (FAT32's top four bits dropped): 0 is free.
    pub fn entry(&self, c: u32) -> u32 {
        let at = self.fat_start * 512;
        if self.fat32 {
            u32_at(self.img, at + c as usize * 4) & 0x0fff_ffff
        } else {
            u16_at(self.img, at + c as usize * 2)
        }
    }

    /// Which sector of a FAT holds cluster `c`'s entry.
    pub fn fat_sector(&self, c: u32) -> u32 {
        c * if self.fat32 { 4 } else { 2 } / 512
    }

    /// Whether `v`, a FAT entry, marks the end of a chain.
    pub fn is_end(&self, v: u32) -> bool {
        v >= if self.fat32 { 0x0fff_fff8 } else { 0xfff8 }
    }

    pub fn cluster_bytes(&self) -> u64 {
        self.spc as u64 * 512
    }

    /// The first sector of data cluster `c`.
    pub fn cluster_sector(&self, c: u32) -> usize {
        self.data_start + (c as usize - 2) * self.spc
    }

    /// FAT32: the free count FSInfo holds (`u32::MAX`: unknown), if the volume has a valid
    /// FSInfo sector.
    pub fn fsinfo_free(&self) -> Option<u32> {
        let b = self.img.get(self.fsinfo * 512..self.fsinfo * 512 + 512)?;
        let valid = self.fsinfo != 0 && u32_at(b, 0) == 0x4161_5252 && u32_at(b, 484) == 0x6141_7272;
        valid.then(|| u32_at(b, 488))
    }

    /// Free clusters in the first FAT.
    pub fn free_clusters(&self) -> u32 {
        (2..=self.clusters + 1).filter(|&c| self.entry(c) == 0).count() as u32
    }

    /// The chain from `first` in the first FAT, as far as it goes through clusters that are
    /// in use: it stops before a free or out-of-range cluster, after the end mark or after
    /// as many clusters as the volume has (a loop).
    pub fn chain(&self, first: u32) -> Vec<u32> {
        let mut v = Vec::new();
        let mut c = first;
        while self.valid(c) && self.entry(c) != 0 && v.len() <= self.clusters as usize {
            v.push(c);
            let next = self.entry(c);
            if self.is_end(next) {
                break;
            }
            c = next;
        }
        v
    }

    /// The root directory's live entries: deleted slots (0xE5) and long-name slots
    /// (attribute 0x0F) skipped, up to the end mark (a slot starting with 0).
    pub fn root(&self) -> Vec<RawEntry> {
        if self.fat32 {
            self.dir(self.root_cluster)
        } else {
            self.entries(&self.img[self.root_start * 512..(self.root_start + self.root_sectors) * 512])
        }
    }

    /// The live entries of the directory whose chain starts at `first`, as [`root`](Self::root).
    pub fn dir(&self, first: u32) -> Vec<RawEntry> {
        let bytes: Vec<u8> =
            self.chain(first).iter().flat_map(|&c| self.cluster(c).iter().copied()).collect();
        self.entries(&bytes)
    }

    /// The bytes of data cluster `c`.
    pub fn cluster(&self, c: u32) -> &[u8] {
        let at = self.cluster_sector(c) * 512;
        &self.img[at..at + self.cluster_bytes() as usize]
    }

    fn entries(&self, bytes: &[u8]) -> Vec<RawEntry> {
        let mut out = Vec::new();
        for (slot, e) in bytes.chunks_exact(32).enumerate() {
            match (e[0], e[11]) {
                (0, _) => break,
                (0xe5, _) | (_, 0x0f) => continue,
                _ => {}
            }
            let hi = if self.fat32 { u16_at(e, 20) << 16 } else { 0 };
            out.push(RawEntry {
                slot,
                name: String::from_utf8_lossy(&e[..11]).into_owned(),
                attr: e[11],
                cluster: hi | u16_at(e, 26),
                size: u32_at(e, 28),
            });
        }
        out
    }

    /// Every live entry below the root (no `.`, `..` or volume label), with the path of
    /// the directory holding it (`""`: the root), each directory's entries read once (two
    /// names for one directory, or a loop, are walked once).
    pub fn walk(&self) -> Vec<(String, RawEntry)> {
        let mut out = Vec::new();
        let mut seen = Vec::new();
        let mut todo = vec![(String::new(), self.root())];
        while let Some((path, entries)) = todo.pop() {
            for e in entries {
                if e.name == ".          " || e.name == "..         " || e.attr & 0x08 != 0 {
                    continue;
                }
                let dir = e.attr & 0x10 != 0 && self.valid(e.cluster) && self.entry(e.cluster) != 0;
                if dir && !seen.contains(&e.cluster) {
                    seen.push(e.cluster);
                    todo.push((format!("{path}/{}", e.name.trim_end()), self.dir(e.cluster)));
                }
                out.push((path.clone(), e));
            }
        }
        out
    }

    /// Pairs of live entries that start at the same cluster (two names for one chain),
    /// as `path/NAME` of each.
    pub fn shared_starts(&self) -> Vec<(String, String)> {
        let all = self.walk();
        let mut out = Vec::new();
        for (i, (pa, a)) in all.iter().enumerate() {
            for (pb, b) in &all[i + 1..] {
                if a.cluster != 0 && a.cluster == b.cluster {
                    out.push((format!("{pa}/{}", a.name), format!("{pb}/{}", b.name)));
                }
            }
        }
        out
    }

    /// Clusters in use in the first FAT that no entry's chain reaches (from the root, through
    /// every directory): lost clusters, which `fsck.vfat -a` gathers into `FSCKnnnn.REC`
    /// files in the root. Bad clusters are not counted.
    pub fn lost(&self) -> Vec<u32> {
        let mut reached = vec![false; self.clusters as usize + 2];
        let root = self.fat32.then_some(self.root_cluster);
        for c in root.into_iter().chain(self.walk().into_iter().map(|(_, e)| e.cluster)) {
            for x in self.chain(c) {
                reached[x as usize] = true;
            }
        }
        let bad = if self.fat32 { 0x0fff_fff7 } else { 0xfff7 };
        (2..=self.clusters + 1)
            .filter(|&c| !reached[c as usize] && self.entry(c) != 0 && self.entry(c) != bad)
            .collect()
    }

    /// What a FAT writer that orders its writes (data, then the first FAT's links with the
    /// new clusters' own before the old end's, then the directory entry; a new directory's
    /// cluster before its entry; FSInfo's free count made "unknown" before the first change
    /// and exact again only after the last; an entry removed before its clusters are freed)
    /// never leaves at any moment, found in the first FAT, every directory reached from the
    /// root, and FSInfo: a link to a free cluster; an entry whose first cluster is free; a
    /// file whose size runs past its chain; a directory whose first cluster is not yet a
    /// directory (its "." entry); a known free count that is not the first FAT's. One line
    /// each; none when the image is in order. The other FAT copies are not looked at (they
    /// may lag behind the first, or be torn).
    pub fn order_faults(&self) -> Vec<String> {
        let mut faults = Vec::new();
        if let Some(n) = self.fsinfo_free().filter(|&n| n != u32::MAX) {
            let free = self.free_clusters();
            if n != free {
                faults.push(format!("FSInfo: free count {n}, but the first FAT has {free} free clusters"));
            }
        }
        for c in 2..=self.clusters + 1 {
            let v = self.entry(c);
            if self.valid(v) && self.entry(v) == 0 {
                faults.push(format!("first FAT: cluster {c} links to cluster {v}, which is free"));
            }
        }
        let mut seen = Vec::new();
        self.dir_faults("", self.root(), &mut seen, &mut faults);
        faults
    }

    /// [`order_faults`](Self::order_faults) for the entries of the directory at `path`
    /// (`""`: the root), and, below it, for every directory reached through an entry that
    /// passes (each directory cluster once, so two names for one directory, or a loop, are
    /// walked once).
    fn dir_faults(&self, path: &str, entries: Vec<RawEntry>, seen: &mut Vec<u32>, faults: &mut Vec<String>) {
        for e in entries {
            if e.name == ".          " || e.name == "..         " || e.attr & 0x08 != 0 {
                continue;
            }
            let what = format!("entry {path}/{:?} (slot {})", e.name, e.slot);
            let n = if e.cluster == 0 {
                0
            } else if !self.valid(e.cluster) {
                faults.push(format!("{what}: first cluster {} is not a cluster of the volume", e.cluster));
                continue;
            } else if self.entry(e.cluster) == 0 {
                faults.push(format!("{what}: first cluster {} is free in the first FAT", e.cluster));
                continue;
            } else {
                self.chain(e.cluster).len() as u64
            };
            if e.attr & 0x10 != 0 && n > 0 {
                if !self.cluster(e.cluster).starts_with(b".          ") {
                    faults.push(format!(
                        "{what}: a directory whose first cluster {} does not start with \".\"",
                        e.cluster
                    ));
                } else if !seen.contains(&e.cluster) {
                    seen.push(e.cluster);
                    let below = format!("{path}/{}", e.name.trim_end());
                    self.dir_faults(&below, self.dir(e.cluster), seen, faults);
                }
            }
            if e.attr & 0x10 == 0 && u64::from(e.size) > n * self.cluster_bytes() {
                faults.push(format!(
                    "{what}: size {} runs past its chain of {n} clusters ({} bytes) from cluster {}",
                    e.size,
                    n * self.cluster_bytes(),
                    e.cluster
                ));
            }
        }
    }
}
