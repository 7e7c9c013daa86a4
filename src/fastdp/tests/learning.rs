//! MAC learning, moves, ageing, flow statistics and idle flows.

use super::harness::*;
use crate::fastdp::{Config, FlowOp, Forwarder, Location, MatchKey};
use crate::odp::key::{EthernetKey, KeyAttr};

fn key(in_port: u32, s: u8, d: u8) -> MatchKey {
    MatchKey { in_port, eth: EthernetKey { src: mac(s), dst: mac(d) }, tunnel: None }
}

#[test]
fn learns_local_macs_from_ports_and_remote_ones_from_the_vni_source() {
    let mut f = fixture();
    learn_local(&mut f, 5, 3, mac(3));
    learn_remote(&mut f, 6, 5, 3, mac(5));
    assert_eq!(f.mac(mac(3)).map(|e| (e.location, e.seen)), Some((Location::Local(3), 5)));
    assert_eq!(f.mac(mac(5)).map(|e| (e.location, e.seen)), Some((Location::Remote(p(5)), 6)));
    // Learning a new MAC changes no decision: the epoch stays.
    assert_eq!(f.epoch(), fixture().epoch());
}

#[test]
fn a_mac_moving_to_another_peer_deletes_its_flows_before_the_new_install() {
    let mut f = fixture();
    learn_local(&mut f, 0, 1, mac(1));
    learn_remote(&mut f, 0, 4, 2, mac(9));
    f.handle_miss(1, &local_key(1, mac(1), mac(9)), 98); // to 9, at peer 4
    f.handle_miss(1, &tunnel_key(vni(4, 1), 2, mac(9), mac(1)), 98); // from 9
    learn_local(&mut f, 1, 2, mac(2));
    f.handle_miss(1, &local_key(1, mac(1), mac(2)), 98); // unrelated
    assert_eq!(f.flows().count(), 3);
    let before = f.epoch();

    // 9 now shows up at peer 5 (the container moved hosts).
    let ops = f.handle_miss(2, &tunnel_key(vni(5, 1), 3, mac(9), mac(1)), 98);
    let o = split(&ops);
    assert_eq!(o.deletes.len(), 2, "the flows to and from 9 at peer 4");
    assert!(matches!(ops[0].op, FlowOp::Delete { .. }) && matches!(ops[1].op, FlowOp::Delete { .. }));
    assert_eq!(o.installs.len(), 1);
    assert!(f.epoch() > before);
    assert_eq!(f.mac(mac(9)).unwrap().location, Location::Remote(p(5)));
    assert!(f.flow(&key(1, 1, 2)).is_some(), "the unrelated flow survives");
    assert_eq!(f.counters().mac_moves, 1);

    // The next packet to 9 tunnels towards 5 (next hop 3).
    let ops = f.handle_miss(3, &local_key(1, mac(1), mac(9)), 98);
    assert!(installed(&ops).contains("tun_id=0x1005,src=10.0.0.1,dst=10.0.0.3"));
}

#[test]
fn a_mac_moving_between_local_ports_deletes_its_flows() {
    let mut f = fixture();
    learn_local(&mut f, 0, 2, mac(2));
    f.handle_miss(0, &local_key(1, mac(1), mac(2)), 98);
    f.handle_miss(0, &local_key(2, mac(2), mac(1)), 98);
    f.handle_miss(0, &local_key(3, mac(3), mac(1)), 98);
    assert_eq!(f.flows().count(), 3);
    let ops = f.handle_miss(1, &local_key(3, mac(2), mac(1)), 98);
    assert_eq!(split(&ops).deletes.len(), 2);
    assert!(f.flow(&key(3, 3, 1)).is_some());
}

#[test]
fn macs_age_out_and_take_their_flows() {
    let cfg = Config { mac_timeout_ms: 1_000, flow_idle_ms: 60_000, ..Config::default() };
    let mut f = Forwarder::new(local(), cfg);
    for port in 1..=3 {
        f.handle_port_added(0, port);
    }
    learn_local(&mut f, 0, 2, mac(2));
    f.handle_miss(500, &local_key(1, mac(1), mac(2)), 98);
    learn_local(&mut f, 700, 3, mac(3));
    f.handle_miss(700, &local_key(3, mac(3), mac(3 + 1)), 98); // flood: no flow
    assert_eq!(f.poll_timeout(), Some(1_000));
    f.handle_timeout(999);
    assert!(drain(&mut f).is_empty());
    // mac(2) expires at 1000: the flow to it goes.
    let before = f.epoch();
    f.handle_timeout(1_000);
    assert_eq!(split(&drain(&mut f)).deletes.len(), 1);
    assert!(f.epoch() > before);
    assert!(f.mac(mac(2)).is_none());
    assert_eq!(f.poll_timeout(), Some(1_500));
    f.handle_timeout(1_700);
    assert_eq!(f.macs().count(), 0);
    assert_eq!(f.poll_timeout(), None);
}

#[test]
fn flow_stats_keep_the_source_mac_and_the_flow_alive() {
    let cfg = Config { mac_timeout_ms: 1_000, flow_idle_ms: 800, ..Config::default() };
    let mut f = Forwarder::new(local(), cfg);
    for port in 1..=3 {
        f.handle_port_added(0, port);
    }
    learn_local(&mut f, 0, 2, mac(2));
    learn_local(&mut f, 0, 1, mac(1));
    f.handle_miss(0, &local_key(1, mac(1), mac(2)), 98);
    f.handle_miss(0, &local_key(2, mac(2), mac(1)), 98);
    // The kernel reports both flows in use at 900 (its key, with extras).
    for (i, o) in [(1, 2), (2, 1)] {
        let mut dumped = vec![KeyAttr::RecircId(0), KeyAttr::DpHash(0), KeyAttr::Priority(0)];
        dumped.extend(key(i, i as u8, o).key());
        assert!(f.handle_flow_stats(950, &dumped, Some(900)));
    }
    assert_eq!(f.mac(mac(1)).unwrap().seen, 900);
    assert_eq!(f.poll_timeout(), Some(1_700));
    f.handle_timeout(1_600);
    assert!(drain(&mut f).is_empty());
    assert_eq!(f.flows().count(), 2);
    // A `used` time from the future is clamped to now.
    assert!(f.handle_flow_stats(1_600, &key(1, 1, 2).key(), Some(99_999)));
    assert_eq!(f.flow(&key(1, 1, 2)).unwrap().used, 1_600);
}

#[test]
fn stats_for_flows_that_are_not_ours_say_so() {
    let mut f = fixture();
    assert!(!f.handle_flow_stats(0, &key(1, 1, 2).key(), Some(0)));
    assert!(!f.handle_flow_stats(0, &[KeyAttr::InPort(1)], None));
}

#[test]
fn idle_flows_are_deleted_and_rebuilt_by_the_next_miss() {
    let mut f = fixture();
    learn_local(&mut f, 0, 2, mac(2));
    f.handle_miss(0, &local_key(1, mac(1), mac(2)), 98);
    f.handle_miss(4_000, &local_key(3, mac(3), mac(2)), 98);
    assert_eq!(f.poll_timeout(), Some(10_000));
    // Reported unused: still idle.
    assert!(f.handle_flow_stats(5_000, &key(1, 1, 2).key(), None));
    f.handle_timeout(10_000);
    let o = split(&drain(&mut f));
    assert_eq!(o.deletes, vec![key(1, 1, 2).key()]);
    assert_eq!(f.flows().count(), 1);
    let again = f.handle_miss(10_001, &local_key(1, mac(1), mac(2)), 98);
    assert_eq!(split(&again).installs.len(), 1);
}

#[test]
fn a_removed_port_forgets_its_macs() {
    let mut f = fixture();
    learn_local(&mut f, 0, 2, mac(2));
    f.handle_port_removed(1, 2);
    assert!(f.mac(mac(2)).is_none());
    // The port is unknown now.
    assert_eq!(dropped(&f.handle_miss(2, &local_key(2, mac(2), mac(1)), 60)).kind(), "unknown_in_port");
}
