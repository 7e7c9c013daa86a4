//! The `ovs_flow` family: flows with their key, mask, actions and statistics.

use ovs_sys as sys;
use serde::{Deserialize, Serialize};

use super::action::{self, Action};
use super::key::{self, KeyAttr};
use super::nla::{NlaIter, NlaWriter, RawNla, Result};

const KEY: u16 = sys::OVS_FLOW_ATTR_KEY as u16;
const ACTIONS: u16 = sys::OVS_FLOW_ATTR_ACTIONS as u16;
const STATS: u16 = sys::OVS_FLOW_ATTR_STATS as u16;
const TCP_FLAGS: u16 = sys::OVS_FLOW_ATTR_TCP_FLAGS as u16;
const USED: u16 = sys::OVS_FLOW_ATTR_USED as u16;
const CLEAR: u16 = sys::OVS_FLOW_ATTR_CLEAR as u16;
const MASK: u16 = sys::OVS_FLOW_ATTR_MASK as u16;
const PROBE: u16 = sys::OVS_FLOW_ATTR_PROBE as u16;
const UFID: u16 = sys::OVS_FLOW_ATTR_UFID as u16;
const UFID_FLAGS: u16 = sys::OVS_FLOW_ATTR_UFID_FLAGS as u16;

/// `struct ovs_flow_stats`.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct FlowStats {
    pub packets: u64,
    pub bytes: u64,
}

/// A flow. In requests, fields left `None` are not sent; in replies, they were
/// not present.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Flow {
    pub dp_ifindex: i32,
    pub key: Vec<KeyAttr>,
    /// The mask, same encoding as the key. `None` in a request means an exact match.
    pub mask: Option<Vec<KeyAttr>>,
    pub actions: Option<Vec<Action>>,
    pub stats: Option<FlowStats>,
    pub tcp_flags: Option<u8>,
    /// Last use, in milliseconds of the kernel's monotonic clock.
    pub used: Option<u64>,
    /// In a SET: clear statistics, tcp flags and `used`.
    pub clear: bool,
    pub probe: bool,
    pub ufid: Option<Vec<u8>>,
    pub ufid_flags: Option<u32>,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub other: Vec<RawNla>,
}

const WHAT: &str = "flow";

impl Flow {
    pub fn parse(dp_ifindex: i32, attrs: &[u8]) -> Result<Self> {
        let mut f = Flow { dp_ifindex, ..Default::default() };
        for a in NlaIter::new(attrs) {
            let a = a?;
            match a.kind {
                KEY => f.key = key::parse_keys(a.payload)?,
                ACTIONS => f.actions = Some(action::parse_actions(a.payload)?),
                STATS => {
                    let [packets, bytes] = a.u64_fields::<2>(WHAT)?;
                    f.stats = Some(FlowStats { packets, bytes });
                }
                TCP_FLAGS => f.tcp_flags = Some(a.u8(WHAT)?),
                USED => f.used = Some(a.u64(WHAT)?),
                CLEAR => {
                    a.flag(WHAT)?;
                    f.clear = true;
                }
                MASK => f.mask = Some(key::parse_keys(a.payload)?),
                PROBE => {
                    a.flag(WHAT)?;
                    f.probe = true;
                }
                UFID => f.ufid = Some(a.payload.to_vec()),
                UFID_FLAGS => f.ufid_flags = Some(a.u32(WHAT)?),
                _ => f.other.push(a.to_raw()),
            }
        }
        Ok(f)
    }

    pub fn emit_attrs(&self) -> Vec<u8> {
        let mut w = NlaWriter::new();
        if !self.key.is_empty() {
            w.nested(KEY, |w| key::emit_keys(&self.key, w));
        }
        if let Some(m) = &self.mask {
            w.nested(MASK, |w| key::emit_keys(m, w));
        }
        if let Some(a) = &self.actions {
            w.nested(ACTIONS, |w| action::emit_actions(a, w));
        }
        if let Some(s) = self.stats {
            w.put_u64_fields(STATS, &[s.packets, s.bytes]);
        }
        if let Some(t) = self.tcp_flags {
            w.put_u8(TCP_FLAGS, t);
        }
        if let Some(u) = self.used {
            w.put_u64(USED, u);
        }
        if self.clear {
            w.put_flag(CLEAR);
        }
        if self.probe {
            w.put_flag(PROBE);
        }
        if let Some(u) = &self.ufid {
            w.put(UFID, u);
        }
        if let Some(f) = self.ufid_flags {
            w.put_u32(UFID_FLAGS, f);
        }
        for o in &self.other {
            o.emit(&mut w);
        }
        w.into_bytes()
    }

    /// The mask attribute matching a key attribute's kind, if any.
    pub fn mask_for(&self, kind: u16) -> Option<&KeyAttr> {
        self.mask.as_ref()?.iter().find(|m| m.kind() == kind)
    }
}

#[cfg(test)]
pub(crate) mod strategy {
    use super::*;
    use crate::odp::action::strategy::actions;
    use crate::odp::key::strategy::keys;
    use proptest::prelude::*;

    pub fn flow() -> impl Strategy<Value = Flow> {
        (
            (any::<i32>(), keys(), proptest::option::of(keys()), proptest::option::of(actions())),
            (any::<Option<(u64, u64)>>(), any::<Option<u8>>(), any::<Option<u64>>(), any::<bool>(), any::<bool>()),
            (proptest::option::of(proptest::collection::vec(any::<u8>(), 1..16)), any::<Option<u32>>()),
        )
            .prop_map(
                |((dp, key, mask, actions), (stats, tcp_flags, used, clear, probe), (ufid, ufid_flags))| Flow {
                    dp_ifindex: dp,
                    // An empty key is not sent at all, so it parses back as empty.
                    key,
                    mask,
                    actions,
                    stats: stats.map(|(packets, bytes)| FlowStats { packets, bytes }),
                    tcp_flags,
                    used,
                    clear,
                    probe,
                    ufid,
                    ufid_flags,
                    other: vec![],
                },
            )
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    proptest! {
        #[test]
        fn round_trips(f in strategy::flow()) {
            prop_assert_eq!(Flow::parse(f.dp_ifindex, &f.emit_attrs()).unwrap(), f);
        }

        #[test]
        fn garbage_never_panics(b in proptest::collection::vec(any::<u8>(), 0..300)) {
            let _ = Flow::parse(0, &b);
        }
    }
}
