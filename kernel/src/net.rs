//! The network, multiplexed by packet filter: secure bindings of frames to environments.
//!
//! An environment binds with a receive filter, a transmit filter and a ring in its own
//! memory (`Sys::NetBind`); the filter language, its checker, the conflict rule and the
//! table are `exo_format::netfilter`. Frames the device received are copied, after DMA into
//! the driver's buffers, into the ring of every binding they match, on `NetPoll` and at
//! every tick; a frame is sent only if the transmit check passes. `docs/network.md`.

use exo_abi::net::{NetBind, NetScope, NET_BINDINGS, NET_FRAME_MAX, NET_RING_SLOTS, NET_SLOT};
use exo_abi::{EnvId, Error};
use exo_bsp::drivers::virtio_net::VirtioNet;
use exo_bsp::dt::{BoardInfo, Region};
use exo_format::netfilter::{self, Delivery, Table};

use crate::cell::Global;
use crate::env::{is_ancestor_or_self, Kernel, Wait, MAX_ENVS};
use crate::{mm, uaccess};

/// Room for every environment's share at once, so no one can fill it for others.
type Bindings = Table<{ MAX_ENVS * NET_BINDINGS }, MAX_ENVS>;

static NET: Global<(Option<VirtioNet>, Bindings)> = Global::new((None, Table::new()));

/// Finds a virtio network device and gives it `dma` (free memory, taken for good).
pub fn probe(info: &BoardInfo, dma: Region) {
    let va = mm::phys_to_virt(dma.base) as *mut u8;
    // SAFETY: every virtio-mmio slot is a device region mapped in the physmap, and only a
    // network device's is driven; the DMA memory was taken from free memory for the NIC.
    let Some(nic) = (unsafe {
        VirtioNet::find(info.virtio_mmio.as_slice(), |pa| mm::phys_to_virt(pa) as usize, va, dma.base)
    }) else {
        return log::info!("net: no NIC (the network calls return NotFound)");
    };
    log::info!("net: virtio-net, MAC {:02x?}", nic.mac());
    NET.with(|(n, t)| (t.info.mac[..6].copy_from_slice(&nic.mac()), *n = Some(nic)));
}

/// `f` on the bindings and scopes, with or without a NIC (init's whole network at load,
/// a slot whose ids start again: `Table::scope_everything`, `Table::forget_slot`).
pub fn table<R>(f: impl FnOnce(&mut Bindings) -> R) -> R {
    NET.with(|(_, t)| f(t))
}

/// `f` on the NIC and the bindings; `NotFound` if there is no NIC.
fn with_net<R>(f: impl FnOnce(&mut VirtioNet, &mut Bindings) -> Result<R, Error>) -> Result<R, Error> {
    NET.with(|(nic, table)| f(nic.as_mut().ok_or(Error::NotFound)?, table))
}

impl Kernel {
    /// `NetBind`.
    pub fn net_bind(&mut self, ptr: u64) -> Result<u64, Error> {
        let (root, id) = (self.envs[self.current].root, self.envs[self.current].id);
        let b: NetBind = uaccess::read(root, ptr)?;
        refuse_if!(b.slots > NET_RING_SLOTS, Error::Invalid);
        uaccess::with_user(root, b.ring, b.slots as u64 * NET_SLOT as u64, true, |_| {})?;
        let alive = |o| self.slot(EnvId(o)).is_ok();
        with_net(|_, t| t.bind(id.0, &b, NET_BINDINGS, alive)).map(|i| i as u64)
    }

    /// `NetGrant`: a scope of the caller's, or (`ptr` 0) all of them, to a descendant.
    pub fn net_grant(&mut self, env: u64, ptr: u64) -> Result<u64, Error> {
        let t = self.target(crate::syscall::env_arg(env)?)?;
        refuse_if!(t == self.current, Error::Invalid);
        let (from, to) = (self.envs[self.current].id.0, self.envs[t].id.0);
        let root = self.envs[self.current].root;
        let scope: Option<NetScope> = (ptr != 0).then(|| uaccess::read(root, ptr)).transpose()?;
        with_net(|_, table| table.grant(from, to, scope.as_ref())).map(|_| 0)
    }

    /// `NetRevoke`: a scope taken back from `env` and everything that leaned on it.
    pub fn net_revoke(&mut self, env: u64, ptr: u64) -> Result<u64, Error> {
        let (t, root) = (self.target(crate::syscall::env_arg(env)?)?, self.envs[self.current].root);
        let scope = uaccess::read(root, ptr)?;
        let below = |o| self.slot(EnvId(o)).is_ok_and(|d| d != t && is_ancestor_or_self(&self.envs, t, d));
        with_net(|_, table| table.revoke(self.envs[t].id.0, &scope, below)).map(|_| 0)
    }

    /// `NetUnbind`.
    pub fn net_unbind(&mut self, index: u64) -> Result<u64, Error> {
        let id = self.envs[self.current].id.0;
        with_net(|_, t| t.unbind(id, index)).map(|_| 0)
    }

    /// `NetSend`: copied in, checked, sent.
    pub fn net_send(&mut self, ptr: u64, len: u64) -> Result<u64, Error> {
        refuse_if!(!(14..=NET_FRAME_MAX as u64).contains(&len), Error::Invalid);
        let (root, id) = (self.envs[self.current].root, self.envs[self.current].id.0);
        let frame = &mut [0u8; NET_FRAME_MAX][..len as usize];
        uaccess::copy_in(root, ptr, frame)?;
        with_net(|nic, t| t.may_send(id, frame).and_then(|_| nic.send(frame).map_err(Error::from))).map(|_| 0)
    }

    /// `NetPoll`: the device drained into the rings, and the counters to `ptr`.
    pub fn net_poll(&mut self, ptr: u64) -> Result<u64, Error> {
        let delivered = self.net_drain();
        let info = with_net(|_, t| Ok(t.info))?;
        if ptr != 0 {
            uaccess::write(self.envs[self.current].root, ptr, &info)?;
        }
        Ok(delivered)
    }

    /// Copies every frame the device holds into the rings of the bindings it matches
    /// (through the binder's own tables: a ring no longer mapped writable drops it): on
    /// `NetPoll`, and at every tick of the clock, which wakes every `NetWait` (`sched.rs`).
    pub fn net_drain(&mut self) -> u64 {
        let mut delivered = 0;
        let _ = with_net(|nic, t| {
            Ok(nic.recv(|frame| {
                delivered += t.receive(frame, |owner, va| {
                    let (s, mut r) = (self.slot(EnvId(owner)), Delivery::Dropped);
                    let root = s.map_or(0, |s| self.envs[s].root);
                    let _ = uaccess::with_user(root, va, NET_SLOT as u64, true, |slot| {
                        r = netfilter::put(slot, frame)
                    });
                    r
                })
            }))
        });
        delivered
    }

    /// `NetWait`: blocked until the next tick, or until another environment yields to it;
    /// not at all if the word at `word` (unless 0) no longer holds `expected`.
    pub fn net_wait(&mut self, cur: usize, word: u64, expected: u64) -> Result<Option<u64>, Error> {
        if word != 0 && uaccess::read::<u64>(self.envs[cur].root, word)? != expected {
            return Ok(Some(0)); // (read under the lock: a `YieldTo` after the change wakes it)
        }
        self.envs[cur].frame().x[0] = 0;
        self.block(cur, Wait::Net);
        Ok(None)
    }
}
