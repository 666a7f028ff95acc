//! The network interface as the kernel offers it: packet bindings whose frames arrive in a
//! receive ring in this environment's own memory, and checked sends. A TCP/IP stack sits on
//! top (`exo-net`); the filters for the usual bindings are here too. `docs/network.md`.

use exo_abi::net::{NetBind, NetFilter, NetInfo, NetScope, NET_SHARED, NET_SLOT};
use exo_abi::Error;

use crate::sys;
use crate::vm::{self, PAGE, RW};

pub const ETH_IPV4: u32 = 0x0800;
pub const ETH_ARP: u32 = 0x0806;
pub const IP_ICMP: u32 = 1;
pub const IP_TCP: u32 = 6;
pub const IP_UDP: u32 = 17;

/// Every ARP frame (bound shared: each stack needs the replies to its own requests).
pub fn arp() -> NetFilter {
    NetFilter::exact(&[(12, 2, ETH_ARP)])
}

/// IPv4 without options, protocol `proto`, to (`dst` true) or from port `port` (for ICMP
/// echo, the identifier sits where a port would).
pub fn ipv4_port(proto: u32, port: u16, dst: bool) -> NetFilter {
    let at = match (proto, dst) {
        (IP_ICMP, _) => 38,
        (_, true) => 36,
        (_, false) => 34,
    };
    NetFilter::exact(&[(12, 2, ETH_IPV4), (14, 1, 0x45), (23, 1, proto), (at, 2, port as u32)])
}

/// The scope of a TCP or UDP port (receiving to it, sending from it), or of one ICMP echo
/// identifier: what a descendant needs to serve or ask on it ([`crate::sys::net_grant`]).
pub fn port_scope(proto: u32, port: u16) -> NetScope {
    NetScope { rx: ipv4_port(proto, port, true), tx: ipv4_port(proto, port, false), flags: 0 }
}

/// The scope of every ARP frame, for shared bindings only: each stack binds ARP shared,
/// and no holder of this scope can take ARP for itself and shut the others out.
pub fn arp_scope() -> NetScope {
    NetScope { rx: arp(), tx: arp(), flags: NET_SHARED }
}

/// The scope of the DHCP client's port (UDP 68), for shared bindings only, as ARP's:
/// stacks ask side by side, each keeping the answers to its own transaction.
pub fn dhcp_scope() -> NetScope {
    NetScope { flags: NET_SHARED, ..port_scope(IP_UDP, 68) }
}

/// The scope of IPv4 protocol `proto` whole (every ICMP identifier, say).
pub fn protocol_scope(proto: u32) -> NetScope {
    let f = NetFilter::exact(&[(12, 2, ETH_IPV4), (14, 1, 0x45), (23, 1, proto)]);
    NetScope { rx: f, tx: f, flags: 0 }
}

/// A receive ring: slots of [`NET_SLOT`] bytes in fresh pages of this environment's own,
/// which the kernel fills and this side empties, in order.
pub struct Ring {
    va: u64,
    slots: u32,
    next: u32,
}

impl Ring {
    /// A ring of `slots` slots (rounded up to whole pages), mapped read-write.
    pub fn new(slots: u32) -> Result<Ring, Error> {
        let per_page = (PAGE as usize / NET_SLOT) as u32;
        let pages = slots.div_ceil(per_page).max(1) as u64;
        let va = vm::alloc_va(pages);
        for p in 0..pages {
            vm::map_new(va + p * PAGE, RW)?;
        }
        Ok(Ring { va, slots: pages as u32 * per_page, next: 0 })
    }

    pub fn va(&self) -> u64 {
        self.va
    }

    pub fn slots(&self) -> u32 {
        self.slots
    }

    /// The next received frame, handed to `f`; its slot is given back afterwards.
    pub fn recv<R>(&mut self, f: impl FnOnce(&[u8]) -> R) -> Option<R> {
        let slot = (self.va + self.next as u64 * NET_SLOT as u64) as *mut u32;
        // SAFETY: `slot` is the header word of one of our slots, in pages this ring mapped
        // read-write for its life; the kernel writes it only while this code does not run.
        let len = unsafe { slot.read_volatile() } as usize;
        if len == 0 {
            return None;
        }
        let len = len.min(NET_SLOT - 8);
        // SAFETY: the frame's `len` bytes follow the 8-byte header inside the same slot.
        let frame = unsafe { core::slice::from_raw_parts((slot as *const u8).wrapping_add(8), len) };
        let r = f(frame);
        // SAFETY: as above; writing 0 hands the slot back to the kernel.
        unsafe { slot.write_volatile(0) };
        self.next = (self.next + 1) % self.slots;
        Some(r)
    }

    /// Unmaps and frees the ring's pages.
    pub fn free(self) {
        let pages = (self.slots as u64 * NET_SLOT as u64).div_ceil(PAGE);
        for p in 0..pages {
            let _ = vm::unmap_free(self.va + p * PAGE);
        }
    }
}

/// A binding and its ring.
pub struct Binding {
    pub index: u64,
    pub ring: Ring,
}

impl Binding {
    /// Binds `rx`/`tx` with a fresh ring of `slots` slots.
    pub fn new(rx: NetFilter, tx: NetFilter, slots: u32, shared: bool) -> Result<Binding, Error> {
        let ring = Ring::new(slots)?;
        let b =
            NetBind { rx, tx, ring: ring.va, slots: ring.slots, flags: if shared { NET_SHARED } else { 0 } };
        match sys::net_bind(&b) {
            Ok(index) => Ok(Binding { index, ring }),
            Err(e) => {
                ring.free();
                Err(e)
            }
        }
    }

    /// Unbinds and frees the ring.
    pub fn close(self) {
        let _ = sys::net_unbind(self.index);
        self.ring.free();
    }
}

/// The interface's MAC address and counters (`NotFound`: no network device).
pub fn info() -> Result<NetInfo, Error> {
    let mut i = NetInfo::default();
    sys::net_poll(Some(&mut i))?;
    Ok(i)
}
