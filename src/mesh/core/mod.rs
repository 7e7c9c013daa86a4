//! The sans-I/O core of the mesh control plane: topology CRDT, gossip,
//! routes and the router state machine. No sockets, no clock, no tokio:
//! the daemon feeds inputs with `now` in milliseconds and pulls outputs.
//!
//! Layers, bottom up (each uses only those above it in this list):
//! - `hash` (private): stable 64-bit hashes for fingerprints;
//! - [`topology`]: per-peer entries and the merge rule (a CRDT);
//! - `graph` (private): a dense snapshot of the topology for searches;
//! - [`routes`]: unicast next hops and the broadcast tree, and their diffs;
//! - [`wire`]: `proto/mesh.proto` (package `weaver.mesh.v1`) ⇄ core types;
//! - [`gossip`]: the channel API trait, anti-entropy, deduplication;
//! - [`Router`]: the state machine the daemon drives (`router`, with the
//!   message handlers in `dispatch`, timers and route upkeep in `upkeep`,
//!   the channel API in `channels` and status in `status`);
//! - [`sim`]: a deterministic simulation of many routers on a virtual clock,
//!   for tests and the benchmark.
//!
//! # Driving a router
//! ```text
//! let mut r = Router::new(identity, MeshConfig::default(), seed, now);
//! match r.handle_connection_up(now, conn, NewConnection { .. }) { .. }   // obey the verdict
//! r.handle_message(now, conn, &bytes)?;                                   // on each frame
//! r.handle_connection_down(now, conn);
//! r.handle_timeout(now);                                                  // when poll_timeout() is due
//! while let Some((conn, bytes)) = r.poll_transmit() { /* send */ }
//! while let Some(ev) = r.poll_event() { /* PeerAdded, RouteChange, ShortIdChanged, ... */ }
//! ```
//!
//! # Scale
//! Weave's topology gossip shipped whole topologies, O(N) per message and
//! O(N²) across the mesh. Here:
//! - a topology change costs each peer about one copy of the changed entry
//!   (deltas along one shared broadcast tree): O(1) per peer;
//! - a quiet gossip period costs a fixed 0.5 KB summary per gossip target
//!   (a logarithmic number of neighbours): O(1) per peer;
//! - a newcomer, or a cold start, moves each entry to each peer about twice:
//!   O(N) per peer, the size of the topology itself;
//! - route computation is two breadth-first searches, O(N + E), coalesced.
//!
//! `cargo bench --bench mesh` measures this on the simulator for 100, 1,000
//! and 4,000 peers and prints how each figure grows with N.

mod channels;
mod dispatch;
pub mod gossip;
mod graph;
mod hash;
mod router;
pub mod routes;
pub mod sim;
mod status;
pub mod topology;
mod types;
mod upkeep;
pub mod wire;

pub use error::{ChannelError, MeshError};
pub use gossip::GossipState;
pub use router::Router;
pub use routes::{HopChange, NextHop, RouteChange, Routes};
pub use status::{Counters, LinkCounters, LinkStatus, MeshStatus, PeerStatus};
pub use topology::{ConnectionInfo, PeerEntry, Topology};
pub use types::{ConnId, ConnVerdict, Delivery, MeshConfig, MeshEvent, NewConnection, RefuseReason};

mod error;

#[cfg(test)]
mod sim_tests;
#[cfg(test)]
mod tests;
