//! Trusted subnets: remotes whose address falls in one of these skip
//! data-path encryption (when the remote trusts us too). Pure.

use std::fmt;
use std::net::IpAddr;
use std::str::FromStr;

use thiserror::Error;

/// A CIDR string that does not parse.
#[derive(Debug, Clone, PartialEq, Eq, Error)]
#[error("invalid subnet {0:?}: expected an address and a prefix length like 10.0.0.0/8")]
pub struct BadCidr(pub String);

/// An IPv4 or IPv6 subnet. Host bits are cleared on parse.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct Cidr {
    addr: IpAddr,
    prefix: u8,
}

impl Cidr {
    /// The subnet of `addr` with `prefix` leading bits, host bits cleared;
    /// `None` if the prefix is too long for the family.
    pub fn new(addr: IpAddr, prefix: u8) -> Option<Cidr> {
        let addr = addr.to_canonical();
        let masked = match addr {
            IpAddr::V4(a) if prefix <= 32 => IpAddr::V4((u32::from(a) & mask32(prefix)).into()),
            IpAddr::V6(a) if prefix <= 128 => IpAddr::V6((u128::from(a) & mask128(prefix)).into()),
            _ => return None,
        };
        Some(Cidr { addr: masked, prefix })
    }

    /// Whether `ip` is in the subnet (IPv4-mapped IPv6 counts as IPv4).
    pub fn contains(&self, ip: IpAddr) -> bool {
        match (self.addr, ip.to_canonical()) {
            (IpAddr::V4(net), IpAddr::V4(a)) => u32::from(a) & mask32(self.prefix) == u32::from(net),
            (IpAddr::V6(net), IpAddr::V6(a)) => u128::from(a) & mask128(self.prefix) == u128::from(net),
            _ => false,
        }
    }
}

fn mask32(prefix: u8) -> u32 {
    u32::MAX.checked_shl(32 - u32::from(prefix)).unwrap_or(0)
}

fn mask128(prefix: u8) -> u128 {
    u128::MAX.checked_shl(128 - u32::from(prefix)).unwrap_or(0)
}

impl FromStr for Cidr {
    type Err = BadCidr;
    fn from_str(s: &str) -> Result<Cidr, BadCidr> {
        let bad = || BadCidr(s.to_string());
        let (a, p) = s.trim().split_once('/').ok_or_else(bad)?;
        let addr: IpAddr = a.parse().map_err(|_| bad())?;
        let prefix: u8 = p.parse().map_err(|_| bad())?;
        Cidr::new(addr, prefix).ok_or_else(bad)
    }
}

impl fmt::Display for Cidr {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}/{}", self.addr, self.prefix)
    }
}

/// The configured trusted subnets.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct TrustedSubnets(Vec<Cidr>);

impl TrustedSubnets {
    /// From already parsed subnets.
    pub fn new(subnets: Vec<Cidr>) -> Self {
        TrustedSubnets(subnets)
    }

    /// Parses a comma-separated list (`"10.0.0.0/8,fd00::/8"`); empty parts
    /// are skipped.
    pub fn parse_list(s: &str) -> Result<Self, BadCidr> {
        let v = s.split(',').filter(|p| !p.trim().is_empty()).map(str::parse).collect::<Result<_, _>>()?;
        Ok(TrustedSubnets(v))
    }

    /// Whether the data path may skip encryption towards `addr` (as far as
    /// we are concerned: the remote must trust us too).
    pub fn is_trusted(&self, addr: IpAddr) -> bool {
        self.0.iter().any(|c| c.contains(addr))
    }

    /// The subnets.
    pub fn subnets(&self) -> &[Cidr] {
        &self.0
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_and_matches() {
        let t = TrustedSubnets::parse_list("10.1.2.3/16, fd00::/8,,192.168.0.5/32").unwrap();
        assert_eq!(t.subnets()[0].to_string(), "10.1.0.0/16");
        assert!(t.is_trusted("10.1.255.9".parse().unwrap()));
        assert!(!t.is_trusted("10.2.0.1".parse().unwrap()));
        assert!(t.is_trusted("::ffff:10.1.0.1".parse().unwrap()), "IPv4-mapped");
        assert!(t.is_trusted("fd12::1".parse().unwrap()));
        assert!(t.is_trusted("192.168.0.5".parse().unwrap()));
        assert!(!t.is_trusted("192.168.0.6".parse().unwrap()));
        assert!(!TrustedSubnets::default().is_trusted("127.0.0.1".parse().unwrap()));
    }

    #[test]
    fn zero_prefix_matches_the_family() {
        let c: Cidr = "0.0.0.0/0".parse().unwrap();
        assert!(c.contains("8.8.8.8".parse().unwrap()));
        assert!(!c.contains("::1".parse().unwrap()));
    }

    #[test]
    fn bad_subnets_are_refused() {
        for s in ["10.0.0.0", "10.0.0.0/33", "::/129", "x/8", "10.0.0.0/-1", ""] {
            assert!(s.parse::<Cidr>().is_err(), "{s}");
        }
    }
}
