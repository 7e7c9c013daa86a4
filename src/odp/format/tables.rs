//! Attribute numbers and the per-attribute tables that, as in OVS, drive
//! both directions: payload lengths (`key_len`, `action_len`), the field
//! layout of the fixed-size key structs (`layout`), attribute and flag names,
//! and `mask_is_const`. The tunnel attributes have their own, in
//! [`super::tunnel`].

use std::borrow::Cow;

use ovs_sys as sys;

use super::print::{all_bytes, be16, be32};
use crate::odp::action;
use crate::odp::key;

macro_rules! n {
    ($c:ident) => {
        sys::$c as u16
    };
}
pub(super) use n;

// Key attributes the typed model keeps raw (`KeyAttr::Other`) but OVS prints.
pub(super) const K_UNSPEC: u16 = n!(OVS_KEY_ATTR_UNSPEC);
pub(super) const K_ND: u16 = n!(OVS_KEY_ATTR_ND);
pub(super) const K_SCTP: u16 = n!(OVS_KEY_ATTR_SCTP);
pub(super) const K_MPLS: u16 = n!(OVS_KEY_ATTR_MPLS);
pub(super) const K_CT_STATE: u16 = n!(OVS_KEY_ATTR_CT_STATE);
pub(super) const K_CT_ZONE: u16 = n!(OVS_KEY_ATTR_CT_ZONE);
pub(super) const K_CT_MARK: u16 = n!(OVS_KEY_ATTR_CT_MARK);
pub(super) const K_CT_LABELS: u16 = n!(OVS_KEY_ATTR_CT_LABELS);
pub(super) const K_CT_TUPLE4: u16 = n!(OVS_KEY_ATTR_CT_ORIG_TUPLE_IPV4);
pub(super) const K_CT_TUPLE6: u16 = n!(OVS_KEY_ATTR_CT_ORIG_TUPLE_IPV6);
pub(super) const K_NSH: u16 = n!(OVS_KEY_ATTR_NSH);
pub(super) const K_PACKET_TYPE: u16 = n!(OVS_KEY_ATTR_PACKET_TYPE);
pub(super) const K_ND_EXT: u16 = n!(OVS_KEY_ATTR_ND_EXTENSIONS);
pub(super) const K_TUNNEL_INFO: u16 = n!(OVS_KEY_ATTR_TUNNEL_INFO);
/// The last key attribute OVS 3.1 knows. It skips length checks above it.
pub(super) const OVS_KEY_MAX: u16 = K_TUNNEL_INFO;

// Actions the typed model keeps raw.
pub(super) const A_PUSH_MPLS: u16 = n!(OVS_ACTION_ATTR_PUSH_MPLS);
pub(super) const A_POP_MPLS: u16 = n!(OVS_ACTION_ATTR_POP_MPLS);
pub(super) const A_CT: u16 = n!(OVS_ACTION_ATTR_CT);
pub(super) const A_PUSH_ETH: u16 = n!(OVS_ACTION_ATTR_PUSH_ETH);
pub(super) const A_POP_ETH: u16 = n!(OVS_ACTION_ATTR_POP_ETH);
pub(super) const A_CT_CLEAR: u16 = n!(OVS_ACTION_ATTR_CT_CLEAR);
pub(super) const A_PUSH_NSH: u16 = n!(OVS_ACTION_ATTR_PUSH_NSH);
pub(super) const A_POP_NSH: u16 = n!(OVS_ACTION_ATTR_POP_NSH);
pub(super) const A_METER: u16 = n!(OVS_ACTION_ATTR_METER);
pub(super) const A_CLONE: u16 = n!(OVS_ACTION_ATTR_CLONE);
pub(super) const A_CHECK_PKT_LEN: u16 = n!(OVS_ACTION_ATTR_CHECK_PKT_LEN);
pub(super) const A_ADD_MPLS: u16 = n!(OVS_ACTION_ATTR_ADD_MPLS);
// OVS 3.1's own copy of the header continues after ADD_MPLS with actions the
// kernel never sees (`#ifndef __KERNEL__`). The 6.1 kernel has DEC_TTL at 23.
pub(super) const A_TUNNEL_PUSH: u16 = A_ADD_MPLS + 1;
pub(super) const A_TUNNEL_POP: u16 = A_ADD_MPLS + 2;
pub(super) const A_DROP: u16 = A_ADD_MPLS + 3;
pub(super) const A_LB_OUTPUT: u16 = A_ADD_MPLS + 4;

/// `sizeof(struct user_action_cookie)` in OVS 3.1 on a 64-bit host.
pub(super) const COOKIE_LEN: usize = 48;
pub(super) const OFPP_NONE: u32 = 0xffff;

/// How long OVS 3.1 expects an attribute's payload to be.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum Len {
    Fixed(usize),
    Variable,
    Nested,
}

/// `ovs_flow_key_attr_lens`. `None` for types above what OVS 3.1 knows.
pub(super) fn key_len(kind: u16) -> Option<Len> {
    use Len::*;
    Some(match kind {
        key::ENCAP | key::TUNNEL | K_NSH => Nested,
        K_MPLS => Variable,
        key::PRIORITY | key::SKB_MARK | key::DP_HASH | key::RECIRC_ID | key::IN_PORT => Fixed(4),
        K_CT_STATE | K_CT_MARK | K_PACKET_TYPE => Fixed(4),
        key::VLAN | key::ETHERTYPE | key::TCP_FLAGS | K_CT_ZONE => Fixed(2),
        key::ETHERNET | key::IPV4 => Fixed(12),
        key::IPV6 | K_CT_TUPLE6 => Fixed(40),
        key::TCP | key::UDP | K_SCTP => Fixed(4),
        key::ICMP | key::ICMPV6 => Fixed(2),
        key::ARP | K_CT_LABELS | K_CT_TUPLE4 => Fixed(if kind == key::ARP { 24 } else { 16 }),
        K_ND => Fixed(28),
        K_ND_EXT => Fixed(8),
        k if k > OVS_KEY_MAX => return None,
        // UNSPEC and TUNNEL_INFO have no entry, so OVS expects length 0.
        _ => Fixed(0),
    })
}

/// `odp_action_len` for OVS 3.1's numbering. `None` is `ATTR_LEN_INVALID`.
pub(super) fn action_len(kind: u16) -> Option<Len> {
    use Len::*;
    Some(match kind {
        action::OUTPUT | action::RECIRC | action::TRUNC | A_METER => Fixed(4),
        A_LB_OUTPUT | A_TUNNEL_POP | A_DROP | action::PUSH_VLAN => Fixed(4),
        action::POP_VLAN | A_CT_CLEAR | A_POP_ETH | A_POP_NSH => Fixed(0),
        action::HASH | A_PUSH_MPLS | A_ADD_MPLS => Fixed(8),
        A_POP_MPLS => Fixed(2),
        A_PUSH_ETH => Fixed(12),
        action::USERSPACE | action::SET | action::SET_MASKED | action::SAMPLE => Variable,
        A_CT | A_CLONE | A_PUSH_NSH | A_CHECK_PKT_LEN | A_TUNNEL_PUSH => Variable,
        _ => return None,
    })
}

/// How one field of a fixed-size key struct prints and parses.
#[derive(Debug, Clone, Copy)]
pub(super) enum Fmt {
    /// MAC address (`format_eth`).
    Eth,
    /// IPv4 address (`format_ipv4`).
    Ip4,
    /// IPv6 address (`format_in6_addr`).
    Ip6,
    /// IPv6 flow label, be32 with 20 significant bits.
    Label,
    /// u8 in decimal.
    U8u,
    /// u8 in hex.
    U8x,
    /// be16 in decimal.
    Be16,
    /// `OVS_FRAG_TYPE_*` as `no`, `first` or `later`.
    Frag,
}

impl Fmt {
    pub(super) fn size(self) -> usize {
        match self {
            Fmt::Eth => 6,
            Fmt::Ip4 | Fmt::Label => 4,
            Fmt::Ip6 => 16,
            Fmt::U8u | Fmt::U8x | Fmt::Frag => 1,
            Fmt::Be16 => 2,
        }
    }
}

/// One field: printed as `name=`, parsed as `scan=` (they differ only in ct_tuple6).
#[derive(Debug, Clone, Copy)]
pub(super) struct Field {
    pub(super) name: &'static str,
    pub(super) scan: &'static str,
    pub(super) off: usize,
    pub(super) fmt: Fmt,
}

const fn fd(name: &'static str, off: usize, fmt: Fmt) -> Field {
    Field { name, scan: name, off, fmt }
}

const ETH_FIELDS: [Field; 2] = [fd("src", 0, Fmt::Eth), fd("dst", 6, Fmt::Eth)];
const IPV4_FIELDS: [Field; 6] = [
    fd("src", 0, Fmt::Ip4),
    fd("dst", 4, Fmt::Ip4),
    fd("proto", 8, Fmt::U8u),
    fd("tos", 9, Fmt::U8x),
    fd("ttl", 10, Fmt::U8u),
    fd("frag", 11, Fmt::Frag),
];
const IPV6_FIELDS: [Field; 7] = [
    fd("src", 0, Fmt::Ip6),
    fd("dst", 16, Fmt::Ip6),
    fd("label", 32, Fmt::Label),
    fd("proto", 36, Fmt::U8u),
    fd("tclass", 37, Fmt::U8x),
    fd("hlimit", 38, Fmt::U8u),
    fd("frag", 39, Fmt::Frag),
];
const PORT_FIELDS: [Field; 2] = [fd("src", 0, Fmt::Be16), fd("dst", 2, Fmt::Be16)];
const ICMP_FIELDS: [Field; 2] = [fd("type", 0, Fmt::U8u), fd("code", 1, Fmt::U8u)];
const ARP_FIELDS: [Field; 5] = [
    fd("sip", 0, Fmt::Ip4),
    fd("tip", 4, Fmt::Ip4),
    fd("op", 8, Fmt::Be16),
    fd("sha", 10, Fmt::Eth),
    fd("tha", 16, Fmt::Eth),
];
const ND_FIELDS: [Field; 3] = [fd("target", 0, Fmt::Ip6), fd("sll", 16, Fmt::Eth), fd("tll", 22, Fmt::Eth)];
const CT_TUPLE4_FIELDS: [Field; 5] = [
    fd("src", 0, Fmt::Ip4),
    fd("dst", 4, Fmt::Ip4),
    fd("proto", 12, Fmt::U8u),
    fd("tp_src", 8, Fmt::Be16),
    fd("tp_dst", 10, Fmt::Be16),
];
pub(super) const CT_TUPLE6_FIELDS: [Field; 5] = [
    fd("src", 0, Fmt::Ip6),
    fd("dst", 16, Fmt::Ip6),
    fd("proto", 36, Fmt::U8u),
    Field { name: "src_port", scan: "tp_src", off: 32, fmt: Fmt::Be16 },
    Field { name: "dst_port", scan: "tp_dst", off: 34, fmt: Fmt::Be16 },
];

/// The fields of the fixed-size key structs, in the order OVS prints them.
pub(super) fn layout(kind: u16) -> Option<&'static [Field]> {
    Some(match kind {
        key::ETHERNET => &ETH_FIELDS,
        key::IPV4 => &IPV4_FIELDS,
        key::IPV6 => &IPV6_FIELDS,
        key::TCP | key::UDP | K_SCTP => &PORT_FIELDS,
        key::ICMP | key::ICMPV6 => &ICMP_FIELDS,
        key::ARP => &ARP_FIELDS,
        K_ND => &ND_FIELDS,
        K_CT_TUPLE4 => &CT_TUPLE4_FIELDS,
        K_CT_TUPLE6 => &CT_TUPLE6_FIELDS,
        _ => return None,
    })
}

/// `ovs_key_attr_to_string`.
pub(super) fn key_name(kind: u16) -> Cow<'static, str> {
    Cow::Borrowed(match kind {
        K_UNSPEC => "unspec",
        key::ENCAP => "encap",
        key::PRIORITY => "skb_priority",
        key::SKB_MARK => "skb_mark",
        K_CT_STATE => "ct_state",
        K_CT_ZONE => "ct_zone",
        K_CT_MARK => "ct_mark",
        K_CT_LABELS => "ct_label",
        K_CT_TUPLE4 => "ct_tuple4",
        K_CT_TUPLE6 => "ct_tuple6",
        key::TUNNEL => "tunnel",
        key::IN_PORT => "in_port",
        key::ETHERNET => "eth",
        key::VLAN => "vlan",
        key::ETHERTYPE => "eth_type",
        key::IPV4 => "ipv4",
        key::IPV6 => "ipv6",
        key::TCP => "tcp",
        key::TCP_FLAGS => "tcp_flags",
        key::UDP => "udp",
        K_SCTP => "sctp",
        key::ICMP => "icmp",
        key::ICMPV6 => "icmpv6",
        key::ARP => "arp",
        K_ND => "nd",
        K_ND_EXT => "nd_ext",
        K_MPLS => "mpls",
        key::DP_HASH => "dp_hash",
        key::RECIRC_ID => "recirc_id",
        K_PACKET_TYPE => "packet_type",
        K_NSH => "nsh",
        K_TUNNEL_INFO => "<error: kernel-only tunnel_info>",
        _ => return Cow::Owned(format!("key{kind}")),
    })
}

/// `odp_mask_is_constant__`: is this mask all `c` (0: wildcard, 0xff: exact)?
pub(super) fn mask_is_const(kind: u16, m: &[u8], c: u8) -> bool {
    let prefix = |n: usize| m.get(..n).is_some_and(|p| all_bytes(p, c));
    match kind {
        K_UNSPEC | key::ENCAP | K_TUNNEL_INFO => false,
        k if k > OVS_KEY_MAX => false,
        key::TCP_FLAGS => be16(m, 0) & 0x0fff == if c == 0 { 0 } else { 0x0fff },
        key::IPV6 => {
            let label = if c == 0 { 0 } else { 0xfffff };
            m.len() >= 40 && be32(m, 32) & 0xfffff == label && prefix(32) && all_bytes(&m[36..40], c)
        }
        key::ARP => prefix(22),
        K_CT_TUPLE4 => prefix(13),
        K_CT_TUPLE6 => prefix(37),
        _ => all_bytes(m, c),
    }
}

/// Names a flag given its bit, as the tables of `format_flags` do.
pub(super) type FlagName = fn(u32) -> Option<&'static str>;

pub(super) fn tcp_flag_name(bit: u32) -> Option<&'static str> {
    const NAMES: [&str; 12] = ["fin", "syn", "rst", "psh", "ack", "urg", "ece", "cwr", "ns", "[200]", "[400]", "[800]"];
    (bit.is_power_of_two() && bit < 1 << 12).then(|| NAMES[bit.trailing_zeros() as usize])
}

pub(super) fn ct_state_name(bit: u32) -> Option<&'static str> {
    const NAMES: [&str; 8] = ["new", "est", "rel", "rpl", "inv", "trk", "snat", "dnat"];
    (bit.is_power_of_two() && bit < 1 << 8).then(|| NAMES[bit.trailing_zeros() as usize])
}

pub(super) fn slow_path_name(bit: u32) -> Option<&'static str> {
    const NAMES: [&str; 7] = ["cfm", "bfd", "lacp", "stp", "lldp", "action", "match"];
    (bit.is_power_of_two() && bit < 1 << 7).then(|| NAMES[bit.trailing_zeros() as usize])
}
