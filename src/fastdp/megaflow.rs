//! Upcall keys in; megaflow keys, masks and tunnel actions out.
//!
//! # The match
//! A weaver flow matches exactly on `in_port`, the Ethernet source and
//! destination and, for packets that arrived by VXLAN, the tunnel id and
//! outer IPv4 source and destination. Everything else is wildcarded,
//! ethertype included, so one flow carries ARP, IPv4 and IPv6 alike:
//!
//! ```text
//! key:  tunnel(tun_id=ID,src=S,dst=D,ttl=0),in_port(P),eth(src=M1,dst=M2)
//! mask: tunnel(tun_id=0xffffffffffffffff,src=255.255.255.255,dst=255.255.255.255,ttl=0),
//!       in_port(0xffffffff),eth(src=ff:ff:ff:ff:ff:ff,dst=ff:ff:ff:ff:ff:ff)
//! ```
//!
//! What this relies on in the kernel (`net/openvswitch/flow_netlink.c`):
//! - `ovs_key_from_nlattrs`: a key with `ETHERNET` but no `ETHERTYPE` gets
//!   `eth.type = ETH_P_802_2`, and its mask's `eth.type` stays 0 unless the
//!   mask has an `ETHERTYPE` attribute; `__ovs_nla_put_key` says so too
//!   ("Ethertype can also be wildcarded"). So the ethertype is wildcarded.
//! - `match_validate`: `key_expected` grows only from the *key's* ethertype
//!   (0x0800 requires an `IPV4` attribute, and so on). With no ethertype in
//!   the key, no L3/L4 attribute is expected, and none may be in the mask
//!   (`mask_allowed` admits them only when the ethertype mask is 0xffff).
//!   Hence the key carries no `ETHERTYPE` and no L3/L4 attribute at all:
//!   keeping `eth_type(0x0800)` would force one flow per ethertype.
//! - `parse_eth_type_from_nlattrs` forces a *present* `ETHERTYPE` mask to
//!   0xffff, and `parse_flow_mask_nlattrs` drops all-zero mask attributes;
//!   so "ethertype mask 0" can only be said by leaving the attribute out.
//! - `metadata_from_nlattrs`: the `in_port` mask is always exact;
//!   `mac_proto` is always exact (Ethernet, since the key has `ETHERNET`).
//! - `ovs_nla_get_match` always matches the VLAN TCI exactly: these flows
//!   match untagged frames only. Tagged frames are forwarded by execute
//!   without a flow (see the module docs of [`super`]).
//! - `ip_tun_from_nlattr`: a tunnel *key* needs a non-zero IPv4 destination
//!   and a `TTL` attribute ("IP tunnel TTL not specified"), so the key has
//!   `ttl=0` and the mask wildcards it. The mask's tunnel flags are exactly
//!   the flag attributes present in the mask: `tun_id` gives `TUNNEL_KEY`,
//!   and leaving out `DONT_FRAGMENT` and `CSUM` wildcards them, so a sender
//!   with UDP checksums on still matches. The tunnel `tos` and ports are
//!   wildcarded by their absence from the mask.
//!
//! # Canonical keys
//! The installed key holds exactly the matched fields, with the wildcarded
//! tunnel TTL as 0, whatever the upcall said. Without a UFID the kernel
//! identifies a flow by its unmasked key (`ovs_flow_cmp_unmasked_key`), so a
//! later delete with the same key finds it, and two misses of one megaflow
//! produce byte-identical installs.

use std::net::Ipv4Addr;

use thiserror::Error;

use super::vni::VniError;
use crate::odp::action::Action;
use crate::odp::key::{EthernetKey, KeyAttr, Mac};
use crate::odp::tunnel::TunnelKey;

/// What is missing or wrong in an upcall key.
#[derive(Clone, Debug, PartialEq, Eq, Error)]
pub enum KeyError {
    /// No `in_port` attribute.
    #[error("no in_port")]
    MissingInPort,
    /// No `eth` attribute (an L3 packet): weaver forwards Ethernet only.
    #[error("no Ethernet header")]
    MissingEthernet,
    /// A packet from the VXLAN vport without tunnel metadata.
    #[error("no tunnel metadata on a packet from the VXLAN port")]
    MissingTunnel,
    /// Tunnel metadata without an id, an IPv4 source or an IPv4 destination.
    #[error("tunnel metadata lacks the id or the IPv4 addresses")]
    IncompleteTunnel,
    /// A tunnel id that is not a weaver VNI.
    #[error(transparent)]
    Vni(#[from] VniError),
}

/// The tunnel fields a flow for VXLAN ingress matches on.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub struct TunnelMatch {
    /// The tunnel id (the VNI).
    pub id: u64,
    /// The outer source: the previous hop's underlay address.
    pub src: Ipv4Addr,
    /// The outer destination: our underlay address.
    pub dst: Ipv4Addr,
}

/// A megaflow's identity: the fields it matches exactly.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub struct MatchKey {
    /// The datapath port the packet came in on.
    pub in_port: u32,
    /// Ethernet source and destination.
    pub eth: EthernetKey,
    /// The tunnel it arrived through, if any.
    pub tunnel: Option<TunnelMatch>,
}

/// A missed packet, as far as forwarding cares.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Upcall {
    /// The match a flow for it would have.
    pub key: MatchKey,
    /// Whether the frame is VLAN-tagged (no flow can be installed for it).
    pub vlan: bool,
}

const ETH_P_8021Q: u16 = 0x8100;
const ETH_P_8021AD: u16 = 0x88a8;

impl Upcall {
    /// Reads an upcall key (or a dumped flow key). Attributes other than
    /// `in_port`, `eth`, `tunnel`, `vlan` and `eth_type` are ignored.
    pub fn parse(key: &[KeyAttr]) -> Result<Upcall, KeyError> {
        let (mut in_port, mut eth, mut tunnel, mut vlan) = (None, None, None, false);
        for a in key {
            match a {
                KeyAttr::InPort(p) => in_port = Some(*p),
                KeyAttr::Ethernet(e) => eth = Some(*e),
                KeyAttr::Tunnel(t) => tunnel = Some(tunnel_match(t)?),
                KeyAttr::Vlan(_) | KeyAttr::Encap(_) => vlan = true,
                KeyAttr::EthType(t) if matches!(*t, ETH_P_8021Q | ETH_P_8021AD) => vlan = true,
                _ => {}
            }
        }
        let key = MatchKey {
            in_port: in_port.ok_or(KeyError::MissingInPort)?,
            eth: eth.ok_or(KeyError::MissingEthernet)?,
            tunnel,
        };
        Ok(Upcall { key, vlan })
    }
}

fn tunnel_match(t: &TunnelKey) -> Result<TunnelMatch, KeyError> {
    match (t.id, t.ipv4_src, t.ipv4_dst) {
        (Some(id), Some(src), Some(dst)) => Ok(TunnelMatch { id, src, dst }),
        _ => Err(KeyError::IncompleteTunnel),
    }
}

impl MatchKey {
    /// The canonical flow key (see the module docs).
    pub fn key(&self) -> Vec<KeyAttr> {
        let mut k = Vec::with_capacity(3);
        if let Some(t) = self.tunnel {
            k.push(KeyAttr::Tunnel(TunnelKey {
                id: Some(t.id),
                ipv4_src: Some(t.src),
                ipv4_dst: Some(t.dst),
                ttl: Some(0),
                ..TunnelKey::default()
            }));
        }
        k.push(KeyAttr::InPort(self.in_port));
        k.push(KeyAttr::Ethernet(self.eth));
        k
    }

    /// The flow mask (see the module docs).
    pub fn mask(&self) -> Vec<KeyAttr> {
        let mut m = Vec::with_capacity(3);
        if self.tunnel.is_some() {
            m.push(KeyAttr::Tunnel(TunnelKey {
                id: Some(u64::MAX),
                ipv4_src: Some(Ipv4Addr::BROADCAST),
                ipv4_dst: Some(Ipv4Addr::BROADCAST),
                ttl: Some(0),
                ..TunnelKey::default()
            }));
        }
        m.push(KeyAttr::InPort(u32::MAX));
        m.push(KeyAttr::Ethernet(EthernetKey { src: Mac::BROADCAST, dst: Mac::BROADCAST }));
        m
    }
}

/// `set(tunnel(tun_id=ID,src=SRC,dst=DST,ttl=TTL[,tp_dst=PORT],flags(df)))`:
/// the metadata the VXLAN vport encapsulates with on the next output.
pub fn set_tunnel(id: u64, src: Ipv4Addr, dst: Ipv4Addr, ttl: u8, tp_dst: Option<u16>) -> Action {
    Action::Set(KeyAttr::Tunnel(TunnelKey {
        id: Some(id),
        ipv4_src: Some(src),
        ipv4_dst: Some(dst),
        ttl: Some(ttl),
        dont_fragment: true,
        tp_dst,
        ..TunnelKey::default()
    }))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::odp::format::{format_actions, format_key, parse_key};
    use crate::odp::key::Ipv4Key;

    fn mac(last: u8) -> Mac {
        Mac([2, 0, 0, 0, 0, last])
    }

    fn eth(s: u8, d: u8) -> EthernetKey {
        EthernetKey { src: mac(s), dst: mac(d) }
    }

    #[test]
    fn local_megaflow_wildcards_the_ethertype() {
        let m = MatchKey { in_port: 3, eth: eth(1, 2), tunnel: None };
        assert_eq!(m.key(), vec![KeyAttr::InPort(3), KeyAttr::Ethernet(eth(1, 2))]);
        assert!(!m.key().iter().any(|a| matches!(a, KeyAttr::EthType(_) | KeyAttr::Ipv4(_))));
        assert_eq!(
            format_key(&m.key(), Some(&m.mask())),
            "in_port(3),eth(src=02:00:00:00:00:01,dst=02:00:00:00:00:02)"
        );
    }

    #[test]
    fn tunnel_megaflow_matches_id_and_addresses_with_ttl_present_and_wildcarded() {
        let t = TunnelMatch { id: 0x002001, src: Ipv4Addr::new(192, 168, 1, 2), dst: Ipv4Addr::new(192, 168, 1, 1) };
        let m = MatchKey { in_port: 9, eth: eth(1, 2), tunnel: Some(t) };
        // dump-flows leaves out the all-zero-mask ttl, as OVS does.
        assert_eq!(
            format_key(&m.key(), Some(&m.mask())),
            "tunnel(tun_id=0x2001,src=192.168.1.2,dst=192.168.1.1,flags(+key)),in_port(9),\
             eth(src=02:00:00:00:00:01,dst=02:00:00:00:00:02)"
        );
        // It is the key and mask of the form the lab installs with
        // `weavectl flows add` (guest-fastdp.sh), minus the matched
        // `-df-csum` flags and the ethertype: the TTL attribute is present
        // in the key (the kernel requires it) and wildcarded.
        let lab = "tunnel(tun_id=0x2001,src=192.168.1.2,dst=192.168.1.1,ttl=0/0),in_port(9),\
                   eth(src=02:00:00:00:00:01,dst=02:00:00:00:00:02)";
        assert_eq!(parse_key(lab).unwrap(), (m.key(), m.mask()));
    }

    #[test]
    fn parses_upcall_keys_and_ignores_l3() {
        let t = TunnelKey {
            id: Some(0x1002),
            ipv4_src: Some(Ipv4Addr::new(10, 0, 0, 1)),
            ipv4_dst: Some(Ipv4Addr::new(10, 0, 0, 2)),
            ttl: Some(63),
            tp_dst: Some(6784),
            ..TunnelKey::default()
        };
        let ip = Ipv4Key { src: Ipv4Addr::LOCALHOST, dst: Ipv4Addr::LOCALHOST, proto: 1, tos: 0, ttl: 64, frag: 0 };
        let key = [
            KeyAttr::Priority(0),
            KeyAttr::Tunnel(t),
            KeyAttr::InPort(4),
            KeyAttr::Ethernet(eth(5, 6)),
            KeyAttr::EthType(0x0800),
            KeyAttr::Ipv4(ip),
        ];
        let u = Upcall::parse(&key).unwrap();
        assert!(!u.vlan);
        assert_eq!(
            u.key,
            MatchKey {
                in_port: 4,
                eth: eth(5, 6),
                tunnel: Some(TunnelMatch {
                    id: 0x1002,
                    src: Ipv4Addr::new(10, 0, 0, 1),
                    dst: Ipv4Addr::new(10, 0, 0, 2)
                })
            }
        );
        // The canonical key drops the TTL and port the packet happened to have.
        assert!(matches!(&u.key.key()[0], KeyAttr::Tunnel(t) if t.ttl == Some(0) && t.tp_dst.is_none()));
    }

    #[test]
    fn vlan_tags_are_noticed() {
        let tagged =
            [KeyAttr::InPort(1), KeyAttr::Ethernet(eth(1, 2)), KeyAttr::EthType(0x8100), KeyAttr::Vlan(0x1005)];
        assert!(Upcall::parse(&tagged).unwrap().vlan);
        let qinq = [KeyAttr::InPort(1), KeyAttr::Ethernet(eth(1, 2)), KeyAttr::EthType(0x88a8)];
        assert!(Upcall::parse(&qinq).unwrap().vlan);
    }

    #[test]
    fn bad_keys_are_typed_errors() {
        assert_eq!(Upcall::parse(&[KeyAttr::Ethernet(eth(1, 2))]), Err(KeyError::MissingInPort));
        assert_eq!(Upcall::parse(&[KeyAttr::InPort(1), KeyAttr::EthType(0x800)]), Err(KeyError::MissingEthernet));
        let half = TunnelKey { id: Some(1), ..TunnelKey::default() };
        let key = [KeyAttr::InPort(1), KeyAttr::Ethernet(eth(1, 2)), KeyAttr::Tunnel(half)];
        assert_eq!(Upcall::parse(&key), Err(KeyError::IncompleteTunnel));
    }

    #[test]
    fn tunnel_set_action_has_ttl_and_df() {
        let a = set_tunnel(0x1002, Ipv4Addr::new(10, 0, 0, 1), Ipv4Addr::new(10, 0, 0, 3), 64, None);
        assert_eq!(format_actions(&[a]), "set(tunnel(tun_id=0x1002,src=10.0.0.1,dst=10.0.0.3,ttl=64,flags(df|key)))");
        let a = set_tunnel(1, Ipv4Addr::new(10, 0, 0, 1), Ipv4Addr::new(10, 0, 0, 3), 64, Some(6784));
        assert!(format_actions(&[a]).contains("tp_dst=6784"));
    }
}
