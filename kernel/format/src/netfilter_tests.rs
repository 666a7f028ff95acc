//! Host tests of the filter checker, the interpreter, the overlap rule and the table.

use super::*;
use exo_abi::net::{NetTerm, NET_BINDINGS};

const IPV4: u32 = 0x0800;
const ARP: u32 = 0x0806;
const MAC: [u8; 6] = [0x52, 0x54, 0, 0x12, 0x34, 0x56];

/// IPv4 (no options), protocol `proto`, destination port `dport`.
fn to_port(proto: u32, dport: u32) -> NetFilter {
    NetFilter::exact(&[(12, 2, IPV4), (14, 1, 0x45), (23, 1, proto), (36, 2, dport)])
}

fn from_port(proto: u32, sport: u32) -> NetFilter {
    NetFilter::exact(&[(12, 2, IPV4), (14, 1, 0x45), (23, 1, proto), (34, 2, sport)])
}

fn bind_port(proto: u32, port: u32) -> NetBind {
    NetBind { rx: to_port(proto, port), tx: from_port(proto, port), ring: 0x10_0000, slots: 4, flags: 0 }
}

/// A xorshift generator from `seed`: the same numbers on every run.
fn xorshift(mut x: u64) -> impl FnMut() -> u64 {
    move || {
        x ^= x << 13;
        x ^= x >> 7;
        x ^= x << 17;
        x
    }
}

/// A table in which environments 1 to 16 (at most `N` of them) may bind anything.
fn open<const N: usize>() -> Table<N> {
    let mut t = Table::new();
    (1..=N.min(16) as u32).for_each(|o| t.scope_everything(o));
    t
}

/// A UDP frame from `MAC`, ports as given.
fn udp(sport: u16, dport: u16, len: usize) -> std::vec::Vec<u8> {
    let mut f = std::vec![0u8; len.max(38)];
    f[6..12].copy_from_slice(&MAC);
    f[12..14].copy_from_slice(&[0x08, 0x00]);
    f[14] = 0x45;
    f[23] = 17;
    f[34..36].copy_from_slice(&sport.to_be_bytes());
    f[36..38].copy_from_slice(&dport.to_be_bytes());
    f.truncate(len);
    f
}

#[test]
fn checker_refuses_malformed_filters() {
    let ok = to_port(17, 53);
    assert!(check(&ok).is_ok());
    let mut bad_size = ok;
    bad_size.terms[3].size = 3;
    let mut too_far = ok;
    too_far.terms[3].offset = (NET_HEADER_BYTES - 1) as u16;
    let mut value_outside_mask = ok;
    value_outside_mask.terms[3].mask = 0xff00;
    let mut mask_wider_than_field = ok;
    mask_wider_than_field.terms[2].mask = 0x1ff;
    let mut too_many = ok;
    too_many.count = NET_TERMS as u32 + 1;
    let empty = NetFilter::default();
    let no_ethertype = NetFilter::exact(&[(23, 1, 17)]);
    let contradiction = NetFilter::exact(&[(12, 2, IPV4), (13, 1, 0x06)]);
    for f in [
        bad_size,
        too_far,
        value_outside_mask,
        mask_wider_than_field,
        too_many,
        empty,
        no_ethertype,
        contradiction,
    ] {
        assert_eq!(check(&f), Err(Error::Invalid), "{f:?}");
    }
}

#[test]
fn a_frame_matches_only_when_every_term_holds_and_it_is_long_enough() {
    let n = check(&to_port(17, 53)).unwrap();
    assert!(n.matches(&udp(1000, 53, 60)));
    assert!(!n.matches(&udp(1000, 54, 60)));
    assert!(!n.matches(&udp(1000, 53, 37)), "a frame too short for the port field");
    let mut tcp = udp(1000, 53, 60);
    tcp[23] = 6;
    assert!(!n.matches(&tcp));
    let masked = NetFilter {
        count: 2,
        _pad: 0,
        terms: {
            let mut t = [NetTerm::default(); NET_TERMS];
            t[0] = NetTerm { offset: 12, size: 2, _pad: 0, mask: 0xffff, value: IPV4 };
            t[1] = NetTerm { offset: 14, size: 1, _pad: 0, mask: 0xf0, value: 0x40 };
            t
        },
    };
    let m = check(&masked).unwrap();
    let mut options = udp(1, 2, 60);
    options[14] = 0x46;
    assert!(m.matches(&options), "only the version nibble is fixed");
}

#[test]
fn overlap_is_exact_on_fixed_bits() {
    let port = |p| check(&to_port(17, p)).unwrap();
    assert!(port(53).overlaps(&port(53)));
    assert!(!port(53).overlaps(&port(54)));
    assert!(!port(53).overlaps(&check(&to_port(6, 53)).unwrap()), "UDP and TCP differ");
    let all_ipv4 = check(&NetFilter::exact(&[(12, 2, IPV4)])).unwrap();
    assert!(all_ipv4.overlaps(&port(53)), "a broader filter overlaps a narrower one");
    let arp = check(&NetFilter::exact(&[(12, 2, ARP)])).unwrap();
    assert!(!arp.overlaps(&all_ipv4));
}

#[test]
fn a_taken_port_cannot_be_bound_by_another_environment() {
    let mut t: Table<16> = open();
    let alive = |_| true;
    assert_eq!(t.bind(1, &bind_port(6, 80), NET_BINDINGS, alive), Ok(0));
    assert_eq!(t.bind(2, &bind_port(6, 80), NET_BINDINGS, alive), Err(Error::Busy));
    // Nor a broader filter that would take its frames, nor a shared one.
    let mut broad = bind_port(6, 80);
    broad.rx = NetFilter::exact(&[(12, 2, IPV4)]);
    broad.tx = from_port(17, 9);
    assert_eq!(t.bind(2, &broad, NET_BINDINGS, alive), Err(Error::Busy));
    let shared = NetBind { flags: NET_SHARED, ..bind_port(6, 80) };
    assert_eq!(t.bind(2, &shared, NET_BINDINGS, alive), Err(Error::Busy));
    // Sending as port 80 is claimed too: another receive port, same transmit filter.
    let spoof = NetBind { rx: to_port(6, 81), ..bind_port(6, 80) };
    assert_eq!(t.bind(2, &spoof, NET_BINDINGS, alive), Err(Error::Busy));
    assert_eq!(t.bind(2, &bind_port(6, 81), NET_BINDINGS, alive), Ok(1));
}

#[test]
fn shared_bindings_overlap_each_other_and_each_gets_a_copy() {
    let mut t: Table<16> = open();
    let arp = NetFilter::exact(&[(12, 2, ARP)]);
    let b = NetBind { rx: arp, tx: arp, ring: 0x2000, slots: 2, flags: NET_SHARED };
    assert!(t.bind(1, &b, NET_BINDINGS, |_| true).is_ok());
    assert!(t.bind(2, &b, NET_BINDINGS, |_| true).is_ok());
    let exclusive = NetBind { flags: 0, ..b };
    assert_eq!(t.bind(3, &exclusive, NET_BINDINGS, |_| true), Err(Error::Busy));
    let mut frame = [0u8; 42];
    frame[12..14].copy_from_slice(&[0x08, 0x06]);
    let mut got = std::vec::Vec::new();
    assert_eq!(
        t.demux(&frame, |o, _| {
            got.push(o);
            Delivery::Delivered
        }),
        (2, 0)
    );
    assert_eq!(got, [1, 2]);
}

#[test]
fn one_environment_cannot_fill_the_table() {
    let mut t: Table<{ 3 * NET_BINDINGS }> = open();
    for p in 0..NET_BINDINGS as u32 {
        assert!(t.bind(7, &bind_port(17, 1000 + p), NET_BINDINGS, |_| true).is_ok());
    }
    assert_eq!(t.bind(7, &bind_port(17, 2000), NET_BINDINGS, |_| true), Err(Error::NoSlot));
    assert!(t.bind(8, &bind_port(17, 2000), NET_BINDINGS, |_| true).is_ok());
}

#[test]
fn bindings_of_dead_environments_are_dropped_before_a_new_bind() {
    let mut t: Table<4> = open();
    assert!(t.bind(1, &bind_port(6, 80), NET_BINDINGS, |_| true).is_ok());
    assert_eq!(t.bind(2, &bind_port(6, 80), NET_BINDINGS, |_| true), Err(Error::Busy));
    assert!(t.bind(2, &bind_port(6, 80), NET_BINDINGS, |o| o != 1).is_ok());
}

#[test]
fn unbind_takes_only_the_callers_own_binding() {
    let mut t: Table<4> = open();
    let i = t.bind(1, &bind_port(6, 80), NET_BINDINGS, |_| true).unwrap() as u64;
    assert_eq!(t.unbind(2, i), Err(Error::NotFound));
    assert_eq!(t.unbind(1, 99), Err(Error::NotFound));
    assert_eq!(t.unbind(1, u64::MAX), Err(Error::NotFound));
    assert_eq!(t.unbind(1, i), Ok(()));
    assert_eq!(t.unbind(1, i), Err(Error::NotFound));
}

#[test]
fn bind_refuses_bad_rings_and_flags() {
    let mut t: Table<4> = open();
    for b in [
        NetBind { ring: 0x1001, ..bind_port(6, 80) },
        NetBind { slots: 0, ..bind_port(6, 80) },
        NetBind { slots: NET_RING_SLOTS + 1, ..bind_port(6, 80) },
        NetBind { flags: 2, ..bind_port(6, 80) },
    ] {
        assert_eq!(t.bind(1, &b, NET_BINDINGS, |_| true), Err(Error::Invalid));
    }
}

#[test]
fn transmit_needs_the_interface_mac_and_a_matching_binding() {
    let mut t: Table<4> = open();
    t.info.mac[..6].copy_from_slice(&MAC);
    t.bind(1, &bind_port(17, 68), NET_BINDINGS, |_| true).unwrap();
    assert_eq!(t.may_send(1, &udp(68, 67, 60)), Ok(()));
    assert_eq!(t.may_send(2, &udp(68, 67, 60)), Err(Error::Denied), "not another's binding");
    assert_eq!(t.may_send(1, &udp(69, 67, 60)), Err(Error::Denied), "not another source port");
    let mut spoofed = udp(68, 67, 60);
    spoofed[11] ^= 1;
    assert_eq!(t.may_send(1, &spoofed), Err(Error::Denied), "not another source MAC");
    assert_eq!(t.may_send(1, &udp(68, 67, 13)), Err(Error::Denied));
    assert_eq!(t.may_send(1, &udp(68, 67, NET_FRAME_MAX + 1)), Err(Error::Denied));
    assert_eq!((t.info.tx, t.info.tx_denied), (1, 5));
}

#[test]
fn demux_walks_the_ring_and_counts_drops() {
    let mut t: Table<4> = open();
    t.bind(1, &NetBind { ring: 0x4000, slots: 2, ..bind_port(17, 53) }, NET_BINDINGS, |_| true).unwrap();
    let mut at = std::vec::Vec::new();
    for _ in 0..3 {
        t.demux(&udp(9, 53, 60), |_, va| {
            at.push(va);
            Delivery::Delivered
        });
    }
    assert_eq!(at, [0x4000, 0x4000 + NET_SLOT as u64, 0x4000]);
    assert_eq!(t.demux(&udp(9, 53, 60), |_, _| Delivery::Dropped), (0, 1));
    assert_eq!(t.demux(&udp(9, 54, 60), |_, _| Delivery::Delivered), (0, 0));
    assert_eq!(t.receive(&udp(9, 53, 60), |_, _| Delivery::Delivered), 1);
    assert_eq!(t.receive(&udp(9, 53, 60), |_, _| Delivery::Dropped), 0);
    assert_eq!(t.receive(&udp(9, 54, 60), |_, _| Delivery::Delivered), 0);
    assert_eq!((t.info.rx, t.info.ring_full, t.info.unmatched), (3, 1, 1));
}

#[test]
fn put_fills_an_empty_slot_and_never_overwrites_a_full_one() {
    let mut slot = [0u8; NET_SLOT];
    let frame = udp(1, 2, 100);
    assert_eq!(put(&mut slot, &frame), Delivery::Delivered);
    assert_eq!(u32::from_le_bytes(slot[..4].try_into().unwrap()), 100);
    assert_eq!(&slot[8..108], &frame[..]);
    assert_eq!(put(&mut slot, &udp(3, 4, 60)), Delivery::Dropped);
    assert_eq!(put(&mut slot[..100], &frame), Delivery::Dropped);
}

#[test]
fn garbage_frames_reach_no_one_and_are_counted() {
    let mut t: Table<8> = open();
    t.bind(1, &bind_port(17, 53), NET_BINDINGS, |_| true).unwrap();
    t.bind(
        2,
        &NetBind { rx: NetFilter::exact(&[(12, 2, ARP)]), flags: NET_SHARED, ..bind_port(6, 80) },
        4,
        |_| true,
    )
    .unwrap();
    // Frames of every length up to a full one, of pseudo-random bytes (a fixed xorshift).
    let mut x = 0x9e37_79b9_7f4a_7c15u64;
    let mut delivered = 0;
    for i in 0..4000usize {
        let len = i % 1515;
        let f: std::vec::Vec<u8> = (0..len)
            .map(|_| {
                x ^= x << 13;
                x ^= x >> 7;
                x ^= x << 17;
                x as u8
            })
            .collect();
        delivered += t.receive(&f, |owner, _| {
            assert!(f.len() >= 14, "a runt frame was delivered to {owner}");
            Delivery::Delivered
        });
    }
    assert_eq!(t.info.rx, 4000);
    assert_eq!(t.info.unmatched + delivered, 4000, "every frame is delivered or counted");
    assert!(t.info.unmatched > 3900, "random bytes almost never pass a filter");
}

#[test]
fn word_at_a_time_matching_agrees_with_byte_by_byte() {
    let mut next = xorshift(0x2545_f491_4f6c_dd1du64);
    let mut matched = 0;
    for _ in 0..20_000 {
        let (off, size) = (next() as usize % 60, [1u8, 2, 4][next() as usize % 3]);
        let full = if size == 4 { u32::MAX } else { (1u32 << (8 * size)) - 1 };
        let mask = next() as u32 & full;
        let mut f = NetFilter::exact(&[(12, 2, IPV4)]);
        f.terms[1] = NetTerm { offset: off as u16, size, _pad: 0, mask, value: next() as u32 & mask };
        f.count = 2;
        let Ok(n) = check(&f) else { continue };
        let len = next() as usize % 80;
        // Frames that agree with the filter, then a byte or none disturbed.
        let mut frame: std::vec::Vec<u8> =
            (0..len).map(|i| if i < NET_HEADER_BYTES { byte(&n.value, i) } else { 0 }).collect();
        if len > 0 && next().is_multiple_of(2) {
            let i = next() as usize % len;
            frame[i] ^= 1 << (next() % 8);
        }
        let slow = frame.len() >= n.reach
            && (0..n.reach).all(|i| (frame[i] ^ byte(&n.value, i)) & byte(&n.mask, i) == 0);
        assert_eq!(n.matches(&frame), slow, "filter {f:?}, frame {frame:?}");
        matched += slow as u32;
    }
    assert!(matched > 1000, "the test exercised matches too ({matched})");
}

/// The chains deliver to exactly the bindings a scan of the whole table would, in the order
/// they were bound, through thousands of random binds (ports that share a chain, ARP and
/// ICMP-like filters off the key, filters fixing only part of it), unbinds and deaths; and
/// every live entry stays on its own chain once, no free one on any.
#[test]
fn chained_demux_agrees_with_a_scan_of_every_binding() {
    let mut next = xorshift(0x853c_49e6_748f_ea9bu64);
    let mut t: Table<64> = open();
    let mut dead = [false; 17];
    let (mut delivered, mut keyed) = (0, 0);
    for round in 0..3000 {
        let owner = 1 + next() as u32 % 16;
        let port = 1000 + next() as u32 % 40;
        let rx = match next() % 5 {
            0 => NetFilter::exact(&[(12, 2, ARP)]),
            1 => NetFilter::exact(&[(12, 2, IPV4), (23, 1, 1), (38, 2, port)]),
            2 => NetFilter::exact(&[(12, 2, IPV4), (36, 1, port >> 8)]),
            _ => to_port([6, 17][next() as usize % 2], port),
        };
        let flags = if next().is_multiple_of(3) { NET_SHARED } else { 0 };
        let ring = 0x1000_0000 + (round as u64 % 64) * 0x10_0000;
        let _ = t
            .bind(owner, &NetBind { rx, tx: rx, ring, slots: 4, flags }, NET_BINDINGS, |o| !dead[o as usize]);
        match next() % 8 {
            0 => {
                let _ = t.unbind(owner, next() % 64);
            }
            1 => dead[owner as usize] = !dead[owner as usize],
            _ => {}
        }
        // A frame that agrees with a live binding's filter, or with none, then maybe a bit off.
        let mut frame = udp(0, port as u16, 60 + next() as usize % 40);
        let live: std::vec::Vec<usize> = (0..64).filter(|&i| t.entries[i].owner != 0).collect();
        if !live.is_empty() && !next().is_multiple_of(4) {
            let n = t.entries[live[next() as usize % live.len()]].rx;
            for i in 0..NET_HEADER_BYTES.min(frame.len()) {
                frame[i] = (frame[i] & !byte(&n.mask, i)) | byte(&n.value, i);
            }
        }
        if next().is_multiple_of(4) {
            let i = next() as usize % frame.len();
            frame[i] ^= 1 << (next() % 8);
        }
        let mut want: std::vec::Vec<u64> =
            live.iter().filter(|&&i| t.entries[i].rx.matches(&frame)).map(|&i| t.entries[i].ring).collect();
        let mut got = std::vec::Vec::new();
        t.demux(&frame, |_, slot| {
            got.push(slot & !0xf_ffff);
            Delivery::Delivered
        });
        delivered += got.len();
        keyed += (t.chains[..BUCKETS].iter().any(|&c| c != 0)) as usize;
        got.sort();
        want.sort();
        assert_eq!(got, want, "round {round}: frame {frame:?}");
        // Chain integrity.
        let mut seen = [0u32; 64];
        for (c, &head) in t.chains.iter().enumerate() {
            let mut at = head;
            while at != 0 {
                let e = &t.entries[at as usize - 1];
                assert!(e.owner != 0, "a free entry on chain {c}");
                assert_eq!(e.rx.chain(), c);
                seen[at as usize - 1] += 1;
                at = e.link;
            }
        }
        for (i, (e, n)) in t.entries.iter().zip(seen).enumerate() {
            assert_eq!(n, (e.owner != 0) as u32, "entry {i} on {n} chains");
        }
    }
    assert!(
        delivered > 1000 && keyed > 1000,
        "the test exercised delivery ({delivered}) and keyed chains ({keyed})"
    );
}

/// The scope (receive, transmit) of TCP or UDP port `port`.
fn port_scope(proto: u32, port: u32) -> NetScope {
    NetScope { rx: to_port(proto, port), tx: from_port(proto, port), flags: 0 }
}

#[test]
fn a_binding_needs_one_scope_that_holds_both_its_filters() {
    let mut t: Table<8> = Table::new();
    t.scope_everything(1);
    assert_eq!(t.bind(5, &bind_port(6, 80), NET_BINDINGS, |_| true), Err(Error::Denied));
    assert_eq!(t.grant(1, 5, Some(&port_scope(6, 80))), Ok(()));
    assert_eq!(t.bind(5, &bind_port(6, 81), NET_BINDINGS, |_| true), Err(Error::Denied));
    assert_eq!(t.bind(5, &bind_port(17, 80), NET_BINDINGS, |_| true), Err(Error::Denied));
    // The receive side in the scope, the transmit side not, and the other way round.
    let mixed = NetBind { tx: from_port(6, 81), ..bind_port(6, 80) };
    assert_eq!(t.bind(5, &mixed, NET_BINDINGS, |_| true), Err(Error::Denied));
    let wide = NetBind { rx: NetFilter::exact(&[(12, 2, IPV4)]), ..bind_port(6, 80) };
    assert_eq!(t.bind(5, &wide, NET_BINDINGS, |_| true), Err(Error::Denied));
    // Narrower than the scope is within it: port 80 from one source port.
    let narrow = NetBind {
        rx: NetFilter::exact(&[(12, 2, IPV4), (14, 1, 0x45), (23, 1, 6), (34, 2, 9), (36, 2, 80)]),
        ..bind_port(6, 80)
    };
    assert!(t.bind(5, &narrow, NET_BINDINGS, |_| true).is_ok());
    // Two scopes do not combine into one: each binding lies within one.
    assert_eq!(t.grant(1, 5, Some(&port_scope(6, 81))), Ok(()));
    assert_eq!(t.bind(5, &mixed, NET_BINDINGS, |_| true), Err(Error::Denied));
    assert!(t.bind(5, &bind_port(6, 81), NET_BINDINGS, |_| true).is_ok());
}

#[test]
fn a_scope_is_granted_only_within_one_the_granter_holds() {
    let mut t: Table<8> = Table::new();
    t.scope_everything(1);
    let ipv4 = NetFilter::exact(&[(12, 2, IPV4)]);
    assert_eq!(t.grant(1, 5, Some(&NetScope { rx: ipv4, tx: ipv4, flags: 0 })), Ok(()));
    assert_eq!(t.grant(5, 6, Some(&port_scope(6, 80))), Ok(()));
    assert_eq!(t.grant(6, 7, Some(&port_scope(6, 81))), Err(Error::Denied));
    assert_eq!(t.grant(6, 7, Some(&NetScope { rx: ipv4, tx: ipv4, flags: 0 })), Err(Error::Denied));
    let arp = NetFilter::exact(&[(12, 2, ARP)]);
    assert_eq!(t.grant(5, 7, Some(&NetScope { rx: arp, tx: arp, flags: 0 })), Err(Error::Denied));
    assert_eq!(t.grant(6, 7, Some(&port_scope(6, 80))), Ok(()));
    // A filter outside the language is refused before anything else.
    let bad = NetScope { rx: NetFilter::exact(&[(23, 1, 6)]), ..port_scope(6, 80) };
    assert_eq!(t.grant(1, 7, Some(&bad)), Err(Error::Invalid));
    // Nobody holds what it was not given.
    assert_eq!(t.grant(9, 7, None), Ok(()));
    assert_eq!(t.grant(9, 7, Some(&port_scope(6, 80))), Err(Error::Denied));
}

#[test]
fn granting_all_copies_each_scope_within_the_cap_or_nothing() {
    let mut t: Table<16> = Table::new();
    t.scope_everything(1);
    let arp = NetFilter::exact(&[(12, 2, ARP)]);
    for s in [NetScope { rx: arp, tx: arp, flags: 0 }, port_scope(17, 68), port_scope(6, 80)] {
        assert_eq!(t.grant(1, 5, Some(&s)), Ok(()));
    }
    assert_eq!(t.grant(5, 6, None), Ok(()));
    assert!(t.bind(6, &bind_port(17, 68), NET_BINDINGS, |_| true).is_ok());
    assert_eq!(t.bind(6, &bind_port(17, 69), NET_BINDINGS, |_| true), Err(Error::Denied));
    // Three more would make six: none is given.
    assert_eq!(t.grant(5, 6, None), Err(Error::NoSlot));
    assert_eq!(t.scopes_of(6).count(), 3);
    assert_eq!(t.grant(1, 6, Some(&port_scope(6, 81))), Ok(()));
    assert_eq!(t.grant(1, 6, Some(&port_scope(6, 82))), Err(Error::NoSlot));
    // Init's "everything", copied, is everything.
    assert_eq!(t.grant(1, 7, None), Ok(()));
    assert!(t.bind(7, &bind_port(6, 443), NET_BINDINGS, |_| true).is_ok());
}

#[test]
fn a_slots_next_environment_finds_its_row_of_scopes_free_and_none_of_them_its_own() {
    let mut t: Table<4> = Table::new();
    t.scope_everything(1);
    for s in [port_scope(6, 80), port_scope(6, 81), port_scope(6, 82)] {
        assert_eq!(t.grant(1, 0x1005, Some(&s)), Ok(()));
    }
    assert_eq!(t.grant(1, 0x1005, Some(&port_scope(6, 83))), Ok(()));
    assert_eq!(t.grant(1, 0x1005, Some(&port_scope(6, 84))), Err(Error::NoSlot));
    // Slot 5's next environment: the old scopes are not its own, and their room is.
    assert_eq!(t.bind(0x2005, &bind_port(6, 80), NET_BINDINGS, |_| true), Err(Error::Denied));
    for p in 90..94 {
        assert_eq!(t.grant(1, 0x2005, Some(&port_scope(6, p))), Ok(()));
    }
    assert_eq!(t.bind(0x1005, &bind_port(6, 80), NET_BINDINGS, |_| true), Err(Error::Denied));
    // A binding and a scope of slot 5 left behind when its ids start again are gone.
    assert!(t.bind(0x2005, &bind_port(6, 90), NET_BINDINGS, |_| true).is_ok());
    t.forget_slot(5);
    assert_eq!(t.bind(0x2005, &bind_port(6, 91), NET_BINDINGS, |_| true), Err(Error::Denied));
    assert!(t.live().all(|e| e.owner & 0xfff != 5));
    assert!(t.bind(1, &bind_port(6, 90), NET_BINDINGS, |_| true).is_ok());
    // An id whose slot is past the rows holds nothing and is given nothing.
    assert_eq!(t.grant(1, 0x1fff, Some(&port_scope(6, 80))), Err(Error::NoSlot));
}

/// `within` is containment: through random filters and frames, a frame that matches a
/// filter matches every filter it is within.
#[test]
fn a_filter_within_another_matches_only_what_the_other_matches() {
    let mut next = xorshift(0x2545_f491_4f6c_dd1du64);
    let (mut found, mut matched) = (0, 0);
    for _ in 0..20_000 {
        let mut pick = || {
            let mut terms = std::vec![(12u16, 2u8, [IPV4, ARP][next() as usize % 2])];
            for _ in 0..next() % 4 {
                let (off, size) =
                    ([14u16, 23, 34, 36, 38][next() as usize % 5], [1u8, 2][next() as usize % 2]);
                terms.push((off, size, (next() % 3) as u32));
            }
            NetFilter::exact(&terms)
        };
        let (a, b) = (pick(), pick());
        let (Ok(a), Ok(b)) = (check(&a), check(&b)) else { continue };
        if !a.within(&b) {
            continue;
        }
        found += 1;
        for _ in 0..8 {
            let mut frame = std::vec![0u8; 40 + next() as usize % 30];
            for (i, b) in frame.iter_mut().enumerate() {
                *b = if next().is_multiple_of(2) { byte(&a.value, i.min(63)) } else { (next() % 3) as u8 };
            }
            matched += a.matches(&frame) as u32;
            assert!(!a.matches(&frame) || b.matches(&frame), "{a:?} within {b:?}");
        }
    }
    assert!(
        found > 1000 && matched > 1000,
        "too few pairs within each other ({found}) or matches ({matched})"
    );
}

#[test]
fn revoking_a_scope_takes_what_leaned_on_it_below_and_leaves_the_rest() {
    let mut t: Table<16> = Table::new();
    t.scope_everything(1);
    let ipv4 = NetFilter::exact(&[(12, 2, IPV4)]);
    let (all_ipv4, udp53) = (NetScope { rx: ipv4, tx: ipv4, flags: 0 }, port_scope(17, 53));
    // 5 holds IPv4 and UDP 53; its child 6 got a copy of both; its grandchild 7 got TCP 80.
    assert_eq!(t.grant(1, 5, Some(&all_ipv4)), Ok(()));
    assert_eq!(t.grant(1, 5, Some(&udp53)), Ok(()));
    assert_eq!(t.grant(5, 6, None), Ok(()));
    assert_eq!(t.grant(6, 7, Some(&port_scope(6, 80))), Ok(()));
    assert!(t.bind(5, &bind_port(17, 54), NET_BINDINGS, |_| true).is_ok());
    assert!(t.bind(7, &bind_port(6, 80), NET_BINDINGS, |_| true).is_ok());
    assert!(t.bind(6, &bind_port(17, 53), NET_BINDINGS, |_| true).is_ok());
    let below = |o: u32| o == 6 || o == 7;
    // Only a scope held exactly as it was given can be taken back.
    assert_eq!(t.revoke(5, &port_scope(17, 54), below), Err(Error::NotFound));
    assert_eq!(t.revoke(9, &udp53, |_| false), Err(Error::NotFound));
    // IPv4 goes: UDP 53 stays for 5 and 6, and so does 6's binding there; 5's port 54,
    // 6's copy of IPv4, 7's TCP 80 scope and binding go.
    assert_eq!(t.revoke(5, &all_ipv4, below), Ok(()));
    assert_eq!(t.scopes_of(5).count(), 1);
    assert_eq!(t.scopes_of(6).count(), 1);
    assert_eq!(t.scopes_of(7).count(), 0);
    let owners: std::vec::Vec<u32> = t.live().map(|e| e.owner).collect();
    assert_eq!(owners, [6]);
    assert!(t.bind(2, &bind_port(6, 80), NET_BINDINGS, |_| true).is_err()); // 2 holds nothing
    assert_eq!(t.bind(7, &bind_port(6, 80), NET_BINDINGS, |_| true), Err(Error::Denied));
    assert_eq!(t.bind(5, &bind_port(17, 54), NET_BINDINGS, |_| true), Err(Error::Denied));
    // Another environment's bindings are never touched: 1's port 54 outlives 5's revoke.
    assert!(t.bind(1, &bind_port(17, 54), NET_BINDINGS, |_| true).is_ok());
    assert_eq!(t.revoke(5, &udp53, below), Ok(()));
    let owners: std::vec::Vec<u32> = t.live().map(|e| e.owner).collect();
    assert_eq!(owners, [1]);
    assert_eq!(t.scopes_of(6).count(), 0);
}

#[test]
fn a_shared_only_scope_admits_only_shared_bindings_and_passes_on_only_as_such() {
    let mut t: Table<8> = Table::new();
    t.scope_everything(1);
    let arp = NetFilter::exact(&[(12, 2, ARP)]);
    let (shared_arp, own_arp) =
        (NetScope { rx: arp, tx: arp, flags: NET_SHARED }, NetScope { rx: arp, tx: arp, flags: 0 });
    let bind_arp = |flags| NetBind { rx: arp, tx: arp, ring: 0x10_0000, slots: 4, flags };
    assert_eq!(t.grant(1, 5, Some(&shared_arp)), Ok(()));
    // 5 cannot take ARP for itself, so 6 (given it too) still binds it, shared.
    assert_eq!(t.bind(5, &bind_arp(0), NET_BINDINGS, |_| true), Err(Error::Denied));
    assert!(t.bind(5, &bind_arp(NET_SHARED), NET_BINDINGS, |_| true).is_ok());
    assert_eq!(t.grant(5, 6, Some(&own_arp)), Err(Error::Denied));
    assert_eq!(t.grant(5, 6, Some(&shared_arp)), Ok(()));
    assert_eq!(t.grant(5, 7, None), Ok(()));
    assert_eq!(t.bind(7, &bind_arp(0), NET_BINDINGS, |_| true), Err(Error::Denied));
    assert!(t.bind(6, &bind_arp(NET_SHARED), NET_BINDINGS, |_| true).is_ok());
    // Unknown flags are refused; a revoke names the flag too.
    assert_eq!(t.grant(1, 6, Some(&NetScope { flags: 2, ..shared_arp })), Err(Error::Invalid));
    assert_eq!(t.revoke(5, &own_arp, |_| false), Err(Error::NotFound));
    assert_eq!(t.revoke(5, &shared_arp, |o| o == 6 || o == 7), Ok(()));
    assert_eq!(t.live().count(), 0);
}
