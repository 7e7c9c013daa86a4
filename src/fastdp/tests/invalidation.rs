//! Selective invalidation: routes, peers, ports and identity changes delete
//! exactly the flows that depend on them. Weave flushed every flow on every
//! route change; these tests pin down that unrelated flows survive.

use super::harness::*;
use crate::fastdp::{Forwarder, LocalPeer, MatchKey, PeerInfo, TunnelMatch};
use crate::odp::key::{EthernetKey, Mac};

/// The fixture with a flow of every kind installed:
/// - `to4`: local 1 → mac(4) at peer 4 (via 2);
/// - `to5`: local 1 → mac(5) at peer 5 (via 3);
/// - `loc`: local 1 → local 2;
/// - `from4`: tunnel from 4 (via 2) → local 1;
/// - `relay`: tunnel 4 → 5, through us;
/// - `bcast`: local broadcast from port 3;
/// - `bcast4`: broadcast originated by 4, arriving via 2.
fn busy() -> Forwarder {
    let mut f = fixture();
    learn_local(&mut f, 0, 1, mac(1));
    learn_local(&mut f, 0, 2, mac(2));
    learn_remote(&mut f, 0, 4, 2, mac(4));
    learn_remote(&mut f, 0, 5, 3, mac(5));
    let keys = [
        local_key(1, mac(1), mac(4)),
        local_key(1, mac(1), mac(5)),
        local_key(1, mac(1), mac(2)),
        tunnel_key(vni(4, 1), 2, mac(4), mac(1)),
        tunnel_key(vni(4, 5), 2, mac(4), mac(5)),
        local_key(3, mac(3), Mac::BROADCAST),
        tunnel_key(vni(4, 4), 2, mac(4), Mac::BROADCAST),
    ];
    for k in keys {
        assert_eq!(split(&f.handle_miss(1, &k, 98)).installs.len(), 1, "{k:?}");
    }
    f
}

fn lkey(port: u32, s: Mac, d: Mac) -> MatchKey {
    MatchKey { in_port: port, eth: EthernetKey { src: s, dst: d }, tunnel: None }
}

fn tunnel(id: u64, from: u8, s: Mac, d: Mac) -> MatchKey {
    let tunnel = Some(TunnelMatch { id, src: ip(from), dst: ip(1) });
    MatchKey { in_port: VX, eth: EthernetKey { src: s, dst: d }, tunnel }
}

fn to4() -> MatchKey {
    lkey(1, mac(1), mac(4))
}
fn to5() -> MatchKey {
    lkey(1, mac(1), mac(5))
}
fn loc() -> MatchKey {
    lkey(1, mac(1), mac(2))
}
fn from4() -> MatchKey {
    tunnel(vni(4, 1), 2, mac(4), mac(1))
}
fn relay() -> MatchKey {
    tunnel(vni(4, 5), 2, mac(4), mac(5))
}
fn bcast() -> MatchKey {
    lkey(3, mac(3), Mac::BROADCAST)
}
fn bcast4() -> MatchKey {
    tunnel(vni(4, 4), 2, mac(4), Mac::BROADCAST)
}

/// Drains the queued deletes and checks they are exactly `want`, and that
/// every other flow of `busy()` is still cached.
fn expect_deleted(f: &mut Forwarder, want: &[MatchKey]) {
    let mut got = split(&drain(f)).deletes;
    let mut want_keys: Vec<_> = want.iter().map(MatchKey::key).collect();
    got.sort_by_key(|k| format!("{k:?}"));
    want_keys.sort_by_key(|k| format!("{k:?}"));
    assert_eq!(got, want_keys);
    for k in [to4(), to5(), loc(), from4(), relay(), bcast(), bcast4()] {
        assert_eq!(f.flow(&k).is_some(), !want.contains(&k), "{k:?}");
    }
}

#[test]
fn a_new_next_hop_deletes_only_the_flows_through_the_old_one() {
    let mut f = busy();
    let before = f.epoch();
    // 4 is now reached through 3 (the 2-4 link went down, 3-4 came up).
    f.handle_routes(2, routes().with_next_hop(p(4), p(3)));
    expect_deleted(&mut f, &[to4()]);
    assert!(f.epoch() > before);
    let ops = f.handle_miss(3, &local_key(1, mac(1), mac(4)), 98);
    assert!(installed(&ops).contains("tun_id=0x1004,src=10.0.0.1,dst=10.0.0.3"));
}

#[test]
fn a_relay_follows_the_destinations_next_hop() {
    let mut f = busy();
    f.handle_routes(2, routes().with_next_hop(p(5), p(2)));
    // The relay 4 → 5 would now go back to 2: its flow goes, and the next
    // miss is refused as a loop.
    expect_deleted(&mut f, &[to5(), relay()]);
    let ops = f.handle_miss(3, &tunnel_key(vni(4, 5), 2, mac(4), mac(5)), 98);
    assert_eq!(dropped(&ops).kind(), "loop");
}

#[test]
fn identical_routes_change_nothing() {
    let mut f = busy();
    let before = f.epoch();
    // The same routes, children listed in another order.
    f.handle_routes(2, routes().with_children(p(1), [p(3), p(2)]));
    expect_deleted(&mut f, &[]);
    assert_eq!(f.epoch(), before);
}

#[test]
fn a_tree_change_deletes_only_that_origins_broadcasts() {
    let mut f = busy();
    f.handle_routes(2, routes().with_children(p(4), [p(3), p(5)]));
    expect_deleted(&mut f, &[bcast4()]);
    let mut f = busy();
    f.handle_routes(2, routes().with_children(p(1), [p(2)]));
    expect_deleted(&mut f, &[bcast()]);
}

#[test]
fn an_unreachable_destination_deletes_its_flows() {
    let mut f = busy();
    let mut r = routes();
    r.next_hops.remove(&p(5));
    f.handle_routes(2, r);
    expect_deleted(&mut f, &[to5(), relay()]);
}

#[test]
fn a_removed_peer_takes_its_flows_and_macs() {
    let mut f = busy();
    f.handle_peer_removed(2, p(4));
    // Everything that named 4: as destination, as source (its MAC), as origin.
    expect_deleted(&mut f, &[to4(), from4(), relay(), bcast4()]);
    assert!(f.mac(mac(4)).is_none());
    assert!(f.mac(mac(5)).is_some());
}

#[test]
fn a_removed_next_hop_takes_the_flows_through_it() {
    let mut f = busy();
    f.handle_peer_removed(2, p(3));
    // 3 carried to5 and the relay to 5, and is a child in our tree and 4's.
    expect_deleted(&mut f, &[to5(), relay(), bcast(), bcast4()]);
}

#[test]
fn a_readdressed_peer_rebuilds_the_flows_through_it() {
    let mut f = busy();
    f.handle_peer(2, PeerInfo { underlay: ip(22), ..info(2) });
    // 2 is the next hop to 4, and our child in 3's, 5's and our own trees.
    expect_deleted(&mut f, &[to4(), bcast()]);
    let ops = f.handle_miss(3, &local_key(1, mac(1), mac(4)), 98);
    assert!(installed(&ops).contains("dst=10.0.0.22"));
    // The same info again is no change.
    let before = f.epoch();
    f.handle_peer(4, PeerInfo { underlay: ip(22), ..info(2) });
    assert_eq!(f.epoch(), before);
}

#[test]
fn a_short_id_collision_deletes_the_flows_it_makes_ambiguous() {
    let mut f = busy();
    // A new peer claims 5's short ID: VNIs naming 5 are ambiguous now.
    f.handle_peer(2, PeerInfo { short_id: sid(5), ..info(6) });
    expect_deleted(&mut f, &[to5(), relay()]);
    // The mesh moves the newcomer away; 5's flows come back on the next miss.
    f.handle_peer(3, PeerInfo { short_id: sid(6), ..info(6) });
    assert_eq!(split(&f.handle_miss(4, &local_key(1, mac(1), mac(5)), 98)).installs.len(), 1);
}

#[test]
fn a_new_port_rebuilds_the_broadcasts_only() {
    let mut f = busy();
    f.handle_port_added(2, 4);
    expect_deleted(&mut f, &[bcast(), bcast4()]);
    let o = split(&f.handle_miss(3, &local_key(3, mac(3), Mac::BROADCAST), 42));
    assert_eq!(acts(&o.executes[0])[..6], *"1,2,4,");
    // Adding it again, or the VXLAN port, changes nothing.
    let before = f.epoch();
    f.handle_port_added(4, 4);
    f.handle_port_added(4, VX);
    assert_eq!(f.epoch(), before);
}

#[test]
fn a_removed_port_takes_the_flows_from_and_to_it_and_the_broadcasts() {
    let mut f = busy();
    f.handle_port_removed(2, 2);
    // loc outputs to 2; from4 does not (it goes to 1), but the broadcasts do.
    expect_deleted(&mut f, &[loc(), bcast(), bcast4()]);
    let mut f = busy();
    f.handle_port_removed(2, 1);
    // Port 1 had mac(1): every flow from or to it goes.
    expect_deleted(&mut f, &[to4(), to5(), loc(), from4(), bcast(), bcast4()]);
}

#[test]
fn a_new_identity_deletes_every_overlay_flow() {
    let mut f = busy();
    f.handle_local(2, LocalPeer { short_id: sid(11), ..local() });
    expect_deleted(&mut f, &[to4(), to5(), from4(), relay(), bcast(), bcast4()]);
    let ops = f.handle_miss(3, &local_key(1, mac(1), mac(4)), 98);
    assert!(installed(&ops).contains("tun_id=0xb004"));
    // A new VXLAN port number: every flow.
    f.handle_local(4, LocalPeer { short_id: sid(11), vxlan_port: 101, ..local() });
    let deleted = split(&drain(&mut f)).deletes;
    assert_eq!(deleted.len(), 2);
    assert_eq!(f.flows().count(), 0);
}
