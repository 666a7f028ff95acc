//! Packet filters and the binding table: the checker, the interpreter and the rule that
//! keeps environments' packets apart. The kernel keeps one [`Table`] and calls it from its
//! network system calls; everything here is pure and tested on the host.
//!
//! A filter is a conjunction of at most [`NET_TERMS`] terms "the big-endian field of 1, 2
//! or 4 bytes at this offset, masked, equals this value", all within the first
//! [`NET_HEADER_BYTES`] of a frame: running one costs at most eight loads and compares.
//! Since every term only fixes bits, a filter is the same as one (mask, value) pair per
//! header byte ([`Norm`]), and two filters can match a common frame exactly when no byte
//! has a bit that both fix to different values. That test decides conflicts without any
//! knowledge of protocols: see [`Table::bind`].
//!
//! Receiving does not try every binding: a receive filter that fixes every bit of the
//! [`KEY`] bytes (the EtherType, the IPv4 protocol and the TCP/UDP destination port) can
//! only match frames whose key bytes are its own, so it is kept on one of [`BUCKETS`]
//! chains chosen by a hash of them, and a frame tries only its own chain's filters and
//! those on the chain of filters that leave some key bit free (ARP, ICMP). This is DPF's
//! idea, merging what filters share, at its simplest. The key is a guess at what filters
//! will fix, not a rule: a filter that does not fix it is only slower to reach.

use exo_abi::net::{
    NetBind, NetFilter, NetInfo, NetScope, NET_FRAME_MAX, NET_HEADER_BYTES, NET_RING_SLOTS, NET_SCOPES,
    NET_SHARED, NET_SLOT, NET_TERMS,
};
use exo_abi::Error;

/// The header bytes receive filters are indexed by: EtherType, IPv4 protocol, and the
/// destination port of TCP and UDP (IPv4 without options).
pub const KEY: [usize; 5] = [12, 13, 23, 36, 37];
/// Chains of keyed receive filters; one more chain holds the rest.
pub const BUCKETS: usize = 32;

/// A frame's first [`NET_HEADER_BYTES`], or a filter's mask or value over them, as
/// little-endian words: byte `i` is bits `8 * (i % 8)` up of word `i / 8`. The filters
/// keep theirs as words and a frame's are gathered once, so that testing a filter is a
/// few aligned loads and compares a word (this target builds with strict alignment: a
/// word read from a byte slice at an unknown address is eight byte loads).
pub type Words = [u64; NET_HEADER_BYTES / 8];

/// Byte `i` of `w`.
fn byte(w: &Words, i: usize) -> u8 {
    (w[i / 8] >> (8 * (i % 8))) as u8
}

/// `bytes` as [`Words`].
fn words(bytes: &[u8; NET_HEADER_BYTES]) -> Words {
    let mut w = [0; NET_HEADER_BYTES / 8];
    for (w, c) in w.iter_mut().zip(bytes.as_chunks::<8>().0) {
        *w = u64::from_le_bytes(*c);
    }
    w
}

/// The first [`NET_HEADER_BYTES`] of `frame` as [`Words`], zeros past its end.
pub fn head(frame: &[u8]) -> Words {
    if let Some(h) = frame.first_chunk::<NET_HEADER_BYTES>() {
        return words(h);
    }
    let mut h = [0; NET_HEADER_BYTES];
    h[..frame.len()].copy_from_slice(frame);
    words(&h)
}

/// The chain for a frame or filter whose key bytes are those of `w` (indexed by [`KEY`]).
fn bucket(w: &Words) -> usize {
    let k = KEY.iter().fold(0u32, |h, &i| h.wrapping_mul(31).wrapping_add(byte(w, i) as u32));
    (k ^ (k >> 7) ^ (k >> 13)) as usize % BUCKETS
}

/// A filter as (mask, value) pairs of header bytes, kept as [`Words`], and how many
/// leading bytes it reads.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Norm {
    mask: Words,
    value: Words,
    reach: usize,
}

/// Checks a filter and normalizes it. `Invalid` if a term has a bad size, reaches past
/// [`NET_HEADER_BYTES`], sets value bits outside its mask, or contradicts another term (a
/// filter nothing can match), or if the filter does not fix the EtherType (bytes 12-13):
/// no catch-all filters.
pub fn check(f: &NetFilter) -> Result<Norm, Error> {
    let n = f.count as usize;
    if n == 0 || n > NET_TERMS {
        return Err(Error::Invalid);
    }
    let (mut mask, mut value, mut reach) = ([0u8; NET_HEADER_BYTES], [0u8; NET_HEADER_BYTES], 0);
    for t in &f.terms[..n] {
        let (off, size) = (t.offset as usize, t.size as usize);
        if !matches!(size, 1 | 2 | 4) || off + size > NET_HEADER_BYTES {
            return Err(Error::Invalid);
        }
        let full = if size == 4 { u32::MAX } else { (1u32 << (8 * size)) - 1 };
        if t.value & !t.mask != 0 || t.mask & !full != 0 {
            return Err(Error::Invalid);
        }
        for i in 0..size {
            let shift = 8 * (size - 1 - i);
            let (m, v) = ((t.mask >> shift) as u8, (t.value >> shift) as u8);
            let at = off + i;
            if (value[at] ^ v) & mask[at] & m != 0 {
                return Err(Error::Invalid);
            }
            mask[at] |= m;
            value[at] |= v;
        }
        reach = reach.max(off + size);
    }
    if mask[12] != 0xff || mask[13] != 0xff {
        return Err(Error::Invalid);
    }
    Ok(Norm { mask: words(&mask), value: words(&value), reach })
}

impl Norm {
    /// The filter that fixes nothing: a free entry's, and init's whole network.
    const ANY: Norm = Norm { mask: [0; NET_HEADER_BYTES / 8], value: [0; NET_HEADER_BYTES / 8], reach: 0 };

    /// Whether `frame` matches: it holds every byte the filter reads, and each fixed bit.
    pub fn matches(&self, frame: &[u8]) -> bool {
        self.matches_head(&head(frame), frame.len())
    }

    /// [`Norm::matches`] for a frame of `len` bytes whose [`head`] is `head`: bytes past
    /// `reach` fix no bits, so a frame ending inside the last word read has zeros there.
    pub fn matches_head(&self, head: &Words, len: usize) -> bool {
        len >= self.reach
            && (0..self.reach.div_ceil(8)).all(|i| (head[i] ^ self.value[i]) & self.mask[i] == 0)
    }

    /// The chain this receive filter goes on: its key's, or the last ([`BUCKETS`]) when it
    /// leaves a key bit free.
    fn chain(&self) -> usize {
        match KEY.iter().all(|&i| byte(&self.mask, i) == 0xff) {
            true => bucket(&self.value),
            false => BUCKETS,
        }
    }

    /// Whether every frame this filter matches also matches `outer`: each bit `outer`
    /// fixes, this one fixes to the same value, and it reads at least as far.
    pub fn within(&self, outer: &Norm) -> bool {
        self.reach >= outer.reach
            && (0..self.mask.len())
                .all(|i| outer.mask[i] & !(self.mask[i] & !(self.value[i] ^ outer.value[i])) == 0)
    }

    /// Whether some frame matches both filters.
    pub fn overlaps(&self, other: &Norm) -> bool {
        (0..self.mask.len()).all(|i| (self.value[i] ^ other.value[i]) & self.mask[i] & other.mask[i] == 0)
    }
}

/// One binding.
#[derive(Clone, Copy, Debug)]
pub struct Entry {
    /// The binder's environment id (0: a free entry; no environment has id 0).
    pub owner: u32,
    rx: Norm,
    tx: Norm,
    shared: bool,
    /// The ring: its address in the owner's space, its slots, the next one to fill.
    ring: u64,
    slots: u32,
    next: u32,
    /// The next entry on this one's receive chain, plus one (0: the end).
    link: u16,
}

/// One scope: a part of the network an environment may bind (`Sys::NetGrant`).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
struct Scope {
    /// The environment's id: an entry in its slot's row is its own only with its id (any
    /// other is a previous occupant's, which is dead: free).
    owner: u32,
    rx: Norm,
    tx: Norm,
    /// Only shared bindings lie within it (`NET_SHARED`), and only such scopes: what every
    /// stack needs a copy of, ARP say, which none may then take for itself.
    shared: bool,
}

impl Scope {
    /// A `NetScope` checked (`Invalid` for a filter the checker refuses, or unknown flags)
    /// and normalized, owned by no one yet.
    fn checked(s: &NetScope) -> Result<Scope, Error> {
        if s.flags & !NET_SHARED != 0 {
            return Err(Error::Invalid);
        }
        Ok(Scope { owner: 0, rx: check(&s.rx)?, tx: check(&s.tx)?, shared: s.flags & NET_SHARED != 0 })
    }

    /// Whether filters `rx` and `tx`, of a binding or a scope that is `shared` (admits only
    /// shared bindings), lie within this scope: both within its filters, and shared if it
    /// admits only shared ones.
    fn holds(&self, rx: &Norm, tx: &Norm, shared: bool) -> bool {
        rx.within(&self.rx) && tx.within(&self.tx) && (shared || !self.shared)
    }
}

/// The environment slot an id names (its low 12 bits), for the rows of scopes.
fn row(id: u32) -> usize {
    (id & 0xfff) as usize
}

/// The binding table: `N` entries, at most [`exo_abi::net::NET_BINDINGS`] per environment
/// (the kernel sizes `N` so that every environment can hold its share at once: no one can
/// fill the table for others), and a row of [`NET_SCOPES`] scopes for each of `E`
/// environment slots.
pub struct Table<const N: usize, const E: usize = 64> {
    entries: [Entry; N],
    scopes: [[Scope; NET_SCOPES]; E],
    /// The first entry of each receive chain, plus one (0: empty).
    chains: [u16; BUCKETS + 1],
    /// The interface's counters (the MAC is the kernel's to fill in).
    pub info: NetInfo,
}

/// What delivering a frame into one ring came to.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Delivery {
    Delivered,
    /// The slot was still full, or the ring is no longer mapped writable: dropped.
    Dropped,
}

impl<const N: usize, const E: usize> Default for Table<N, E> {
    fn default() -> Self {
        Self::new()
    }
}

impl<const N: usize, const E: usize> Table<N, E> {
    /// An empty table: all zeroes (so a kernel `static` of one lies in .bss).
    pub const fn new() -> Self {
        const ANY: Norm = Norm::ANY;
        const FREE: Entry =
            Entry { owner: 0, rx: ANY, tx: ANY, shared: false, ring: 0, slots: 0, next: 0, link: 0 };
        const NO_SCOPE: Scope = Scope { owner: 0, rx: ANY, tx: ANY, shared: false };
        assert!(N < u16::MAX as usize);
        Table {
            entries: [FREE; N],
            scopes: [[NO_SCOPE; NET_SCOPES]; E],
            chains: [0; BUCKETS + 1],
            info: NetInfo::ZERO,
        }
    }

    /// `id`'s own scopes (none for an id whose slot is past the rows).
    fn scopes_of(&self, id: u32) -> impl Iterator<Item = &Scope> {
        self.scopes.get(row(id)).into_iter().flatten().filter(move |s| s.owner == id)
    }

    /// Whether one of `owner`'s scopes holds both filters (see [`Scope::holds`]).
    fn covers(&self, owner: u32, rx: &Norm, tx: &Norm, shared: bool) -> bool {
        self.scopes_of(owner).any(|s| s.holds(rx, tx, shared))
    }

    /// Gives `to` the whole network (init, at boot): a scope that fixes nothing.
    pub fn scope_everything(&mut self, to: u32) {
        let _ = self.grant_row(to, &[Some(Scope { owner: 0, rx: Norm::ANY, tx: Norm::ANY, shared: false })]);
    }

    /// Drops every binding and scope of an environment in slot `slot` (the low 12 bits of
    /// an id), all of them dead: called when the slot's ids start again from the lowest
    /// generation, so that no id reissued later finds an old one's entries. (Until then a
    /// dead environment's entries are dropped lazily: no live one has its id.)
    pub fn forget_slot(&mut self, slot: u32) {
        if let Some(r) = self.scopes.get_mut(slot as usize) {
            r.iter_mut().for_each(|s| s.owner = 0);
        }
        for i in 0..N {
            if self.entries[i].owner != 0 && self.entries[i].owner & 0xfff == slot {
                self.free(i);
            }
        }
    }

    /// `Sys::NetGrant`: gives `to` the scope `scope` if one of `from`'s holds it (else
    /// `Denied`), or with `None` a copy of each of `from`'s. `NoSlot` if `to` would hold
    /// more than [`NET_SCOPES`] (then it is given none).
    pub fn grant(&mut self, from: u32, to: u32, scope: Option<&NetScope>) -> Result<(), Error> {
        let mut given = [None; NET_SCOPES];
        match scope {
            Some(s) => {
                let s = Scope::checked(s)?;
                if !self.covers(from, &s.rx, &s.tx, s.shared) {
                    return Err(Error::Denied);
                }
                given[0] = Some(s);
            }
            None => given.iter_mut().zip(self.scopes_of(from)).for_each(|(g, s)| *g = Some(*s)),
        }
        self.grant_row(to, &given)
    }

    /// `Sys::NetRevoke`: takes the scope `scope` (exactly as given) from `env`
    /// (`NotFound` if it holds none such), then from `env` and each environment `below`
    /// says is its descendant every binding, and from the descendants every scope, that
    /// no longer lies within a scope `env` keeps: what was granted onward goes too.
    pub fn revoke(&mut self, env: u32, scope: &NetScope, below: impl Fn(u32) -> bool) -> Result<(), Error> {
        let want = Scope { owner: env, ..Scope::checked(scope)? };
        let r = self.scopes.get_mut(row(env)).ok_or(Error::NotFound)?;
        r.iter_mut().find(|s| **s == want).ok_or(Error::NotFound)?.owner = 0;
        let kept = *r;
        let covered = |rx: &Norm, tx: &Norm, shared: bool| {
            kept.iter().any(|s| s.owner == env && s.holds(rx, tx, shared))
        };
        for s in self.scopes.iter_mut().flatten().filter(|s| s.owner != 0 && below(s.owner)) {
            if !covered(&s.rx, &s.tx, s.shared) {
                s.owner = 0;
            }
        }
        for i in 0..N {
            let e = &self.entries[i];
            if e.owner != 0 && (e.owner == env || below(e.owner)) && !covered(&e.rx, &e.tx, e.shared) {
                self.free(i);
            }
        }
        Ok(())
    }

    /// Adds `given` to `to`'s row, all or (`NoSlot`) none.
    fn grant_row(&mut self, to: u32, given: &[Option<Scope>]) -> Result<(), Error> {
        let r = self.scopes.get_mut(row(to)).ok_or(Error::NoSlot)?;
        let free = r.iter().filter(|s| s.owner != to).count();
        if given.iter().flatten().count() > free {
            return Err(Error::NoSlot);
        }
        let mut slots = r.iter_mut().filter(|s| s.owner != to);
        for (g, s) in given.iter().flatten().zip(&mut slots) {
            *s = Scope { owner: to, ..*g };
        }
        Ok(())
    }

    /// Frees entry `i` and takes it off its receive chain.
    fn free(&mut self, i: usize) {
        let e = &mut self.entries[i];
        e.owner = 0;
        let (chain, after) = (e.rx.chain(), e.link);
        let mut at = &mut self.chains[chain];
        while *at != 0 {
            if *at as usize == i + 1 {
                *at = after;
                return;
            }
            at = &mut self.entries[*at as usize - 1].link;
        }
    }

    fn live(&self) -> impl Iterator<Item = &Entry> {
        self.entries.iter().filter(|e| e.owner != 0)
    }

    /// Binds for `owner`, at most `cap` bindings each. Entries of environments that are
    /// no longer `alive` are dropped first. The rule: an exclusive binding's receive filter
    /// may overlap no other environment's receive filter, and its transmit filter no other
    /// environment's transmit filter; a shared one may overlap only other shared ones.
    /// Returns the binding's index.
    pub fn bind(
        &mut self,
        owner: u32,
        b: &NetBind,
        cap: usize,
        alive: impl Fn(u32) -> bool,
    ) -> Result<usize, Error> {
        let (rx, tx) = (check(&b.rx)?, check(&b.tx)?);
        if owner == 0
            || b.flags & !NET_SHARED != 0
            || b.slots == 0
            || b.slots > NET_RING_SLOTS
            || !b.ring.is_multiple_of(NET_SLOT as u64)
        {
            return Err(Error::Invalid);
        }
        let shared = b.flags & NET_SHARED != 0;
        if !self.covers(owner, &rx, &tx, shared) {
            return Err(Error::Denied);
        }
        for i in 0..N {
            if self.entries[i].owner != 0 && !alive(self.entries[i].owner) {
                self.free(i);
            }
        }
        if self.live().filter(|e| e.owner == owner).count() >= cap {
            return Err(Error::NoSlot);
        }
        let clash = |e: &Entry| {
            e.owner != owner && !(shared && e.shared) && (e.rx.overlaps(&rx) || e.tx.overlaps(&tx))
        };
        if self.live().any(clash) {
            return Err(Error::Busy);
        }
        let i = self.entries.iter().position(|e| e.owner == 0).ok_or(Error::NoSlot)?;
        self.entries[i] = Entry { owner, rx, tx, shared, ring: b.ring, slots: b.slots, next: 0, link: 0 };
        // At the chain's end: a frame reaches the bindings it matches in the order they came.
        let mut at = &mut self.chains[rx.chain()];
        while *at != 0 {
            at = &mut self.entries[*at as usize - 1].link;
        }
        *at = i as u16 + 1;
        Ok(i)
    }

    /// Removes `owner`'s binding `index`.
    pub fn unbind(&mut self, owner: u32, index: u64) -> Result<(), Error> {
        let i = usize::try_from(index).map_err(|_| Error::NotFound)?;
        match self.entries.get(i) {
            Some(e) if owner != 0 && e.owner == owner => {
                self.free(i);
                Ok(())
            }
            _ => Err(Error::NotFound),
        }
    }

    /// Whether `owner` may send `frame`: a whole frame from the interface's own MAC that
    /// matches the transmit filter of one of its bindings. Counted as sent, or as denied.
    pub fn may_send(&mut self, owner: u32, frame: &[u8]) -> Result<(), Error> {
        let head = head(frame); // (once, for each of the owner's bindings)
        let ok = (exo_abi::net::NET_FRAME_MIN..=NET_FRAME_MAX).contains(&frame.len())
            && frame[6..12] == self.info.mac[..6]
            && self.live().any(|e| e.owner == owner && e.tx.matches_head(&head, frame.len()));
        match ok {
            true => self.info.tx += 1,
            false => self.info.tx_denied += 1,
        }
        ok.then_some(()).ok_or(Error::Denied)
    }

    /// Hands a received `frame` to every binding whose receive filter it matches:
    /// `deliver(owner, slot address)` copies it into the ring. Counts it (delivered,
    /// dropped for a full ring, or unmatched) and returns the copies delivered.
    pub fn receive(&mut self, frame: &[u8], deliver: impl FnMut(u32, u64) -> Delivery) -> u64 {
        let (done, dropped) = self.demux(frame, deliver);
        self.info.rx += 1;
        self.info.unmatched += (done + dropped == 0) as u64;
        self.info.ring_full += dropped as u64;
        done as u64
    }

    /// [`Table::receive`] without the counting: (copies delivered, copies dropped). Tries
    /// the filters on the frame's own chain and on the chain of unkeyed ones: a keyed
    /// filter reads past the key, so a frame too short to have one matches none of them.
    pub fn demux(&mut self, frame: &[u8], mut deliver: impl FnMut(u32, u64) -> Delivery) -> (u32, u32) {
        let (mut done, mut dropped, head) = (0, 0, head(frame));
        let mut at = match frame.len() > KEY[KEY.len() - 1] {
            true => self.chains[bucket(&head)],
            false => 0,
        };
        let mut last = false;
        loop {
            if at == 0 {
                if last {
                    break;
                }
                (at, last) = (self.chains[BUCKETS], true);
                continue;
            }
            let e = &mut self.entries[at as usize - 1];
            at = e.link;
            if !e.rx.matches_head(&head, frame.len()) {
                continue;
            }
            match deliver(e.owner, e.ring + e.next as u64 * NET_SLOT as u64) {
                Delivery::Delivered => {
                    e.next = (e.next + 1) % e.slots;
                    done += 1;
                }
                Delivery::Dropped => dropped += 1,
            }
        }
        (done, dropped)
    }
}

/// Copies `frame` into a ring slot (`slot`: its [`NET_SLOT`] bytes) unless the slot is
/// still full: the frame first, then its length in the header, which hands it over.
pub fn put(slot: &mut [u8], frame: &[u8]) -> Delivery {
    if slot.len() < NET_SLOT || frame.len() > NET_SLOT - 8 || slot[..4] != [0; 4] {
        return Delivery::Dropped;
    }
    slot[8..8 + frame.len()].copy_from_slice(frame);
    slot[..4].copy_from_slice(&(frame.len() as u32).to_le_bytes());
    Delivery::Delivered
}

#[cfg(test)]
#[path = "netfilter_tests.rs"]
mod tests;
