//! Property tests: random sequences of misses, route changes, peer and port
//! changes, ticks and flow statistics against peer 1, with a model kernel
//! that applies every op in order. After every step:
//! - the model kernel's flow table equals the forwarder's cache;
//! - no flow outputs to its own local in_port, and no flow tunnels to the
//!   address a packet came from, or to our own;
//! - every cached flow is what a miss would decide now (coherence), and its
//!   source MAC is learned where the flow's packets come from;
//! - every unicast tunnel goes to the current next hop of the VNI's
//!   destination, every broadcast tunnel to a current child of its origin;
//! - a change deletes exactly the cached flows that depend on what changed,
//!   computed here independently of the forwarder's own diff;
//! - nothing outlives its timeout.

use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::net::Ipv4Addr;

use proptest::prelude::*;

use super::harness::*;
use crate::fastdp::decide::Decision;
use crate::fastdp::{Config, Dep, FlowOp, Forwarder, LocalPeer, Location, PeerInfo, RouteTable, StampedOp, Vni};
use crate::odp::action::Action;
use crate::odp::key::{KeyAttr, Mac};

const MAC_TIMEOUT: u64 = 400;
const FLOW_IDLE: u64 = 300;

#[derive(Clone, Debug)]
enum Ev {
    LocalMiss { port: u32, src: u8, dst: Option<u8> },
    TunnelMiss { src_sid: u8, dst_sid: Option<u8>, prev: u8, src: u8, dst: Option<u8> },
    Routes { hops: Vec<Option<u8>>, trees: Vec<Vec<u8>> },
    Peer { n: u8, sid: u8, addr: u8 },
    PeerRemoved(u8),
    PortAdded(u32),
    PortRemoved(u32),
    OurShortId(u8),
    Tick(u64),
    Stats { pick: usize, ago: u64 },
}

fn pool_mac(i: u8) -> Mac {
    Mac([2, 0, 0, 0, 1, i])
}

fn dst_mac(d: Option<u8>) -> Mac {
    d.map_or(Mac::BROADCAST, pool_mac)
}

fn ev() -> impl Strategy<Value = Ev> {
    let mac = 0u8..6;
    let dst = proptest::option::weighted(0.85, 0u8..6);
    prop_oneof![
        6 => (1u32..=4, mac.clone(), dst.clone()).prop_map(|(port, src, dst)| Ev::LocalMiss { port, src, dst }),
        6 => (1u8..=7, proptest::option::weighted(0.7, 1u8..=7), 2u8..=7, mac, dst)
            .prop_map(|(src_sid, dst_sid, prev, src, dst)| Ev::TunnelMiss { src_sid, dst_sid, prev, src, dst }),
        2 => (proptest::collection::vec(proptest::option::weighted(0.9, 1u8..=6), 5),
              proptest::collection::vec(proptest::collection::vec(1u8..=7, 0..4), 6))
            .prop_map(|(hops, trees)| Ev::Routes { hops, trees }),
        1 => (2u8..=7, 1u8..=7, 1u8..=8).prop_map(|(n, sid, addr)| Ev::Peer { n, sid, addr }),
        1 => (2u8..=7).prop_map(Ev::PeerRemoved),
        1 => (1u32..=4).prop_map(Ev::PortAdded),
        1 => (1u32..=4).prop_map(Ev::PortRemoved),
        1 => (1u8..=3).prop_map(Ev::OurShortId),
        2 => (0u64..250).prop_map(Ev::Tick),
        1 => (any::<usize>(), 0u64..100).prop_map(|(pick, ago)| Ev::Stats { pick, ago }),
    ]
}

/// What a step deleted, and the deps it was expected to invalidate (`None`
/// for events not checked that way).
type Stepped = (Vec<Vec<KeyAttr>>, Option<BTreeSet<Dep>>);

/// The test's own view of what it told the forwarder.
struct Model {
    f: Forwarder,
    now: u64,
    kernel: HashMap<Vec<KeyAttr>, Vec<Action>>,
    peers: BTreeMap<u8, PeerInfo>,
    ports: BTreeSet<u32>,
    me: LocalPeer,
}

impl Model {
    fn new() -> Model {
        let cfg = Config { mac_timeout_ms: MAC_TIMEOUT, flow_idle_ms: FLOW_IDLE, ..Config::default() };
        let mut m = Model {
            f: Forwarder::new(local(), cfg),
            now: 0,
            kernel: HashMap::new(),
            peers: BTreeMap::new(),
            ports: BTreeSet::new(),
            me: local(),
        };
        for port in 1..=3 {
            m.f.handle_port_added(0, port);
            m.ports.insert(port);
        }
        for n in 2..=6 {
            m.f.handle_peer(0, info(n));
            m.peers.insert(n, info(n));
        }
        m.f.handle_routes(0, routes());
        m
    }

    fn apply(&mut self, ops: &[StampedOp]) -> Result<Vec<Vec<KeyAttr>>, TestCaseError> {
        let mut deleted = Vec::new();
        for op in ops {
            prop_assert!(self.f.is_current(op), "applied at once, every op is current: {op:?}");
            match &op.op {
                FlowOp::Install { flow, .. } => {
                    self.kernel.insert(flow.key.clone(), flow.actions.clone().unwrap_or_default());
                }
                FlowOp::Delete { key } => {
                    prop_assert!(self.kernel.remove(key).is_some(), "delete of a flow never installed: {key:?}");
                    deleted.push(key.clone());
                }
                FlowOp::Execute { .. } | FlowOp::Drop(_) => {}
            }
        }
        Ok(deleted)
    }

    /// Runs one event.
    fn step(&mut self, e: &Ev) -> Result<Stepped, TestCaseError> {
        let now = self.now;
        let (ops, expect) = match e {
            Ev::LocalMiss { port, src, dst } => {
                (self.f.handle_miss(now, &local_key(*port, pool_mac(*src), dst_mac(*dst)), 60), None)
            }
            Ev::TunnelMiss { src_sid, dst_sid, prev, src, dst } => {
                let id = Vni { src: sid(*src_sid), dst: sid(dst_sid.unwrap_or(*src_sid)) }.tun_id();
                let mut key = tunnel_key(id, *prev, pool_mac(*src), dst_mac(*dst));
                if let KeyAttr::Tunnel(t) = &mut key[0] {
                    t.ipv4_dst = Some(self.me.underlay);
                }
                (self.f.handle_miss(now, &key, 60), None)
            }
            Ev::Routes { hops, trees } => {
                let mut r = RouteTable::new();
                for (d, h) in (2u8..).zip(hops) {
                    if let Some(h) = h {
                        r = r.with_next_hop(p(d), p(*h));
                    }
                }
                for (o, c) in (1u8..).zip(trees) {
                    r = r.with_children(p(o), c.iter().map(|&n| p(n)));
                }
                let expect = route_deps(self.f.routes(), &r);
                self.f.handle_routes(now, r);
                (drain(&mut self.f), Some(expect))
            }
            Ev::Peer { n, sid: s, addr } => {
                let new = PeerInfo { name: p(*n), short_id: sid(*s), underlay: ip(*addr) };
                let old = self.peers.get(n).copied();
                let mut expect = BTreeSet::new();
                if old != Some(new) {
                    expect.insert(Dep::Peer(p(*n)));
                    let sids: Vec<_> = [Some(new.short_id), old.map(|o| o.short_id)].into_iter().flatten().collect();
                    expect
                        .extend(self.peers.values().filter(|i| sids.contains(&i.short_id)).map(|i| Dep::Peer(i.name)));
                }
                self.peers.insert(*n, new);
                self.f.handle_peer(now, new);
                (drain(&mut self.f), Some(expect))
            }
            Ev::PeerRemoved(n) => {
                let mut expect = BTreeSet::from([Dep::Peer(p(*n))]);
                if let Some(old) = self.peers.remove(n) {
                    expect
                        .extend(self.peers.values().filter(|i| i.short_id == old.short_id).map(|i| Dep::Peer(i.name)));
                }
                expect.extend(self.macs_at(Location::Remote(p(*n))));
                self.f.handle_peer_removed(now, p(*n));
                (drain(&mut self.f), Some(expect))
            }
            Ev::PortAdded(port) => {
                let expect = if self.ports.insert(*port) { BTreeSet::from([Dep::LocalPorts]) } else { BTreeSet::new() };
                self.f.handle_port_added(now, *port);
                (drain(&mut self.f), Some(expect))
            }
            Ev::PortRemoved(port) => {
                let mut expect = BTreeSet::new();
                if self.ports.remove(port) {
                    expect.extend([Dep::Port(*port), Dep::LocalPorts]);
                    expect.extend(self.macs_at(Location::Local(*port)));
                }
                self.f.handle_port_removed(now, *port);
                (drain(&mut self.f), Some(expect))
            }
            Ev::OurShortId(s) => {
                let new = LocalPeer { short_id: sid(*s), ..self.me.clone() };
                let expect = if new != self.me { BTreeSet::from([Dep::Peer(p(1))]) } else { BTreeSet::new() };
                self.me = new.clone();
                self.f.handle_local(now, new);
                (drain(&mut self.f), Some(expect))
            }
            Ev::Tick(dt) => {
                self.now += dt;
                self.f.handle_timeout(self.now);
                (drain(&mut self.f), None)
            }
            Ev::Stats { pick, ago } => {
                let keys: Vec<_> = self.f.flows().map(|e| e.key).collect();
                if !keys.is_empty() {
                    let k = keys[pick % keys.len()];
                    prop_assert!(self.f.handle_flow_stats(now, &k.key(), Some(now.saturating_sub(*ago))));
                }
                (vec![], None)
            }
        };
        Ok((self.apply(&ops)?, expect))
    }

    fn macs_at(&self, at: Location) -> Vec<Dep> {
        self.f.macs().filter(|(_, e)| e.location == at).map(|(m, _)| Dep::Mac(m)).collect()
    }

    fn addr_of(&self, name: crate::mesh::peer::PeerName) -> Option<Ipv4Addr> {
        self.peers.values().find(|i| i.name == name).map(|i| i.underlay)
    }

    fn check(&self) -> Result<(), TestCaseError> {
        prop_assert_eq!(self.kernel.len(), self.f.flows().count());
        for e in self.f.flows() {
            prop_assert_eq!(self.kernel.get(&e.key.key()), Some(&e.actions), "kernel mirrors cache");
            // Hairpins and loops.
            let mut tunnel: Option<Ipv4Addr> = None;
            for a in &e.actions {
                match a {
                    Action::Output(o) if *o == self.me.vxlan_port => {
                        let dst = tunnel.take();
                        prop_assert!(dst.is_some(), "vxlan output without set(tunnel)");
                        prop_assert_ne!(dst, Some(self.me.underlay));
                        if let Some(t) = e.key.tunnel {
                            prop_assert_ne!(dst, Some(t.src), "tunnelled back where it came from");
                        }
                        self.check_tunnel_target(e, dst.unwrap_or(Ipv4Addr::UNSPECIFIED))?;
                    }
                    Action::Output(o) => prop_assert!(e.key.tunnel.is_some() || *o != e.key.in_port, "hairpin"),
                    Action::Set(KeyAttr::Tunnel(t)) => tunnel = t.ipv4_dst,
                    other => prop_assert!(false, "unexpected action {other:?}"),
                }
            }
            // Coherence.
            match self.f.recompute(&e.key) {
                Decision::Install { actions, .. } => prop_assert_eq!(&actions, &e.actions, "stale flow {:?}", e.key),
                other => prop_assert!(false, "cached flow {:?} would now be {:?}", e.key, other),
            }
            prop_assert_eq!(self.f.mac(e.key.eth.src).map(|m| m.location), Some(e.source));
            // Nothing outlives its timeout.
            prop_assert!(e.used + FLOW_IDLE > self.now);
        }
        for (_, m) in self.f.macs() {
            prop_assert!(m.seen + MAC_TIMEOUT > self.now);
        }
        Ok(())
    }

    /// Unicast tunnels go to the current next hop of the VNI's destination;
    /// broadcast ones to a current child of the origin.
    fn check_tunnel_target(&self, e: &crate::fastdp::FlowEntry, dst: Ipv4Addr) -> Result<(), TestCaseError> {
        let id = e.actions.iter().find_map(|a| match a {
            Action::Set(KeyAttr::Tunnel(t)) if t.ipv4_dst == Some(dst) => t.id,
            _ => None,
        });
        let vni = Vni::from_tun_id(id.unwrap_or(u64::MAX)).map_err(|e| TestCaseError::fail(e.to_string()))?;
        let by_sid = |s| self.peers.values().find(|i| i.short_id == s).map(|i| i.name);
        let origin = if vni.src == self.me.short_id { Some(p(1)) } else { by_sid(vni.src) };
        if vni.is_broadcast() {
            let children = self.f.routes().children(origin.unwrap_or(p(0)));
            prop_assert!(children.iter().any(|c| self.addr_of(*c) == Some(dst)), "not a child: {dst}");
        } else {
            let hop = by_sid(vni.dst).and_then(|d| self.f.routes().next_hop(d));
            prop_assert_eq!(hop.and_then(|h| self.addr_of(h)), Some(dst), "not the next hop");
        }
        Ok(())
    }
}

/// Which route deps differ, computed without `RouteTable`'s own diff.
fn route_deps(old: &RouteTable, new: &RouteTable) -> BTreeSet<Dep> {
    let mut out = BTreeSet::new();
    for d in (0..=8).map(p) {
        if old.next_hop(d) != new.next_hop(d) {
            out.insert(Dep::Route(d));
        }
        let set = |r: &RouteTable| {
            r.broadcast.get(&d).map(|c| c.iter().copied().collect::<BTreeSet<_>>()).unwrap_or_default()
        };
        if set(old) != set(new) {
            out.insert(Dep::Tree(d));
        }
    }
    out
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 256, ..ProptestConfig::default() })]

    #[test]
    fn invariants_hold_over_any_event_sequence(events in proptest::collection::vec(ev(), 1..40)) {
        let mut m = Model::new();
        m.check()?;
        for e in &events {
            let before: Vec<(Vec<KeyAttr>, BTreeSet<Dep>)> = m.f.flows().map(|f| (f.key.key(), f.deps.clone())).collect();
            let (mut deleted, expect) = m.step(e)?;
            if let Some(expect) = expect {
                let mut want: Vec<_> = before.iter().filter(|(_, d)| !d.is_disjoint(&expect)).map(|(k, _)| k.clone()).collect();
                want.sort_by_key(|k| format!("{k:?}"));
                deleted.sort_by_key(|k| format!("{k:?}"));
                prop_assert_eq!(deleted, want, "after {:?}", e);
            }
            m.check()?;
        }
    }
}
