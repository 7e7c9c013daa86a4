//! Router unit tests: connection verdicts, malformed input, the own-entry
//! rules, and small scenarios on the simulator.

use std::collections::BTreeSet;

use proptest::prelude::*;

use super::sim::{ShortIds, Sim, SimConfig};
use super::wire::{self, pb, pb::mesh_message::Body};
use super::*;
use crate::mesh::peer::{Identity, PeerName, PeerUid, ShortId};

/// A grow-only set of numbers: the simplest gossip channel state.
#[derive(Default)]
pub(super) struct GSet {
    pub(super) items: BTreeSet<u64>,
    delta: BTreeSet<u64>,
}

impl GSet {
    pub(super) fn add(&mut self, v: u64) {
        if self.items.insert(v) {
            self.delta.insert(v);
        }
    }

    fn encode<'a>(items: impl Iterator<Item = &'a u64>) -> Vec<u8> {
        items.flat_map(|v| v.to_le_bytes()).collect()
    }
}

impl GossipState for GSet {
    fn encode_full(&self) -> Vec<u8> {
        Self::encode(self.items.iter())
    }

    fn take_delta(&mut self) -> Option<Vec<u8>> {
        (!self.delta.is_empty()).then(|| Self::encode(std::mem::take(&mut self.delta).iter()))
    }

    fn merge(&mut self, _from: PeerName, bytes: &[u8]) -> Result<Option<Vec<u8>>, ChannelError> {
        if !bytes.len().is_multiple_of(8) {
            return Err(ChannelError("length is not a multiple of 8".into()));
        }
        let new: Vec<u64> = bytes
            .chunks_exact(8)
            .filter_map(|c| c.try_into().ok().map(u64::from_le_bytes))
            .filter(|v| self.items.insert(*v))
            .collect();
        Ok((!new.is_empty()).then(|| Self::encode(new.iter())))
    }
}

/// Fast timers for tests.
pub(super) fn test_config() -> SimConfig {
    let mesh = MeshConfig { gossip_interval_ms: 1_000, gc_grace_ms: 2_000, ..MeshConfig::default() };
    SimConfig { mesh, ..SimConfig::default() }
}

fn identity(name: u64, uid: u64) -> Identity {
    Identity {
        name: PeerName::from_u64(name),
        nickname: format!("n{name}"),
        uid: PeerUid(uid),
        short_id: ShortId::from_bits(name as u32),
    }
}

fn conn(remote: Identity, outbound: bool, tie_breaker: u64) -> NewConnection {
    NewConnection { remote, address: "10.0.0.1:6783".into(), outbound, tie_breaker }
}

fn router(name: u64) -> Router {
    Router::new(identity(name, name * 100), MeshConfig::default(), name, 0)
}

#[test]
fn connecting_to_ourself_or_a_namesake_is_refused_for_good() {
    let mut r = router(1);
    let v = r.handle_connection_up(0, ConnId(1), conn(identity(1, 100), true, 0));
    let ConnVerdict::Refuse(reason) = v else { panic!("{v:?}") };
    assert_eq!(reason, RefuseReason::ConnectToSelf);
    assert_eq!(reason.to_string(), "cannot connect to ourself");
    assert!(!reason.retry());
    let v = r.handle_connection_up(0, ConnId(2), conn(identity(1, 7), true, 0));
    assert_eq!(v, ConnVerdict::Refuse(RefuseReason::NameCollision { name: PeerName::from_u64(1) }));
    // A second live peer under a connected name is a collision too.
    assert_eq!(r.handle_connection_up(0, ConnId(3), conn(identity(2, 200), true, 0)), ConnVerdict::Accept);
    let v = r.handle_connection_up(0, ConnId(4), conn(identity(2, 201), false, 0));
    assert_eq!(v, ConnVerdict::Refuse(RefuseReason::NameCollision { name: PeerName::from_u64(2) }));
    assert_eq!(
        r.handle_connection_up(0, ConnId(3), conn(identity(3, 300), true, 0)),
        ConnVerdict::Refuse(RefuseReason::ConnIdInUse)
    );
}

#[test]
fn duplicate_connections_resolve_the_same_way_at_both_ends() {
    // Two simultaneous connections between A and B, seen in opposite orders.
    let (mut a, mut b) = (router(1), router(2));
    let (ia, ib) = (a.identity().clone(), b.identity().clone());
    assert_eq!(a.handle_connection_up(0, ConnId(10), conn(ib.clone(), true, 9)), ConnVerdict::Accept);
    assert_eq!(a.handle_connection_up(0, ConnId(11), conn(ib, false, 4)), ConnVerdict::AcceptReplacing(ConnId(10)));
    assert_eq!(b.handle_connection_up(0, ConnId(21), conn(ia.clone(), true, 4)), ConnVerdict::Accept);
    let v = b.handle_connection_up(0, ConnId(20), conn(ia, false, 9));
    assert_eq!(v, ConnVerdict::Refuse(RefuseReason::Duplicate { kept: ConnId(21) }));
    // Both kept the connection with tie-breaker 4.
    assert_eq!(a.status().connections.iter().map(|c| c.conn).collect::<Vec<_>>(), vec![ConnId(11)]);
    assert_eq!(b.status().connections.iter().map(|c| c.conn).collect::<Vec<_>>(), vec![ConnId(21)]);
    // The replaced connection going down later changes nothing.
    let version = a.status().version;
    a.handle_connection_down(0, ConnId(10));
    assert_eq!(a.status().version, version);
}

#[test]
fn malformed_input_is_an_error_and_changes_nothing() {
    let mut r = router(1);
    assert!(matches!(r.handle_message(0, ConnId(9), &[]), Err(MeshError::UnknownConnection(_))));
    r.handle_connection_up(0, ConnId(1), conn(identity(2, 200), false, 0));
    let before = r.topology().clone();
    assert!(matches!(r.handle_message(0, ConnId(1), &[0xff, 0xff, 0xff]), Err(MeshError::Decode(_))));
    let summary = wire::encode(Body::Summary(pb::Summary { count: 1, buckets: vec![1, 2, 3] }));
    assert!(matches!(r.handle_message(0, ConnId(1), &summary), Err(MeshError::Invalid(_))));
    // One bad entry spoils the whole update: nothing of it is applied.
    let good = pb::PeerEntry { name: 5, uid: 5, version: 1, ..Default::default() };
    let bad = pb::PeerEntry { name: 6, uid: 6, version: 1, short_id: 5000, ..Default::default() };
    let update = pb::Update {
        entries: vec![prost::Message::encode_to_vec(&good), prost::Message::encode_to_vec(&bad)],
        want: vec![],
    };
    assert!(matches!(r.handle_message(0, ConnId(1), &wire::encode(Body::Update(update))), Err(MeshError::Invalid(_))));
    assert_eq!(r.topology(), &before);
    assert_eq!(r.counters().malformed, 3);
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(64))]
    #[test]
    fn arbitrary_bytes_never_panic(bytes in proptest::collection::vec(any::<u8>(), 0..300)) {
        let mut r = router(1);
        r.handle_connection_up(0, ConnId(1), conn(identity(2, 200), false, 0));
        let _ = r.handle_message(1, ConnId(1), &bytes);
        r.handle_timeout(1_000);
    }
}

#[test]
fn an_entry_with_our_name_is_outbid_never_stored() {
    let mut r = router(1);
    r.handle_connection_up(0, ConnId(1), conn(identity(2, 200), false, 0));
    // Our previous incarnation, at a high version.
    let old = pb::PeerEntry { name: 1, uid: 42, version: 100, nickname: "old".into(), ..Default::default() };
    let update = pb::Update { entries: vec![prost::Message::encode_to_vec(&old)], want: vec![] };
    r.handle_message(5, ConnId(1), &wire::encode(Body::Update(update))).unwrap();
    r.handle_timeout(1_000);
    let own = r.topology().get(PeerName::from_u64(1)).unwrap().clone();
    assert_eq!(own.uid, PeerUid(100));
    assert!(own.version > 100, "{}", own.version);
    // And our new entry is on its way to the neighbour.
    let mut sent = vec![];
    while let Some((_, bytes)) = r.poll_transmit() {
        if let Ok(Body::Update(u)) = wire::decode(&bytes) {
            sent.extend(u.entries.iter().map(|e| wire::decode_entry(e).unwrap()));
        }
    }
    assert!(sent.iter().any(|e| e.name == own.name && e.version == own.version));
}

#[test]
fn a_chain_learns_routes_and_relays_unicasts() {
    let mut sim = Sim::new(test_config(), 1);
    for _ in 0..4 {
        sim.add_peer();
    }
    for i in 0..3 {
        sim.add_link(i, i + 1);
    }
    assert!(sim.run_until_converged(5_000, 10).is_some());
    let names: Vec<PeerName> = (0..4).map(|i| sim.router(i).identity().name).collect();
    assert_eq!(sim.router(0).routes().next_hop(names[3]), Some(names[1]));
    assert_eq!(sim.router(2).routes().next_hop(names[0]), Some(names[1]));
    // Route changes came as diffs: 0 learned 1, 2 and 3, all via 1.
    let added: BTreeSet<(PeerName, PeerName)> = sim
        .take_events(0)
        .into_iter()
        .filter_map(|e| match e {
            MeshEvent::RouteChange(c) => Some(c.added.into_iter().map(|h| (h.dest, h.via))),
            _ => None,
        })
        .flatten()
        .collect();
    assert_eq!(added, [(names[1], names[1]), (names[2], names[1]), (names[3], names[1])].into());
    for i in 0..4 {
        sim.act(i, |r, _| r.register_channel("ping").unwrap());
    }
    sim.act(0, |r, now| r.unicast(now, names[3], "ping", b"hi".to_vec())).unwrap();
    sim.run_for(200);
    assert_eq!(sim.deliveries(3, "ping"), vec![(names[0], Delivery::Unicast, b"hi".to_vec())]);
    let unknown = PeerName::from_u64(0x42);
    assert!(matches!(sim.act(0, |r, now| r.unicast(now, unknown, "ping", vec![])), Err(MeshError::NoRoute(_))));
    // Cutting the chain: 0 loses 2 and 3, in one diff, then collects them.
    sim.disconnect(1, 2);
    sim.run_for(3_000);
    let events = sim.take_events(0);
    let removed: Vec<PeerName> = events
        .iter()
        .filter_map(|e| match e {
            MeshEvent::RouteChange(c) => Some(c.removed.clone()),
            _ => None,
        })
        .flatten()
        .collect();
    assert_eq!(removed, vec![names[2], names[3]].into_iter().collect::<BTreeSet<_>>().into_iter().collect::<Vec<_>>());
    assert!(events.iter().any(|e| matches!(e, MeshEvent::PeerRemoved { name, .. } if *name == names[3])));
    assert_eq!(sim.router(0).topology().len(), 2);
}

#[test]
fn routes_need_established_connections_when_asked() {
    let mut cfg = test_config();
    cfg.mesh.establish_on_accept = false;
    let mut sim = Sim::new(cfg, 2);
    sim.add_peer();
    sim.add_peer();
    sim.add_link(0, 1);
    sim.run_for(1_000);
    assert_eq!(sim.router(0).topology().len(), 2);
    assert_eq!(sim.router(0).routes().reachable(), 0);
    let conns: Vec<ConnId> = (0..2).map(|i| sim.router(i).status().connections[0].conn).collect();
    sim.act(0, |r, now| r.handle_connection_established(now, conns[0]));
    sim.run_for(500);
    assert_eq!(sim.router(0).routes().reachable(), 0, "one end alone is not symmetric");
    sim.act(1, |r, now| r.handle_connection_established(now, conns[1]));
    sim.run_for(500);
    assert_eq!(sim.router(0).routes().reachable(), 1);
}

#[test]
fn short_id_collisions_move_the_higher_name() {
    let mut cfg = test_config();
    cfg.short_ids = ShortIds::Same;
    let mut sim = Sim::new(cfg, 3);
    sim.add_peer();
    sim.add_peer();
    sim.add_link(0, 1);
    assert!(sim.run_until_converged(5_000, 10).is_some());
    let (lo, hi) = if sim.router(0).identity().name < sim.router(1).identity().name { (0, 1) } else { (1, 0) };
    assert_eq!(sim.router(lo).identity().short_id, ShortId::from_bits(1));
    assert_ne!(sim.router(hi).identity().short_id, ShortId::from_bits(1));
    let changes: Vec<MeshEvent> =
        sim.take_events(hi).into_iter().filter(|e| matches!(e, MeshEvent::ShortIdChanged { .. })).collect();
    assert_eq!(
        changes,
        vec![MeshEvent::ShortIdChanged { old: ShortId::from_bits(1), new: sim.router(hi).identity().short_id }]
    );
    assert!(!sim.take_events(lo).iter().any(|e| matches!(e, MeshEvent::ShortIdChanged { .. })));
}

#[test]
fn gossip_channels_replicate_changes_and_catch_up_newcomers() {
    let mut sim = Sim::new(test_config(), 4);
    for _ in 0..5 {
        sim.add_peer();
    }
    for i in 0..4 {
        sim.add_link(i, i + 1);
    }
    for i in 0..5 {
        sim.act(i, |r, _| r.register_gossip_channel("set", Box::<GSet>::default()).unwrap());
    }
    assert!(sim.run_until_converged(5_000, 10).is_some());
    sim.act(0, |r, now| r.update_channel(now, "set", |s: &mut GSet| s.add(7))).unwrap();
    sim.act(4, |r, now| r.update_channel(now, "set", |s: &mut GSet| s.add(9))).unwrap();
    sim.run_for(300);
    for i in 0..5 {
        assert_eq!(sim.router(i).channel::<GSet>("set").unwrap().items, [7, 9].into(), "peer {i}");
    }
    // A newcomer catches up through digests and full-state exchange.
    let n = sim.add_peer();
    sim.act(n, |r, _| r.register_gossip_channel("set", Box::<GSet>::default()).unwrap());
    sim.add_link(2, n);
    sim.run_for(300);
    assert_eq!(sim.router(n).channel::<GSet>("set").unwrap().items, [7, 9].into());
    assert!(matches!(sim.router(n).channel::<GSet>("nope"), Err(MeshError::UnknownChannel(_))));
    assert_eq!(sim.stats().errors, 0);
}
