//! The network's share of the ABI: packet filters, a binding's arguments, the receive ring's
//! slot format and the interface's counters. `docs/network.md` explains the rules; the
//! checker and the interpreter are `exo_format::netfilter`.

/// Terms one filter may hold: the bound on its cost.
pub const NET_TERMS: usize = 8;
/// Filters look only at a frame's first bytes: Ethernet, an IPv4 header without options
/// and the first bytes of what follows (ports, ICMP type).
pub const NET_HEADER_BYTES: usize = 64;
/// Bytes of one receive-ring slot: an 8-byte header ([`NetSlot`]) and the frame.
pub const NET_SLOT: usize = 2048;
/// Slots one ring may have.
pub const NET_RING_SLOTS: u32 = 64;
/// Bindings one environment may hold at once.
pub const NET_BINDINGS: usize = 4;
/// The largest Ethernet frame sent or received (no FCS, no VLAN tag).
pub const NET_FRAME_MAX: usize = 1514;
/// The smallest: a whole Ethernet header.
pub const NET_FRAME_MIN: usize = 14;
/// Scopes one environment may hold at once ([`crate::Sys::NetGrant`]).
pub const NET_SCOPES: usize = 4;
/// [`NetBind::flags`]: the binding may overlap other shared bindings, and every one of them
/// gets a copy of each frame they match (for ARP: see `docs/network.md`).
pub const NET_SHARED: u32 = 1;

/// One predicate: the big-endian field of `size` bytes (1, 2 or 4) at `offset`, masked
/// with `mask`, equals `value`.
#[repr(C)]
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct NetTerm {
    pub offset: u16,
    pub size: u8,
    pub _pad: u8,
    pub mask: u32,
    pub value: u32,
}

/// A conjunction of `count` terms: a frame matches when every one holds.
#[repr(C)]
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct NetFilter {
    pub count: u32,
    pub _pad: u32,
    pub terms: [NetTerm; NET_TERMS],
}

impl NetFilter {
    /// A filter of the given `(offset, size, value)` terms, each with a full mask.
    pub fn exact(terms: &[(u16, u8, u32)]) -> NetFilter {
        let mut f = NetFilter::default();
        for (t, &(offset, size, value)) in f.terms.iter_mut().zip(terms) {
            let mask = if size >= 4 { u32::MAX } else { (1u32 << (8 * size as u32)) - 1 };
            *t = NetTerm { offset, size, _pad: 0, mask, value };
        }
        f.count = terms.len().min(NET_TERMS) as u32;
        f
    }
}

/// The argument of `Sys::NetBind`: what to receive, what may be sent, and where received
/// frames go (`slots` slots of [`NET_SLOT`] bytes at `ring`, in the caller's own memory).
#[repr(C)]
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct NetBind {
    pub rx: NetFilter,
    pub tx: NetFilter,
    pub ring: u64,
    pub slots: u32,
    pub flags: u32,
}

/// The argument of `Sys::NetGrant`: the part of the network a descendant may bind. A
/// binding lies within it when every bit each of these filters fixes, the binding's
/// filter fixes to the same value; and, if `flags` has [`NET_SHARED`], when the binding
/// is shared too (so no one holding the scope can take what it covers for itself).
#[repr(C)]
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct NetScope {
    pub rx: NetFilter,
    pub tx: NetFilter,
    pub flags: u32,
}

/// The header of a receive-ring slot. `len` 0: the slot is empty, the kernel's to fill;
/// otherwise a frame of `len` bytes follows, the environment's until it writes 0 back.
#[repr(C)]
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct NetSlot {
    pub len: u32,
    pub _pad: u32,
}

/// What `Sys::NetPoll` reports: the interface's MAC address and its counters.
#[repr(C)]
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct NetInfo {
    pub mac: [u8; 8],
    /// Frames received from the device, and sent to it.
    pub rx: u64,
    pub tx: u64,
    /// Frames received that matched no binding (dropped).
    pub unmatched: u64,
    /// Copies dropped because the binder's ring was full or no longer mapped writable.
    pub ring_full: u64,
    /// Sends refused by the transmit check.
    pub tx_denied: u64,
}

impl NetInfo {
    pub const ZERO: NetInfo = NetInfo { mac: [0; 8], rx: 0, tx: 0, unmatched: 0, ring_full: 0, tx_denied: 0 };
}
