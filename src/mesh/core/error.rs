//! The mesh core's errors.

use thiserror::Error;

use super::types::ConnId;
use crate::mesh::peer::PeerName;

/// What a gossip channel's state reports when it cannot merge bytes.
#[derive(Debug, Error, Clone, PartialEq, Eq)]
#[error("{0}")]
pub struct ChannelError(pub String);

/// Errors of the mesh core. A message that fails is dropped whole: nothing
/// of it is applied (except for a channel's own merge, which the channel
/// state controls).
#[derive(Debug, Error)]
#[non_exhaustive]
pub enum MeshError {
    /// The bytes are not a mesh message.
    #[error("malformed mesh message: {0}")]
    Decode(#[from] prost::DecodeError),
    /// A well-formed message with a value out of range.
    #[error("invalid mesh message: {0}")]
    Invalid(&'static str),
    /// A message on a connection the router does not know (never accepted,
    /// refused, replaced or down).
    #[error("message on unknown connection {0:?}")]
    UnknownConnection(ConnId),
    /// No route to the destination of a unicast.
    #[error("no route to peer {0}")]
    NoRoute(PeerName),
    /// The channel is not registered here.
    #[error("gossip channel {0:?} is not registered")]
    UnknownChannel(String),
    /// The channel is registered, but with another state type or none.
    #[error("gossip channel {0:?} has no state of the requested type")]
    WrongChannelType(String),
    /// A channel of that name exists already.
    #[error("gossip channel {0:?} is already registered")]
    ChannelExists(String),
    /// The channel's state refused the bytes.
    #[error("gossip channel {channel:?}: {source}")]
    Channel {
        /// The channel.
        channel: String,
        /// What the state said.
        #[source]
        source: ChannelError,
    },
}
