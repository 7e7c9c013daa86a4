//! Flow key attributes (`OVS_KEY_ATTR_*`): what a flow matches on, what an
//! upcall reports about a packet, and what `set` actions rewrite.
//!
//! A mask has the same encoding as a key, so [`KeyAttr`] serves for both; see
//! [`crate::odp::flow::Flow`] (`key` and `mask`) for the pairing.

use std::net::{Ipv4Addr, Ipv6Addr};

use ovs_sys as sys;
use serde::{Deserialize, Serialize};

use super::nla::{Nla, NlaIter, NlaWriter, RawNla, Result, WireError};
use super::tunnel::TunnelKey;

macro_rules! k {
    ($c:ident) => {
        sys::$c as u16
    };
}
pub const ENCAP: u16 = k!(OVS_KEY_ATTR_ENCAP);
pub const PRIORITY: u16 = k!(OVS_KEY_ATTR_PRIORITY);
pub const IN_PORT: u16 = k!(OVS_KEY_ATTR_IN_PORT);
pub const ETHERNET: u16 = k!(OVS_KEY_ATTR_ETHERNET);
pub const VLAN: u16 = k!(OVS_KEY_ATTR_VLAN);
pub const ETHERTYPE: u16 = k!(OVS_KEY_ATTR_ETHERTYPE);
pub const IPV4: u16 = k!(OVS_KEY_ATTR_IPV4);
pub const IPV6: u16 = k!(OVS_KEY_ATTR_IPV6);
pub const TCP: u16 = k!(OVS_KEY_ATTR_TCP);
pub const UDP: u16 = k!(OVS_KEY_ATTR_UDP);
pub const ICMP: u16 = k!(OVS_KEY_ATTR_ICMP);
pub const ICMPV6: u16 = k!(OVS_KEY_ATTR_ICMPV6);
pub const ARP: u16 = k!(OVS_KEY_ATTR_ARP);
pub const SKB_MARK: u16 = k!(OVS_KEY_ATTR_SKB_MARK);
pub const TUNNEL: u16 = k!(OVS_KEY_ATTR_TUNNEL);
pub const TCP_FLAGS: u16 = k!(OVS_KEY_ATTR_TCP_FLAGS);
pub const DP_HASH: u16 = k!(OVS_KEY_ATTR_DP_HASH);
pub const RECIRC_ID: u16 = k!(OVS_KEY_ATTR_RECIRC_ID);

/// A 48-bit Ethernet address.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
pub struct Mac(pub [u8; 6]);

impl Mac {
    pub const BROADCAST: Mac = Mac([0xff; 6]);
    pub fn is_multicast(&self) -> bool {
        self.0[0] & 1 == 1
    }

    /// An Ethernet frame's destination and source addresses; `None` for a
    /// frame shorter than both.
    pub fn of_frame(frame: &[u8]) -> Option<(Mac, Mac)> {
        let d: [u8; 6] = frame.get(0..6)?.try_into().ok()?;
        let s: [u8; 6] = frame.get(6..12)?.try_into().ok()?;
        Some((Mac(d), Mac(s)))
    }
}

impl std::fmt::Display for Mac {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let m = self.0;
        write!(f, "{:02x}:{:02x}:{:02x}:{:02x}:{:02x}:{:02x}", m[0], m[1], m[2], m[3], m[4], m[5])
    }
}

impl std::str::FromStr for Mac {
    type Err = String;
    fn from_str(s: &str) -> std::result::Result<Self, String> {
        let mut out = [0u8; 6];
        let mut parts = s.split(':');
        for b in out.iter_mut() {
            let p = parts.next().ok_or_else(|| format!("{s:?}: too few octets for a MAC"))?;
            if p.is_empty() || p.len() > 2 {
                return Err(format!("{s:?}: bad octet {p:?}"));
            }
            *b = u8::from_str_radix(p, 16).map_err(|_| format!("{s:?}: bad octet {p:?}"))?;
        }
        if parts.next().is_some() {
            return Err(format!("{s:?}: too many octets for a MAC"));
        }
        Ok(Mac(out))
    }
}

/// `struct ovs_key_ethernet`.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub struct EthernetKey {
    pub src: Mac,
    pub dst: Mac,
}

/// `struct ovs_key_ipv4`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub struct Ipv4Key {
    pub src: Ipv4Addr,
    pub dst: Ipv4Addr,
    pub proto: u8,
    pub tos: u8,
    pub ttl: u8,
    /// `OVS_FRAG_TYPE_*`: 0 none, 1 first, 2 later.
    pub frag: u8,
}

/// `struct ovs_key_ipv6`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub struct Ipv6Key {
    pub src: Ipv6Addr,
    pub dst: Ipv6Addr,
    /// Flow label, 20 bits, carried as be32.
    pub label: u32,
    pub proto: u8,
    pub tclass: u8,
    pub hlimit: u8,
    pub frag: u8,
}

/// `struct ovs_key_tcp` / `ovs_key_udp`: source and destination ports.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub struct PortsKey {
    pub src: u16,
    pub dst: u16,
}

/// `struct ovs_key_icmp` / `ovs_key_icmpv6`.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub struct IcmpKey {
    pub icmp_type: u8,
    pub code: u8,
}

/// `struct ovs_key_arp`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub struct ArpKey {
    pub sip: Ipv4Addr,
    pub tip: Ipv4Addr,
    pub op: u16,
    pub sha: Mac,
    pub tha: Mac,
}

/// One flow key (or mask) attribute.
#[derive(Debug, Clone, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
#[non_exhaustive]
pub enum KeyAttr {
    Priority(u32),
    InPort(u32),
    Ethernet(EthernetKey),
    /// The 802.1Q TCI (VID, PCP and the CFI/"present" bit), be16 on the wire.
    Vlan(u16),
    EthType(u16),
    Ipv4(Ipv4Key),
    Ipv6(Ipv6Key),
    Tcp(PortsKey),
    Udp(PortsKey),
    Icmp(IcmpKey),
    Icmpv6(IcmpKey),
    Arp(ArpKey),
    SkbMark(u32),
    Tunnel(TunnelKey),
    TcpFlags(u16),
    DpHash(u32),
    RecircId(u32),
    /// The key of the packet inside a VLAN tag.
    Encap(Vec<KeyAttr>),
    /// Anything else (MPLS, conntrack, NSH, newer kernels' additions), kept raw.
    Other(RawNla),
}

const WHAT: &str = "flow key";

fn ip4(b: &[u8]) -> Ipv4Addr {
    Ipv4Addr::new(b[0], b[1], b[2], b[3])
}
fn ip6(b: &[u8]) -> Ipv6Addr {
    let mut a = [0u8; 16];
    a.copy_from_slice(&b[..16]);
    Ipv6Addr::from(a)
}
fn mac(b: &[u8]) -> Mac {
    let mut a = [0u8; 6];
    a.copy_from_slice(&b[..6]);
    Mac(a)
}
fn be16(b: &[u8]) -> u16 {
    u16::from_be_bytes([b[0], b[1]])
}

impl KeyAttr {
    /// The attribute number this variant is sent as.
    pub fn kind(&self) -> u16 {
        match self {
            KeyAttr::Priority(_) => PRIORITY,
            KeyAttr::InPort(_) => IN_PORT,
            KeyAttr::Ethernet(_) => ETHERNET,
            KeyAttr::Vlan(_) => VLAN,
            KeyAttr::EthType(_) => ETHERTYPE,
            KeyAttr::Ipv4(_) => IPV4,
            KeyAttr::Ipv6(_) => IPV6,
            KeyAttr::Tcp(_) => TCP,
            KeyAttr::Udp(_) => UDP,
            KeyAttr::Icmp(_) => ICMP,
            KeyAttr::Icmpv6(_) => ICMPV6,
            KeyAttr::Arp(_) => ARP,
            KeyAttr::SkbMark(_) => SKB_MARK,
            KeyAttr::Tunnel(_) => TUNNEL,
            KeyAttr::TcpFlags(_) => TCP_FLAGS,
            KeyAttr::DpHash(_) => DP_HASH,
            KeyAttr::RecircId(_) => RECIRC_ID,
            KeyAttr::Encap(_) => ENCAP,
            KeyAttr::Other(r) => r.kind & super::nla::NLA_TYPE_MASK,
        }
    }

    /// Parses one attribute. Known types must have their kernel-defined size.
    pub fn parse(a: &Nla<'_>) -> Result<Self> {
        let p = a.payload;
        Ok(match a.kind {
            PRIORITY => KeyAttr::Priority(a.u32(WHAT)?),
            IN_PORT => KeyAttr::InPort(a.u32(WHAT)?),
            ETHERNET => {
                a.fixed::<12>(WHAT)?;
                KeyAttr::Ethernet(EthernetKey { src: mac(&p[0..]), dst: mac(&p[6..]) })
            }
            VLAN => KeyAttr::Vlan(a.be16(WHAT)?),
            ETHERTYPE => KeyAttr::EthType(a.be16(WHAT)?),
            IPV4 => {
                a.fixed::<12>(WHAT)?;
                KeyAttr::Ipv4(Ipv4Key {
                    src: ip4(&p[0..]),
                    dst: ip4(&p[4..]),
                    proto: p[8],
                    tos: p[9],
                    ttl: p[10],
                    frag: p[11],
                })
            }
            IPV6 => {
                a.fixed::<40>(WHAT)?;
                KeyAttr::Ipv6(Ipv6Key {
                    src: ip6(&p[0..]),
                    dst: ip6(&p[16..]),
                    label: u32::from_be_bytes([p[32], p[33], p[34], p[35]]),
                    proto: p[36],
                    tclass: p[37],
                    hlimit: p[38],
                    frag: p[39],
                })
            }
            TCP | UDP => {
                a.fixed::<4>(WHAT)?;
                let ports = PortsKey { src: be16(&p[0..]), dst: be16(&p[2..]) };
                if a.kind == TCP {
                    KeyAttr::Tcp(ports)
                } else {
                    KeyAttr::Udp(ports)
                }
            }
            ICMP | ICMPV6 => {
                a.fixed::<2>(WHAT)?;
                let k = IcmpKey { icmp_type: p[0], code: p[1] };
                if a.kind == ICMP {
                    KeyAttr::Icmp(k)
                } else {
                    KeyAttr::Icmpv6(k)
                }
            }
            ARP => {
                a.fixed::<24>(WHAT)?;
                KeyAttr::Arp(ArpKey {
                    sip: ip4(&p[0..]),
                    tip: ip4(&p[4..]),
                    op: be16(&p[8..]),
                    sha: mac(&p[10..]),
                    tha: mac(&p[16..]),
                })
            }
            SKB_MARK => KeyAttr::SkbMark(a.u32(WHAT)?),
            TUNNEL => KeyAttr::Tunnel(TunnelKey::parse(a)?),
            TCP_FLAGS => KeyAttr::TcpFlags(a.be16(WHAT)?),
            DP_HASH => KeyAttr::DpHash(a.u32(WHAT)?),
            RECIRC_ID => KeyAttr::RecircId(a.u32(WHAT)?),
            ENCAP => KeyAttr::Encap(parse_keys(a.payload)?),
            _ => KeyAttr::Other(a.to_raw()),
        })
    }

    /// The payload bytes of a fixed-size attribute (everything but tunnel,
    /// encap and raw ones). Used by `set_masked`, which concatenates value and mask.
    pub fn fixed_payload(&self) -> Option<Vec<u8>> {
        let mut v = Vec::new();
        match self {
            KeyAttr::Priority(x) | KeyAttr::InPort(x) | KeyAttr::SkbMark(x) => v.extend(x.to_ne_bytes()),
            KeyAttr::DpHash(x) | KeyAttr::RecircId(x) => v.extend(x.to_ne_bytes()),
            KeyAttr::Ethernet(e) => {
                v.extend(e.src.0);
                v.extend(e.dst.0);
            }
            KeyAttr::Vlan(x) | KeyAttr::EthType(x) | KeyAttr::TcpFlags(x) => v.extend(x.to_be_bytes()),
            KeyAttr::Ipv4(k) => {
                v.extend(k.src.octets());
                v.extend(k.dst.octets());
                v.extend([k.proto, k.tos, k.ttl, k.frag]);
            }
            KeyAttr::Ipv6(k) => {
                v.extend(k.src.octets());
                v.extend(k.dst.octets());
                v.extend(k.label.to_be_bytes());
                v.extend([k.proto, k.tclass, k.hlimit, k.frag]);
            }
            KeyAttr::Tcp(k) | KeyAttr::Udp(k) => {
                v.extend(k.src.to_be_bytes());
                v.extend(k.dst.to_be_bytes());
            }
            KeyAttr::Icmp(k) | KeyAttr::Icmpv6(k) => v.extend([k.icmp_type, k.code]),
            KeyAttr::Arp(k) => {
                v.extend(k.sip.octets());
                v.extend(k.tip.octets());
                v.extend(k.op.to_be_bytes());
                v.extend(k.sha.0);
                v.extend(k.tha.0);
                v.extend([0, 0]);
            }
            KeyAttr::Tunnel(_) | KeyAttr::Encap(_) | KeyAttr::Other(_) => return None,
        }
        Some(v)
    }

    /// The `nla_type` (flags included) and payload this attribute emits as.
    pub fn raw_parts(&self) -> (u16, Vec<u8>) {
        let mut w = NlaWriter::new();
        self.emit(&mut w);
        let b = w.into_bytes();
        let len = (u16::from_ne_bytes([b[0], b[1]]) as usize).min(b.len());
        (u16::from_ne_bytes([b[2], b[3]]), b[super::nla::NLA_HDRLEN..len].to_vec())
    }

    pub fn emit(&self, w: &mut NlaWriter) {
        match self {
            KeyAttr::Tunnel(t) => t.emit(w, TUNNEL),
            KeyAttr::Encap(keys) => w.nested(ENCAP, |w| emit_keys(keys, w)),
            KeyAttr::Other(r) => r.emit(w),
            fixed => {
                let payload = fixed.fixed_payload().unwrap_or_default();
                w.put(fixed.kind(), &payload);
            }
        }
    }
}

/// Parses a buffer of key attributes (the payload of `OVS_FLOW_ATTR_KEY`,
/// `OVS_FLOW_ATTR_MASK` or `OVS_PACKET_ATTR_KEY`).
pub fn parse_keys(buf: &[u8]) -> Result<Vec<KeyAttr>> {
    NlaIter::new(buf).map(|a| a.and_then(|a| KeyAttr::parse(&a))).collect()
}

pub fn emit_keys(keys: &[KeyAttr], w: &mut NlaWriter) {
    for k in keys {
        k.emit(w);
    }
}

/// Parses a `set_masked` payload: one key attribute whose payload is the
/// value followed by a mask of the same length.
pub fn parse_masked(a: &Nla<'_>) -> Result<(KeyAttr, KeyAttr)> {
    let n = a.payload.len();
    if !n.is_multiple_of(2) {
        return Err(WireError::BadLength { what: "set_masked", kind: a.kind, len: n, expected: "even" });
    }
    let half = |p| Nla { kind: a.kind, flags: a.flags, payload: p };
    let (v, m) = (half(&a.payload[..n / 2]), half(&a.payload[n / 2..]));
    // Only fixed-size headers can be set_masked; the kernel refuses the
    // nested ones, so they are kept raw rather than misread.
    if matches!(a.kind, TUNNEL | ENCAP) {
        return Ok((KeyAttr::Other(v.to_raw()), KeyAttr::Other(m.to_raw())));
    }
    Ok((KeyAttr::parse(&v)?, KeyAttr::parse(&m)?))
}

#[cfg(test)]
pub(crate) mod strategy {
    use super::*;
    use proptest::prelude::*;
    use proptest::strategy::Union;

    fn mac() -> impl Strategy<Value = Mac> {
        any::<[u8; 6]>().prop_map(Mac)
    }
    fn v4() -> impl Strategy<Value = Ipv4Addr> {
        any::<[u8; 4]>().prop_map(Ipv4Addr::from)
    }
    fn v6() -> impl Strategy<Value = Ipv6Addr> {
        any::<[u8; 16]>().prop_map(Ipv6Addr::from)
    }
    fn ports() -> impl Strategy<Value = PortsKey> {
        (any::<u16>(), any::<u16>()).prop_map(|(src, dst)| PortsKey { src, dst })
    }
    fn icmp() -> impl Strategy<Value = IcmpKey> {
        (any::<u8>(), any::<u8>()).prop_map(|(icmp_type, code)| IcmpKey { icmp_type, code })
    }

    /// One strategy per variant with a fixed-size payload, in `KeyAttr` order.
    fn fixed_variants() -> Vec<BoxedStrategy<KeyAttr>> {
        vec![
            any::<u32>().prop_map(KeyAttr::Priority).boxed(),
            any::<u32>().prop_map(KeyAttr::InPort).boxed(),
            (mac(), mac()).prop_map(|(src, dst)| KeyAttr::Ethernet(EthernetKey { src, dst })).boxed(),
            any::<u16>().prop_map(KeyAttr::Vlan).boxed(),
            any::<u16>().prop_map(KeyAttr::EthType).boxed(),
            (v4(), v4(), any::<[u8; 4]>())
                .prop_map(|(src, dst, b)| {
                    KeyAttr::Ipv4(Ipv4Key { src, dst, proto: b[0], tos: b[1], ttl: b[2], frag: b[3] })
                })
                .boxed(),
            (v6(), v6(), any::<u32>(), any::<[u8; 4]>())
                .prop_map(|(src, dst, label, b)| {
                    KeyAttr::Ipv6(Ipv6Key { src, dst, label, proto: b[0], tclass: b[1], hlimit: b[2], frag: b[3] })
                })
                .boxed(),
            ports().prop_map(KeyAttr::Tcp).boxed(),
            ports().prop_map(KeyAttr::Udp).boxed(),
            icmp().prop_map(KeyAttr::Icmp).boxed(),
            icmp().prop_map(KeyAttr::Icmpv6).boxed(),
            (v4(), v4(), any::<u16>(), mac(), mac())
                .prop_map(|(sip, tip, op, sha, tha)| KeyAttr::Arp(ArpKey { sip, tip, op, sha, tha }))
                .boxed(),
            any::<u32>().prop_map(KeyAttr::SkbMark).boxed(),
            any::<u16>().prop_map(KeyAttr::TcpFlags).boxed(),
            any::<u32>().prop_map(KeyAttr::DpHash).boxed(),
            any::<u32>().prop_map(KeyAttr::RecircId).boxed(),
        ]
    }

    /// Any key attribute that has a fixed-size payload, each variant equally
    /// likely (what `prop_oneof!` over the same arms builds).
    pub fn fixed_key_attr() -> impl Strategy<Value = KeyAttr> {
        Union::new(fixed_variants())
    }

    /// Two independent fixed-size attributes of the same variant, such as the
    /// value and mask of a masked set. The variant is picked once, so no case
    /// is ever rejected.
    pub fn fixed_key_attr_pair() -> impl Strategy<Value = (KeyAttr, KeyAttr)> {
        Union::new(fixed_variants().into_iter().map(|s| (s.clone(), s)))
    }

    pub fn key_attr() -> impl Strategy<Value = KeyAttr> {
        let leaf = prop_oneof![
            8 => fixed_key_attr(),
            1 => crate::odp::tunnel::strategy::tunnel_key().prop_map(KeyAttr::Tunnel),
            // Unknown attribute numbers, above anything the 6.1 header defines.
            1 => (40u16..200, proptest::collection::vec(any::<u8>(), 0..16))
                .prop_map(|(kind, payload)| KeyAttr::Other(RawNla { kind, payload })),
        ];
        leaf.prop_recursive(2, 16, 4, |inner| proptest::collection::vec(inner, 0..4).prop_map(KeyAttr::Encap))
    }

    pub fn keys() -> impl Strategy<Value = Vec<KeyAttr>> {
        proptest::collection::vec(key_attr(), 0..8)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    proptest! {
        #[test]
        fn keys_round_trip(keys in strategy::keys()) {
            let mut w = NlaWriter::new();
            emit_keys(&keys, &mut w);
            prop_assert_eq!(parse_keys(w.as_bytes()).unwrap(), keys);
        }

        #[test]
        fn parsing_garbage_never_panics(b in proptest::collection::vec(any::<u8>(), 0..200)) {
            let _ = parse_keys(&b);
        }
    }

    #[test]
    fn mac_text_round_trips() {
        let m: Mac = "0a:1B:02:ff:00:09".parse().unwrap();
        assert_eq!(m.to_string(), "0a:1b:02:ff:00:09");
        assert!("0a:1b:02:ff:00".parse::<Mac>().is_err());
        assert!("0a:1b:02:ff:00:09:00".parse::<Mac>().is_err());
        assert!("0a:1b:02:ff:00:zz".parse::<Mac>().is_err());
    }

    #[test]
    fn wrong_size_ipv4_key_is_an_error() {
        let mut w = NlaWriter::new();
        w.put(IPV4, &[0; 8]);
        assert!(matches!(parse_keys(w.as_bytes()), Err(WireError::BadLength { .. })));
    }
}
