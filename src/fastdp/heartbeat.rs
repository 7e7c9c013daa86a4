//! Fast-datapath heartbeats: the frames a peer sends through its VXLAN vport
//! to each connected peer, to prove that the tunnel carries full-size frames
//! with don't-fragment set. The receiver's datapath hands them to userspace
//! through one permanent flow ([`receive_flow`]) with a userspace action, so
//! they are never misses; the receiver acknowledges each one over the TCP
//! control connection, naming the connection UID and sequence number.
//!
//! # Frame
//! An Ethernet frame from and to [`HEARTBEAT_MAC`] (locally administered,
//! never a container's), EtherType [`ETHERTYPE`] (IEEE 802 local
//! experimental), then, big-endian:
//!
//! | bytes | field |
//! |---|---|
//! | 4 | magic `WVHB` |
//! | 1 | version, 1 |
//! | 1 | reserved, 0 |
//! | 2 | reserved, 0 |
//! | 8 | connection UID |
//! | 8 | sequence number |
//! | 4 | total frame length, Ethernet header included |
//!
//! and zero padding up to the total length: a heartbeat for an overlay MTU
//! of `M` is `M + 14` bytes, the largest frame a container can send.

use std::net::Ipv4Addr;

use thiserror::Error;

use crate::odp::action::{Action, UserspaceAction};
use crate::odp::flow::Flow;
use crate::odp::key::{EthernetKey, KeyAttr, Mac};

/// The source and destination MAC of every heartbeat.
pub const HEARTBEAT_MAC: Mac = Mac([0x02, 0x77, 0x76, 0x68, 0x62, 0x00]);
/// The heartbeat EtherType (IEEE 802 local experimental 1).
pub const ETHERTYPE: u16 = 0x88b5;
const MAGIC: [u8; 4] = *b"WVHB";
const VERSION: u8 = 1;
const ETH_HLEN: usize = 14;
const BODY_LEN: usize = 28;
/// The shortest heartbeat frame.
pub const MIN_LEN: usize = ETH_HLEN + BODY_LEN;
/// The longest heartbeat frame we build or accept (jumbo underlays included).
pub const MAX_LEN: usize = 65_535;
/// The userdata of the userspace action that delivers heartbeats, so the
/// driver tells them from other action upcalls.
pub const USERDATA: &[u8] = b"weaver-heartbeat";

/// One heartbeat.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Heartbeat {
    /// The control connection it belongs to (the UID both ends share).
    pub conn_uid: u64,
    /// Increases per heartbeat sent on that connection.
    pub seq: u64,
    /// The whole frame's length, Ethernet header included.
    pub len: usize,
}

/// Why a frame is not a heartbeat.
#[derive(Clone, Debug, PartialEq, Eq, Error)]
pub enum HeartbeatError {
    #[error("frame of {0} bytes is too short for a heartbeat")]
    Short(usize),
    #[error("not a heartbeat frame (MAC, EtherType or magic differ)")]
    NotHeartbeat,
    #[error("heartbeat version {0} is not supported")]
    Version(u8),
    #[error("heartbeat says {declared} bytes but {actual} arrived")]
    Length { declared: usize, actual: usize },
    #[error("heartbeat length {0} is outside {MIN_LEN}..={MAX_LEN}")]
    BadLength(usize),
}

impl Heartbeat {
    /// The frame, padded with zeros to `self.len` bytes.
    pub fn emit(&self) -> Result<Vec<u8>, HeartbeatError> {
        if !(MIN_LEN..=MAX_LEN).contains(&self.len) {
            return Err(HeartbeatError::BadLength(self.len));
        }
        let mut f = Vec::with_capacity(self.len);
        f.extend_from_slice(&HEARTBEAT_MAC.0);
        f.extend_from_slice(&HEARTBEAT_MAC.0);
        f.extend_from_slice(&ETHERTYPE.to_be_bytes());
        f.extend_from_slice(&MAGIC);
        f.extend_from_slice(&[VERSION, 0, 0, 0]);
        f.extend_from_slice(&self.conn_uid.to_be_bytes());
        f.extend_from_slice(&self.seq.to_be_bytes());
        f.extend_from_slice(&(self.len as u32).to_be_bytes());
        f.resize(self.len, 0);
        Ok(f)
    }

    /// Parses a frame as it arrived (the whole frame, as an upcall carries it).
    pub fn parse(frame: &[u8]) -> Result<Heartbeat, HeartbeatError> {
        if frame.len() < MIN_LEN {
            return Err(HeartbeatError::Short(frame.len()));
        }
        let (eth, body) = frame.split_at(ETH_HLEN);
        if eth[0..6] != HEARTBEAT_MAC.0 || eth[12..14] != ETHERTYPE.to_be_bytes() || body[0..4] != MAGIC {
            return Err(HeartbeatError::NotHeartbeat);
        }
        if body[4] != VERSION {
            return Err(HeartbeatError::Version(body[4]));
        }
        let be64 = |b: &[u8]| b.iter().fold(0u64, |acc, x| acc << 8 | u64::from(*x));
        let conn_uid = be64(&body[8..16]);
        let seq = be64(&body[16..24]);
        let declared = be64(&body[24..28]) as usize;
        if declared != frame.len() {
            return Err(HeartbeatError::Length { declared, actual: frame.len() });
        }
        Ok(Heartbeat { conn_uid, seq, len: declared })
    }
}

/// The frame length of a heartbeat that proves an overlay MTU of `mtu`.
pub fn frame_len(mtu: u32) -> usize {
    (mtu as usize + ETH_HLEN).clamp(MIN_LEN, MAX_LEN)
}

/// The permanent flow that hands heartbeats arriving on the VXLAN vport to
/// the upcall socket `pid`, as action upcalls (never counted as misses).
/// Exact on in_port, both MACs and the EtherType; the tunnel is wildcarded
/// (the upcall's key still carries it).
pub fn receive_flow(dp_ifindex: i32, vxlan_port: u32, pid: u32) -> Flow {
    let eth = EthernetKey { src: HEARTBEAT_MAC, dst: HEARTBEAT_MAC };
    Flow {
        dp_ifindex,
        key: vec![KeyAttr::InPort(vxlan_port), KeyAttr::Ethernet(eth), KeyAttr::EthType(ETHERTYPE)],
        mask: Some(vec![
            KeyAttr::InPort(u32::MAX),
            KeyAttr::Ethernet(EthernetKey { src: Mac::BROADCAST, dst: Mac::BROADCAST }),
            KeyAttr::EthType(0xffff),
        ]),
        actions: Some(vec![Action::Userspace(UserspaceAction {
            pid,
            userdata: Some(USERDATA.to_vec()),
            ..UserspaceAction::default()
        })]),
        ..Flow::default()
    }
}

/// Where a heartbeat goes: the tunnel it is sent in.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Path {
    /// `VNI(us, them)`.
    pub vni: u32,
    /// Our underlay address on this connection.
    pub src: Ipv4Addr,
    /// The peer's underlay address.
    pub dst: Ipv4Addr,
    pub ttl: u8,
}

/// The key and actions of the execute that sends a heartbeat: set the tunnel
/// (with don't-fragment: a frame the underlay cannot carry whole is lost,
/// which is the point) and output to the VXLAN vport.
pub fn send_actions(path: &Path, vxlan_port: u32, tp_dst: Option<u16>) -> (Vec<KeyAttr>, Vec<Action>) {
    let key = vec![
        KeyAttr::InPort(0),
        KeyAttr::Ethernet(EthernetKey { src: HEARTBEAT_MAC, dst: HEARTBEAT_MAC }),
        KeyAttr::EthType(ETHERTYPE),
    ];
    let set = super::megaflow::set_tunnel(u64::from(path.vni), path.src, path.dst, path.ttl, tp_dst);
    (key, vec![set, Action::Output(vxlan_port)])
}

/// The overlay messages of the control connection (`proto/overlay.proto`).
pub mod pb {
    include!(concat!(env!("OUT_DIR"), "/weaver.overlay.v1.rs"));
}

/// An acknowledgement, as the control connection carries it: of a fast
/// datapath heartbeat, or of a sleeve control datagram.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Ack {
    pub conn_uid: u64,
    pub seq: u64,
    pub len: usize,
    /// It acknowledges a sleeve datagram (UDP), not a VXLAN heartbeat.
    pub sleeve: bool,
}

impl Ack {
    pub fn encode(&self) -> Vec<u8> {
        use prost::Message;
        let (conn_uid, seq, len) = (self.conn_uid, self.seq, self.len.min(u32::MAX as usize) as u32);
        let body = if self.sleeve {
            pb::overlay_message::Body::SleeveAck(pb::SleeveAck { conn_uid, seq, len })
        } else {
            pb::overlay_message::Body::HeartbeatAck(pb::HeartbeatAck { conn_uid, seq, len })
        };
        pb::OverlayMessage { body: Some(body) }.encode_to_vec()
    }

    /// Decodes an overlay message; `Ok(None)` for a kind this version does
    /// not know (a newer peer's), which the caller ignores.
    pub fn decode(bytes: &[u8]) -> Result<Option<Ack>, prost::DecodeError> {
        use prost::Message;
        Ok(pb::OverlayMessage::decode(bytes)?.body.map(|b| match b {
            pb::overlay_message::Body::HeartbeatAck(a) => {
                Ack { conn_uid: a.conn_uid, seq: a.seq, len: a.len as usize, sleeve: false }
            }
            pb::overlay_message::Body::SleeveAck(a) => {
                Ack { conn_uid: a.conn_uid, seq: a.seq, len: a.len as usize, sleeve: true }
            }
        }))
    }
}

/// Whether an action upcall's userdata marks it as a heartbeat.
pub fn is_heartbeat_userdata(userdata: Option<&[u8]>) -> bool {
    userdata == Some(USERDATA)
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    #[test]
    fn sizes_follow_the_mtu() {
        let hb = Heartbeat { conn_uid: 7, seq: 1, len: frame_len(1376) };
        let f = hb.emit().unwrap();
        assert_eq!(f.len(), 1390);
        assert_eq!(Heartbeat::parse(&f), Ok(hb));
        assert_eq!(frame_len(0), MIN_LEN);
        assert_eq!(frame_len(1_000_000), MAX_LEN);
    }

    #[test]
    fn rejects_what_is_not_a_heartbeat() {
        let f = Heartbeat { conn_uid: 1, seq: 2, len: 100 }.emit().unwrap();
        assert_eq!(Heartbeat::parse(&f[..50]), Err(HeartbeatError::Length { declared: 100, actual: 50 }));
        assert_eq!(Heartbeat::parse(&f[..20]), Err(HeartbeatError::Short(20)));
        let mut g = f.clone();
        g[12] = 0x08;
        assert_eq!(Heartbeat::parse(&g), Err(HeartbeatError::NotHeartbeat));
        let mut g = f.clone();
        g[18] = 9;
        assert_eq!(Heartbeat::parse(&g), Err(HeartbeatError::Version(9)));
        assert!(Heartbeat { conn_uid: 1, seq: 2, len: 10 }.emit().is_err());
    }

    #[test]
    fn the_receive_flow_matches_only_heartbeats() {
        let f = receive_flow(5, 2, 99);
        assert!(f.key.contains(&KeyAttr::EthType(ETHERTYPE)));
        assert!(f.key.contains(&KeyAttr::InPort(2)));
        let Some(Action::Userspace(u)) = f.actions.as_ref().and_then(|a| a.first()) else { panic!("no action") };
        assert_eq!(u.pid, 99);
        assert!(is_heartbeat_userdata(u.userdata.as_deref()));
        let (_, acts) = send_actions(
            &Path { vni: 0x001002, src: Ipv4Addr::new(1, 1, 1, 1), dst: Ipv4Addr::new(2, 2, 2, 2), ttl: 64 },
            2,
            None,
        );
        assert_eq!(acts.last(), Some(&Action::Output(2)));
    }

    proptest! {
        #[test]
        fn ack_round_trip(conn_uid: u64, seq: u64, len in 0..100_000usize, sleeve: bool) {
            let a = Ack { conn_uid, seq, len, sleeve };
            prop_assert_eq!(Ack::decode(&a.encode()), Ok(Some(a)));
        }

        #[test]
        fn ack_decode_never_panics(bytes in proptest::collection::vec(any::<u8>(), 0..64)) {
            let _ = Ack::decode(&bytes);
        }

        #[test]
        fn round_trip(conn_uid: u64, seq: u64, len in MIN_LEN..9100usize) {
            let hb = Heartbeat { conn_uid, seq, len };
            prop_assert_eq!(Heartbeat::parse(&hb.emit().unwrap()), Ok(hb));
        }

        #[test]
        fn never_panics(bytes in proptest::collection::vec(any::<u8>(), 0..200)) {
            let _ = Heartbeat::parse(&bytes);
        }
    }
}
