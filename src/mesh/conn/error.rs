//! Errors of the connection layer: the pure handshake and session cores, and
//! the driver's, which add the remote address and I/O.

use std::io;
use std::net::SocketAddr;
use std::time::Duration;

use thiserror::Error;

use super::config::VersionRange;
use super::crypto::CryptoError;
use super::frame::FrameError;
use crate::mesh::peer::{PeerName, PeerUid};

/// Why a handshake failed. The `Display` text is what both logs show.
#[derive(Debug, Clone, PartialEq, Eq, Error)]
pub enum HandshakeError {
    /// The first bytes were not the weaver magic.
    #[error("not a weaver peer: the connection opened with {got:02x?}")]
    BadMagic {
        /// The bytes received instead.
        got: Vec<u8>,
    },
    /// The remote speaks Weave Net's protocol.
    #[error("the remote speaks Weave Net's protocol, not weaver's")]
    WeaveNet,
    /// The version ranges do not overlap.
    #[error("no common protocol version: ours {ours}, the remote's {theirs}")]
    NoCommonVersion {
        /// Our range.
        ours: VersionRange,
        /// The remote's range.
        theirs: VersionRange,
    },
    /// One end has a password and the other has none.
    #[error("encryption mismatch: {}", if *.local_has_password {
        "we have a password set but the remote has none"
    } else {
        "the remote has a password set but we have none"
    })]
    EncryptionMismatch {
        /// Whether we are the end with the password.
        local_has_password: bool,
    },
    /// The encrypted handshake failed: a different password, or tampering.
    #[error("password mismatch or corrupted handshake")]
    PasswordMismatch,
    /// The remote sent a refusal (unauthenticated; sanitized).
    #[error("refused by the remote: {0}")]
    Refused(String),
    /// The remote closed the connection mid-handshake.
    #[error("the remote closed the connection {during}{}", if *.encrypted {
        " (a password mismatch is the usual cause)"
    } else {
        ""
    })]
    Closed {
        /// Which step we were waiting for.
        during: &'static str,
        /// Whether the encrypted part had begun.
        encrypted: bool,
    },
    /// We reached ourselves. Never retry.
    #[error("cannot connect to ourself")]
    ConnectToSelf,
    /// The remote has our name but another UID. Never retry.
    #[error("peer name collision: the remote uses our name {name} with UID {} (ours is {})", .remote_uid.0, .local_uid.0)]
    NameCollision {
        /// The shared name.
        name: PeerName,
        /// Our UID.
        local_uid: PeerUid,
        /// The remote's UID.
        remote_uid: PeerUid,
    },
    /// The remote's features are invalid.
    #[error("invalid features from the remote: {0}")]
    BadFeatures(String),
    /// A valid frame at the wrong moment.
    #[error("protocol error: expected {expected}, got {got}")]
    Unexpected {
        /// What the state machine waited for.
        expected: &'static str,
        /// What came.
        got: &'static str,
    },
    /// A frame body that is not a valid message.
    #[error("malformed frame from the remote: {0}")]
    Malformed(#[from] prost::DecodeError),
    /// Framing failed (oversized length).
    #[error(transparent)]
    Frame(#[from] FrameError),
    /// A local crypto failure (not caused by input).
    #[error("crypto: {0}")]
    Crypto(CryptoError),
}

impl HandshakeError {
    /// Refusals that can never succeed: the connection maker must not retry.
    pub fn is_permanent(&self) -> bool {
        matches!(self, HandshakeError::ConnectToSelf | HandshakeError::NameCollision { .. })
    }

    /// Whether the remote should be told with a refusal frame.
    pub fn tell_remote(&self) -> bool {
        !matches!(self, HandshakeError::Refused(_) | HandshakeError::Closed { .. })
    }
}

/// Why an established session ended (pure causes).
#[derive(Debug, Clone, PartialEq, Eq, Error)]
pub enum SessionError {
    /// Framing failed (oversized length).
    #[error(transparent)]
    Frame(#[from] FrameError),
    /// A frame body that is not a valid message.
    #[error("malformed frame from the remote: {0}")]
    Malformed(#[from] prost::DecodeError),
    /// A valid frame that makes no sense after the handshake.
    #[error("protocol error: unexpected {0} on an established connection")]
    Unexpected(&'static str),
    /// A frame that does not decrypt: corruption or forgery.
    #[error("decryption failed: corrupted or forged frame")]
    Decrypt,
    /// The remote closed deliberately (reason sanitized).
    #[error("closed by the remote: {0}")]
    RemoteClosed(String),
    /// Nothing heard from the remote for too long.
    #[error("heartbeat timeout: nothing from the remote for {0:?}")]
    HeartbeatTimeout(Duration),
    /// A local crypto failure (not caused by input).
    #[error("crypto: {0}")]
    Crypto(CryptoError),
}

/// An outgoing message that cannot be framed. The connection goes on.
#[derive(Debug, Clone, PartialEq, Eq, Error)]
#[error("message of {len} bytes exceeds the frame limit of {max} bytes")]
pub struct TooLarge {
    /// The message's length.
    pub len: usize,
    /// The frame limit in force.
    pub max: usize,
}

/// Why establishing a connection failed (driver level).
#[derive(Debug, Error)]
pub enum ConnError {
    /// The handshake failed.
    #[error("handshake with {remote} failed: {error}")]
    Handshake {
        /// The remote's address.
        remote: SocketAddr,
        /// What went wrong.
        error: HandshakeError,
    },
    /// The handshake did not finish in time.
    #[error("handshake with {remote} timed out after {after:?} waiting for {during}")]
    HandshakeTimeout {
        /// The remote's address.
        remote: SocketAddr,
        /// The timeout.
        after: Duration,
        /// Which step we were waiting for.
        during: &'static str,
    },
    /// A socket operation failed.
    #[error("{op} with {remote}: {error}")]
    Io {
        /// The remote's address, if known.
        remote: SocketAddr,
        /// What we were doing.
        op: &'static str,
        /// The OS error.
        error: io::Error,
    },
}

impl ConnError {
    /// Whether the connection maker must never retry this remote.
    pub fn is_permanent(&self) -> bool {
        matches!(self, ConnError::Handshake { error, .. } if error.is_permanent())
    }

    /// The handshake error, if that is what failed.
    pub fn handshake_error(&self) -> Option<&HandshakeError> {
        match self {
            ConnError::Handshake { error, .. } => Some(error),
            _ => None,
        }
    }
}

/// Why an established connection ended, as reported in
/// [`super::driver::ConnEvent::Closed`].
#[derive(Debug, Error)]
pub enum CloseReason {
    /// The session core ended it (timeout, protocol, crypto, remote close).
    #[error(transparent)]
    Session(#[from] SessionError),
    /// The remote closed TCP without a word.
    #[error("the remote closed the connection")]
    Eof,
    /// The socket failed.
    #[error("I/O error: {0}")]
    Io(#[from] io::Error),
    /// We closed it (the owner asked, or dropped its handle).
    #[error("closed locally: {0}")]
    Local(String),
}
