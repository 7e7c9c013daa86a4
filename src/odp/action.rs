//! Flow actions (`OVS_ACTION_ATTR_*`): what the datapath does with a packet.

use ovs_sys as sys;
use serde::{Deserialize, Serialize};

use super::key::{self, KeyAttr};
use super::nla::{Nla, NlaIter, NlaWriter, RawNla, Result, WireError};

macro_rules! a {
    ($c:ident) => {
        sys::$c as u16
    };
}
pub const OUTPUT: u16 = a!(OVS_ACTION_ATTR_OUTPUT);
pub const USERSPACE: u16 = a!(OVS_ACTION_ATTR_USERSPACE);
pub const SET: u16 = a!(OVS_ACTION_ATTR_SET);
pub const PUSH_VLAN: u16 = a!(OVS_ACTION_ATTR_PUSH_VLAN);
pub const POP_VLAN: u16 = a!(OVS_ACTION_ATTR_POP_VLAN);
pub const SAMPLE: u16 = a!(OVS_ACTION_ATTR_SAMPLE);
pub const RECIRC: u16 = a!(OVS_ACTION_ATTR_RECIRC);
pub const HASH: u16 = a!(OVS_ACTION_ATTR_HASH);
pub const SET_MASKED: u16 = a!(OVS_ACTION_ATTR_SET_MASKED);
pub const TRUNC: u16 = a!(OVS_ACTION_ATTR_TRUNC);

const US_PID: u16 = a!(OVS_USERSPACE_ATTR_PID);
const US_USERDATA: u16 = a!(OVS_USERSPACE_ATTR_USERDATA);
const US_EGRESS_TUN_PORT: u16 = a!(OVS_USERSPACE_ATTR_EGRESS_TUN_PORT);
const US_ACTIONS: u16 = a!(OVS_USERSPACE_ATTR_ACTIONS);
const SAMPLE_PROBABILITY: u16 = a!(OVS_SAMPLE_ATTR_PROBABILITY);
const SAMPLE_ACTIONS: u16 = a!(OVS_SAMPLE_ATTR_ACTIONS);

/// `OVS_ACTION_ATTR_USERSPACE`: send a copy of the packet to a netlink socket.
#[derive(Debug, Clone, Default, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub struct UserspaceAction {
    pub pid: u32,
    pub userdata: Option<Vec<u8>>,
    pub egress_tun_port: Option<u32>,
    /// Ask the kernel to include the flow's actions in the upcall.
    pub actions: bool,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub other: Vec<RawNla>,
}

/// `OVS_ACTION_ATTR_SAMPLE`: run `actions` on a fraction of packets.
#[derive(Debug, Clone, Default, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub struct SampleAction {
    /// Fraction of `u32::MAX` packets to sample.
    pub probability: u32,
    pub actions: Vec<Action>,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub other: Vec<RawNla>,
}

/// One datapath action.
#[derive(Debug, Clone, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
#[non_exhaustive]
pub enum Action {
    /// Output to a port number.
    Output(u32),
    Userspace(UserspaceAction),
    /// Replace a header (or the tunnel metadata) with the one given.
    Set(KeyAttr),
    /// Replace the bits of a header selected by the mask.
    SetMasked {
        value: KeyAttr,
        mask: KeyAttr,
    },
    PushVlan {
        tpid: u16,
        tci: u16,
    },
    PopVlan,
    Sample(SampleAction),
    Recirc(u32),
    Hash {
        alg: u32,
        basis: u32,
    },
    /// Truncate the packet to `max_len` bytes for the following outputs.
    Trunc(u32),
    Other(RawNla),
}

const WHAT: &str = "action";

impl Action {
    pub fn parse(a: &Nla<'_>) -> Result<Self> {
        Ok(match a.kind {
            OUTPUT => Action::Output(a.u32(WHAT)?),
            USERSPACE => Action::Userspace(parse_userspace(a)?),
            SET => {
                let mut inner = a.nested();
                let first = inner.next().ok_or(WireError::Missing { what: "set action", kind: 0 })??;
                if inner.next().is_some() {
                    return Err(WireError::Invalid { what: "set action", reason: "more than one key".into() });
                }
                Action::Set(KeyAttr::parse(&first)?)
            }
            SET_MASKED => {
                let mut inner = a.nested();
                let first = inner.next().ok_or(WireError::Missing { what: "set_masked action", kind: 0 })??;
                let (value, mask) = key::parse_masked(&first)?;
                Action::SetMasked { value, mask }
            }
            PUSH_VLAN => {
                let b = a.fixed::<4>(WHAT)?;
                Action::PushVlan { tpid: u16::from_be_bytes([b[0], b[1]]), tci: u16::from_be_bytes([b[2], b[3]]) }
            }
            POP_VLAN => {
                a.flag(WHAT)?;
                Action::PopVlan
            }
            SAMPLE => Action::Sample(parse_sample(a)?),
            RECIRC => Action::Recirc(a.u32(WHAT)?),
            HASH => {
                let b = a.fixed::<8>(WHAT)?;
                Action::Hash {
                    alg: u32::from_ne_bytes([b[0], b[1], b[2], b[3]]),
                    basis: u32::from_ne_bytes([b[4], b[5], b[6], b[7]]),
                }
            }
            TRUNC => Action::Trunc(a.u32(WHAT)?),
            _ => Action::Other(a.to_raw()),
        })
    }

    pub fn emit(&self, w: &mut NlaWriter) {
        match self {
            Action::Output(p) => w.put_u32(OUTPUT, *p),
            Action::Userspace(u) => w.nested(USERSPACE, |w| {
                w.put_u32(US_PID, u.pid);
                if let Some(d) = &u.userdata {
                    w.put(US_USERDATA, d);
                }
                if let Some(p) = u.egress_tun_port {
                    w.put_u32(US_EGRESS_TUN_PORT, p);
                }
                if u.actions {
                    w.put_flag(US_ACTIONS);
                }
                for o in &u.other {
                    o.emit(w);
                }
            }),
            Action::Set(k) => w.nested(SET, |w| k.emit(w)),
            Action::SetMasked { value, mask } => w.nested(SET_MASKED, |w| {
                let (kind, mut p) = value.raw_parts();
                p.extend(mask.raw_parts().1);
                w.put(kind, &p);
            }),
            Action::PushVlan { tpid, tci } => {
                let mut p = tpid.to_be_bytes().to_vec();
                p.extend(tci.to_be_bytes());
                w.put(PUSH_VLAN, &p);
            }
            Action::PopVlan => w.put_flag(POP_VLAN),
            Action::Sample(s) => w.nested(SAMPLE, |w| {
                w.put_u32(SAMPLE_PROBABILITY, s.probability);
                w.nested(SAMPLE_ACTIONS, |w| emit_actions(&s.actions, w));
                for o in &s.other {
                    o.emit(w);
                }
            }),
            Action::Recirc(id) => w.put_u32(RECIRC, *id),
            Action::Hash { alg, basis } => {
                let mut p = alg.to_ne_bytes().to_vec();
                p.extend(basis.to_ne_bytes());
                w.put(HASH, &p);
            }
            Action::Trunc(n) => w.put_u32(TRUNC, *n),
            Action::Other(r) => r.emit(w),
        }
    }
}

fn parse_userspace(a: &Nla<'_>) -> Result<UserspaceAction> {
    let mut u = UserspaceAction::default();
    let mut have_pid = false;
    for x in a.nested() {
        let x = x?;
        match x.kind {
            US_PID => {
                u.pid = x.u32(WHAT)?;
                have_pid = true;
            }
            US_USERDATA => u.userdata = Some(x.payload.to_vec()),
            US_EGRESS_TUN_PORT => u.egress_tun_port = Some(x.u32(WHAT)?),
            US_ACTIONS => {
                x.flag(WHAT)?;
                u.actions = true;
            }
            _ => u.other.push(x.to_raw()),
        }
    }
    if !have_pid {
        return Err(WireError::Missing { what: "userspace action", kind: US_PID });
    }
    Ok(u)
}

fn parse_sample(a: &Nla<'_>) -> Result<SampleAction> {
    let mut s = SampleAction::default();
    let mut have_prob = false;
    for x in a.nested() {
        let x = x?;
        match x.kind {
            SAMPLE_PROBABILITY => {
                s.probability = x.u32(WHAT)?;
                have_prob = true;
            }
            SAMPLE_ACTIONS => s.actions = parse_actions(x.payload)?,
            _ => s.other.push(x.to_raw()),
        }
    }
    if !have_prob {
        return Err(WireError::Missing { what: "sample action", kind: SAMPLE_PROBABILITY });
    }
    Ok(s)
}

/// Parses a buffer of actions (the payload of `OVS_FLOW_ATTR_ACTIONS` or
/// `OVS_PACKET_ATTR_ACTIONS`).
pub fn parse_actions(buf: &[u8]) -> Result<Vec<Action>> {
    NlaIter::new(buf).map(|a| a.and_then(|a| Action::parse(&a))).collect()
}

pub fn emit_actions(actions: &[Action], w: &mut NlaWriter) {
    for a in actions {
        a.emit(w);
    }
}

#[cfg(test)]
pub(crate) mod strategy {
    use super::*;
    use crate::odp::key::strategy as ks;
    use crate::odp::tunnel::strategy::tunnel_key;
    use proptest::prelude::*;

    /// Two fixed attributes of the same kind, for `set_masked`. The kind is
    /// drawn once and both payloads from it, rather than filtering two
    /// independent draws (which rejected ~15/16 of cases).
    fn masked_pair() -> impl Strategy<Value = (KeyAttr, KeyAttr)> {
        ks::fixed_key_attr_pair()
    }

    pub fn action() -> impl Strategy<Value = Action> {
        let leaf =
            prop_oneof![
                any::<u32>().prop_map(Action::Output),
                (
                    any::<u32>(),
                    proptest::option::of(proptest::collection::vec(any::<u8>(), 0..12)),
                    any::<Option<u32>>(),
                    any::<bool>()
                )
                    .prop_map(|(pid, userdata, egress_tun_port, actions)| Action::Userspace(
                        UserspaceAction { pid, userdata, egress_tun_port, actions, other: vec![] }
                    )),
                ks::fixed_key_attr().prop_map(Action::Set),
                tunnel_key().prop_map(|t| Action::Set(KeyAttr::Tunnel(t))),
                (ks::fixed_key_attr()).prop_map(|v| Action::SetMasked { mask: v.clone(), value: v }),
                masked_pair().prop_map(|(value, mask)| Action::SetMasked { value, mask }),
                (any::<u16>(), any::<u16>()).prop_map(|(tpid, tci)| Action::PushVlan { tpid, tci }),
                Just(Action::PopVlan),
                any::<u32>().prop_map(Action::Recirc),
                (any::<u32>(), any::<u32>()).prop_map(|(alg, basis)| Action::Hash { alg, basis }),
                any::<u32>().prop_map(Action::Trunc),
                (40u16..200, proptest::collection::vec(any::<u8>(), 0..12))
                    .prop_map(|(kind, payload)| Action::Other(RawNla { kind, payload })),
            ];
        leaf.prop_recursive(2, 12, 4, |inner| {
            (any::<u32>(), proptest::collection::vec(inner, 0..4))
                .prop_map(|(probability, actions)| Action::Sample(SampleAction { probability, actions, other: vec![] }))
        })
    }

    pub fn actions() -> impl Strategy<Value = Vec<Action>> {
        proptest::collection::vec(action(), 0..6)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    proptest! {
        #[test]
        fn actions_round_trip(actions in strategy::actions()) {
            let mut w = NlaWriter::new();
            emit_actions(&actions, &mut w);
            prop_assert_eq!(parse_actions(w.as_bytes()).unwrap(), actions);
        }

        #[test]
        fn parsing_garbage_never_panics(b in proptest::collection::vec(any::<u8>(), 0..200)) {
            let _ = parse_actions(&b);
        }
    }

    #[test]
    fn userspace_without_pid_is_an_error() {
        let mut w = NlaWriter::new();
        w.nested(USERSPACE, |w| w.put_flag(US_ACTIONS));
        assert!(matches!(parse_actions(w.as_bytes()), Err(WireError::Missing { .. })));
    }
}
