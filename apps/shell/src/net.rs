//! The shell's `net` command: the interface as the kernel reports it.

use exo_libos::nic;
use exo_libos::println;

/// MAC address and counters. Addresses belong to the stacks in programs (each gets its own
/// lease by DHCP, 10.0.2.15 on QEMU's user network), not to the interface.
pub fn net() {
    let i = match nic::info() {
        Ok(i) => i,
        Err(e) => {
            println!("net: no network device ({e:?})");
            return;
        }
    };
    let m = i.mac;
    println!(
        "interface  virtio-net, MAC {:02x}:{:02x}:{:02x}:{:02x}:{:02x}:{:02x}",
        m[0], m[1], m[2], m[3], m[4], m[5]
    );
    println!("address    per program's stack (DHCP; QEMU's user network gives 10.0.2.15)");
    println!("frames     {} received, {} sent", i.rx, i.tx);
    println!("dropped    {} unmatched, {} ring full, {} tx denied", i.unmatched, i.ring_full, i.tx_denied);
}
