//! Gratuitous ARP: a container just attached (or given new addresses)
//! announces each of its IPv4 addresses, so peers and switches that cached
//! an older MAC for it (a container re-created with the same address) learn
//! the new one at once instead of after their ARP entries expire.
//!
//! The frame is an ARP request for the container's own address ("who-has
//! IP tell IP", RFC 5227's announcement), broadcast from `ethwe` inside
//! the container's namespace once its host end is on the bridge or
//! datapath.

use std::net::Ipv4Addr;
use std::path::Path;

use super::veth::{PlumbError, CONTAINER_IFNAME};

/// Length of an Ethernet + ARP (IPv4 over Ethernet) frame, unpadded.
pub const FRAME_LEN: usize = 42;

/// The announcement of `ip` from `mac`: broadcast, ARP request, sender and
/// target protocol address both `ip`, target hardware address zero.
pub fn frame(mac: [u8; 6], ip: Ipv4Addr) -> [u8; FRAME_LEN] {
    let mut f = [0u8; FRAME_LEN];
    f[0..6].copy_from_slice(&[0xff; 6]);
    f[6..12].copy_from_slice(&mac);
    f[12..14].copy_from_slice(&0x0806u16.to_be_bytes());
    f[14..16].copy_from_slice(&1u16.to_be_bytes()); // hardware: Ethernet
    f[16..18].copy_from_slice(&0x0800u16.to_be_bytes()); // protocol: IPv4
    f[18] = 6;
    f[19] = 4;
    f[20..22].copy_from_slice(&1u16.to_be_bytes()); // request
    f[22..28].copy_from_slice(&mac);
    f[28..32].copy_from_slice(&ip.octets());
    // Target hardware address stays zero.
    f[38..42].copy_from_slice(&ip.octets());
    f
}

/// What a received frame announces, if it is a gratuitous ARP (request or
/// reply whose sender and target protocol addresses are equal): the sender's
/// MAC and address.
pub fn parse(f: &[u8]) -> Option<([u8; 6], Ipv4Addr)> {
    if f.len() < FRAME_LEN || f[12..14] != [0x08, 0x06] || f[14..20] != [0, 1, 0x08, 0, 6, 4] {
        return None;
    }
    // A request or a reply.
    if !matches!(f[20..22], [0, 1] | [0, 2]) {
        return None;
    }
    let mac: [u8; 6] = f[22..28].try_into().ok()?;
    let spa = Ipv4Addr::new(f[28], f[29], f[30], f[31]);
    let tpa = Ipv4Addr::new(f[38], f[39], f[40], f[41]);
    (spa == tpa).then_some((mac, spa))
}

/// Sends one announcement per address from `ethwe` in the namespace at
/// `netns`. Returns how many were sent.
pub async fn announce(netns: &Path, mac: [u8; 6], ips: Vec<Ipv4Addr>) -> Result<usize, PlumbError> {
    if ips.is_empty() {
        return Ok(0);
    }
    let ns =
        std::fs::File::open(netns).map_err(|source| PlumbError::Netns { path: netns.display().to_string(), source })?;
    super::netns::run_in(ns, move || async move { send(mac, &ips) }).await
}

/// Sends one announcement per address from `ifname` in the calling
/// thread's namespace, with the interface's own MAC (the host's exposed
/// addresses: its overlay interface may have a new MAC after a restart).
pub fn announce_here(ifname: &str, ips: &[Ipv4Addr]) -> Result<usize, PlumbError> {
    let op = |msg: String| PlumbError::Other { op: format!("send gratuitous ARP on {ifname}"), msg };
    let text = std::fs::read_to_string(format!("/sys/class/net/{ifname}/address")).map_err(|e| op(e.to_string()))?;
    let mac: crate::odp::key::Mac = text.trim().parse().map_err(op)?;
    send_on(ifname, mac.0, ips)
}

/// The IPv4 addresses of `addrs` (what ARP announces).
pub fn ipv4s(addrs: &[ipnet::IpNet]) -> Vec<Ipv4Addr> {
    addrs.iter().filter_map(|a| if let ipnet::IpNet::V4(n) = a { Some(n.addr()) } else { None }).collect()
}

fn send(mac: [u8; 6], ips: &[Ipv4Addr]) -> Result<usize, PlumbError> {
    send_on(CONTAINER_IFNAME, mac, ips)
}

fn send_on(ifname: &str, mac: [u8; 6], ips: &[Ipv4Addr]) -> Result<usize, PlumbError> {
    let op = |msg: String| PlumbError::Other { op: "send gratuitous ARP".into(), msg };
    let idx = nix::net::if_::if_nametoindex(ifname).map_err(|e| op(format!("{ifname}: {e}")))?;
    let sock = super::packet_socket::PacketSocket::injector(idx).map_err(|e| op(e.to_string()))?;
    let frames: Vec<[u8; FRAME_LEN]> = ips.iter().map(|ip| frame(mac, *ip)).collect();
    let refs: Vec<&[u8]> = frames.iter().map(|f| &f[..]).collect();
    match sock.send_batch(&refs) {
        (n, None) => Ok(n),
        (_, Some(e)) => Err(op(e.to_string())),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    #[test]
    fn announcement_layout() {
        let mac = [0x02, 0xaa, 0xbb, 0xcc, 0xdd, 0xee];
        let f = frame(mac, Ipv4Addr::new(10, 32, 0, 7));
        let want: [u8; FRAME_LEN] = [
            0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0x02, 0xaa, 0xbb, 0xcc, 0xdd, 0xee, 0x08, 0x06, // Ethernet
            0x00, 0x01, 0x08, 0x00, 6, 4, 0x00, 0x01, // ARP request, IPv4 over Ethernet
            0x02, 0xaa, 0xbb, 0xcc, 0xdd, 0xee, 10, 32, 0, 7, // sender
            0, 0, 0, 0, 0, 0, 10, 32, 0, 7, // target
        ];
        assert_eq!(f, want);
    }

    #[test]
    fn ordinary_arp_is_not_an_announcement() {
        let mut f = frame([2, 0, 0, 0, 0, 1], Ipv4Addr::new(10, 0, 0, 1));
        f[41] = 2; // who-has 10.0.0.2
        assert_eq!(parse(&f), None);
        assert_eq!(parse(&f[..20]), None);
        let mut ip = frame([2, 0, 0, 0, 0, 1], Ipv4Addr::new(10, 0, 0, 1));
        ip[12..14].copy_from_slice(&[0x08, 0x00]);
        assert_eq!(parse(&ip), None);
    }

    proptest! {
        #[test]
        fn round_trip(mac in any::<[u8; 6]>(), ip in any::<u32>()) {
            let ip = Ipv4Addr::from(ip);
            prop_assert_eq!(parse(&frame(mac, ip)), Some((mac, ip)));
        }

        #[test]
        fn parse_never_panics(bytes in proptest::collection::vec(any::<u8>(), 0..64)) {
            let _ = parse(&bytes);
        }
    }
}
