//! Record store tests: the CRDT laws as properties, tombstones across
//! replicas, garbage collection and malformed gossip.

use proptest::prelude::*;

use super::*;

fn peer(n: u64) -> PeerName {
    PeerName::from_u64(n)
}

fn name(s: &str) -> Name {
    Name::from_ascii(s).expect("name")
}

fn ip(d: u8) -> Ipv4Addr {
    Ipv4Addr::new(10, 32, 0, d)
}

/// A store holding exactly `records` (merged in; later duplicates lose or
/// win by the usual rule).
fn store(records: &[(Key, Stamp)]) -> Records {
    let mut r = Records::new();
    let bytes = encode(records.iter().map(|(k, s)| (k, s)));
    r.merge(peer(99), &bytes).expect("merge");
    r
}

fn merged(mut a: Records, b: &Records) -> Records {
    a.merge(peer(99), &b.encode_full()).expect("merge");
    a
}

fn record() -> impl Strategy<Value = (Key, Stamp)> {
    (1u64..4, 0usize..3, 0usize..3, 1u8..4, 0u64..6, any::<bool>()).prop_map(|(o, c, n, a, version, tombstone)| {
        let key = Key {
            origin: peer(o),
            container: ["c1", "c2", "c3"][c].to_owned(),
            name: ["a.weave.local.", "b.weave.local.", "c.x.weave.local."][n].to_owned(),
            addr: ip(a),
        };
        (key, Stamp { version, tombstone })
    })
}

fn state() -> impl Strategy<Value = Records> {
    prop::collection::vec(record(), 0..12).prop_map(|v| store(&v))
}

proptest! {
    #[test]
    fn merge_is_commutative(a in state(), b in state()) {
        prop_assert_eq!(merged(a.clone(), &b).encode_full(), merged(b, &a).encode_full());
    }

    #[test]
    fn merge_is_associative(a in state(), b in state(), c in state()) {
        let left = merged(merged(a.clone(), &b), &c);
        let right = merged(a, &merged(b, &c));
        prop_assert_eq!(left.encode_full(), right.encode_full());
    }

    #[test]
    fn merge_is_idempotent(a in state(), b in state()) {
        let once = merged(a, &b);
        let mut twice = once.clone();
        prop_assert_eq!(twice.merge(peer(99), &b.encode_full()).expect("merge"), None);
        prop_assert_eq!(twice.encode_full(), once.encode_full());
        let mut own = once.clone();
        prop_assert_eq!(own.merge(peer(99), &once.encode_full()).expect("merge"), None);
    }

    #[test]
    fn merge_reports_new_exactly_when_something_changed(a in state(), b in state()) {
        let before = a.encode_full();
        let mut m = a.clone();
        let new = m.merge(peer(99), &b.encode_full()).expect("merge");
        prop_assert_eq!(new.is_none(), m.encode_full() == before);
        if let Some(new) = new {
            // What was new, merged into the old state, gives the new state.
            let mut again = a;
            again.merge(peer(99), &new).expect("merge new part");
            prop_assert_eq!(again.encode_full(), m.encode_full());
        }
    }

    #[test]
    fn encodings_round_trip(a in state()) {
        let full = a.encode_full();
        let back = store(&decode(&full).expect("decode"));
        prop_assert_eq!(back.encode_full(), full);
        prop_assert_eq!(back.zone(), a.zone());
        prop_assert_eq!(back.digest(), a.digest());
    }

    #[test]
    fn zone_matches_live_records(a in state()) {
        let mut z = Zone::new();
        for (k, _) in a.iter().filter(|(_, s)| !s.tombstone) {
            z.insert(&k.name, k.addr);
        }
        prop_assert_eq!(&z, a.zone());
    }

    #[test]
    fn arbitrary_bytes_never_panic(bytes in prop::collection::vec(any::<u8>(), 0..256)) {
        let mut r = Records::new();
        let _ = r.merge(peer(1), &bytes);
    }
}

#[test]
fn local_changes_come_out_as_deltas_once() {
    let mut r = Records::new();
    assert_eq!(r.take_delta(), None);
    assert!(r.add(peer(1), "c1", &name("Web.weave.local."), ip(1), 100).expect("add"));
    assert!(!r.add(peer(1), "c1", &name("web.weave.local."), ip(1), 200).expect("add again"));
    let delta = r.take_delta().expect("delta");
    assert_eq!(r.take_delta(), None);
    let d = decode(&delta).expect("decode");
    assert_eq!(d.len(), 1);
    assert_eq!(d[0].0.name, "web.weave.local.");
    assert_eq!(d[0].1, Stamp { version: 100, tombstone: false });

    let mut other = Records::new();
    assert!(other.merge(peer(1), &delta).expect("merge").is_some());
    assert_eq!(other.lookup(&name("WEB.weave.local")), vec![ip(1)]);
    // Merged changes are not local: they are forwarded by the router, not
    // emitted again as deltas.
    assert_eq!(other.take_delta(), None);
}

#[test]
fn several_containers_under_one_name() {
    let mut r = Records::new();
    let web = name("web.weave.local.");
    r.add(peer(1), "c1", &web, ip(1), 1).expect("add");
    r.add(peer(2), "c2", &web, ip(2), 1).expect("add");
    r.add(peer(2), "c3", &web, ip(2), 1).expect("add");
    assert_eq!(r.lookup(&web), vec![ip(1), ip(2)]);
    assert_eq!(r.reverse(ip(2)), vec![web.clone()]);
    assert_eq!(r.remove_container(peer(2), "c2", 2), 1);
    assert_eq!(r.lookup(&web), vec![ip(1), ip(2)]);
    assert_eq!(r.remove_container(peer(2), "c3", 2), 1);
    assert_eq!(r.lookup(&web), vec![ip(1)]);
    assert_eq!(r.entries().len(), 1);
    assert!(r.reverse(ip(2)).is_empty());
}

#[test]
fn detached_addresses_lose_their_records_and_the_rest_stay() {
    let mut r = Records::new();
    let (web, db) = (name("web.weave.local."), name("db.weave.local."));
    r.add(peer(1), "c1", &web, ip(1), 1).expect("add");
    r.add(peer(1), "c1", &web, ip(2), 1).expect("add");
    r.add(peer(1), "c1", &db, ip(2), 1).expect("add");
    r.add(peer(1), "c2", &web, ip(2), 1).expect("add");
    r.add(peer(2), "c1", &web, ip(2), 1).expect("add");
    // Only c1's records of this peer for 10.0.0.2: under both names.
    assert_eq!(r.remove_container_addrs(peer(1), "c1", &[ip(2)], 2), 2);
    assert_eq!(r.lookup(&web), vec![ip(1), ip(2)], "c2's and peer 2's records stay");
    assert!(r.lookup(&db).is_empty());
    assert_eq!(r.remove_container_addrs(peer(1), "c1", &[ip(2)], 3), 0, "already gone");
    assert_eq!(r.remove_container_addrs(peer(1), "c1", &[], 3), 0);
    assert_eq!(r.entries().len(), 3);
}

#[test]
fn a_removed_container_disappears_everywhere_and_stays_gone() {
    let web = name("web.weave.local.");
    let mut a = Records::new();
    a.add(peer(1), "c1", &web, ip(1), 1_000).expect("add");
    a.add(peer(1), "c1", &name("alias.weave.local."), ip(1), 1_000).expect("add");
    let mut b = Records::new();
    let mut c = Records::new();
    let old = a.encode_full();
    b.merge(peer(1), &old).expect("merge");
    c.merge(peer(1), &old).expect("merge");
    assert_eq!(b.lookup(&web), vec![ip(1)]);

    assert_eq!(a.remove_container(peer(1), "c1", 2_000), 2);
    let delta = a.take_delta().expect("delta");
    let forwarded = b.merge(peer(1), &delta).expect("merge").expect("new at b");
    c.merge(peer(2), &forwarded).expect("merge");
    for r in [&a, &b, &c] {
        assert!(r.lookup(&web).is_empty());
        assert!(r.reverse(ip(1)).is_empty());
        assert!(r.entries().is_empty());
    }
    // The old copy, merged late, brings nothing back.
    for r in [&mut a, &mut b, &mut c] {
        assert_eq!(r.merge(peer(3), &old).expect("merge"), None);
        assert!(r.lookup(&web).is_empty());
    }
    assert_eq!(a.encode_full(), b.encode_full());
    assert_eq!(b.encode_full(), c.encode_full());

    // Re-adding beats the tombstone even with a clock that went back.
    a.add(peer(1), "c1", &web, ip(1), 500).expect("add");
    b.merge(peer(1), &a.take_delta().expect("delta")).expect("merge");
    assert_eq!(b.lookup(&web), vec![ip(1)]);
}

#[test]
fn tombstones_are_collected_after_the_grace_period() {
    let web = name("web.weave.local.");
    let mut a = Records::new();
    a.add(peer(1), "c1", &web, ip(1), 1_000).expect("add");
    let live = a.encode_full();
    a.remove(peer(1), "c1", &web, ip(1), 2_000);
    let tomb = a.encode_full();
    let mut b = store(&[]);
    b.merge(peer(1), &tomb).expect("merge");

    assert_eq!(a.gc(2_000 + TOMBSTONE_GRACE_MS - 1), 0);
    assert_eq!(a.iter().count(), 1);
    assert_eq!(a.gc(2_000 + TOMBSTONE_GRACE_MS), 1);
    assert_eq!(a.iter().count(), 0);
    assert_eq!(a.take_delta(), None);
    // A slower peer's copy of the expired tombstone is not taken in again.
    assert_eq!(a.merge(peer(2), &tomb).expect("merge"), None);
    assert_eq!(a.iter().count(), 0);
    // The live copy, older than the grace period, does come back: that is
    // the limit of garbage collection.
    assert!(a.merge(peer(2), &live).expect("merge").is_some());
    // Unless the tombstone was still around.
    assert_eq!(b.merge(peer(2), &live).expect("merge"), None);
}

#[test]
fn remove_peer_tombstones_all_of_its_records() {
    let mut a = Records::new();
    a.add(peer(1), "c1", &name("x.weave.local."), ip(1), 10).expect("add");
    a.add(peer(1), "c2", &name("y.weave.local."), ip(2), 10).expect("add");
    a.add(peer(2), "c3", &name("x.weave.local."), ip(3), 10).expect("add");
    let mut b = a.clone();
    assert_eq!(a.remove_peer(peer(1), 50), 2);
    assert_eq!(b.remove_peer(peer(1), 50), 2);
    assert_eq!(a.encode_full(), b.encode_full());
    assert_eq!(a.lookup(&name("x.weave.local.")), vec![ip(3)]);
    assert_eq!(a.remove_peer(peer(1), 60), 0);
}

#[test]
fn bad_input_is_refused() {
    let mut r = Records::new();
    let long = "x".repeat(MAX_CONTAINER_ID + 1);
    assert!(matches!(r.add(peer(1), &long, &name("a.weave.local."), ip(1), 0), Err(DnsError::ContainerId(_))));
    assert!(matches!(r.add(peer(1), "", &name("a.weave.local."), ip(1), 0), Err(DnsError::ContainerId(0))));
    assert!(!r.remove(peer(1), "c1", &name("a.weave.local."), ip(1), 0));

    let bad = |rec: pb::Record| pb::Records { records: vec![rec] }.encode_to_vec();
    let ok = pb::Record {
        origin: 1,
        container: "c".into(),
        name: "a.weave.local.".into(),
        address: 1,
        version: 1,
        tombstone: false,
    };
    assert!(r.merge(peer(1), &bad(ok.clone())).is_ok());
    for rec in [
        pb::Record { origin: 1 << 48, ..ok.clone() },
        pb::Record { container: String::new(), ..ok.clone() },
        pb::Record { name: "A.weave.local.".into(), ..ok.clone() },
        pb::Record { name: "a.weave.local".into(), ..ok.clone() },
        pb::Record { name: ".".into(), ..ok.clone() },
        pb::Record { name: "a..b.".into(), ..ok.clone() },
        pb::Record { name: format!("{}.", "x".repeat(64)), ..ok.clone() },
    ] {
        let mut r2 = Records::new();
        assert!(r2.merge(peer(1), &bad(rec)).is_err());
        assert_eq!(r2.iter().count(), 0, "nothing of a refused message is applied");
    }
    assert!(r.merge(peer(1), &[0xff, 0xff]).is_err());
}

/// The store as a real mesh channel, on the router simulator: changes
/// reach every peer, removals too, and a newcomer catches up.
#[test]
fn replicates_over_the_mesh() {
    use crate::dns::CHANNEL;
    use crate::mesh::core::sim::{Sim, SimConfig};
    use crate::mesh::core::MeshConfig;

    let mesh = MeshConfig { gossip_interval_ms: 1_000, gc_grace_ms: 2_000, ..MeshConfig::default() };
    let mut sim = Sim::new(SimConfig { mesh, ..SimConfig::default() }, 7);
    for _ in 0..5 {
        sim.add_peer();
    }
    for i in 0..4 {
        sim.add_link(i, i + 1);
    }
    for i in 0..5 {
        sim.act(i, |r, _| r.register_gossip_channel(CHANNEL, Box::<Records>::default())).expect("register");
    }
    assert!(sim.run_until_converged(5_000, 10).is_some());
    let web = name("web.weave.local.");
    let add = |sim: &mut Sim, i: usize, c: &str, a: Ipv4Addr| {
        sim.act(i, |r, now| {
            let me = r.identity().name;
            r.update_channel(now, CHANNEL, |s: &mut Records| s.add(me, c, &web, a, now))
        })
    };
    add(&mut sim, 0, "c1", ip(1)).expect("channel").expect("add");
    add(&mut sim, 4, "c2", ip(2)).expect("channel").expect("add");
    sim.run_for(300);
    for i in 0..5 {
        assert_eq!(sim.router(i).channel::<Records>(CHANNEL).expect("state").lookup(&web), vec![ip(1), ip(2)]);
    }
    sim.act(0, |r, now| {
        let me = r.identity().name;
        r.update_channel(now, CHANNEL, |s: &mut Records| s.remove_container(me, "c1", now))
    })
    .expect("remove");
    sim.run_for(300);
    for i in 0..5 {
        assert_eq!(sim.router(i).channel::<Records>(CHANNEL).expect("state").lookup(&web), vec![ip(2)], "peer {i}");
    }
    let n = sim.add_peer();
    sim.act(n, |r, _| r.register_gossip_channel(CHANNEL, Box::<Records>::default())).expect("register");
    sim.add_link(2, n);
    sim.run_for(1_500);
    let newcomer = sim.router(n).channel::<Records>(CHANNEL).expect("state");
    assert_eq!(newcomer.lookup(&web), vec![ip(2)]);
    let first = sim.router(0).channel::<Records>(CHANNEL).expect("state");
    assert_eq!(newcomer.encode_full(), first.encode_full(), "tombstones too");
    assert_eq!(sim.stats().errors, 0);
}
