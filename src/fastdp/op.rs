//! What the forwarder asks the datapath driver to do, and why.

use std::fmt;
use std::net::Ipv4Addr;

use thiserror::Error;

use super::megaflow::KeyError;
use crate::mesh::peer::{PeerName, ShortId};
use crate::odp::action::Action;
use crate::odp::flow::Flow;
use crate::odp::key::{KeyAttr, Mac};

/// The generation of the forwarder's view of the world. It increases every
/// time something changes that can make an earlier decision wrong: routes,
/// peers, ports, a MAC that moved or expired.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct Epoch(pub u64);

impl fmt::Display for Epoch {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "epoch {}", self.0)
    }
}

/// Where a MAC address lives.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum Location {
    /// Behind this local datapath port.
    Local(u32),
    /// At this remote peer (the source of the VNI it arrived with).
    Remote(PeerName),
}

/// One thing an installed flow's match or actions were derived from. When it
/// changes, exactly the flows that list it are deleted.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum Dep {
    /// A peer's short ID or underlay address (as destination, next hop,
    /// broadcast child or VNI source). Our own name stands for our identity.
    Peer(PeerName),
    /// The next hop towards this destination peer.
    Route(PeerName),
    /// Our children in this origin's broadcast tree.
    Tree(PeerName),
    /// Where this MAC lives (as the flow's source or destination).
    Mac(Mac),
    /// This local port (as the flow's in_port or output).
    Port(u32),
    /// The set of local ports (for flows that output to all of them).
    LocalPorts,
}

/// Why a missed packet was dropped instead of forwarded. No flow is
/// installed for a dropped packet.
#[derive(Clone, Debug, PartialEq, Eq, Error)]
#[non_exhaustive]
pub enum DropReason {
    /// The upcall key lacks what forwarding needs.
    #[error("unusable upcall key: {0}")]
    BadKey(#[from] KeyError),
    /// The packet came in on a port that is neither local nor the VXLAN vport.
    #[error("packet from unknown port {0}")]
    UnknownInPort(u32),
    /// A multicast source MAC: not a valid frame, and never learned.
    #[error("multicast source MAC {0}")]
    MulticastSource(Mac),
    /// The destination is behind the port the packet came from.
    #[error("hairpin: destination is behind in_port {0}")]
    Hairpin(u32),
    /// No route to the destination peer.
    #[error("no route to peer {0}")]
    NoRoute(PeerName),
    /// A peer the routes or the MAC table name, but whose short ID and
    /// underlay address we have not been told.
    #[error("no short ID or address known for peer {0}")]
    UnknownPeer(PeerName),
    /// The destination's short ID is ours, or shared with another peer,
    /// while the mesh resolves the collision: its VNI would be ambiguous.
    #[error("short ID of peer {0} collides")]
    ShortIdClash(PeerName),
    /// A tunnelled packet whose VNI names us as its source: a loop.
    #[error("tunnelled packet claims to come from us")]
    FromSelf,
    /// The VNI's source short ID matches no single known peer.
    #[error("no single peer has source short ID {}", .0.get())]
    UnknownSource(ShortId),
    /// The VNI's destination short ID matches no single known peer.
    #[error("no single peer has destination short ID {}", .0.get())]
    UnknownDestination(ShortId),
    /// Forwarding would send the packet back to the underlay address it came
    /// from, or to our own.
    #[error("loop: would tunnel back to {0}")]
    Loop(Ipv4Addr),
    /// A frame from the sleeve shorter than an Ethernet header.
    #[error("frame from the sleeve too short for an Ethernet header")]
    SleeveRunt,
}

impl DropReason {
    /// A short, stable name for counting drops by reason.
    pub fn kind(&self) -> &'static str {
        match self {
            DropReason::BadKey(_) => "bad_key",
            DropReason::UnknownInPort(_) => "unknown_in_port",
            DropReason::MulticastSource(_) => "multicast_source",
            DropReason::Hairpin(_) => "hairpin",
            DropReason::NoRoute(_) => "no_route",
            DropReason::UnknownPeer(_) => "unknown_peer",
            DropReason::ShortIdClash(_) => "short_id_clash",
            DropReason::FromSelf => "from_self",
            DropReason::UnknownSource(_) => "unknown_source",
            DropReason::UnknownDestination(_) => "unknown_destination",
            DropReason::Loop(_) => "loop",
            DropReason::SleeveRunt => "sleeve_runt",
        }
    }
}

/// One operation for the datapath driver.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum FlowOp {
    /// Install this megaflow (key, mask and actions set; the driver fills in
    /// `dp_ifindex`). Create-or-replace: an identical key may already be
    /// installed (a packet queued before the first install missed too), so
    /// `EEXIST` is success.
    Install {
        /// The flow.
        flow: Flow,
        /// What it was derived from, for status and debugging.
        deps: Vec<Dep>,
    },
    /// Execute the missed packet with these actions (an empty list drops it).
    Execute {
        /// The actions.
        actions: Vec<Action>,
    },
    /// Delete the flow installed with exactly this key (`ENOENT` is success:
    /// it may have gone already).
    Delete {
        /// The key it was installed with.
        key: Vec<KeyAttr>,
    },
    /// The missed packet is dropped; nothing is installed.
    Drop(DropReason),
}

/// A [`FlowOp`] with the epoch it was computed under.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct StampedOp {
    /// The forwarder's epoch when the op was computed.
    pub epoch: Epoch,
    /// The op.
    pub op: FlowOp,
}

impl StampedOp {
    /// Whether the driver must skip this op because the world changed since
    /// it was computed (`current` is [`Forwarder::epoch`](super::Forwarder::epoch)).
    ///
    /// Only installs and executes go stale. A delete never does: it only ever
    /// removes a flow the forwarder has already forgotten, and skipping it
    /// could leave a wrong flow in the kernel. Drops are advisory.
    pub fn is_stale(&self, current: Epoch) -> bool {
        matches!(self.op, FlowOp::Install { .. } | FlowOp::Execute { .. }) && self.epoch < current
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn at(epoch: u64, op: FlowOp) -> StampedOp {
        StampedOp { epoch: Epoch(epoch), op }
    }

    #[test]
    fn installs_and_executes_go_stale_deletes_never() {
        let install = FlowOp::Install { flow: Flow::default(), deps: vec![] };
        let execute = FlowOp::Execute { actions: vec![Action::Output(1)] };
        let delete = FlowOp::Delete { key: vec![KeyAttr::InPort(1)] };
        for op in [install, execute] {
            assert!(!at(5, op.clone()).is_stale(Epoch(5)));
            assert!(at(4, op.clone()).is_stale(Epoch(5)));
            // An op from the future (computed after the driver read the
            // epoch) is not stale.
            assert!(!at(6, op).is_stale(Epoch(5)));
        }
        assert!(!at(0, delete).is_stale(Epoch(9)));
        assert!(!at(0, FlowOp::Drop(DropReason::FromSelf)).is_stale(Epoch(9)));
    }

    #[test]
    fn drop_reasons_have_stable_kinds() {
        assert_eq!(DropReason::Hairpin(3).kind(), "hairpin");
        assert_eq!(DropReason::Hairpin(3).to_string(), "hairpin: destination is behind in_port 3");
        assert_eq!(
            DropReason::UnknownSource(ShortId::from_bits(9)).to_string(),
            "no single peer has source short ID 9"
        );
        assert_eq!(DropReason::from(KeyError::MissingInPort).kind(), "bad_key");
    }
}
