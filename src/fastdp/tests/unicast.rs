//! Unicast misses: local, to a peer, from a peer, relayed; and refusals.

use super::harness::*;
use crate::fastdp::{DropReason, FlowOp, KeyError, Location, PeerInfo};
use crate::odp::action::Action;
use crate::odp::key::{EthernetKey, KeyAttr, Mac};

#[test]
fn local_to_local_outputs_to_the_port() {
    let mut f = fixture();
    learn_local(&mut f, 0, 2, mac(2));
    let ops = f.handle_miss(1, &local_key(1, mac(1), mac(2)), 98);
    assert_eq!(installed(&ops), "in_port(1),eth(src=02:00:00:00:00:01,dst=02:00:00:00:00:02) actions:2");
    let o = split(&ops);
    assert_eq!(o.executes, vec![vec![Action::Output(2)]]);
    // Install comes before execute.
    assert!(matches!(ops[0].op, FlowOp::Install { .. }) && matches!(ops[1].op, FlowOp::Execute { .. }));
    assert_eq!(f.mac(mac(1)).unwrap().location, Location::Local(1));
}

#[test]
fn local_to_remote_tunnels_to_the_next_hop_naming_the_destination() {
    let mut f = fixture();
    // mac(4) lives at peer 4, which is behind peer 2.
    learn_remote(&mut f, 0, 4, 2, mac(4));
    let ops = f.handle_miss(1, &local_key(3, mac(3), mac(4)), 98);
    assert_eq!(
        installed(&ops),
        "in_port(3),eth(src=02:00:00:00:00:03,dst=02:00:00:00:00:04) \
         actions:set(tunnel(tun_id=0x1004,src=10.0.0.1,dst=10.0.0.2,ttl=64,flags(df|key))),100"
    );
}

#[test]
fn remote_to_local_matches_the_tunnel_id_and_addresses() {
    let mut f = fixture();
    learn_local(&mut f, 0, 2, mac(2));
    let ops = f.handle_miss(1, &tunnel_key(vni(4, 1), 2, mac(4), mac(2)), 98);
    assert_eq!(
        installed(&ops),
        "tunnel(tun_id=0x4001,src=10.0.0.2,dst=10.0.0.1,flags(+key)),in_port(100),\
         eth(src=02:00:00:00:00:04,dst=02:00:00:00:00:02) actions:2"
    );
    // Learned at the VNI's source, not at the hop it came through.
    assert_eq!(f.mac(mac(4)).unwrap().location, Location::Remote(p(4)));
}

#[test]
fn relay_keeps_the_vni_and_goes_to_the_next_hop() {
    let mut f = fixture();
    // From 4 (via 2) to 5 (via 3): we are the middle of the path.
    let ops = f.handle_miss(1, &tunnel_key(vni(4, 5), 2, mac(4), mac(5)), 98);
    assert_eq!(
        installed(&ops),
        "tunnel(tun_id=0x4005,src=10.0.0.2,dst=10.0.0.1,flags(+key)),in_port(100),\
         eth(src=02:00:00:00:00:04,dst=02:00:00:00:00:05) \
         actions:set(tunnel(tun_id=0x4005,src=10.0.0.1,dst=10.0.0.3,ttl=64,flags(df|key))),100"
    );
    assert_eq!(f.mac(mac(4)).unwrap().location, Location::Remote(p(4)));
}

#[test]
fn relaying_back_where_it_came_from_is_refused() {
    let mut f = fixture();
    // Peer 3 thinks 5 is reached through us, and we through 3: a loop.
    let ops = f.handle_miss(1, &tunnel_key(vni(4, 5), 3, mac(4), mac(5)), 98);
    assert_eq!(dropped(&ops), DropReason::Loop(ip(3)));
    assert_eq!(f.flows().count(), 0);
}

#[test]
fn a_next_hop_that_is_us_is_refused() {
    let mut f = fixture();
    f.handle_routes(0, routes().with_next_hop(p(5), p(1)));
    learn_remote(&mut f, 0, 5, 3, mac(5));
    let ops = f.handle_miss(1, &local_key(1, mac(1), mac(5)), 98);
    assert_eq!(dropped(&ops), DropReason::Loop(ip(1)));
    // A peer at our own underlay address is a loop too.
    f.handle_routes(0, routes());
    f.handle_peer(0, PeerInfo { underlay: ip(1), ..info(3) });
    let ops = f.handle_miss(2, &local_key(1, mac(1), mac(5)), 98);
    assert_eq!(dropped(&ops), DropReason::Loop(ip(1)));
}

#[test]
fn hairpin_is_refused() {
    let mut f = fixture();
    learn_local(&mut f, 0, 1, mac(9));
    let ops = f.handle_miss(1, &local_key(1, mac(1), mac(9)), 98);
    assert_eq!(dropped(&ops), DropReason::Hairpin(1));
    assert_eq!(f.counters().drops.get("hairpin"), Some(&1));
}

#[test]
fn unknown_unicast_is_flooded_without_a_flow() {
    let mut f = fixture();
    let ops = f.handle_miss(0, &local_key(2, mac(2), mac(7)), 98);
    let o = split(&ops);
    assert!(o.installs.is_empty());
    assert_eq!(
        acts(&o.executes[0]),
        "1,3,set(tunnel(tun_id=0x1001,src=10.0.0.1,dst=10.0.0.2,ttl=64,flags(df|key))),100,\
         set(tunnel(tun_id=0x1001,src=10.0.0.1,dst=10.0.0.3,ttl=64,flags(df|key))),100"
    );
    assert_eq!(f.counters().floods, 1);
    assert_eq!(f.flows().count(), 0);
}

#[test]
fn a_tunnelled_packet_for_a_mac_not_here_goes_to_every_local_port_without_a_flow() {
    let mut f = fixture();
    let ops = f.handle_miss(0, &tunnel_key(vni(2, 1), 2, mac(20), mac(7)), 98);
    let o = split(&ops);
    assert!(o.installs.is_empty());
    assert_eq!(o.executes, vec![vec![Action::Output(1), Action::Output(2), Action::Output(3)]]);
}

#[test]
fn a_second_miss_of_an_installed_flow_only_executes() {
    let mut f = fixture();
    learn_local(&mut f, 0, 2, mac(2));
    let first = f.handle_miss(1, &local_key(1, mac(1), mac(2)), 98);
    assert_eq!(split(&first).installs.len(), 1);
    // A packet queued before the install went in misses too.
    let second = f.handle_miss(2, &local_key(1, mac(1), mac(2)), 98);
    let o = split(&second);
    assert!(o.installs.is_empty());
    assert_eq!(o.executes, vec![vec![Action::Output(2)]]);
    assert_eq!(f.counters().installs, 1);
}

#[test]
fn one_megaflow_serves_every_ethertype() {
    let mut f = fixture();
    learn_local(&mut f, 0, 2, mac(2));
    f.handle_miss(1, &local_key(1, mac(1), mac(2)), 98);
    // ARP between the same pair maps to the same megaflow.
    let arp =
        vec![KeyAttr::InPort(1), KeyAttr::Ethernet(EthernetKey { src: mac(1), dst: mac(2) }), KeyAttr::EthType(0x0806)];
    let ops = f.handle_miss(2, &arp, 42);
    assert!(split(&ops).installs.is_empty());
    assert_eq!(f.flows().count(), 1);
}

#[test]
fn vlan_tagged_frames_are_forwarded_without_a_flow() {
    let mut f = fixture();
    learn_local(&mut f, 0, 2, mac(2));
    let mut key = local_key(1, mac(1), mac(2));
    key.retain(|a| !matches!(a, KeyAttr::EthType(_) | KeyAttr::Ipv4(_)));
    key.extend([KeyAttr::EthType(0x8100), KeyAttr::Vlan(0x1005), KeyAttr::Encap(vec![KeyAttr::EthType(0x0800)])]);
    let o = split(&f.handle_miss(1, &key, 102));
    assert!(o.installs.is_empty());
    assert_eq!(o.executes, vec![vec![Action::Output(2)]]);
}

#[test]
fn routing_refusals_are_typed() {
    let mut f = fixture();
    // A MAC at a peer we have no route to.
    f.handle_peer(0, info(6));
    learn_remote(&mut f, 0, 6, 2, mac(6));
    assert_eq!(dropped(&f.handle_miss(1, &local_key(1, mac(1), mac(6)), 98)), DropReason::NoRoute(p(6)));
    // A next hop we know no address for.
    f.handle_routes(0, routes().with_next_hop(p(6), p(7)));
    assert_eq!(dropped(&f.handle_miss(1, &local_key(1, mac(1), mac(6)), 98)), DropReason::UnknownPeer(p(7)));
    // A destination sharing our short ID: VNI(1,1) would read as a broadcast.
    f.handle_routes(0, routes().with_next_hop(p(6), p(2)));
    f.handle_peer(0, PeerInfo { short_id: sid(1), ..info(6) });
    assert_eq!(dropped(&f.handle_miss(1, &local_key(1, mac(1), mac(6)), 98)), DropReason::ShortIdClash(p(6)));
    // Or another peer's.
    f.handle_peer(0, PeerInfo { short_id: sid(2), ..info(6) });
    assert_eq!(dropped(&f.handle_miss(1, &local_key(1, mac(1), mac(6)), 98)), DropReason::ShortIdClash(p(6)));
    assert_eq!(f.flows().count(), 0);
}

#[test]
fn ingress_refusals_are_typed() {
    let mut f = fixture();
    let d = |f: &mut crate::fastdp::Forwarder, key: Vec<KeyAttr>| dropped(&f.handle_miss(0, &key, 60));
    assert_eq!(d(&mut f, local_key(9, mac(1), mac(2))), DropReason::UnknownInPort(9));
    let mcast_src = Mac([3, 0, 0, 0, 0, 1]);
    assert_eq!(d(&mut f, local_key(1, mcast_src, mac(2))), DropReason::MulticastSource(mcast_src));
    assert_eq!(d(&mut f, tunnel_key(vni(1, 2), 2, mac(4), mac(2))), DropReason::FromSelf);
    assert_eq!(d(&mut f, tunnel_key(vni(9, 1), 2, mac(4), mac(2))), DropReason::UnknownSource(sid(9)));
    assert_eq!(d(&mut f, tunnel_key(vni(4, 9), 2, mac(4), mac(2))), DropReason::UnknownDestination(sid(9)));
    assert_eq!(
        d(&mut f, tunnel_key(1 << 30, 2, mac(4), mac(2))),
        DropReason::BadKey(KeyError::Vni(crate::fastdp::vni::VniError(1 << 30)))
    );
    assert_eq!(d(&mut f, local_key(VX, mac(4), mac(2))), DropReason::BadKey(KeyError::MissingTunnel));
    assert_eq!(d(&mut f, vec![KeyAttr::InPort(1)]), DropReason::BadKey(KeyError::MissingEthernet));
    // Only the packet with a valid source taught anything.
    assert_eq!(f.macs().map(|(m, _)| m).collect::<Vec<_>>(), vec![mac(4)]);
    assert_eq!(f.counters().misses, 8);
    assert_eq!(f.counters().drops.values().sum::<u64>(), 8);
}
