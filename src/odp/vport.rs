//! The `ovs_vport` family: the ports of a datapath.

use ovs_sys as sys;
use serde::{Deserialize, Serialize};

use super::nla::{NlaIter, NlaWriter, RawNla, Result};

/// The datapath's own internal port (named like the datapath): port 0.
pub const LOCAL_PORT: u32 = sys::OVSP_LOCAL;

const PORT_NO: u16 = sys::OVS_VPORT_ATTR_PORT_NO as u16;
const TYPE: u16 = sys::OVS_VPORT_ATTR_TYPE as u16;
const NAME: u16 = sys::OVS_VPORT_ATTR_NAME as u16;
const OPTIONS: u16 = sys::OVS_VPORT_ATTR_OPTIONS as u16;
const UPCALL_PID: u16 = sys::OVS_VPORT_ATTR_UPCALL_PID as u16;
const STATS: u16 = sys::OVS_VPORT_ATTR_STATS as u16;
const IFINDEX: u16 = sys::OVS_VPORT_ATTR_IFINDEX as u16;
const NETNSID: u16 = sys::OVS_VPORT_ATTR_NETNSID as u16;
const TUNNEL_DST_PORT: u16 = sys::OVS_TUNNEL_ATTR_DST_PORT as u16;

/// `OVS_VPORT_TYPE_*`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum VportType {
    Netdev,
    Internal,
    Gre,
    Vxlan,
    Geneve,
    Unknown(u32),
}

impl VportType {
    pub fn from_raw(v: u32) -> Self {
        match v {
            sys::OVS_VPORT_TYPE_NETDEV => VportType::Netdev,
            sys::OVS_VPORT_TYPE_INTERNAL => VportType::Internal,
            sys::OVS_VPORT_TYPE_GRE => VportType::Gre,
            sys::OVS_VPORT_TYPE_VXLAN => VportType::Vxlan,
            sys::OVS_VPORT_TYPE_GENEVE => VportType::Geneve,
            other => VportType::Unknown(other),
        }
    }

    pub fn to_raw(self) -> u32 {
        match self {
            VportType::Netdev => sys::OVS_VPORT_TYPE_NETDEV,
            VportType::Internal => sys::OVS_VPORT_TYPE_INTERNAL,
            VportType::Gre => sys::OVS_VPORT_TYPE_GRE,
            VportType::Vxlan => sys::OVS_VPORT_TYPE_VXLAN,
            VportType::Geneve => sys::OVS_VPORT_TYPE_GENEVE,
            VportType::Unknown(v) => v,
        }
    }

    /// The name `ovs-dpctl show` uses.
    pub fn name(self) -> String {
        match self {
            VportType::Netdev => "netdev".into(),
            VportType::Internal => "internal".into(),
            VportType::Gre => "gre".into(),
            VportType::Vxlan => "vxlan".into(),
            VportType::Geneve => "geneve".into(),
            VportType::Unknown(v) => format!("type{v}"),
        }
    }
}

/// `struct ovs_vport_stats`.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct VportStats {
    pub rx_packets: u64,
    pub tx_packets: u64,
    pub rx_bytes: u64,
    pub tx_bytes: u64,
    pub rx_errors: u64,
    pub tx_errors: u64,
    pub rx_dropped: u64,
    pub tx_dropped: u64,
}

impl VportStats {
    /// From the kernel's `struct ovs_vport_stats` field order.
    pub fn from_fields(s: [u64; 8]) -> VportStats {
        let [rx_packets, tx_packets, rx_bytes, tx_bytes, rx_errors, tx_errors, rx_dropped, tx_dropped] = s;
        VportStats { rx_packets, tx_packets, rx_bytes, tx_bytes, rx_errors, tx_errors, rx_dropped, tx_dropped }
    }
}

/// Tunnel vport options (`OVS_TUNNEL_ATTR_*`).
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct VportOptions {
    /// UDP destination port of an L4 tunnel (VXLAN: 4789 by default; weaver uses 6784).
    pub dst_port: Option<u16>,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub other: Vec<RawNla>,
}

/// A vport as reported, or as a request describes it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Vport {
    pub dp_ifindex: i32,
    pub port_no: Option<u32>,
    pub kind: Option<VportType>,
    pub name: Option<String>,
    pub options: Option<VportOptions>,
    pub upcall_pids: Option<Vec<u32>>,
    pub stats: Option<VportStats>,
    pub ifindex: Option<u32>,
    pub netnsid: Option<i32>,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub other: Vec<RawNla>,
}

const WHAT: &str = "vport";

impl Vport {
    /// An empty description within datapath `dp_ifindex`.
    pub fn new(dp_ifindex: i32) -> Self {
        Vport {
            dp_ifindex,
            port_no: None,
            kind: None,
            name: None,
            options: None,
            upcall_pids: None,
            stats: None,
            ifindex: None,
            netnsid: None,
            other: vec![],
        }
    }

    pub fn parse(dp_ifindex: i32, attrs: &[u8]) -> Result<Self> {
        let mut v = Vport::new(dp_ifindex);
        for a in NlaIter::new(attrs) {
            let a = a?;
            match a.kind {
                PORT_NO => v.port_no = Some(a.u32(WHAT)?),
                TYPE => v.kind = Some(VportType::from_raw(a.u32(WHAT)?)),
                NAME => v.name = Some(a.string(WHAT)?),
                OPTIONS => {
                    let mut o = VportOptions::default();
                    for x in a.nested() {
                        let x = x?;
                        match x.kind {
                            TUNNEL_DST_PORT => o.dst_port = Some(x.u16(WHAT)?),
                            _ => o.other.push(x.to_raw()),
                        }
                    }
                    v.options = Some(o);
                }
                UPCALL_PID => v.upcall_pids = Some(a.u32_array(WHAT)?),
                STATS => {
                    v.stats = Some(VportStats::from_fields(a.u64_fields::<8>(WHAT)?));
                }
                IFINDEX => v.ifindex = Some(a.u32(WHAT)?),
                NETNSID => v.netnsid = Some(a.u32(WHAT)? as i32),
                _ => v.other.push(a.to_raw()),
            }
        }
        Ok(v)
    }

    pub fn emit_attrs(&self) -> Vec<u8> {
        let mut w = NlaWriter::new();
        if let Some(p) = self.port_no {
            w.put_u32(PORT_NO, p);
        }
        if let Some(t) = self.kind {
            w.put_u32(TYPE, t.to_raw());
        }
        if let Some(n) = &self.name {
            w.put_str(NAME, n);
        }
        if let Some(o) = &self.options {
            w.nested(OPTIONS, |w| {
                if let Some(p) = o.dst_port {
                    // The kernel reads OVS_TUNNEL_ATTR_DST_PORT with nla_get_u16: host order.
                    w.put_u16(TUNNEL_DST_PORT, p);
                }
                for x in &o.other {
                    x.emit(w);
                }
            });
        }
        if let Some(p) = &self.upcall_pids {
            w.put_u32_array(UPCALL_PID, p);
        }
        if let Some(s) = self.stats {
            w.put_u64_fields(
                STATS,
                &[
                    s.rx_packets,
                    s.tx_packets,
                    s.rx_bytes,
                    s.tx_bytes,
                    s.rx_errors,
                    s.tx_errors,
                    s.rx_dropped,
                    s.tx_dropped,
                ],
            );
        }
        if let Some(i) = self.ifindex {
            w.put_u32(IFINDEX, i);
        }
        if let Some(n) = self.netnsid {
            w.put_u32(NETNSID, n as u32);
        }
        for o in &self.other {
            o.emit(&mut w);
        }
        w.into_bytes()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    fn vport() -> impl Strategy<Value = Vport> {
        (
            (
                any::<i32>(),
                any::<Option<u32>>(),
                proptest::option::of(0u32..8),
                proptest::option::of("[a-z][a-z0-9]{0,14}"),
            ),
            proptest::option::of(any::<Option<u16>>()),
            proptest::option::of(proptest::collection::vec(any::<u32>(), 0..4)),
            proptest::option::of(any::<[u64; 8]>()),
            (any::<Option<u32>>(), any::<Option<i32>>()),
        )
            .prop_map(|((dp, port_no, kind, name), opts, pids, stats, (ifindex, netnsid))| Vport {
                dp_ifindex: dp,
                port_no,
                kind: kind.map(VportType::from_raw),
                name,
                options: opts.map(|dst_port| VportOptions { dst_port, other: vec![] }),
                upcall_pids: pids,
                stats: stats.map(VportStats::from_fields),
                ifindex,
                netnsid,
                other: vec![],
            })
    }

    proptest! {
        #[test]
        fn round_trips(v in vport()) {
            prop_assert_eq!(Vport::parse(v.dp_ifindex, &v.emit_attrs()).unwrap(), v);
        }

        #[test]
        fn garbage_never_panics(b in proptest::collection::vec(any::<u8>(), 0..200)) {
            let _ = Vport::parse(0, &b);
        }
    }

    #[test]
    fn type_numbers_round_trip() {
        for t in 0..10 {
            assert_eq!(VportType::from_raw(t).to_raw(), t);
        }
    }
}
