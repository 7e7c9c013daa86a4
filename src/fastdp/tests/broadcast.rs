//! Broadcast and multicast: one flow, local ports plus tree children.

use super::harness::*;
use crate::fastdp::{DropReason, PeerInfo};
use crate::odp::action::Action;
use crate::odp::key::Mac;

const BCAST: Mac = Mac::BROADCAST;

#[test]
fn a_local_broadcast_is_one_flow_to_the_other_ports_and_our_tree_neighbours() {
    let mut f = fixture();
    let ops = f.handle_miss(0, &local_key(2, mac(2), BCAST), 42);
    assert_eq!(
        installed(&ops),
        "in_port(2),eth(src=02:00:00:00:00:02,dst=ff:ff:ff:ff:ff:ff) \
         actions:1,3,set(tunnel(tun_id=0x1001,src=10.0.0.1,dst=10.0.0.2,ttl=64,flags(df|key))),100,\
         set(tunnel(tun_id=0x1001,src=10.0.0.1,dst=10.0.0.3,ttl=64,flags(df|key))),100"
    );
}

#[test]
fn any_multicast_destination_is_a_broadcast() {
    let mut f = fixture();
    let ipv4_mcast = Mac([0x01, 0x00, 0x5e, 0x00, 0x00, 0xfb]);
    let ops = f.handle_miss(0, &local_key(1, mac(1), ipv4_mcast), 42);
    let o = split(&ops);
    assert_eq!(o.installs.len(), 1);
    assert_eq!(o.executes[0][..2], [Action::Output(2), Action::Output(3)]);
    assert_eq!(o.executes[0].len(), 2 + 2 * 2);
}

#[test]
fn a_relayed_broadcast_goes_to_the_origins_children_and_never_back() {
    let mut f = fixture();
    // Originated by 4, arriving through 2: our child in 4's tree is 3.
    let ops = f.handle_miss(0, &tunnel_key(vni(4, 4), 2, mac(4), BCAST), 42);
    assert_eq!(
        installed(&ops),
        "tunnel(tun_id=0x4004,src=10.0.0.2,dst=10.0.0.1,flags(+key)),in_port(100),\
         eth(src=02:00:00:00:00:04,dst=ff:ff:ff:ff:ff:ff) \
         actions:1,2,3,set(tunnel(tun_id=0x4004,src=10.0.0.1,dst=10.0.0.3,ttl=64,flags(df|key))),100"
    );
}

#[test]
fn a_broadcast_from_a_neighbour_goes_on_to_the_rest_of_its_tree() {
    let mut f = fixture();
    let o = split(&f.handle_miss(0, &tunnel_key(vni(3, 3), 3, mac(3), BCAST), 42));
    assert_eq!(
        acts(&o.executes[0]),
        "1,2,3,set(tunnel(tun_id=0x3003,src=10.0.0.1,dst=10.0.0.2,ttl=64,flags(df|key))),100"
    );
}

#[test]
fn children_at_the_previous_hop_the_origin_or_us_are_skipped() {
    let mut f = fixture();
    // Views disagree: 4's tree lists 2 (where it came from), 4 itself and us.
    f.handle_routes(0, routes().with_children(p(4), [p(1), p(2), p(3), p(4)]));
    let o = split(&f.handle_miss(0, &tunnel_key(vni(4, 4), 2, mac(4), BCAST), 42));
    assert_eq!(
        acts(&o.executes[0]),
        "1,2,3,set(tunnel(tun_id=0x4004,src=10.0.0.1,dst=10.0.0.3,ttl=64,flags(df|key))),100"
    );
}

#[test]
fn a_flood_passing_through_is_relayed_without_a_flow() {
    let mut f = fixture();
    // 4 flooded an unknown unicast destination.
    let ops = f.handle_miss(0, &tunnel_key(vni(4, 4), 2, mac(4), mac(9)), 42);
    let o = split(&ops);
    assert!(o.installs.is_empty());
    assert_eq!(
        acts(&o.executes[0]),
        "1,2,3,set(tunnel(tun_id=0x4004,src=10.0.0.1,dst=10.0.0.3,ttl=64,flags(df|key))),100"
    );
    assert_eq!(f.counters().floods, 1);
}

#[test]
fn multicast_sent_to_us_alone_goes_to_every_local_port() {
    let mut f = fixture();
    let ops = f.handle_miss(0, &tunnel_key(vni(4, 1), 2, mac(4), BCAST), 42);
    let o = split(&ops);
    assert_eq!(o.installs.len(), 1);
    assert_eq!(o.executes, vec![vec![Action::Output(1), Action::Output(2), Action::Output(3)]]);
}

#[test]
fn a_lone_broadcast_installs_a_flow_with_no_actions() {
    let mut f = fixture();
    f.handle_port_removed(0, 2);
    f.handle_port_removed(0, 3);
    f.handle_routes(0, routes().with_children(p(1), []));
    let ops = f.handle_miss(0, &local_key(1, mac(1), BCAST), 42);
    assert_eq!(installed(&ops), "in_port(1),eth(src=02:00:00:00:00:01,dst=ff:ff:ff:ff:ff:ff) actions:drop");
}

#[test]
fn a_child_without_an_address_is_skipped_until_it_is_known() {
    let mut f = fixture();
    f.handle_routes(0, routes().with_children(p(1), [p(2), p(3), p(6)]));
    let o = split(&f.handle_miss(0, &local_key(1, mac(1), BCAST), 42));
    assert_eq!(o.executes[0].len(), 2 + 2 * 2);
    // Learning 6's address rebuilds the flow, and only it.
    learn_local(&mut f, 0, 2, mac(2));
    f.handle_miss(0, &local_key(1, mac(1), mac(2)), 42);
    f.handle_peer(1, info(6));
    let deleted = split(&drain(&mut f)).deletes;
    assert_eq!(deleted.len(), 1);
    assert_eq!(f.flows().count(), 1);
    let o = split(&f.handle_miss(2, &local_key(1, mac(1), BCAST), 42));
    assert_eq!(o.executes[0].len(), 2 + 3 * 2);
}

#[test]
fn a_broadcast_from_an_unknown_or_ambiguous_origin_is_dropped() {
    let mut f = fixture();
    f.handle_peer(0, PeerInfo { short_id: sid(4), ..info(6) });
    let ops = f.handle_miss(0, &tunnel_key(vni(4, 4), 2, mac(4), BCAST), 42);
    assert_eq!(dropped(&ops), DropReason::UnknownSource(sid(4)));
}
