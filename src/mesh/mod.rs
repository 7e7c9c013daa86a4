//! The mesh control plane: peers, connections, gossip, topology and routes.
//!
//! - [`peer`]: identities (names, UIDs, short IDs).
//! - `core` (sans-I/O): topology CRDT, gossip channels, routes, the router
//!   state machine driven by `handle_*(now, …)` / `poll_*()`.
//! - `conn` (sans-I/O + driver): handshake, framing, encryption, heartbeats.
//! - `maker`: which addresses to connect to, and when (backoff).

pub mod conn;
pub mod core;
pub mod maker;
pub mod peer;
