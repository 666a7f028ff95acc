//! ping: ICMP echo to QEMU's gateway (10.0.2.2, the default) or another address of QEMU's
//! user network, over its own stack and an ICMP binding of its own identifier.
//! `ping [ADDRESS] [COUNT]`.
#![allow(unused_crate_dependencies)]
#![no_std]
#![forbid(unsafe_code)]
#![no_main]

extern crate alloc;

use exo_libos::nic::{self, IP_ICMP};
use exo_libos::{println, sys};
use exo_net::smoltcp::socket::icmp;
use exo_net::smoltcp::wire::{Icmpv4Packet, Icmpv4Repr, IpAddress, Ipv4Address};
use exo_net::Stack;

/// Ticks to wait for each reply.
const PATIENCE: u32 = 100;

fn main(args: &str) -> i32 {
    let words: alloc::vec::Vec<&str> = args.split_whitespace().filter(|w| !w.contains('=')).collect();
    let target: Ipv4Address = words.first().and_then(|a| a.parse().ok()).unwrap_or(Stack::QEMU_GATEWAY);
    if target.octets()[..3] != [10, 0, 2] {
        println!("ping: only addresses of QEMU's user network (10.0.2.x) are allowed");
        return 2;
    }
    let count: u16 = words.get(1).and_then(|c| c.parse().ok()).unwrap_or(3).clamp(1, 100);
    let ident = (sys::env_self().0 as u16) | 0x8000;
    let f = nic::ipv4_port(IP_ICMP, ident, true);
    let mut stack = match Stack::new(&[(f, f)]) {
        Ok(s) => s,
        Err(e) => {
            println!("ping: no network ({e:?})");
            return 1;
        }
    };
    if let Err(e) = stack.dhcp(500) {
        println!("ping: no address ({e:?})");
        stack.close();
        return 1;
    }
    let sock = icmp::Socket::new(
        icmp::PacketBuffer::new(alloc::vec![icmp::PacketMetadata::EMPTY; 4], alloc::vec![0; 1024]),
        icmp::PacketBuffer::new(alloc::vec![icmp::PacketMetadata::EMPTY; 4], alloc::vec![0; 1024]),
    );
    let h = stack.sockets.add(sock);
    let _ = stack.sockets.get_mut::<icmp::Socket>(h).bind(icmp::Endpoint::Ident(ident));
    let mut got = 0;
    for seq in 0..count {
        let sent_at = exo_net::now();
        let echo = Icmpv4Repr::EchoRequest { ident, seq_no: seq, data: b"exo ping payload" };
        let mut buf = [0u8; 24];
        echo.emit(&mut Icmpv4Packet::new_unchecked(&mut buf[..]), &Default::default());
        let _ = stack.sockets.get_mut::<icmp::Socket>(h).send_slice(&buf, IpAddress::Ipv4(target));
        let mut answered = false;
        for _ in 0..PATIENCE {
            stack.wait();
            let s = stack.sockets.get_mut::<icmp::Socket>(h);
            while let Ok((data, _)) = s.recv() {
                let ok = Icmpv4Packet::new_checked(data).is_ok_and(|p| {
                    p.echo_seq_no() == seq && p.msg_type() == exo_net::smoltcp::wire::Icmpv4Message::EchoReply
                });
                answered |= ok;
            }
            if answered {
                break;
            }
        }
        if answered {
            got += 1;
            println!(
                "ping: reply from {target}: seq {seq}, {} ms",
                (exo_net::now() - sent_at).total_millis()
            );
        } else {
            println!("ping: no reply from {target}: seq {seq}");
        }
    }
    println!("ping: {count} sent, {got} received");
    stack.close();
    if got == count {
        0
    } else {
        1
    }
}

exo_libos::entry!(main);
