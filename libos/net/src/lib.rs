//! exo-net: a TCP/IP stack for one application, smoltcp over exo's packet bindings.
//!
//! The kernel only demultiplexes frames by filter (`docs/network.md`); everything from ARP
//! up is here, in the application that links this crate. A [`Stack`] holds the bindings the
//! application asked for (always a shared ARP binding; TCP/UDP ports and ICMP identifiers
//! as it needs), a smoltcp `Interface` over them ([`Nic`]) and its sockets. [`Stack::dhcp`]
//! gets the address from QEMU's user network (10.0.2.15) over a UDP port-68 binding it holds
//! only while it asks. Waiting is `NetWait` (until the next tick, when the kernel polls the
//! device too), so an idle server costs nothing but a wake-up per tick.
#![no_std]
#![forbid(unsafe_code)]

extern crate alloc;

use alloc::vec::Vec;

use exo_libos::abi::net::NetFilter;
use exo_libos::abi::Error;
use exo_libos::nic::{self, Binding, IP_UDP};
use exo_libos::{sys, vm};
use smoltcp::iface::{Config, Interface, SocketHandle, SocketSet};
use smoltcp::phy::{Device, DeviceCapabilities, Medium, RxToken, TxToken};
use smoltcp::socket::dhcpv4;
use smoltcp::time::Instant;
use smoltcp::wire::{EthernetAddress, HardwareAddress, IpCidr, Ipv4Address, Ipv4Cidr};

pub use smoltcp;

pub mod http;

/// Slots in each binding's receive ring.
const RING_SLOTS: u32 = 32;

/// The interface as smoltcp sees it: frames from every binding's ring, sends through the
/// kernel's transmit check.
pub struct Nic {
    bindings: Vec<Binding>,
    /// Frames the transmit check refused (a stack bug: it sent outside its bindings).
    pub refused: u64,
}

impl Nic {
    /// A frame waiting in any ring, copied out.
    fn next_frame(&mut self) -> Option<Vec<u8>> {
        self.bindings.iter_mut().find_map(|b| b.ring.recv(|f| f.to_vec()))
    }
}

pub struct Rx(Vec<u8>);
pub struct Tx<'a>(&'a mut u64);

impl RxToken for Rx {
    fn consume<R, F: FnOnce(&[u8]) -> R>(self, f: F) -> R {
        f(&self.0)
    }
}

impl TxToken for Tx<'_> {
    fn consume<R, F: FnOnce(&mut [u8]) -> R>(self, len: usize, f: F) -> R {
        let mut buf = [0u8; 1514];
        let r = f(&mut buf[..len.min(1514)]);
        if sys::net_send(&buf[..len.min(1514)]).is_err() {
            *self.0 += 1;
        }
        r
    }
}

impl Device for Nic {
    type RxToken<'a> = Rx;
    type TxToken<'a> = Tx<'a>;

    fn receive(&mut self, _: Instant) -> Option<(Rx, Tx<'_>)> {
        let f = self.next_frame()?;
        Some((Rx(f), Tx(&mut self.refused)))
    }

    fn transmit(&mut self, _: Instant) -> Option<Tx<'_>> {
        Some(Tx(&mut self.refused))
    }

    fn capabilities(&self) -> DeviceCapabilities {
        let mut c = DeviceCapabilities::default();
        c.medium = Medium::Ethernet;
        c.max_transmission_unit = 1514;
        c
    }
}

/// Milliseconds since boot, smoltcp's clock.
pub fn now() -> Instant {
    let hz = vm::kinfo().counter_hz.max(1);
    Instant::from_millis((sys::now() / (hz / 1000).max(1)) as i64)
}

/// One application's network stack.
pub struct Stack {
    pub iface: Interface,
    pub nic: Nic,
    pub sockets: SocketSet<'static>,
    pub mac: [u8; 6],
}

/// Why a stack could not start.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum NetError {
    /// A system call failed: no device (`NotFound`), a taken port (`Busy`), ...
    Sys(Error),
    /// No DHCP lease within the time given.
    NoLease,
}

impl From<Error> for NetError {
    fn from(e: Error) -> Self {
        NetError::Sys(e)
    }
}

impl Stack {
    /// A stack bound with a shared ARP binding and `binds` (receive filter, transmit filter).
    pub fn new(binds: &[(NetFilter, NetFilter)]) -> Result<Stack, NetError> {
        let info = nic::info()?;
        let mac: [u8; 6] = info.mac[..6].try_into().unwrap_or_default();
        let mut bindings = Vec::new();
        bindings.push(Binding::new(nic::arp(), nic::arp(), RING_SLOTS, true)?);
        for &(rx, tx) in binds {
            match Binding::new(rx, tx, RING_SLOTS, false) {
                Ok(b) => bindings.push(b),
                Err(e) => {
                    bindings.into_iter().for_each(Binding::close);
                    return Err(e.into());
                }
            }
        }
        let mut nic = Nic { bindings, refused: 0 };
        let mut config = Config::new(HardwareAddress::Ethernet(EthernetAddress(mac)));
        // Every stack its own DHCP transaction ids, TCP initial sequence numbers and
        // ephemeral ports (smoltcp's seed is otherwise 0: a restarted server would repeat
        // its predecessor's).
        config.random_seed = sys::now() ^ ((sys::env_self().0 as u64) << 32);
        let iface = Interface::new(config, &mut nic, now());
        Ok(Stack { iface, nic, sockets: SocketSet::new(Vec::new()), mac })
    }

    /// Runs the stack once: frames in, timers, frames out.
    pub fn poll(&mut self) {
        let _ = sys::net_poll(None);
        self.iface.poll(now(), &mut self.nic, &mut self.sockets);
    }

    /// Polls, then sleeps until the next tick unless a frame is already waiting.
    pub fn wait(&mut self) {
        self.poll();
        if sys::net_poll(None).unwrap_or(0) == 0 {
            let _ = sys::net_wait();
        }
    }

    /// Asks for an address by DHCP, for at most `ticks` ticks; configures the interface and
    /// its default route. The port-68 binding is shared (`nic::dhcp_scope`: stacks ask side
    /// by side, smoltcp keeping the answers to its own transaction) and held only
    /// meanwhile; if a stack holds the port for itself, this waits for its turn, within
    /// the same bound.
    pub fn dhcp(&mut self, ticks: u32) -> Result<Ipv4Cidr, NetError> {
        let rx = nic::ipv4_port(IP_UDP, 68, true);
        let tx = nic::ipv4_port(IP_UDP, 68, false);
        // A deadline on the clock, not a count of sleeps: any environment may end a
        // `NetWait` early (`YieldTo`), and a frame waiting skips it.
        let k = vm::kinfo();
        let end = sys::now() + u64::from(ticks) * k.counter_hz / k.tick_hz.max(1);
        let binding = loop {
            match Binding::new(rx, tx, 8, true) {
                Ok(b) => break b,
                Err(Error::Busy) if sys::now() < end => {
                    let _ = sys::net_wait();
                }
                Err(e) => return Err(e.into()),
            }
        };
        self.nic.bindings.push(binding);
        // Ask again every second (smoltcp waits 10 s after a lost DISCOVER, 5 s after a lost
        // REQUEST: longer than the bounds programs give, on a network that drops nothing
        // but whose answers can be late on a busy host).
        let mut dhcp = dhcpv4::Socket::new();
        let mut retry = dhcpv4::RetryConfig::default();
        retry.discover_timeout = smoltcp::time::Duration::from_secs(1);
        retry.initial_request_timeout = smoltcp::time::Duration::from_secs(1);
        dhcp.set_retry_config(retry);
        let handle: SocketHandle = self.sockets.add(dhcp);
        let mut lease = None;
        while lease.is_none() && sys::now() < end {
            self.wait();
            if let Some(dhcpv4::Event::Configured(c)) = self.sockets.get_mut::<dhcpv4::Socket>(handle).poll()
            {
                lease = Some((c.address, c.router));
            }
        }
        self.sockets.remove(handle);
        if let Some(b) = self.nic.bindings.pop() {
            b.close();
        }
        let (address, router) = lease.ok_or(NetError::NoLease)?;
        self.iface.update_ip_addrs(|a| {
            a.clear();
            let _ = a.push(IpCidr::Ipv4(address));
        });
        if let Some(r) = router {
            let _ = self.iface.routes_mut().add_default_ipv4_route(r);
        }
        Ok(address)
    }

    /// The gateway QEMU's user network has (for `ping`'s default).
    pub const QEMU_GATEWAY: Ipv4Address = Ipv4Address::new(10, 0, 2, 2);

    /// Unbinds everything.
    pub fn close(self) {
        self.nic.bindings.into_iter().for_each(Binding::close);
    }
}
