//! What a connection needs to know about us, and its limits and timers.

use std::fmt;
use std::time::Duration;

use super::crypto::Psk;
use super::frame::DEFAULT_MAX_FRAME_LEN;
use super::trust::TrustedSubnets;
use crate::mesh::peer::Identity;

/// A range of protocol versions, both ends included.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct VersionRange {
    /// Oldest version spoken.
    pub min: u32,
    /// Newest version spoken.
    pub max: u32,
}

/// The versions this build speaks.
pub const PROTOCOL_VERSIONS: VersionRange = VersionRange { min: 1, max: 1 };

impl VersionRange {
    /// The highest version in both ranges, if any.
    pub fn negotiate(self, other: VersionRange) -> Option<u32> {
        let v = self.max.min(other.max);
        (v >= self.min.max(other.min) && self.min <= self.max && other.min <= other.max).then_some(v)
    }
}

impl fmt::Display for VersionRange {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}..={}", self.min, self.max)
    }
}

/// Configuration shared by all connections of one peer.
#[derive(Debug, Clone)]
pub struct ConnConfig {
    /// Who we are.
    pub identity: Identity,
    /// Set when a password is configured: the connection is then encrypted.
    pub psk: Option<Psk>,
    /// Protocol versions we accept.
    pub versions: VersionRange,
    /// Overlays we offer, by name ("fastdp", "sleeve").
    pub overlays: Vec<String>,
    /// Remotes in these subnets need no data-path encryption from us.
    pub trusted_subnets: TrustedSubnets,
    /// Largest frame body accepted or sent after the handshake.
    pub max_frame_len: usize,
    /// The whole handshake must finish within this.
    pub handshake_timeout: Duration,
    /// A heartbeat goes out this often.
    pub heartbeat_interval: Duration,
    /// Silence from the remote for this long ends the connection.
    pub heartbeat_timeout: Duration,
    /// Capacity of the channels to and from the connection's owner.
    pub channel_capacity: usize,
}

impl ConnConfig {
    /// Defaults: no password, [`PROTOCOL_VERSIONS`], both overlays, 8 MiB
    /// frames, a 10 s handshake timeout, heartbeats every 10 s, 30 s of
    /// silence tolerated, channels of 64.
    pub fn new(identity: Identity) -> Self {
        ConnConfig {
            identity,
            psk: None,
            versions: PROTOCOL_VERSIONS,
            overlays: vec!["fastdp".into(), "sleeve".into()],
            trusted_subnets: TrustedSubnets::default(),
            max_frame_len: DEFAULT_MAX_FRAME_LEN,
            handshake_timeout: Duration::from_secs(10),
            heartbeat_interval: Duration::from_secs(10),
            heartbeat_timeout: Duration::from_secs(30),
            channel_capacity: 64,
        }
    }

    /// Sets the password (derives the PSK once, here).
    pub fn with_password(mut self, password: &[u8]) -> Self {
        self.psk = Some(Psk::from_password(password));
        self
    }

    /// Whether connections are encrypted.
    pub fn encrypted(&self) -> bool {
        self.psk.is_some()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn negotiation_picks_the_highest_common_version() {
        let r = |min, max| VersionRange { min, max };
        assert_eq!(r(1, 3).negotiate(r(2, 5)), Some(3));
        assert_eq!(r(1, 1).negotiate(r(1, 1)), Some(1));
        assert_eq!(r(1, 2).negotiate(r(3, 4)), None);
        assert_eq!(r(5, 4).negotiate(r(1, 9)), None, "empty range");
        assert_eq!(r(1, 9).negotiate(r(5, 4)), None, "empty remote range");
    }
}
