//! The `ovs_packet` family: upcalls (misses and userspace actions) from the
//! kernel, and `execute` requests to it.

use ovs_sys as sys;
use serde::{Deserialize, Serialize};

use super::action::{self, Action};
use super::frame::{split_messages, OvsFrame};
use super::key::{self, KeyAttr};
use super::nla::{NlaIter, NlaWriter, RawNla, Result, WireError};
use super::tunnel::TunnelKey;

const PACKET: u16 = sys::OVS_PACKET_ATTR_PACKET as u16;
const KEY: u16 = sys::OVS_PACKET_ATTR_KEY as u16;
const ACTIONS: u16 = sys::OVS_PACKET_ATTR_ACTIONS as u16;
const USERDATA: u16 = sys::OVS_PACKET_ATTR_USERDATA as u16;
const EGRESS_TUN_KEY: u16 = sys::OVS_PACKET_ATTR_EGRESS_TUN_KEY as u16;
const PROBE: u16 = sys::OVS_PACKET_ATTR_PROBE as u16;
const MRU: u16 = sys::OVS_PACKET_ATTR_MRU as u16;
const LEN: u16 = sys::OVS_PACKET_ATTR_LEN as u16;
const HASH: u16 = sys::OVS_PACKET_ATTR_HASH as u16;

pub const CMD_MISS: u8 = sys::OVS_PACKET_CMD_MISS as u8;
pub const CMD_ACTION: u8 = sys::OVS_PACKET_CMD_ACTION as u8;
pub const CMD_EXECUTE: u8 = sys::OVS_PACKET_CMD_EXECUTE as u8;

/// A packet message: an upcall from the kernel or an execute request.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct PacketMsg {
    pub dp_ifindex: i32,
    /// The whole frame, from the Ethernet header on.
    pub packet: Vec<u8>,
    pub key: Vec<KeyAttr>,
    pub actions: Option<Vec<Action>>,
    pub userdata: Option<Vec<u8>>,
    pub egress_tun_key: Option<TunnelKey>,
    pub probe: bool,
    pub mru: Option<u16>,
    pub len: Option<u32>,
    pub hash: Option<u64>,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub other: Vec<RawNla>,
}

const WHAT: &str = "packet";

impl PacketMsg {
    pub fn parse(dp_ifindex: i32, attrs: &[u8]) -> Result<Self> {
        let mut p = PacketMsg { dp_ifindex, ..Default::default() };
        let mut have_packet = false;
        for a in NlaIter::new(attrs) {
            let a = a?;
            match a.kind {
                PACKET => {
                    p.packet = a.payload.to_vec();
                    have_packet = true;
                }
                KEY => p.key = key::parse_keys(a.payload)?,
                ACTIONS => p.actions = Some(action::parse_actions(a.payload)?),
                USERDATA => p.userdata = Some(a.payload.to_vec()),
                EGRESS_TUN_KEY => p.egress_tun_key = Some(TunnelKey::parse(&a)?),
                PROBE => {
                    a.flag(WHAT)?;
                    p.probe = true;
                }
                MRU => p.mru = Some(a.u16(WHAT)?),
                LEN => p.len = Some(a.u32(WHAT)?),
                HASH => p.hash = Some(a.u64(WHAT)?),
                _ => p.other.push(a.to_raw()),
            }
        }
        if !have_packet {
            return Err(WireError::Missing { what: WHAT, kind: PACKET });
        }
        Ok(p)
    }

    pub fn emit_attrs(&self) -> Vec<u8> {
        let mut w = NlaWriter::new();
        w.put(PACKET, &self.packet);
        if !self.key.is_empty() {
            w.nested(KEY, |w| key::emit_keys(&self.key, w));
        }
        if let Some(a) = &self.actions {
            w.nested(ACTIONS, |w| action::emit_actions(a, w));
        }
        if let Some(u) = &self.userdata {
            w.put(USERDATA, u);
        }
        if let Some(t) = &self.egress_tun_key {
            t.emit(&mut w, EGRESS_TUN_KEY);
        }
        if self.probe {
            w.put_flag(PROBE);
        }
        if let Some(m) = self.mru {
            w.put_u16(MRU, m);
        }
        if let Some(l) = self.len {
            w.put_u32(LEN, l);
        }
        if let Some(h) = self.hash {
            w.put_u64(HASH, h);
        }
        for o in &self.other {
            o.emit(&mut w);
        }
        w.into_bytes()
    }

    /// The ingress port from the key, if the kernel reported one.
    pub fn in_port(&self) -> Option<u32> {
        self.key.iter().find_map(|k| match k {
            KeyAttr::InPort(p) => Some(*p),
            _ => None,
        })
    }
}

/// Why the kernel sent a packet up.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum UpcallKind {
    /// No flow matched.
    Miss,
    /// An `OVS_ACTION_ATTR_USERSPACE` action.
    Action,
}

/// One upcall: a packet plus the key the kernel extracted from it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Upcall {
    pub kind: UpcallKind,
    pub msg: PacketMsg,
}

/// Something in an upcall socket's datagram that was not an upcall.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum UpcallItem {
    Upcall(Box<Upcall>),
    /// A message of another family or command, ignored by the caller.
    Ignored {
        kind: u16,
        cmd: Option<u8>,
    },
    /// An `NLMSG_ERROR` (errno, negative) delivered to this socket.
    Error(i32),
}

/// Parses one datagram read from an upcall socket. `packet_family` is the
/// resolved id of `ovs_packet`. Each message yields one item; a malformed
/// message yields an error item and parsing goes on with the next one where
/// the framing allows.
pub fn parse_upcalls(buf: &[u8], packet_family: u16) -> Vec<Result<UpcallItem>> {
    split_messages(buf)
        .map(|m| {
            let m = m?;
            if m.kind == super::frame::NLMSG_ERROR {
                return Ok(UpcallItem::Error(m.error_code()?));
            }
            if m.kind != packet_family {
                return Ok(UpcallItem::Ignored { kind: m.kind, cmd: None });
            }
            let f = OvsFrame::parse(m.payload)?;
            let kind = match f.cmd {
                CMD_MISS => UpcallKind::Miss,
                CMD_ACTION => UpcallKind::Action,
                other => return Ok(UpcallItem::Ignored { kind: m.kind, cmd: Some(other) }),
            };
            Ok(UpcallItem::Upcall(Box::new(Upcall { kind, msg: PacketMsg::parse(f.dp_ifindex, &f.attrs)? })))
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::odp::action::strategy::actions;
    use crate::odp::frame::emit_message;
    use crate::odp::key::strategy::keys;
    use proptest::prelude::*;

    fn packet_msg() -> impl Strategy<Value = PacketMsg> {
        (
            (any::<i32>(), proptest::collection::vec(any::<u8>(), 0..128), keys(), proptest::option::of(actions())),
            (
                proptest::option::of(proptest::collection::vec(any::<u8>(), 0..16)),
                proptest::option::of(crate::odp::tunnel::strategy::tunnel_key()),
            ),
            (any::<bool>(), any::<Option<u16>>(), any::<Option<u32>>(), any::<Option<u64>>()),
        )
            .prop_map(|((dp, packet, key, actions), (userdata, egress_tun_key), (probe, mru, len, hash))| {
                PacketMsg {
                    dp_ifindex: dp,
                    packet,
                    key,
                    actions,
                    userdata,
                    egress_tun_key,
                    probe,
                    mru,
                    len,
                    hash,
                    other: vec![],
                }
            })
    }

    proptest! {
        #[test]
        fn round_trips(p in packet_msg()) {
            prop_assert_eq!(PacketMsg::parse(p.dp_ifindex, &p.emit_attrs()).unwrap(), p);
        }

        #[test]
        fn upcalls_parse_from_whole_datagrams(p in packet_msg(), miss: bool) {
            let cmd = if miss { CMD_MISS } else { CMD_ACTION };
            let frame = OvsFrame { cmd, version: 1, dp_ifindex: p.dp_ifindex, attrs: p.emit_attrs() };
            let mut dgram = emit_message(33, 0, 0, 0, &frame);
            dgram.extend(emit_message(34, 0, 0, 0, &frame));
            let items = parse_upcalls(&dgram, 33);
            prop_assert_eq!(items.len(), 2);
            let want = UpcallItem::Upcall(Box::new(Upcall { kind: if miss { UpcallKind::Miss } else { UpcallKind::Action }, msg: p }));
            prop_assert_eq!(items[0].as_ref().unwrap(), &want);
            prop_assert_eq!(items[1].as_ref().unwrap(), &UpcallItem::Ignored { kind: 34, cmd: None });
        }

        #[test]
        fn garbage_never_panics(b in proptest::collection::vec(any::<u8>(), 0..300)) {
            let _ = parse_upcalls(&b, 33);
        }
    }
}
