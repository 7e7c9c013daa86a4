//! Connections between peers: TCP 6783, one per pair of peers, carrying the
//! mesh core's messages as opaque bytes.
//!
//! Layers, bottom up (everything but [`driver`] is pure, with no I/O):
//! - [`frame`]: u32 big-endian length prefix, bounded ([`frame::DEFAULT_MAX_FRAME_LEN`]).
//! - [`wire`]: the protobuf messages of `proto/conn.proto`.
//! - [`crypto`]: Noise `XXpsk3` with a password-derived PSK, sealing of
//!   control messages, and the exported [`SessionKeys`].
//! - [`handshake`]: magic, Hello (versions, password or not), the Noise
//!   handshake when encrypted, Features (identity, connection ID, trust,
//!   overlays). See its docs for the steps.
//! - [`session`]: an established connection: messages, heartbeats, the read
//!   deadline.
//! - [`trust`], [`limit`]: trusted subnets; the accept loop's limits.
//! - [`driver`]: tokio. [`establish`] runs the handshake on a `TcpStream`,
//!   [`spawn`] runs the connection as a task talking to its owner over
//!   bounded channels.
//!
//! Decided here: refusing a connection to ourselves (never retried, see
//! [`ConnError::is_permanent`]) or to a peer using our name. Decided above,
//! in the mesh core: duplicate connections (tie-break on
//! [`ConnInfo::conn_uid`], equal at both ends) and third-party name
//! collisions.

pub mod config;
pub mod crypto;
pub mod driver;
pub mod error;
pub mod frame;
pub mod handshake;
pub mod limit;
pub mod session;
pub mod trust;
pub mod wire;

#[cfg(test)]
mod tests;

pub use config::{ConnConfig, VersionRange, PROTOCOL_VERSIONS};
pub use crypto::{Psk, SessionKeys};
pub use driver::{establish, spawn, Closer, ConnEvent, ConnHandle, Established};
pub use error::{CloseReason, ConnError, HandshakeError, SessionError, TooLarge};
pub use frame::{FrameDecoder, FrameError};
pub use handshake::{ConnInfo, ConnParams, Handshake};
pub use limit::{AcceptLimiter, LimitConfig, Refusal};
pub use session::{Payload, Session};
pub use trust::{Cidr, TrustedSubnets};
