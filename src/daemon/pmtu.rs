//! The underlay's path MTU towards a peer, as the kernel knows it: the MTU
//! of the route (or its device), refined by any PMTU it learned.

use std::net::{Ipv4Addr, SocketAddrV4, UdpSocket};

/// Asks the kernel (`IP_MTU` on a UDP socket connected to `dst`; nothing is
/// sent). `None` when there is no route or the kernel will not say.
pub fn path_mtu(dst: Ipv4Addr, port: u16) -> Option<u32> {
    let s = UdpSocket::bind(SocketAddrV4::new(Ipv4Addr::UNSPECIFIED, 0)).ok()?;
    s.connect(SocketAddrV4::new(dst, port)).ok()?;
    nix::sys::socket::getsockopt(&s, nix::sys::socket::sockopt::IpMtu).ok().and_then(|m| u32::try_from(m).ok())
}

/// The largest UDP payload the route towards `dst` carries (IPv4 and UDP
/// headers off the path MTU): where the sleeve's path-MTU search starts.
pub fn udp_payload_limit(dst: Ipv4Addr, port: u16) -> Option<usize> {
    path_mtu(dst, port).map(|m| (m as usize).saturating_sub(super::sleeve::UDP_IPV4_OVERHEAD))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn loopback_has_a_path_mtu() {
        // lo's MTU is 65536 on Linux.
        assert!(path_mtu(Ipv4Addr::LOCALHOST, 9).is_some_and(|m| m >= 1500));
    }
}
