//! The replicated record store: a state-based CRDT gossiped on the mesh
//! channel [`super::CHANNEL`].
//!
//! A record is keyed by (origin peer, container ID, name, address) and
//! carries a [`Stamp`]: a version and a tombstone flag. For each key the
//! greatest stamp wins (higher version; at equal versions the tombstone), so
//! merging is a join on a lattice: commutative, associative and idempotent.
//! Only the origin changes its records (except [`Records::remove_peer`]),
//! and a change always raises the version: `max(now_ms, old + 1)`, so
//! versions are the origin's clock in ms and a restarted origin's changes
//! beat what it published before.
//!
//! A removal leaves a tombstone, so an old live copy merged later does not
//! bring the record back. Tombstones are dropped by [`Records::gc`] once
//! their version is [`TOMBSTONE_GRACE_MS`] old; after that, a tombstone of
//! that age arriving from a slower peer is not taken in again.
//!
//! Encoding (`proto/dns.proto`): a full state and a delta are both a
//! `Records` message listing records in key order, so [`Records::encode_full`]
//! is canonical. Decoding never panics; a message with any invalid record
//! (origin over 48 bits, bad container ID, a name that is not canonical) is
//! refused whole.

use std::collections::{BTreeMap, BTreeSet};
use std::net::Ipv4Addr;

use hickory_proto::rr::Name;
use prost::Message;

use super::zone::{canonical, Zone};
use super::{DnsError, MAX_CONTAINER_ID};
use crate::mesh::core::gossip::GossipState;
use crate::mesh::core::ChannelError;
use crate::mesh::peer::PeerName;

/// The generated message types.
#[allow(missing_docs, clippy::all)]
pub mod pb {
    include!(concat!(env!("OUT_DIR"), "/weaver.dns.v1.rs"));
}

/// How long a tombstone is kept after its version (the origin's clock).
pub const TOMBSTONE_GRACE_MS: u64 = 15 * 60 * 1000;

/// The key of a record. Ordered by origin, container, name, address.
#[derive(Clone, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct Key {
    /// The peer that owns the record.
    pub origin: PeerName,
    /// The container's ID.
    pub container: String,
    /// The canonical name (lowercase, fully qualified).
    pub name: String,
    /// The address.
    pub addr: Ipv4Addr,
}

/// A record's version; the greater stamp wins a merge. The derived order
/// compares the version first, then the tombstone (`true` wins a tie).
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord)]
pub struct Stamp {
    /// The origin's clock (ms) at the change.
    pub version: u64,
    /// The record was removed.
    pub tombstone: bool,
}

/// A live record, for listing.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Entry {
    /// The peer that owns the record.
    pub origin: PeerName,
    /// The container's ID.
    pub container: String,
    /// The fully qualified name.
    pub name: Name,
    /// The address.
    pub addr: Ipv4Addr,
    /// The version (the origin's clock in ms when it was added).
    pub version: u64,
}

/// The record store. See the module documentation.
#[derive(Clone, Debug, Default)]
pub struct Records {
    map: BTreeMap<Key, Stamp>,
    zone: Zone,
    /// Keys changed locally since the last [`GossipState::take_delta`].
    dirty: BTreeSet<Key>,
    /// The `now_ms` of the last [`Records::gc`].
    gc_now_ms: u64,
}

impl Records {
    /// An empty store.
    pub fn new() -> Self {
        Records::default()
    }

    /// Adds a live record for `container` of `origin`; true if it was not
    /// live already. `name` is stored lowercase and fully qualified.
    pub fn add(
        &mut self,
        origin: PeerName,
        container: &str,
        name: &Name,
        addr: Ipv4Addr,
        now_ms: u64,
    ) -> Result<bool, DnsError> {
        check_container(container)?;
        let key = Key { origin, container: container.to_owned(), name: canonical(name), addr };
        Ok(self.change(key, false, now_ms))
    }

    /// Removes one record; true if it was live.
    pub fn remove(&mut self, origin: PeerName, container: &str, name: &Name, addr: Ipv4Addr, now_ms: u64) -> bool {
        let key = Key { origin, container: container.to_owned(), name: canonical(name), addr };
        self.map.get(&key).is_some_and(|s| !s.tombstone) && self.change(key, true, now_ms)
    }

    /// Removes every record of `container` of `origin` (the container went
    /// away); returns how many were live.
    pub fn remove_container(&mut self, origin: PeerName, container: &str, now_ms: u64) -> usize {
        let live = self.live_keys(|k| k.origin == origin && k.container == container);
        live.into_iter().filter(|k| self.change(k.clone(), true, now_ms)).count()
    }

    /// Removes the records of `container` of `origin` for these addresses
    /// (detached from it, the container stays); returns how many were live.
    pub fn remove_container_addrs(
        &mut self,
        origin: PeerName,
        container: &str,
        addrs: &[Ipv4Addr],
        now_ms: u64,
    ) -> usize {
        let live = self.live_keys(|k| k.origin == origin && k.container == container && addrs.contains(&k.addr));
        live.into_iter().filter(|k| self.change(k.clone(), true, now_ms)).count()
    }

    /// Removes every record of `origin` (a peer removed from the mesh);
    /// returns how many were live. Replicas that do this concurrently make
    /// the same tombstones when their clocks agree, and otherwise converge
    /// on the later one.
    pub fn remove_peer(&mut self, origin: PeerName, now_ms: u64) -> usize {
        let live = self.live_keys(|k| k.origin == origin);
        live.into_iter().filter(|k| self.change(k.clone(), true, now_ms)).count()
    }

    /// Drops the tombstones whose version is at least [`TOMBSTONE_GRACE_MS`]
    /// before `now_ms`; returns how many.
    pub fn gc(&mut self, now_ms: u64) -> usize {
        self.gc_now_ms = self.gc_now_ms.max(now_ms);
        let before = self.map.len();
        let horizon = self.gc_now_ms;
        self.map.retain(|_, s| !expired(*s, horizon));
        let dirty = std::mem::take(&mut self.dirty);
        self.dirty = dirty.into_iter().filter(|k| self.map.contains_key(k)).collect();
        before - self.map.len()
    }

    /// The live addresses of `name` (any case), in increasing order.
    pub fn lookup(&self, name: &Name) -> Vec<Ipv4Addr> {
        self.zone.lookup(name)
    }

    /// The names with a live record for `addr`.
    pub fn reverse(&self, addr: Ipv4Addr) -> Vec<Name> {
        self.zone.reverse(addr)
    }

    /// The live records, in key order.
    pub fn entries(&self) -> Vec<Entry> {
        self.map
            .iter()
            .filter(|(_, s)| !s.tombstone)
            .filter_map(|(k, s)| {
                Some(Entry {
                    origin: k.origin,
                    container: k.container.clone(),
                    name: Name::from_ascii(&k.name).ok()?,
                    addr: k.addr,
                    version: s.version,
                })
            })
            .collect()
    }

    /// Every record, tombstones included, in key order.
    pub fn iter(&self) -> impl Iterator<Item = (&Key, &Stamp)> {
        self.map.iter()
    }

    /// The index of the live records, to answer queries from.
    pub fn zone(&self) -> &Zone {
        &self.zone
    }

    /// A copy of the zone to publish to the server (see [`super::server`]).
    pub fn snapshot(&self) -> std::sync::Arc<Zone> {
        std::sync::Arc::new(self.zone.clone())
    }

    fn live_keys(&self, pick: impl Fn(&Key) -> bool) -> Vec<Key> {
        self.map.iter().filter(|(k, s)| !s.tombstone && pick(k)).map(|(k, _)| k.clone()).collect()
    }

    /// A local change to `key`: a new stamp above the old one, unless the
    /// record is already in that state.
    fn change(&mut self, key: Key, tombstone: bool, now_ms: u64) -> bool {
        let old = self.map.get(&key).copied();
        if old.is_some_and(|s| s.tombstone == tombstone) {
            return false;
        }
        let version = old.map_or(now_ms, |s| now_ms.max(s.version.saturating_add(1)));
        self.dirty.insert(key.clone());
        self.set(key, Stamp { version, tombstone });
        true
    }

    /// Stores a stamp and keeps the zone in step.
    fn set(&mut self, key: Key, stamp: Stamp) {
        let was_live = self.map.get(&key).is_some_and(|s| !s.tombstone);
        match (was_live, !stamp.tombstone) {
            (false, true) => self.zone.insert(&key.name, key.addr),
            (true, false) => self.zone.remove(&key.name, key.addr),
            _ => {}
        }
        self.map.insert(key, stamp);
    }

    /// Whether an incoming stamp changes anything here.
    fn is_new(&self, key: &Key, stamp: Stamp) -> bool {
        match self.map.get(key) {
            Some(old) => stamp > *old,
            // A tombstone that gc would drop at once is not taken in.
            None => !expired(stamp, self.gc_now_ms),
        }
    }
}

fn expired(s: Stamp, now_ms: u64) -> bool {
    s.tombstone && s.version.saturating_add(TOMBSTONE_GRACE_MS) <= now_ms
}

fn check_container(c: &str) -> Result<(), DnsError> {
    if c.is_empty() || c.len() > MAX_CONTAINER_ID {
        return Err(DnsError::ContainerId(c.len()));
    }
    Ok(())
}

/// Encodes records (in the order given: key order for a canonical encoding).
pub fn encode<'a>(records: impl Iterator<Item = (&'a Key, &'a Stamp)>) -> Vec<u8> {
    let records = records
        .map(|(k, s)| pb::Record {
            origin: k.origin.as_u64(),
            container: k.container.clone(),
            name: k.name.clone(),
            address: u32::from(k.addr),
            version: s.version,
            tombstone: s.tombstone,
        })
        .collect();
    pb::Records { records }.encode_to_vec()
}

/// Decodes and validates records; any invalid record fails the whole.
pub fn decode(bytes: &[u8]) -> Result<Vec<(Key, Stamp)>, DnsError> {
    pb::Records::decode(bytes)?.records.into_iter().map(validate).collect()
}

fn validate(r: pb::Record) -> Result<(Key, Stamp), DnsError> {
    if r.origin > PeerName::MASK {
        return Err(DnsError::Invalid("origin over 48 bits"));
    }
    check_container(&r.container).map_err(|_| DnsError::Invalid("bad container ID"))?;
    let name = Name::from_ascii(&r.name).map_err(|_| DnsError::Invalid("bad name"))?;
    if name.is_root() || canonical(&name) != r.name {
        return Err(DnsError::Invalid("name not canonical"));
    }
    let key =
        Key { origin: PeerName::from_u64(r.origin), container: r.container, name: r.name, addr: r.address.into() };
    Ok((key, Stamp { version: r.version, tombstone: r.tombstone }))
}

impl GossipState for Records {
    fn encode_full(&self) -> Vec<u8> {
        encode(self.map.iter())
    }

    fn take_delta(&mut self) -> Option<Vec<u8>> {
        if self.dirty.is_empty() {
            return None;
        }
        let dirty = std::mem::take(&mut self.dirty);
        let changed: Vec<_> = dirty.iter().filter_map(|k| self.map.get_key_value(k)).collect();
        (!changed.is_empty()).then(|| encode(changed.into_iter()))
    }

    fn merge(&mut self, _from: PeerName, bytes: &[u8]) -> Result<Option<Vec<u8>>, ChannelError> {
        let incoming = decode(bytes).map_err(|e| ChannelError(e.to_string()))?;
        let mut new = BTreeMap::new();
        for (key, stamp) in incoming {
            if self.is_new(&key, stamp) {
                self.set(key.clone(), stamp);
                new.insert(key, stamp);
            }
        }
        Ok((!new.is_empty()).then(|| encode(new.iter())))
    }
}

#[cfg(test)]
#[path = "records_tests.rs"]
mod tests;
