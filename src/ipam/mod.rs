//! IPAM without a central store: the mesh agrees on who owns which part of
//! the address range, and each peer allocates from what it owns.
//!
//! Layers, bottom up:
//! - [`space`]: address arithmetic (ranges, free runs);
//! - [`ring`]: the ring of ranges and owners, a state-based CRDT;
//! - [`paxos`]: seeding the ring by consensus among the expected peers;
//! - [`wire`]: `proto/ipam.proto` ⇄ those types;
//! - [`Ipam`]: one peer's allocator, a sans-I/O state machine that is also
//!   the gossip state of the mesh channel [`CHANNEL`] (so the mesh router
//!   gossips its ring and claims), with unicast requests for space between
//!   allocators.
//!
//! Nothing here reads a clock or opens a socket: the daemon passes `now`
//! (ms), feeds `handle_*` and drains `poll_*`.

pub mod allocator;
pub mod paxos;
pub mod ring;
pub mod space;
pub mod status;
pub mod wire;

#[cfg(test)]
mod sim_tests;

pub use allocator::{Init, Ipam, IpamConfig, IpamEvent, Saved};
pub use space::Range;
pub use status::IpamStatus;

use crate::mesh::peer::PeerName;

/// The mesh gossip channel IPAM uses.
pub const CHANNEL: &str = "ipam";

/// IPAM's errors.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum IpamError {
    /// The ring was seeded already.
    #[error("the IPAM ring is seeded already")]
    AlreadySeeded,
    /// Seeding with nobody.
    #[error("cannot seed the IPAM ring with no peers")]
    NoSeeds,
    /// More seeds than addresses.
    #[error("{seeds} seed peers for a range of {size} addresses")]
    TooManySeeds {
        /// Seeds given.
        seeds: usize,
        /// Addresses in the range.
        size: u64,
    },
    /// A range we do not own whole.
    #[error("range {0} is not owned here")]
    NotOwned(Range),
    /// Bytes from the wire that are not an IPAM message.
    #[error("{0}")]
    Wire(&'static str),
    /// An address or subnet outside the range.
    #[error("{what} is outside the IPAM range {range}")]
    OutsideRange {
        /// What was asked for.
        what: String,
        /// The range.
        range: String,
    },
    /// The address is allocated to another container.
    #[error("address {addr} is already allocated to {holder}")]
    Taken {
        /// The address.
        addr: String,
        /// Its container.
        holder: String,
    },
    /// An `rmpeer` that cannot be done.
    #[error("cannot remove peer {peer}: {why}")]
    RmPeer {
        /// The peer.
        peer: PeerName,
        /// Why.
        why: &'static str,
    },
    /// Saved state that does not fit this configuration.
    #[error("saved IPAM state does not fit: {0}")]
    Saved(String),
}
