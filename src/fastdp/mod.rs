//! The sans-I/O forwarding core of the fast datapath: upcall keys, topology
//! and flow statistics in; flow operations out. No clock, no sockets: every
//! input carries `now` (milliseconds of the caller's monotonic clock; use
//! `CLOCK_MONOTONIC` and the kernel's flow `used` times can be passed as-is).
//!
//! Layers, bottom up (each uses only those above it in this list):
//! - [`vni`]: the 24-bit VNI, source and destination short IDs;
//! - [`input`]: our identity, peers, routes and tunables, as plain values;
//! - [`megaflow`]: upcall keys in, canonical megaflow keys, masks and
//!   `set(tunnel(...))` actions out;
//! - [`op`]: [`FlowOp`], [`Epoch`], [`Dep`], [`DropReason`];
//! - `mac` and `cache` (private): the MAC table and the flow cache;
//! - `decide` (private): the pure decision for one missed packet;
//! - [`Forwarder`]: the state machine that ties them together.
//!
//! # Driving it
//! ```text
//! let mut fwd = Forwarder::new(LocalPeer { name, short_id, underlay, vxlan_port }, Config::default());
//! fwd.handle_port_added(now, port);                 // each container vport
//! fwd.handle_peer(now, PeerInfo { .. });            // each peer the mesh knows
//! fwd.handle_routes(now, route_table);              // on every mesh RouteChange
//! for op in fwd.handle_miss(now, &upcall.key, upcall.packet.len()) {
//!     if fwd.is_current(&op) { /* Install → flow NEW, Execute → packet EXECUTE, Drop → count */ }
//! }
//! fwd.handle_flow_stats(now, &flow.key, flow.used); // from periodic dumps
//! fwd.handle_timeout(now);                          // when poll_timeout() is due
//! while let Some(op) = fwd.poll_op() { /* deletes */ }
//! ```
//!
//! # VNI encoding
//! `VNI = source short ID << 12 | destination short ID` (12 bits each, as
//! Weave did). A broadcast (or a flood of an unknown unicast destination)
//! carries `VNI(origin, origin)`: a unicast frame is never tunnelled to its
//! own sender, so equal halves are free, and no short ID is reserved. Relays
//! keep the VNI, so each hop knows the origin and forwards to its children
//! in the origin's broadcast tree.
//!
//! # Decisions
//! | packet | actions | flow installed |
//! |---|---|---|
//! | local → local MAC | `output(port)` | yes |
//! | local → MAC at peer P | `set(tunnel(VNI(us,P), us → next hop(P)))`, `output(vxlan)` | yes |
//! | local → multicast dst | every local port but in_port; a tunnel per child in our tree, `VNI(us,us)` | yes |
//! | local → unknown MAC | as multicast | no (flood) |
//! | tunnel `VNI(S,us)` → local MAC | `output(port)` | yes |
//! | tunnel `VNI(S,us)` → multicast | every local port | yes |
//! | tunnel `VNI(S,us)` → MAC not here | every local port | no |
//! | tunnel `VNI(S,D)`, D not us | relay: same VNI, us → next hop(D) | yes |
//! | tunnel `VNI(S,S)`, multicast dst | every local port; a tunnel per child in S's tree | yes |
//! | tunnel `VNI(S,S)`, unicast dst | as above (a flood passing through) | no |
//!
//! Tunnels carry `ttl` ([`Config::tunnel_ttl`], 64) and don't-fragment. A
//! VLAN-tagged frame gets the same actions, executed without a flow: the
//! kernel matches VLAN TCIs exactly, and these megaflows match untagged
//! frames only. See [`megaflow`] for the key and mask and the kernel facts
//! they rely on.
//!
//! # Invariants (property-tested in `tests`)
//! - No flow outputs a packet from a local port back to that port (hairpin
//!   is refused), and no flow tunnels a packet to the underlay address it
//!   came from, or to our own (loops are refused).
//! - Cache coherence: every cached flow is what a miss would decide now,
//!   given the current routes, peers, ports and MAC table. Its source MAC is
//!   learned at its ingress (the in_port, or the VNI's source peer).
//! - Invalidation is selective: a change deletes exactly the cached flows
//!   that list the changed [`Dep`], and every other flow survives.
//!   - Routes: [`Dep::Route`] for destinations whose next hop changed, and
//!     [`Dep::Tree`] for origins whose broadcast children changed.
//!   - Peers: [`Dep::Peer`] (short ID or address changed, peer removed).
//!   - Ports: [`Dep::Port`] and [`Dep::LocalPorts`].
//!   - MACs: [`Dep::Mac`], when one moves, expires or loses its port or peer.
//! - The kernel's flow table, fed every op in order, equals the cache.
//! - Every op carries the [`Epoch`] it was computed under. The epoch grows
//!   whenever something changes that can make an earlier decision wrong, and
//!   the driver skips installs and executes older than the current epoch
//!   ([`StampedOp::is_stale`]). A miss on a flow cached under an older epoch
//!   issues its install again, so a skipped install heals on the next miss.
//!
//! # MAC ageing
//! Installed flows hide traffic from userspace, so a MAC is "seen" both on
//! a miss and whenever a dump reports a flow keyed on it as source in use
//! ([`Forwarder::handle_flow_stats`]). A MAC that expires takes its flows
//! with it (each flow depends on its source and destination MAC), so the
//! next packet misses and is learned again. Without stats, flows live
//! [`Config::flow_idle_ms`] and are then rebuilt by one miss each.
//!
//! # What the driver owes
//! - Apply ops in the order they come, skipping stale ones; treat `EEXIST`
//!   on install and `ENOENT` on delete as success.
//! - Start from an empty flow table (flush at start): the cache starts empty
//!   and [`Forwarder::handle_flow_stats`] says `false` for flows it never
//!   installed, leaving their fate to the driver.
//! - Relays output to the VXLAN vport they came in on; the datapath allows
//!   output to the in_port, and the new `set(tunnel)` gives the next hop.
//!
//! # Not handled here
//! VLAN-tagged frames get no flow; the underlay is IPv4 only and not NATed
//! (the previous hop is recognised by its tunnel source address); the MAC
//! table and flow cache have no size cap.

mod cache;
mod decide;
mod forwarder;
pub mod health;
pub mod heartbeat;
pub mod input;
pub(crate) mod mac;
pub mod megaflow;
pub mod op;
pub mod sleeve_out;
pub mod vni;

#[cfg(test)]
mod tests;

pub use cache::FlowEntry;
pub use forwarder::{Counters, Forwarder};
pub use input::{Config, LocalPeer, PeerInfo, RouteTable};
pub use mac::MacEntry;
pub use megaflow::{KeyError, MatchKey, TunnelMatch, Upcall};
pub use op::{Dep, DropReason, Epoch, FlowOp, Location, StampedOp};
pub use vni::Vni;

/// Bytes VXLAN adds to an overlay frame on an IPv4 underlay: outer IPv4 (20),
/// UDP (8), VXLAN (8) and the inner Ethernet header (14). An overlay MTU of
/// `M` needs an underlay MTU of `M + 50`.
pub const VXLAN_OVERHEAD: u32 = 50;
