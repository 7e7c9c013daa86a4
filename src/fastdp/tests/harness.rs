//! The fixture the tests share, and helpers to build upcall keys and read ops.
//!
//! We are peer 1 in the tree `1-2, 1-3, 2-4, 3-5` (underlay 10.0.0.N, short
//! ID N), with local ports 1, 2 and 3 and the VXLAN vport at 100:
//!
//! ```text
//!        4 --- 2 --- (1) --- 3 --- 5
//! ```

use std::net::Ipv4Addr;

use crate::fastdp::{Config, DropReason, FlowOp, Forwarder, LocalPeer, PeerInfo, RouteTable, StampedOp, Vni};
use crate::mesh::peer::{PeerName, ShortId};
use crate::odp::action::Action;
use crate::odp::flow::Flow;
use crate::odp::format::{format_actions, format_key};
use crate::odp::key::{EthernetKey, Ipv4Key, KeyAttr, Mac};
use crate::odp::tunnel::TunnelKey;

/// The VXLAN vport.
pub const VX: u32 = 100;
/// A MAC nobody has: misses to it flood without installing anything.
pub const NOBODY: Mac = Mac([2, 0, 0, 0, 0xee, 0xee]);

pub fn p(n: u8) -> PeerName {
    PeerName::from_u64(u64::from(n))
}

pub fn ip(n: u8) -> Ipv4Addr {
    Ipv4Addr::new(10, 0, 0, n)
}

pub fn sid(n: u8) -> ShortId {
    ShortId::from_bits(u32::from(n))
}

pub fn info(n: u8) -> PeerInfo {
    PeerInfo { name: p(n), short_id: sid(n), underlay: ip(n) }
}

pub fn mac(n: u8) -> Mac {
    Mac([2, 0, 0, 0, 0, n])
}

/// The `tun_id` of `VNI(src, dst)`.
pub fn vni(src: u8, dst: u8) -> u64 {
    Vni { src: sid(src), dst: sid(dst) }.tun_id()
}

pub fn local() -> LocalPeer {
    LocalPeer { name: p(1), short_id: sid(1), underlay: ip(1), vxlan_port: VX }
}

/// The fixture's routes, as peer 1 sees them.
pub fn routes() -> RouteTable {
    RouteTable::new()
        .with_next_hop(p(2), p(2))
        .with_next_hop(p(3), p(3))
        .with_next_hop(p(4), p(2))
        .with_next_hop(p(5), p(3))
        .with_children(p(1), [p(2), p(3)])
        .with_children(p(2), [p(3)])
        .with_children(p(3), [p(2)])
        .with_children(p(4), [p(3)])
        .with_children(p(5), [p(2)])
}

/// Peer 1 with ports 1-3, peers 2-5 and the fixture's routes, ops drained.
pub fn fixture() -> Forwarder {
    let mut f = Forwarder::new(local(), Config::default());
    for port in 1..=3 {
        f.handle_port_added(0, port);
    }
    for n in 2..=5 {
        f.handle_peer(0, info(n));
    }
    f.handle_routes(0, routes());
    assert!(drain(&mut f).is_empty());
    f
}

/// An IPv4 upcall key from a local port (the L3 part must not matter).
pub fn local_key(port: u32, src: Mac, dst: Mac) -> Vec<KeyAttr> {
    let l3 = Ipv4Key {
        src: Ipv4Addr::new(10, 32, 0, 1),
        dst: Ipv4Addr::new(10, 32, 0, 2),
        proto: 1,
        tos: 0,
        ttl: 64,
        frag: 0,
    };
    vec![
        KeyAttr::SkbMark(0),
        KeyAttr::InPort(port),
        KeyAttr::Ethernet(EthernetKey { src, dst }),
        KeyAttr::EthType(0x0800),
        KeyAttr::Ipv4(l3),
    ]
}

/// An upcall key from the VXLAN vport, tunnelled from `ip(from)` to us.
pub fn tunnel_key(tun_id: u64, from: u8, src: Mac, dst: Mac) -> Vec<KeyAttr> {
    let t = TunnelKey {
        id: Some(tun_id),
        ipv4_src: Some(ip(from)),
        ipv4_dst: Some(ip(1)),
        ttl: Some(63),
        tp_src: Some(50_000),
        tp_dst: Some(6784),
        ..TunnelKey::default()
    };
    vec![KeyAttr::Tunnel(t), KeyAttr::InPort(VX), KeyAttr::Ethernet(EthernetKey { src, dst }), KeyAttr::EthType(0x0806)]
}

/// Teaches `f` that `m` is behind local `port` (a flood: installs nothing).
pub fn learn_local(f: &mut Forwarder, now: u64, port: u32, m: Mac) {
    let ops = f.handle_miss(now, &local_key(port, m, NOBODY), 60);
    assert!(split(&ops).installs.is_empty());
}

/// Teaches `f` that `m` is at peer `at`, arriving via `ip(from)`.
pub fn learn_remote(f: &mut Forwarder, now: u64, at: u8, from: u8, m: Mac) {
    let ops = f.handle_miss(now, &tunnel_key(vni(at, 1), from, m, NOBODY), 60);
    assert!(split(&ops).installs.is_empty(), "{ops:?}");
}

/// Ops by kind.
#[derive(Debug, Default)]
pub struct Ops {
    pub installs: Vec<Flow>,
    pub executes: Vec<Vec<Action>>,
    pub deletes: Vec<Vec<KeyAttr>>,
    pub drops: Vec<DropReason>,
}

pub fn split(ops: &[StampedOp]) -> Ops {
    let mut o = Ops::default();
    for op in ops {
        match &op.op {
            FlowOp::Install { flow, .. } => o.installs.push(flow.clone()),
            FlowOp::Execute { actions } => o.executes.push(actions.clone()),
            FlowOp::Delete { key } => o.deletes.push(key.clone()),
            FlowOp::Drop(r) => o.drops.push(r.clone()),
        }
    }
    o
}

/// Everything `poll_op` has.
pub fn drain(f: &mut Forwarder) -> Vec<StampedOp> {
    std::iter::from_fn(|| f.poll_op()).collect()
}

/// A flow in dump-flows form: `KEY/MASK actions:ACTIONS`.
pub fn text(flow: &Flow) -> String {
    format!(
        "{} actions:{}",
        format_key(&flow.key, flow.mask.as_deref()),
        format_actions(flow.actions.as_deref().unwrap_or(&[]))
    )
}

/// Actions in dump-flows form.
pub fn acts(a: &[Action]) -> String {
    format_actions(a)
}

/// The one install in `ops`, as text.
pub fn installed(ops: &[StampedOp]) -> String {
    let o = split(ops);
    assert_eq!(o.installs.len(), 1, "{ops:?}");
    text(&o.installs[0])
}

/// The single drop reason in `ops`.
pub fn dropped(ops: &[StampedOp]) -> DropReason {
    assert_eq!(ops.len(), 1, "{ops:?}");
    match &ops[0].op {
        FlowOp::Drop(r) => r.clone(),
        other => panic!("expected a drop, got {other:?}"),
    }
}
