//! The host's upstream resolvers, from the text of `/etc/resolv.conf`.
//!
//! Only `nameserver` lines matter. Comments start with `#` or `;` (at the
//! start of a line or after a value). An IPv6 address with a zone
//! (`fe80::1%eth0`) is skipped: the zone needs an interface lookup. Our own
//! listen address is left out, so that we never forward to ourselves; when
//! we listen on every address (`0.0.0.0`/`::`), loopback nameservers on our
//! port are left out too.

use std::net::{IpAddr, SocketAddr};

/// The DNS port.
pub const DNS_PORT: u16 = 53;

/// The nameservers of `resolv_conf`, in file order, without duplicates and
/// without `listen` (our own server).
pub fn upstreams(resolv_conf: &str, listen: SocketAddr) -> Vec<SocketAddr> {
    let mut out: Vec<SocketAddr> = Vec::new();
    for line in resolv_conf.lines() {
        let line = line.split(['#', ';']).next().unwrap_or_default();
        let mut words = line.split_whitespace();
        if words.next() != Some("nameserver") {
            continue;
        }
        let Some(Ok(ip)) = words.next().map(str::parse::<IpAddr>) else { continue };
        let ns = SocketAddr::new(ip, DNS_PORT);
        if !is_ourselves(ns, listen) && !out.contains(&ns) {
            out.push(ns);
        }
    }
    out
}

fn is_ourselves(ns: SocketAddr, listen: SocketAddr) -> bool {
    if ns.port() != listen.port() {
        return false;
    }
    ns.ip() == listen.ip() || (listen.ip().is_unspecified() && ns.ip().is_loopback())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn sa(s: &str) -> SocketAddr {
        s.parse().expect("socket address")
    }

    #[test]
    fn nameservers_in_order_without_duplicates_or_comments() {
        let text = "# generated\nsearch example.com\nnameserver 192.168.1.1\n  nameserver   8.8.8.8 # google\n\
                    ;nameserver 9.9.9.9\nnameserver 192.168.1.1\nnameserver 2001:db8::1\noptions ndots:2\n";
        assert_eq!(
            upstreams(text, sa("172.17.0.1:53")),
            vec![sa("192.168.1.1:53"), sa("8.8.8.8:53"), sa("[2001:db8::1]:53")]
        );
    }

    #[test]
    fn bad_lines_are_skipped() {
        let text = "nameserver\nnameserver not-an-ip\nnameserver fe80::1%eth0\nnameserver1 1.1.1.1\n\
                    nameserver 300.1.1.1\nNAMESERVER 1.1.1.1\nnameserver 1.0.0.1 extra\n\u{0}\u{ff}";
        assert_eq!(upstreams(text, sa("172.17.0.1:53")), vec![sa("1.0.0.1:53")]);
        assert!(upstreams("", sa("172.17.0.1:53")).is_empty());
    }

    #[test]
    fn our_own_address_is_excluded() {
        let text = "nameserver 172.17.0.1\nnameserver 127.0.0.53\nnameserver 10.0.0.2\n";
        assert_eq!(upstreams(text, sa("172.17.0.1:53")), vec![sa("127.0.0.53:53"), sa("10.0.0.2:53")]);
        assert_eq!(upstreams(text, sa("0.0.0.0:53")), vec![sa("172.17.0.1:53"), sa("10.0.0.2:53")]);
        // On another port we are not one of the host's nameservers.
        assert_eq!(upstreams(text, sa("127.0.0.53:5353")).len(), 3);
    }
}
