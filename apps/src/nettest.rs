//! EL0 tests of the network's packet bindings, against QEMU's restricted user network on
//! `virt` (its gateway 10.0.2.2 answers ARP and ICMP echo; nothing outside is reachable).
//! Run by init with `exo.test=net`. Frames are built by hand here, so these tests need no
//! TCP/IP stack; the hostile ones try what a program without rights would.

use alloc::vec::Vec;

use crate::runner::check;
use exo_libos::abi::net::{NetBind, NetFilter, NetScope, NET_BINDINGS, NET_RING_SLOTS, NET_SLOT};
use exo_libos::abi::{EnvId, Error};
use exo_libos::nic::{self, Binding, IP_ICMP, IP_UDP};
use exo_libos::process::{self, Fork, Net};
use exo_libos::sys;
use exo_libos::vm;

type Test = (&'static str, fn() -> Result<(), &'static str>);

pub const TESTS: &[Test] = &[
    ("gateway_answers_an_arp_request_into_the_shared_ring", arp_gateway),
    ("gateway_answers_a_ping_into_the_icmp_binding", ping_gateway),
    ("two_environments_each_get_only_their_own_replies", two_pingers),
    ("hostile_child_cannot_bind_a_port_or_a_wider_filter_already_taken", taken_port),
    ("hostile_child_cannot_send_as_another_binding_or_another_mac", spoofing),
    ("hostile_ring_must_be_the_binders_own_writable_memory", bad_rings),
    ("hostile_filters_outside_the_language_are_refused", bad_filters),
    ("hostile_child_cannot_fill_the_binding_table", table_hog),
    ("a_crashed_binder_frees_its_port_and_the_network_goes_on", dead_binder),
    ("hostile_ring_unmapped_or_remapped_after_bind_gets_nothing_written", moved_ring),
    ("hostile_child_never_given_the_network_can_neither_bind_nor_send_nor_pass_it_on", offline_child),
    ("hostile_child_given_one_port_binds_and_passes_on_only_that_port", one_port_child),
    ("a_revoked_scope_takes_the_bindings_that_needed_it_down_the_family", revoked_scope),
    ("hostile_child_given_arp_cannot_take_it_for_itself_nor_pass_it_on_so", arp_for_itself),
];

pub fn run(filter: &str) -> usize {
    if nic::info().is_err() {
        exo_libos::println!("nettest: no network device (QEMU raspi4b has none)");
    }
    crate::runner::run_suite("nettest", TESTS, filter, |test| test())
}

const ME: [u8; 4] = [10, 0, 2, 15];
const GATEWAY: [u8; 4] = [10, 0, 2, 2];
/// Ticks to wait for an answer (each `net_wait` is one).
const PATIENCE: u32 = 100;

fn mac() -> Result<[u8; 6], &'static str> {
    let i = nic::info().map_err(|_| "no network device")?;
    Ok(i.mac[..6].try_into().unwrap_or_default())
}

fn arp_request(mac: [u8; 6]) -> [u8; 42] {
    let mut f = [0u8; 42];
    f[..6].fill(0xff);
    f[6..12].copy_from_slice(&mac);
    f[12..14].copy_from_slice(&[0x08, 0x06]);
    f[14..22].copy_from_slice(&[0, 1, 0x08, 0, 6, 4, 0, 1]); // Ethernet/IPv4, request
    f[22..28].copy_from_slice(&mac);
    f[28..32].copy_from_slice(&ME);
    f[38..42].copy_from_slice(&GATEWAY);
    f
}

fn checksum(bytes: &[u8]) -> u16 {
    let mut sum: u32 =
        bytes.chunks(2).map(|c| u16::from_be_bytes([c[0], *c.get(1).unwrap_or(&0)]) as u32).sum();
    while sum > 0xffff {
        sum = (sum & 0xffff) + (sum >> 16);
    }
    !(sum as u16)
}

/// An ICMP echo request to the gateway with identifier `id`, sequence `seq`.
fn echo(mac: [u8; 6], gw: [u8; 6], id: u16, seq: u16) -> [u8; 74] {
    let mut f = [0u8; 74];
    f[..6].copy_from_slice(&gw);
    f[6..12].copy_from_slice(&mac);
    f[12..14].copy_from_slice(&[0x08, 0x00]);
    let ip = &mut f[14..34];
    ip[..4].copy_from_slice(&[0x45, 0, 0, 60]);
    ip[8..10].copy_from_slice(&[64, 1]);
    ip[12..16].copy_from_slice(&ME);
    ip[16..20].copy_from_slice(&GATEWAY);
    let c = checksum(ip);
    ip[10..12].copy_from_slice(&c.to_be_bytes());
    let icmp = &mut f[34..];
    icmp[0] = 8;
    icmp[4..6].copy_from_slice(&id.to_be_bytes());
    icmp[6..8].copy_from_slice(&seq.to_be_bytes());
    icmp[8..].iter_mut().enumerate().for_each(|(i, b)| *b = i as u8);
    let c = checksum(icmp);
    icmp[2..4].copy_from_slice(&c.to_be_bytes());
    f
}

/// Polls until a frame of `ring` passes `want` (and returns it), at most PATIENCE ticks.
/// Frames that do not pass are collected in `others`.
fn wait_for(b: &mut Binding, want: impl Fn(&[u8]) -> bool, others: &mut Vec<Vec<u8>>) -> Option<Vec<u8>> {
    for _ in 0..PATIENCE {
        let _ = sys::net_poll(None);
        while let Some(f) = b.ring.recv(|f| f.to_vec()) {
            if want(&f) {
                return Some(f);
            }
            others.push(f);
        }
        let _ = sys::net_wait();
    }
    None
}

fn is_arp_reply(f: &[u8]) -> bool {
    f.len() >= 42 && f[12..14] == [8, 6] && f[20..22] == [0, 2] && f[28..32] == GATEWAY
}

/// ARPs for the gateway over a fresh shared binding; returns its MAC.
fn gateway_mac() -> Result<[u8; 6], &'static str> {
    let mac = mac()?;
    let mut arp = Binding::new(nic::arp(), nic::arp(), 4, true).map_err(|_| "bind arp")?;
    let sent = sys::net_send(&arp_request(mac));
    let reply = wait_for(&mut arp, is_arp_reply, &mut Vec::new());
    arp.close();
    sent.map_err(|_| "send arp")?;
    let reply = reply.ok_or("no ARP reply from the gateway")?;
    Ok(reply[22..28].try_into().unwrap_or_default())
}

fn arp_gateway() -> Result<(), &'static str> {
    let gw = gateway_mac()?;
    check(gw != [0; 6] && gw != mac()?, "the gateway's MAC is not believable")?;
    let i = nic::info().map_err(|_| "info")?;
    check(i.rx > 0 && i.tx > 0, "the counters did not move")
}

fn icmp_binding(id: u16) -> Result<Binding, Error> {
    let f = nic::ipv4_port(IP_ICMP, id, true);
    Binding::new(f, f, 4, false)
}

/// Pings the gateway with identifier `id`; Ok if the reply came, with what else arrived.
fn ping(gw: [u8; 6], id: u16) -> Result<Vec<Vec<u8>>, &'static str> {
    let mut b = icmp_binding(id).map_err(|_| "bind icmp")?;
    let mut others = Vec::new();
    let sent = sys::net_send(&echo(mac()?, gw, id, 1));
    let reply =
        wait_for(&mut b, |f| f.len() >= 42 && f[34] == 0 && f[38..40] == id.to_be_bytes(), &mut others);
    b.close();
    sent.map_err(|_| "send echo")?;
    reply.ok_or("no echo reply")?;
    Ok(others)
}

fn ping_gateway() -> Result<(), &'static str> {
    let gw = gateway_mac()?;
    let others = ping(gw, 0x4242)?;
    check(others.is_empty(), "the ICMP binding received a frame it does not match")
}

fn in_child(f: impl FnOnce() -> i32) -> Result<i32, &'static str> {
    match process::fork().map_err(|_| "fork")? {
        Fork::Child => sys::exit(f()),
        Fork::Parent(c) => process::wait(c).map_err(|_| "wait"),
    }
}

fn two_pingers() -> Result<(), &'static str> {
    let gw = gateway_mac()?;
    let pinger = |id: u16| match ping(gw, id) {
        Ok(others) if others.is_empty() => 0,
        Ok(_) => 2,
        Err(_) => 1,
    };
    let (a, b) = match process::fork().map_err(|_| "fork")? {
        Fork::Child => sys::exit(pinger(0x1111)),
        Fork::Parent(c) => (pinger(0x2222), process::wait(c).map_err(|_| "wait")?),
    };
    check(a != 2 && b != 2, "an environment received another's reply")?;
    check(a == 0 && b == 0, "a pinger got no reply")
}

fn udp_bind(port: u16) -> NetBind {
    NetBind {
        rx: nic::ipv4_port(IP_UDP, port, true),
        tx: nic::ipv4_port(IP_UDP, port, false),
        ..NetBind::default()
    }
}

/// `b` with a fresh ring of two slots, bound; the ring is not freed (the child exits).
fn bind_with_ring(mut b: NetBind) -> Result<u64, Error> {
    let ring = nic::Ring::new(2)?;
    (b.ring, b.slots) = (ring.va(), ring.slots());
    sys::net_bind(&b)
}

fn taken_port() -> Result<(), &'static str> {
    let mine = Binding::new(udp_bind(5000).rx, udp_bind(5000).tx, 2, false).map_err(|_| "bind")?;
    let status = in_child(|| {
        let same = bind_with_ring(udp_bind(5000));
        let wider =
            bind_with_ring(NetBind { rx: NetFilter::exact(&[(12, 2, nic::ETH_IPV4)]), ..udp_bind(5999) });
        let shared = bind_with_ring(NetBind { flags: exo_libos::abi::net::NET_SHARED, ..udp_bind(5000) });
        let other = bind_with_ring(udp_bind(5001));
        [same, wider, shared].iter().filter(|r| **r == Err(Error::Busy)).count() as i32
            + 10 * other.is_ok() as i32
    });
    mine.close();
    check(status? % 10 == 3, "a child bound a filter that takes its parent's port")?;
    check(status? / 10 == 1, "a child could not bind a free port")
}

fn spoofing() -> Result<(), &'static str> {
    let (mac, gw) = (mac()?, [0x52, 0x55, 10, 0, 2, 2]);
    let parent = Binding::new(nic::ipv4_port(IP_ICMP, 7, true), nic::ipv4_port(IP_ICMP, 7, true), 2, false)
        .map_err(|_| "bind")?;
    let status = in_child(|| {
        if bind_with_ring(udp_bind(5002)).is_err() {
            return 100;
        }
        let as_parent = sys::net_send(&echo(mac, gw, 7, 1));
        let mut other_mac = echo(mac, gw, 7, 1);
        other_mac[11] ^= 0x80;
        let bad_ptr =
            exo_libos::sys::raw(exo_libos::abi::Sys::NetSend as u64, [0xffff_0000_0000_0000, 60, 0, 0, 0, 0]);
        let short = sys::net_send(&[0u8; 13]);
        let long = sys::net_send(&[0u8; 1515]);
        (as_parent == Err(Error::Denied)) as i32
            + (sys::net_send(&other_mac) == Err(Error::Denied)) as i32
            + (exo_libos::abi::result(bad_ptr) == Err(Error::Fault)) as i32
            + (short == Err(Error::Invalid)) as i32
            + (long == Err(Error::Invalid)) as i32
    });
    parent.close();
    check(status? == 5, "a child sent as another binding, another MAC or with bad arguments")
}

fn bad_rings() -> Result<(), &'static str> {
    let try_ring = |ring: u64, slots: u32| sys::net_bind(&NetBind { ring, slots, ..udp_bind(5003) });
    let unmapped = vm::alloc_va(1);
    let code = (bad_rings as *const () as u64) & !0xfff;
    check(try_ring(unmapped, 2) == Err(Error::Fault), "a ring in unmapped memory")?;
    check(try_ring(code, 2) == Err(Error::Fault), "a ring in read-only code")?;
    check(try_ring(0xffff_0000_0000_0000, 2) == Err(Error::Fault), "a ring in the kernel half")?;
    let ring = nic::Ring::new(2).map_err(|_| "ring")?;
    let va = ring.va();
    let results = [
        try_ring(va + 8, 1),
        try_ring(va, 0),
        try_ring(va, NET_RING_SLOTS + 1),
        try_ring(va, u32::MAX),
        try_ring(va, 3), // past the pages this ring mapped
    ];
    // A forked child sees the parent's ring read-only (copy-on-write): it cannot bind it
    // to have the kernel write the parent's frames.
    let child = in_child(|| (try_ring(va, 2) == Err(Error::Fault)) as i32);
    ring.free();
    check(results[..4].iter().all(|r| *r == Err(Error::Invalid)), "a misaligned or oversized ring")?;
    check(results[4] == Err(Error::Fault), "a ring reaching past its mapping")?;
    check(child? == 1, "a child bound its parent's ring")?;
    let _ = NET_SLOT;
    Ok(())
}

fn bad_filters() -> Result<(), &'static str> {
    let ring = nic::Ring::new(2).map_err(|_| "ring")?;
    let with = |rx: NetFilter| sys::net_bind(&NetBind { rx, ring: ring.va(), slots: 2, ..udp_bind(5004) });
    let mut bad = [nic::ipv4_port(IP_UDP, 5004, true); 5];
    bad[0].count = 99;
    bad[1].terms[3].offset = 63;
    bad[2].terms[3].size = 3;
    bad[3].terms[3].mask = 0x00ff;
    bad[4] = NetFilter::exact(&[(23, 1, IP_UDP)]); // no EtherType: a catch-all
    let refused = bad.iter().all(|f| with(*f) == Err(Error::Invalid));
    let flags = sys::net_bind(&NetBind { ring: ring.va(), slots: 2, flags: 0x80, ..udp_bind(5004) });
    ring.free();
    check(refused, "a filter outside the language was accepted")?;
    check(flags == Err(Error::Invalid), "unknown flags were accepted")
}

fn table_hog() -> Result<(), &'static str> {
    let status = in_child(|| {
        let ok = (0..NET_BINDINGS as u16).filter(|p| bind_with_ring(udp_bind(6000 + p)).is_ok()).count();
        let over = bind_with_ring(udp_bind(6100));
        (ok == NET_BINDINGS) as i32 + 10 * (over == Err(Error::NoSlot)) as i32
    });
    check(status? == 11, "the per-environment cap did not hold")?;
    // The hog is gone; its ports are free again, and the parent binds as usual.
    let b = Binding::new(udp_bind(6000).rx, udp_bind(6000).tx, 2, false).map_err(|_| "bind after hog")?;
    b.close();
    Ok(())
}

fn dead_binder() -> Result<(), &'static str> {
    // The child binds port 80 and crashes (a panic ends it, as a fault would).
    let status = in_child(|| match bind_with_ring(udp_bind(80)) {
        Ok(_) => panic!("nettest: a server crashing with its port bound"),
        Err(_) => 1,
    })?;
    check(status == exo_libos::rt::PANIC_STATUS, "the child could not bind, or did not crash")?;
    let b = Binding::new(udp_bind(80).rx, udp_bind(80).tx, 2, false)
        .map_err(|_| "the dead child's port is still taken")?;
    b.close();
    // And the network still works for everyone else.
    gateway_mac().map(drop)
}

/// Pings the gateway as `id` and polls until `ring_full` (drops) passes `before`, at most
/// 5 × PATIENCE ticks; the new `ring_full`.
fn ping_and_count_drops(gw: [u8; 6], id: u16, before: u64) -> Result<u64, &'static str> {
    sys::net_send(&echo(mac()?, gw, id, 2)).map_err(|_| "send echo")?;
    // Five times the usual patience: QEMU answers on a host thread, and a busy host can be
    // late by many guest ticks under -icount.
    for _ in 0..5 * PATIENCE {
        let i = nic::info().map_err(|_| "info")?;
        if i.ring_full > before {
            return Ok(i.ring_full);
        }
        let _ = sys::net_wait();
    }
    Ok(nic::info().map_err(|_| "info")?.ring_full)
}

fn moved_ring() -> Result<(), &'static str> {
    let gw = gateway_mac()?;
    let id = 0x5353;
    let mut b = icmp_binding(id).map_err(|_| "bind icmp")?;
    let va = b.ring.va();
    // The ring's frame leaves the ring's address and is mapped elsewhere (as it would be
    // if it were handed on): delivery goes through the binder's tables at the bound
    // address, so nothing may be written into the frame where it now lives.
    let pa = exo_libos::abi::pte::Pte(vm::unmap(va).map_err(|_| "unmap")?).addr();
    let elsewhere = vm::alloc_va(1);
    vm::map_frame(elsewhere, pa, vm::RW).map_err(|_| "remap")?;
    let start = nic::info().map_err(|_| "info")?.ring_full;
    let after_unmap = ping_and_count_drops(gw, id, start)?;
    let untouched = |what| {
        // SAFETY: `elsewhere` maps one whole page (the frame `pa`) read-write until the
        // end of this test, and nothing else in this environment writes it meanwhile.
        let page = unsafe { core::slice::from_raw_parts(elsewhere as *const u8, vm::PAGE as usize) };
        check(page.iter().all(|b| *b == 0), what)
    };
    untouched("the kernel wrote a frame into the ring's old frame")?;
    // A read-only page in the ring's place: dropped too.
    vm::map_new(va, vm::RO).map_err(|_| "map read-only")?;
    let after_ro = ping_and_count_drops(gw, id, after_unmap)?;
    untouched("the kernel wrote a frame past a read-only ring")?;
    let _ = vm::unmap_free(va);
    // The frame back in place: the binding works again.
    let _ = vm::unmap(elsewhere);
    vm::map_frame(va, pa, vm::RW).map_err(|_| "map back")?;
    let reply = {
        sys::net_send(&echo(mac()?, gw, id, 3)).map_err(|_| "send echo")?;
        wait_for(&mut b, |f| f.len() >= 42 && f[34] == 0, &mut Vec::new())
    };
    b.close();
    check(after_unmap > start, "a reply to an unmapped ring was not counted as dropped")?;
    check(after_ro > after_unmap, "a reply to a read-only ring was not counted as dropped")?;
    check(reply.is_some(), "the ring mapped back received nothing")
}

/// Runs `f` in a child forked with `net` of this environment's network; its exit status.
fn in_child_with(net: Net, f: impl FnOnce() -> i32) -> Result<i32, &'static str> {
    match process::fork_with_network(net).map_err(|_| "fork")? {
        Fork::Child => sys::exit(f()),
        Fork::Parent(c) => process::wait(c).map_err(|_| "wait"),
    }
}

fn udp_scope(port: u16) -> NetScope {
    nic::port_scope(IP_UDP, port)
}

/// A child holds no part of the network it was not given: being a child (a forked copy,
/// even) gives none. It can take no port, not even ARP's shared one, before its parent
/// does; so it can send nothing; and it can give its own child nothing.
fn offline_child() -> Result<(), &'static str> {
    let parent = sys::env_self();
    let status = in_child_with(Net::None, || {
        let refused = [
            bind_with_ring(udp_bind(5010)),
            bind_with_ring(NetBind { flags: exo_libos::abi::net::NET_SHARED, ..udp_bind(5010) }),
            bind_with_ring(NetBind {
                rx: nic::arp(),
                tx: nic::arp(),
                flags: exo_libos::abi::net::NET_SHARED,
                ..NetBind::default()
            }),
        ];
        let mut frame = [0u8; 60];
        frame[6..12].copy_from_slice(&mac().unwrap_or_default());
        frame[12..14].copy_from_slice(&[0x08, 0x06]);
        let sent = sys::net_send(&frame);
        let scope = udp_scope(5010);
        let upwards = sys::net_grant(parent, Some(&scope));
        let to_self = sys::net_grant(EnvId::SELF, Some(&scope));
        let onwards = match process::fork_with_network(Net::Only(&[scope])) {
            Ok(Fork::Child) => sys::exit(0),
            Ok(Fork::Parent(c)) => process::wait(c).map_or(1, |_| 1),
            Err(e) => (e == Error::Denied) as i32 * 2,
        };
        refused.iter().filter(|r| **r == Err(Error::Denied)).count() as i32
            + 10 * (sent == Err(Error::Denied)) as i32
            + 100 * (upwards == Err(Error::Denied)) as i32
            + 1000 * (to_self == Err(Error::Invalid)) as i32
            + 10000 * onwards
    })?;
    check(status % 10 == 3, "a child never given the network bound some of it")?;
    check(status / 10 % 10 == 1, "a child without a binding sent a frame")?;
    check(status / 100 % 10 == 1, "a child granted its parent a scope")?;
    check(status / 1000 % 10 == 1, "a child granted itself a scope")?;
    check(status / 10000 == 2, "a child gave its own child a scope it does not hold")?;
    // The port the child could not squat is its parent's to take.
    let b =
        Binding::new(udp_bind(5010).rx, udp_bind(5010).tx, 2, false).map_err(|_| "the parent cannot bind")?;
    b.close();
    Ok(())
}

/// A child given UDP port 5011 binds it, and nothing beside it or wider; it can pass that
/// port on (a forked copy of it binds there) but not another one.
fn one_port_child() -> Result<(), &'static str> {
    let status = in_child_with(Net::Only(&[udp_scope(5011)]), || {
        let grandchild = in_child_with(Net::All, || {
            (bind_with_ring(udp_bind(5011)).is_ok() as i32)
                + 10 * (bind_with_ring(udp_bind(5012)) == Err(Error::Denied)) as i32
        });
        let other = match process::fork_with_network(Net::Only(&[udp_scope(5012)])) {
            Ok(Fork::Child) => sys::exit(0),
            Ok(Fork::Parent(c)) => process::wait(c).map_or(0, |_| 0),
            Err(e) => (e == Error::Denied) as i32,
        };
        let outside = [
            bind_with_ring(udp_bind(5012)),
            bind_with_ring(NetBind { rx: NetFilter::exact(&[(12, 2, nic::ETH_IPV4)]), ..udp_bind(5011) }),
            bind_with_ring(NetBind { tx: udp_bind(5012).tx, ..udp_bind(5011) }),
            bind_with_ring(NetBind {
                rx: nic::arp(),
                tx: nic::arp(),
                flags: exo_libos::abi::net::NET_SHARED,
                ..NetBind::default()
            }),
        ];
        let mine = bind_with_ring(udp_bind(5011));
        (grandchild == Ok(11)) as i32
            + 10 * other
            + 100 * (outside.iter().all(|r| *r == Err(Error::Denied))) as i32
            + 1000 * mine.is_ok() as i32
    })?;
    check(status % 10 == 1, "the port did not pass on to a forked copy, or another did")?;
    check(status / 10 % 10 == 1, "a child gave its own child a port it does not hold")?;
    check(status / 100 % 10 == 1, "a child bound outside the port it was given")?;
    check(status / 1000 == 1, "a child could not bind the port it was given")
}

/// Tries to bind UDP `port` here, until it is refused as taken (someone else holds it), at
/// most PATIENCE ticks; whether it was.
fn held_elsewhere(port: u16) -> bool {
    for _ in 0..PATIENCE {
        match Binding::new(udp_bind(port).rx, udp_bind(port).tx, 2, false) {
            Err(Error::Busy) => return true,
            Ok(b) => b.close(),
            Err(_) => return false,
        }
        let _ = sys::net_wait();
    }
    false
}

/// A child given UDP 5020 and 5021 passes both to its own child, which binds 5020 while it
/// binds 5021. Taking 5020 back from the child ends the grandchild's binding there (it
/// leaned on the scope taken) and leaves the child's 5021; a scope never given cannot be
/// taken back.
fn revoked_scope() -> Result<(), &'static str> {
    let (a, b) = (udp_scope(5020), udp_scope(5021));
    let child = match process::fork_with_network(Net::Only(&[a, b])).map_err(|_| "fork")? {
        Fork::Child => {
            // Each binds until it holds its port (the parent's test binds may be in the
            // way for a moment), then sleeps until it is destroyed.
            let port = if let Ok(Fork::Child) = process::fork() { 5020 } else { 5021 };
            let mut bound = false;
            loop {
                bound = bound
                    || Binding::new(udp_bind(port).rx, udp_bind(port).tx, 2, false)
                        .map(core::mem::forget)
                        .is_ok();
                let _ = sys::net_wait();
            }
        }
        Fork::Parent(c) => c,
    };
    let both = held_elsewhere(5020) && held_elsewhere(5021);
    let never = sys::net_revoke(child, &udp_scope(5022));
    let revoked = sys::net_revoke(child, &a);
    let freed = bind_with_ring(udp_bind(5020));
    let kept = bind_with_ring(udp_bind(5021));
    let again = sys::net_revoke(child, &a);
    let _ = freed.map(sys::net_unbind);
    let _ = sys::env_destroy(child);
    check(both, "the child and its child did not bind their ports")?;
    check(never == Err(Error::NotFound), "a scope never given was taken back")?;
    check(revoked.is_ok(), "the scope could not be taken back")?;
    check(freed.is_ok(), "the grandchild kept its binding on the scope taken back")?;
    check(kept == Err(Error::Busy), "the child lost the port it kept")?;
    check(again == Err(Error::NotFound), "a scope was taken back twice")
}

/// ARP is every stack's (`nic::arp_scope`: shared bindings only). A child given it binds
/// it shared, but cannot bind it for itself, which would shut every other stack out, nor
/// give its own child an ARP scope that would let that one do it.
fn arp_for_itself() -> Result<(), &'static str> {
    let status = in_child_with(Net::Only(&[nic::arp_scope()]), || {
        let arp = NetBind { rx: nic::arp(), tx: nic::arp(), ..NetBind::default() };
        let own = bind_with_ring(arp);
        let shared = bind_with_ring(NetBind { flags: exo_libos::abi::net::NET_SHARED, ..arp });
        let whole = NetScope { flags: 0, ..nic::arp_scope() };
        let onward = match process::fork_with_network(Net::Only(&[whole])) {
            Ok(Fork::Child) => sys::exit(0),
            Ok(Fork::Parent(c)) => process::wait(c).map_or(0, |_| 0),
            Err(e) => (e == Error::Denied) as i32,
        };
        (own == Err(Error::Denied)) as i32 + 10 * shared.is_ok() as i32 + 100 * onward
    })?;
    check(status % 10 == 1, "a child took ARP for itself")?;
    check(status / 10 % 10 == 1, "a child could not bind ARP shared")?;
    check(status / 100 == 1, "a child passed ARP on for its own child to take")
}
