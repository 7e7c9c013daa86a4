//! Epochs: ops computed before a change are skipped by the driver, and a
//! skipped install heals on the next miss.

use super::harness::*;
use crate::fastdp::{FlowOp, PeerInfo};

#[test]
fn every_op_carries_the_epoch_it_was_computed_under() {
    let mut f = fixture();
    learn_local(&mut f, 0, 2, mac(2));
    let e = f.epoch();
    let ops = f.handle_miss(1, &local_key(1, mac(1), mac(2)), 98);
    assert!(ops.iter().all(|op| op.epoch == e && f.is_current(op)));
    // A route change that touches nothing cached still moves the epoch.
    f.handle_routes(2, routes().with_next_hop(p(5), p(2)));
    assert!(f.epoch() > e);
    assert!(ops.iter().all(|op| !f.is_current(op)), "the driver skips the install and the execute");
    // Deletes are never skipped, however old.
    f.handle_port_removed(3, 1);
    let deletes = drain(&mut f);
    assert!(!deletes.is_empty());
    f.handle_port_added(4, 1);
    assert!(deletes.iter().all(|op| matches!(op.op, FlowOp::Delete { .. }) && f.is_current(op)));
}

#[test]
fn a_skipped_install_is_issued_again_on_the_next_miss() {
    let mut f = fixture();
    learn_local(&mut f, 0, 2, mac(2));
    let first = f.handle_miss(1, &local_key(1, mac(1), mac(2)), 98);
    // Before the driver got to it, an unrelated peer changed address.
    f.handle_peer(2, PeerInfo { underlay: ip(50), ..info(5) });
    assert!(!f.is_current(&first[0]));
    // The flow is still valid, so it stays cached, but the kernel lacks it:
    // the next packet misses, and the install is issued again, current.
    let again = f.handle_miss(3, &local_key(1, mac(1), mac(2)), 98);
    let o = split(&again);
    assert_eq!(o.installs.len(), 1);
    assert!(again.iter().all(|op| f.is_current(op)));
    // A third miss under the same epoch only executes.
    assert!(split(&f.handle_miss(4, &local_key(1, mac(1), mac(2)), 98)).installs.is_empty());
}

#[test]
fn learning_a_new_mac_keeps_the_epoch() {
    let mut f = fixture();
    let e = f.epoch();
    learn_local(&mut f, 0, 2, mac(2));
    learn_remote(&mut f, 0, 4, 2, mac(4));
    f.handle_miss(1, &local_key(2, mac(2), mac(4)), 98);
    f.handle_timeout(5);
    assert_eq!(f.epoch(), e);
}

#[test]
fn a_mac_move_stamps_the_new_install_with_the_new_epoch() {
    let mut f = fixture();
    learn_local(&mut f, 0, 2, mac(2));
    learn_local(&mut f, 0, 1, mac(1));
    let e = f.epoch();
    // mac(1) moves to port 3 and talks to mac(2).
    let ops = f.handle_miss(1, &local_key(3, mac(1), mac(2)), 98);
    assert!(f.epoch() > e);
    assert!(ops.iter().all(|op| f.is_current(op)));
}
