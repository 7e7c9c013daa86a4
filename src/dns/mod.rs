//! weaveDNS: every peer answers DNS for the containers of the whole mesh
//! under one domain (`weave.local.` by default), and forwards other names to
//! the host's resolvers.
//!
//! Layers, downward only:
//! 1. [`records`]: the replicated record store, a state-based CRDT that the
//!    mesh gossips on its own channel ([`CHANNEL`]). Sans-I/O: every change
//!    takes `now_ms` as an argument, and nothing reads a clock.
//! 2. [`zone`]: the read-only index the store keeps of its live records
//!    (name → addresses, address → names). Cheap to clone and publish.
//! 3. [`answer`]: query bytes in, an [`answer::Outcome`] out (a reply, "forward
//!    this upstream", or drop). Sans-I/O; the wire format is `hickory-proto`.
//! 4. [`resolv`]: the upstream nameservers from `/etc/resolv.conf` text.
//! 5. [`server`]: the thin tokio driver, a UDP and TCP listener that answers
//!    from the latest published [`Zone`] and relays the rest upstream.
//!
//! # Integration
//! The daemon's mesh task owns the authoritative [`Records`] as the state of
//! the gossip channel [`CHANNEL`]. After each change (local add or remove,
//! or a merge that returned something new) it publishes
//! [`Records::snapshot`] on a `tokio::sync::watch` channel, and
//! [`server::DnsServer::spawn`] reads the receiving end; merges show up as
//! `MeshEvent::ChannelUpdated` for [`CHANNEL`]. The mesh task calls
//! [`Records::gc`] periodically, and [`Records::remove_peer`] when a peer
//! is gone for good (`MeshEvent::PeerRemoved` not followed by a
//! `PeerAdded` of the same name, which is a restart, or an explicit
//! removal). At start, a peer gets its own old records back by
//! gossip: it should remove those of containers that are no longer running.
//!
//! Names inside the store are fully qualified and lowercase; [`name_in`]
//! turns a container's hostname or name into one.

pub mod answer;
pub mod records;
pub mod resolv;
pub mod server;
pub mod zone;

use std::net::SocketAddr;

use hickory_proto::rr::Name;
use thiserror::Error;

pub use answer::{answer, Outcome, Transport};
pub use records::{Entry, Records};
pub use server::{DnsConfig, DnsServer};
pub use zone::Zone;

/// The name of the mesh gossip channel that carries DNS records.
pub const CHANNEL: &str = "dns";

/// The default domain.
pub const DEFAULT_DOMAIN: &str = "weave.local.";

/// The TTL of every record we answer with, in seconds.
pub const TTL_SECS: u32 = 30;

/// The longest container ID the store accepts, in bytes.
pub const MAX_CONTAINER_ID: usize = 256;

/// Errors of the DNS module.
#[derive(Debug, Error)]
#[non_exhaustive]
pub enum DnsError {
    /// A string that is not a valid DNS name.
    #[error("invalid DNS name {name:?}: {reason}")]
    Name {
        /// The input.
        name: String,
        /// What is wrong with it.
        reason: String,
    },
    /// A fully qualified name outside our domain.
    #[error("name {name:?} is outside the domain {domain:?}")]
    OutsideDomain {
        /// The name.
        name: String,
        /// Our domain.
        domain: String,
    },
    /// A container ID that is empty or too long.
    #[error("container ID of {0} bytes (expected 1 to {MAX_CONTAINER_ID})")]
    ContainerId(usize),
    /// Gossip bytes that are not a `weaver.dns.v1.Records` message.
    #[error("malformed DNS gossip: {0}")]
    Decode(#[from] prost::DecodeError),
    /// A well-formed gossip message with a value out of range.
    #[error("invalid DNS gossip record: {0}")]
    Invalid(&'static str),
    /// A socket operation of the server failed.
    #[error("DNS server: {op} {addr}: {source}")]
    Io {
        /// What was being done.
        op: &'static str,
        /// The address involved.
        addr: SocketAddr,
        /// The error.
        #[source]
        source: std::io::Error,
    },
}

/// Parses a domain such as `weave.local` (the final dot is optional) into a
/// lowercase fully qualified name.
pub fn parse_domain(domain: &str) -> Result<Name, DnsError> {
    let mut n = Name::from_ascii(domain).map_err(|e| name_error(domain, e))?;
    n.set_fqdn(true);
    if n.is_root() {
        return Err(DnsError::Name { name: domain.into(), reason: "the root is not a domain".into() });
    }
    Ok(n.to_lowercase())
}

/// The fully qualified name for a container's hostname or name inside
/// `domain`: a single label (`web`, or Docker's `/web`) gets the domain
/// appended; a dotted name (`web.weave.local`, final dot optional) must
/// already be inside the domain.
pub fn name_in(hostname: &str, domain: &Name) -> Result<Name, DnsError> {
    let h = hostname.strip_prefix('/').unwrap_or(hostname);
    let mut n = Name::from_ascii(h).map_err(|e| name_error(hostname, e))?;
    if n.is_root() || h.is_empty() {
        return Err(DnsError::Name { name: hostname.into(), reason: "empty".into() });
    }
    if n.num_labels() == 1 && !n.is_fqdn() {
        n = n.append_domain(domain).map_err(|e| name_error(hostname, e))?;
    }
    n.set_fqdn(true);
    let n = n.to_lowercase();
    if !domain.zone_of(&n) || n == *domain {
        return Err(DnsError::OutsideDomain { name: hostname.into(), domain: domain.to_ascii() });
    }
    Ok(n)
}

fn name_error(name: &str, e: impl std::fmt::Display) -> DnsError {
    DnsError::Name { name: name.into(), reason: e.to_string() }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn domain() -> Name {
        parse_domain("weave.local").expect("domain")
    }

    #[test]
    fn domains_are_fully_qualified_and_lowercase() {
        assert_eq!(domain().to_ascii(), "weave.local.");
        assert_eq!(parse_domain("Weave.Local.").expect("domain"), domain());
        assert!(parse_domain(".").is_err());
        assert!(parse_domain("a..b").is_err());
    }

    #[test]
    fn hostnames_become_names_in_the_domain() {
        let d = domain();
        assert_eq!(name_in("web", &d).expect("label").to_ascii(), "web.weave.local.");
        assert_eq!(name_in("/Web", &d).expect("docker name").to_ascii(), "web.weave.local.");
        assert_eq!(name_in("db.weave.local", &d).expect("dotted").to_ascii(), "db.weave.local.");
        assert_eq!(name_in("a.B.weave.local.", &d).expect("deep").to_ascii(), "a.b.weave.local.");
        assert!(matches!(name_in("db.example.com", &d), Err(DnsError::OutsideDomain { .. })));
        assert!(matches!(name_in("weave.local", &d), Err(DnsError::OutsideDomain { .. })));
        assert!(matches!(name_in("", &d), Err(DnsError::Name { .. })));
        assert!(matches!(name_in(&"x".repeat(64), &d), Err(DnsError::Name { .. })));
        let long = format!("{}.weave.local", vec!["y".repeat(60); 5].join("."));
        assert!(matches!(name_in(&long, &d), Err(DnsError::Name { .. })));
    }
}
