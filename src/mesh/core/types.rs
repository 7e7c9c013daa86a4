//! Plain values in and out of the router: configuration, connection
//! verdicts and events.

use std::fmt;

use serde::{Deserialize, Serialize};

use super::routes::RouteChange;
use crate::mesh::peer::{Identity, PeerName, PeerUid, ShortId};

/// The driver's handle for one connection. The driver chooses it; it must be
/// unique among the connections the router knows.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
pub struct ConnId(pub u64);

/// Timing and size settings. All times are in milliseconds.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct MeshConfig {
    /// Period of anti-entropy gossip (topology summaries and channel
    /// digests) to a logarithmic random subset of neighbours.
    pub gossip_interval_ms: u64,
    /// Minimum time between two flushes of pending updates: changes within
    /// it are coalesced into one message per connection.
    pub update_delay_ms: u64,
    /// Minimum time between two route computations: topology changes within
    /// it are coalesced into one [`RouteChange`].
    pub route_delay_ms: u64,
    /// When our broadcast tree neighbours change, updates sent along the old
    /// tree may have missed a new neighbour: once the tree has been stable
    /// this long, we send each tree neighbour a topology summary, which
    /// repairs any difference at once.
    pub repair_delay_ms: u64,
    /// How long a peer stays unreachable and unreferenced before its entry
    /// is garbage-collected.
    pub gc_grace_ms: u64,
    /// Whether an accepted connection counts as established at once. If
    /// not, the driver calls `handle_connection_established` when the data
    /// path to the peer works.
    pub establish_on_accept: bool,
    /// Topology updates are split into messages of about this many bytes.
    pub max_update_bytes: usize,
    /// Hop limit of unicast messages.
    pub max_hops: u32,
}

impl Default for MeshConfig {
    fn default() -> Self {
        MeshConfig {
            gossip_interval_ms: 10_000,
            update_delay_ms: 20,
            route_delay_ms: 100,
            repair_delay_ms: 500,
            gc_grace_ms: 5_000,
            establish_on_accept: true,
            max_update_bytes: 256 * 1024,
            max_hops: 64,
        }
    }
}

/// A connection whose handshake completed.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct NewConnection {
    /// What the remote said about itself.
    pub remote: Identity,
    /// The remote end's address, `ip:port`.
    pub address: String,
    /// Whether we initiated it.
    pub outbound: bool,
    /// A value both ends know identically, for example the XOR of the
    /// connection IDs the two sides sent in their handshakes. Duplicate
    /// connections between two peers are resolved by it (the lower value
    /// wins) so that both ends keep the same one.
    pub tie_breaker: u64,
}

/// The router's answer to a new connection.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum ConnVerdict {
    /// Keep it.
    Accept,
    /// Keep it and close this older duplicate (which the router forgot).
    AcceptReplacing(ConnId),
    /// Close it.
    Refuse(RefuseReason),
}

/// Why a connection was refused.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum RefuseReason {
    /// The remote is us (same name and UID). Never retry.
    ConnectToSelf,
    /// Another peer already connected under this name with a different UID
    /// (or the remote has our name): two peers share a name. Never retry.
    NameCollision {
        /// The contested name.
        name: PeerName,
    },
    /// We keep another connection to the same peer, which won the tie-break.
    Duplicate {
        /// The connection kept.
        kept: ConnId,
    },
    /// The driver reused the ID of a live connection.
    ConnIdInUse,
}

impl RefuseReason {
    /// Whether the connection maker should try this address again later.
    pub fn retry(&self) -> bool {
        matches!(self, RefuseReason::ConnIdInUse)
    }
}

impl fmt::Display for RefuseReason {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            RefuseReason::ConnectToSelf => write!(f, "cannot connect to ourself"),
            RefuseReason::NameCollision { name } => {
                write!(f, "peer name collision: another peer is already known as {name}")
            }
            RefuseReason::Duplicate { kept } => write!(f, "duplicate connection (keeping {kept:?})"),
            RefuseReason::ConnIdInUse => write!(f, "connection ID already in use"),
        }
    }
}

/// How a channel message reached us.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub enum Delivery {
    /// Sent to every peer.
    Broadcast,
    /// Sent to us only.
    Unicast,
}

/// What the router tells the daemon.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum MeshEvent {
    /// A peer (or a new incarnation of one) entered the topology.
    PeerAdded {
        /// Its name.
        name: PeerName,
        /// Its UID.
        uid: PeerUid,
        /// Its nickname.
        nickname: String,
    },
    /// A peer's entry left the topology (garbage-collected, or replaced by a
    /// restart, in which case a `PeerAdded` with the new UID follows).
    PeerRemoved {
        /// Its name.
        name: PeerName,
        /// The UID of the incarnation that left.
        uid: PeerUid,
    },
    /// Routes changed (coalesced).
    RouteChange(RouteChange),
    /// Our own short ID changed after a collision: the datapath must use it.
    ShortIdChanged {
        /// The one we had.
        old: ShortId,
        /// The one we have now.
        new: ShortId,
    },
    /// A broadcast or unicast payload on a registered channel.
    ChannelMessage {
        /// The channel.
        channel: String,
        /// The peer that sent it.
        src: PeerName,
        /// How it was sent.
        delivery: Delivery,
        /// The payload.
        payload: Vec<u8>,
    },
    /// A gossip channel's state merged something new from a peer.
    ChannelUpdated {
        /// The channel.
        channel: String,
    },
}
