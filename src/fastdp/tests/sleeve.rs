//! Next hops reached over the sleeve: userspace actions instead of tunnels,
//! flows rebuilt when a hop moves between VXLAN and the sleeve, and frames
//! that arrive over the sleeve decided as if tunnelled.

use std::collections::BTreeSet;

use super::harness::*;
use crate::fastdp::sleeve_out::SleeveOut;
use crate::fastdp::{DropReason, Location};
use crate::odp::action::Action;

/// The upcall port the sleeve's frames go up to.
const PID: u32 = 77;

fn sleeve_action(origin: u8, dst: u8, hop: u8) -> Action {
    Action::Userspace(crate::odp::action::UserspaceAction {
        pid: PID,
        userdata: Some(SleeveOut { origin: p(origin), dst: p(dst), next_hop: p(hop) }.userdata()),
        ..Default::default()
    })
}

fn frame(dst: crate::odp::key::Mac, src: crate::odp::key::Mac) -> Vec<u8> {
    let mut f = dst.0.to_vec();
    f.extend_from_slice(&src.0);
    f.extend_from_slice(&[0x08, 0x00, 0x45, 0, 0, 20]);
    f
}

#[test]
fn a_sleeve_hop_gets_a_userspace_action_naming_the_frames_peers() {
    let mut f = fixture();
    f.handle_sleeve_hops(0, PID, BTreeSet::from([p(2)]));
    learn_remote(&mut f, 0, 4, 2, mac(4));
    let ops = f.handle_miss(1, &local_key(3, mac(3), mac(4)), 98);
    let o = split(&ops);
    // mac(4) is at peer 4, behind 2, which the sleeve reaches.
    assert_eq!(o.installs.len(), 1);
    assert_eq!(o.executes, vec![vec![sleeve_action(1, 4, 2)]]);
    // Peer 5 is behind 3, still on VXLAN: a tunnel.
    learn_remote(&mut f, 2, 5, 3, mac(5));
    let ops = f.handle_miss(3, &local_key(3, mac(3), mac(5)), 98);
    assert!(
        matches!(split(&ops).executes[0][..], [Action::Set(crate::odp::key::KeyAttr::Tunnel(_)), Action::Output(VX)]),
        "{ops:?}"
    );
}

#[test]
fn broadcasts_tunnel_to_vxlan_children_and_hand_sleeve_children_up() {
    let mut f = fixture();
    f.handle_sleeve_hops(0, PID, BTreeSet::from([p(3)]));
    let ops = f.handle_miss(1, &local_key(1, mac(1), crate::odp::key::Mac([0xff; 6])), 60);
    let acts = &split(&ops).executes[0];
    assert!(acts.contains(&Action::Output(2)) && acts.contains(&Action::Output(3)));
    assert!(acts.contains(&sleeve_action(1, 1, 3)), "{acts:?}");
    assert_eq!(
        acts.iter().filter(|a| matches!(a, Action::Set(crate::odp::key::KeyAttr::Tunnel(_)))).count(),
        1,
        "one tunnel, to 2: {acts:?}"
    );
}

#[test]
fn moving_a_hop_to_the_sleeve_and_back_deletes_the_flows_through_it() {
    let mut f = fixture();
    learn_remote(&mut f, 0, 4, 2, mac(4));
    learn_remote(&mut f, 0, 5, 3, mac(5));
    f.handle_miss(1, &local_key(3, mac(3), mac(4)), 98);
    f.handle_miss(1, &local_key(3, mac(3), mac(5)), 98);
    drain(&mut f);
    f.handle_sleeve_hops(2, PID, BTreeSet::from([p(2)]));
    let gone = split(&drain(&mut f));
    assert_eq!(gone.deletes.len(), 1, "only the flow through 2: {gone:?}");
    // The same set again changes nothing.
    f.handle_sleeve_hops(3, PID, BTreeSet::from([p(2)]));
    assert!(drain(&mut f).is_empty());
    // The flow is rebuilt with the sleeve, and deleted again when 2 returns to VXLAN.
    f.handle_miss(4, &local_key(3, mac(3), mac(4)), 98);
    f.handle_sleeve_hops(5, PID, BTreeSet::new());
    assert_eq!(split(&drain(&mut f)).deletes.len(), 1);
}

#[test]
fn frames_from_the_sleeve_are_delivered_learned_and_relayed() {
    let mut f = fixture();
    learn_local(&mut f, 0, 2, mac(2));
    // From peer 4 (via 2) to us: out of the local port, learned at 4.
    let ops = f.handle_sleeve_frame(1, p(2), p(4), p(1), &frame(mac(2), mac(4)));
    let o = split(&ops);
    assert!(o.installs.is_empty(), "a sleeve frame is executed, never installed");
    assert_eq!(o.executes, vec![vec![Action::Output(2)]]);
    assert_eq!(f.mac(mac(4)).map(|e| e.location), Some(Location::Remote(p(4))));
    // A broadcast from 4 arriving from 2: every local port, and 4's tree child here (3).
    let ops = f.handle_sleeve_frame(2, p(2), p(4), p(4), &frame(crate::odp::key::Mac([0xff; 6]), mac(4)));
    let acts = &split(&ops).executes[0];
    assert!((1..=3).all(|port| acts.contains(&Action::Output(port))), "{acts:?}");
    assert_eq!(acts.iter().filter(|a| matches!(a, Action::Set(crate::odp::key::KeyAttr::Tunnel(_)))).count(), 1);
    // For peer 5 (behind 3): relayed over VXLAN with VNI(4, 5).
    let ops = f.handle_sleeve_frame(3, p(2), p(4), p(5), &frame(mac(5), mac(4)));
    assert!(
        matches!(split(&ops).executes[0][..], [Action::Set(crate::odp::key::KeyAttr::Tunnel(_)), Action::Output(VX)]),
        "{ops:?}"
    );
    // Refusals: too short, from us, unknown peers.
    assert_eq!(split(&f.handle_sleeve_frame(4, p(2), p(4), p(1), &[1, 2, 3])).drops, vec![DropReason::SleeveRunt]);
    assert_eq!(
        split(&f.handle_sleeve_frame(4, p(2), p(1), p(4), &frame(mac(4), mac(9)))).drops,
        vec![DropReason::FromSelf]
    );
    assert_eq!(
        split(&f.handle_sleeve_frame(4, p(2), p(9), p(1), &frame(mac(2), mac(9)))).drops,
        vec![DropReason::UnknownPeer(p(9))]
    );
}
