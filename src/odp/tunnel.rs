//! `OVS_KEY_ATTR_TUNNEL`: the nested tunnel metadata, used both as a flow key
//! (what a packet arrived with) and inside `set(tunnel(...))` (what to send with).

use std::net::Ipv4Addr;

use ovs_sys as sys;
use serde::{Deserialize, Serialize};

use super::nla::{Nla, NlaWriter, RawNla, Result};

const ID: u16 = sys::OVS_TUNNEL_KEY_ATTR_ID as u16;
const IPV4_SRC: u16 = sys::OVS_TUNNEL_KEY_ATTR_IPV4_SRC as u16;
const IPV4_DST: u16 = sys::OVS_TUNNEL_KEY_ATTR_IPV4_DST as u16;
const TOS: u16 = sys::OVS_TUNNEL_KEY_ATTR_TOS as u16;
const TTL: u16 = sys::OVS_TUNNEL_KEY_ATTR_TTL as u16;
const DONT_FRAGMENT: u16 = sys::OVS_TUNNEL_KEY_ATTR_DONT_FRAGMENT as u16;
const CSUM: u16 = sys::OVS_TUNNEL_KEY_ATTR_CSUM as u16;
const OAM: u16 = sys::OVS_TUNNEL_KEY_ATTR_OAM as u16;
const TP_SRC: u16 = sys::OVS_TUNNEL_KEY_ATTR_TP_SRC as u16;
const TP_DST: u16 = sys::OVS_TUNNEL_KEY_ATTR_TP_DST as u16;

/// Tunnel metadata. Each field is present only if its attribute was.
/// Flags (`dont_fragment`, `csum`, `oam`) are present-or-absent attributes.
#[derive(Debug, Clone, Default, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub struct TunnelKey {
    pub id: Option<u64>,
    pub ipv4_src: Option<Ipv4Addr>,
    pub ipv4_dst: Option<Ipv4Addr>,
    pub tos: Option<u8>,
    pub ttl: Option<u8>,
    pub dont_fragment: bool,
    pub csum: bool,
    pub oam: bool,
    pub tp_src: Option<u16>,
    pub tp_dst: Option<u16>,
    /// Attributes this crate does not model (Geneve/VXLAN options, IPv6 ...).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub other: Vec<RawNla>,
}

const WHAT: &str = "tunnel key";

impl TunnelKey {
    pub fn parse(attr: &Nla<'_>) -> Result<Self> {
        let mut t = TunnelKey::default();
        for a in attr.nested() {
            let a = a?;
            match a.kind {
                ID => t.id = Some(a.be64(WHAT)?),
                IPV4_SRC => t.ipv4_src = Some(Ipv4Addr::from(a.be32(WHAT)?)),
                IPV4_DST => t.ipv4_dst = Some(Ipv4Addr::from(a.be32(WHAT)?)),
                TOS => t.tos = Some(a.u8(WHAT)?),
                TTL => t.ttl = Some(a.u8(WHAT)?),
                DONT_FRAGMENT => {
                    a.flag(WHAT)?;
                    t.dont_fragment = true;
                }
                CSUM => {
                    a.flag(WHAT)?;
                    t.csum = true;
                }
                OAM => {
                    a.flag(WHAT)?;
                    t.oam = true;
                }
                TP_SRC => t.tp_src = Some(a.be16(WHAT)?),
                TP_DST => t.tp_dst = Some(a.be16(WHAT)?),
                _ => t.other.push(a.to_raw()),
            }
        }
        Ok(t)
    }

    /// Writes the nested attributes (the caller wraps them in `kind`).
    pub fn emit(&self, w: &mut NlaWriter, kind: u16) {
        w.nested(kind, |w| {
            if let Some(v) = self.id {
                w.put_be64(ID, v);
            }
            if let Some(v) = self.ipv4_src {
                w.put_be32(IPV4_SRC, v.into());
            }
            if let Some(v) = self.ipv4_dst {
                w.put_be32(IPV4_DST, v.into());
            }
            if let Some(v) = self.tos {
                w.put_u8(TOS, v);
            }
            if let Some(v) = self.ttl {
                w.put_u8(TTL, v);
            }
            if self.dont_fragment {
                w.put_flag(DONT_FRAGMENT);
            }
            if self.csum {
                w.put_flag(CSUM);
            }
            if self.oam {
                w.put_flag(OAM);
            }
            if let Some(v) = self.tp_src {
                w.put_be16(TP_SRC, v);
            }
            if let Some(v) = self.tp_dst {
                w.put_be16(TP_DST, v);
            }
            for o in &self.other {
                o.emit(w);
            }
        });
    }
}

#[cfg(test)]
pub(crate) mod strategy {
    use super::*;
    use proptest::prelude::*;

    pub fn tunnel_key() -> impl Strategy<Value = TunnelKey> {
        (
            (any::<Option<u64>>(), any::<Option<[u8; 4]>>(), any::<Option<[u8; 4]>>()),
            (any::<Option<u8>>(), any::<Option<u8>>()),
            (any::<bool>(), any::<bool>(), any::<bool>()),
            (any::<Option<u16>>(), any::<Option<u16>>()),
            proptest::option::of((20u16..60, proptest::collection::vec(any::<u8>(), 0..12))),
        )
            .prop_map(|((id, s, d), (tos, ttl), (df, csum, oam), (tps, tpd), other)| TunnelKey {
                id,
                ipv4_src: s.map(Ipv4Addr::from),
                ipv4_dst: d.map(Ipv4Addr::from),
                tos,
                ttl,
                dont_fragment: df,
                csum,
                oam,
                tp_src: tps,
                tp_dst: tpd,
                other: other.map(|(kind, payload)| RawNla { kind, payload }).into_iter().collect(),
            })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::odp::nla::NlaIter;
    use proptest::prelude::*;

    proptest! {
        #[test]
        fn round_trips(t in strategy::tunnel_key()) {
            let mut w = NlaWriter::new();
            t.emit(&mut w, 16);
            let b = w.into_bytes();
            let a = NlaIter::new(&b).next().unwrap().unwrap();
            prop_assert_eq!(TunnelKey::parse(&a).unwrap(), t);
        }
    }
}
