//! The topology CRDT: one entry per peer, written only by its owner.
//!
//! # Merge rule
//! Entries for the same name are totally ordered by `(version, uid)`, then by
//! content, and a merge keeps the greater one. Merging is therefore `max` over
//! a total order: commutative, associative and idempotent, so peers that have
//! seen the same entries hold the same topology whatever the order.
//!
//! A restarted peer keeps its name but draws a new UID and starts again at a
//! low version. To make its new entry win, the owner, on seeing an entry with
//! its own name and a different UID, moves its version past that entry's
//! (see the router). Ordering by version first (not by UID) is what makes
//! this work: the restarted peer can always outbid its old incarnation, and
//! an old entry still in flight can never displace the new one.
//!
//! Honest peers never produce two different entries with the same
//! `(name, uid, version)`; the content tie-break only keeps the laws exact
//! for arbitrary input.
//!
//! # Fingerprints
//! Each entry hashes `(name, uid, version)`; the XOR of those hashes per
//! bucket (64 buckets by name) is kept up to date on every change, so
//! anti-entropy can compare topologies in O(1) and narrow differences to
//! buckets.

use std::cmp::Ordering;
use std::collections::btree_map::{self, BTreeMap};

use serde::{Deserialize, Serialize};

use super::hash;
use crate::mesh::peer::{PeerName, PeerUid, ShortId};

/// Number of fingerprint buckets.
pub const BUCKETS: usize = 64;

/// One connection, as its owner lists it in its entry.
#[derive(Clone, Debug, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
pub struct ConnectionInfo {
    /// The peer at the other end.
    pub remote: PeerName,
    /// The remote end's address, `ip:port`.
    pub address: String,
    /// Whether the owner initiated the connection.
    pub outbound: bool,
    /// Whether the data path over it is confirmed.
    pub established: bool,
}

/// A peer's own entry in the topology.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct PeerEntry {
    /// The peer's 48-bit name.
    pub name: PeerName,
    /// The peer's UID for this process start.
    pub uid: PeerUid,
    /// Bumped by the owner on every change.
    pub version: u64,
    /// Human-readable name (the host name by default).
    pub nickname: String,
    /// The peer's 12-bit short ID.
    pub short_id: ShortId,
    /// The peer's connections, sorted by remote name.
    pub connections: Vec<ConnectionInfo>,
}

impl PeerEntry {
    /// The merge order: by version, then UID, then content.
    pub fn precedence(&self, other: &PeerEntry) -> Ordering {
        (self.version, self.uid)
            .cmp(&(other.version, other.uid))
            .then_with(|| self.short_id.cmp(&other.short_id))
            .then_with(|| self.nickname.cmp(&other.nickname))
            .then_with(|| self.connections.cmp(&other.connections))
    }

    /// The fingerprint of `(name, uid, version)`.
    pub fn fingerprint(&self) -> u64 {
        hash::entry(self.name.as_u64(), self.uid.0, self.version)
    }

    /// The connection to `remote`, if this entry lists one.
    pub fn connection(&self, remote: PeerName) -> Option<&ConnectionInfo> {
        self.connections.iter().find(|c| c.remote == remote)
    }
}

/// The result of merging one entry.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Merge {
    /// The entry was not newer than ours.
    Unchanged,
    /// A peer we did not know.
    Added,
    /// A newer entry from the same incarnation.
    Updated,
    /// A new incarnation (restart) replaced the entry with this old UID.
    Replaced(PeerUid),
}

impl Merge {
    /// Whether the topology changed.
    pub fn changed(self) -> bool {
        self != Merge::Unchanged
    }
}

/// The fingerprint bucket of a name.
pub fn bucket_of(name: PeerName) -> usize {
    (hash::mix(name.as_u64() ^ 0x6275_636b_6574) >> 58) as usize
}

/// All peers' entries, as seen from one peer.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Topology {
    entries: BTreeMap<PeerName, PeerEntry>,
    buckets: [u64; BUCKETS],
}

impl Default for Topology {
    fn default() -> Self {
        Topology { entries: BTreeMap::new(), buckets: [0; BUCKETS] }
    }
}

impl Topology {
    /// An empty topology.
    pub fn new() -> Self {
        Self::default()
    }

    /// Number of peers.
    pub fn len(&self) -> usize {
        self.entries.len()
    }

    /// Whether there are no peers.
    pub fn is_empty(&self) -> bool {
        self.entries.is_empty()
    }

    /// The entry of `name`.
    pub fn get(&self, name: PeerName) -> Option<&PeerEntry> {
        self.entries.get(&name)
    }

    /// All entries, by name.
    pub fn iter(&self) -> btree_map::Values<'_, PeerName, PeerEntry> {
        self.entries.values()
    }

    /// All names, in order.
    pub fn names(&self) -> impl Iterator<Item = PeerName> + '_ {
        self.entries.keys().copied()
    }

    /// Whether an entry with this header would be newer than ours: a peer
    /// decodes the rest of an entry only if so. Equal headers count as not
    /// newer (only the owner writes an entry).
    pub fn is_newer(&self, name: PeerName, uid: PeerUid, version: u64) -> bool {
        match self.entries.get(&name) {
            None => true,
            Some(old) => (version, uid) > (old.version, old.uid),
        }
    }

    /// Merges one entry (the CRDT join for a single name).
    pub fn merge(&mut self, entry: PeerEntry) -> Merge {
        match self.entries.get(&entry.name) {
            None => {
                self.insert(entry);
                Merge::Added
            }
            Some(old) if entry.precedence(old) == Ordering::Greater => {
                let old_uid = old.uid;
                let new_uid = entry.uid;
                self.insert(entry);
                if old_uid == new_uid {
                    Merge::Updated
                } else {
                    Merge::Replaced(old_uid)
                }
            }
            Some(_) => Merge::Unchanged,
        }
    }

    /// Merges every entry of `other`.
    pub fn merge_all(&mut self, other: &Topology) {
        for e in other.iter() {
            self.merge(e.clone());
        }
    }

    /// Writes an entry unconditionally: the owner's write of its own entry.
    pub(crate) fn put(&mut self, entry: PeerEntry) {
        self.insert(entry);
    }

    /// Removes `name` (garbage collection).
    pub(crate) fn remove(&mut self, name: PeerName) -> Option<PeerEntry> {
        let old = self.entries.remove(&name)?;
        self.buckets[bucket_of(name)] ^= old.fingerprint();
        Some(old)
    }

    fn insert(&mut self, entry: PeerEntry) {
        let b = bucket_of(entry.name);
        self.buckets[b] ^= entry.fingerprint();
        if let Some(old) = self.entries.insert(entry.name, entry) {
            self.buckets[b] ^= old.fingerprint();
        }
    }

    /// Per-bucket XOR of the entries' fingerprints.
    pub fn buckets(&self) -> &[u64; BUCKETS] {
        &self.buckets
    }

    /// A fingerprint of the whole topology: equal fingerprints mean the same
    /// `(name, uid, version)` sets, with overwhelming probability.
    pub fn fingerprint(&self) -> u64 {
        self.buckets.iter().enumerate().fold(self.entries.len() as u64, |h, (i, b)| hash::mix(h ^ b ^ i as u64))
    }

    /// `(name, uid, version)` of every entry in the given buckets.
    pub fn versions_in(&self, buckets: &[bool; BUCKETS]) -> Vec<(PeerName, PeerUid, u64)> {
        self.entries.values().filter(|e| buckets[bucket_of(e.name)]).map(|e| (e.name, e.uid, e.version)).collect()
    }

    /// An estimate of the heap bytes held (entries, strings, map nodes).
    pub fn heap_bytes(&self) -> usize {
        let per_entry = std::mem::size_of::<PeerName>() + std::mem::size_of::<PeerEntry>();
        self.entries
            .values()
            .map(|e| {
                // B-tree nodes are about 2/3 full.
                per_entry * 3 / 2
                    + e.nickname.capacity()
                    + e.connections.capacity() * std::mem::size_of::<ConnectionInfo>()
                    + e.connections.iter().map(|c| c.address.capacity()).sum::<usize>()
            })
            .sum()
    }
}

#[cfg(test)]
mod tests {
    use proptest::prelude::*;

    use super::*;

    fn entry_strategy() -> impl Strategy<Value = PeerEntry> {
        // Small domains so that names, UIDs and versions collide often.
        (0u64..4, 1u64..4, 0u64..4, 0u32..3, proptest::collection::vec((0u64..4, any::<bool>()), 0..3)).prop_map(
            |(name, uid, version, sid, conns)| PeerEntry {
                name: PeerName::from_u64(name),
                uid: PeerUid(uid),
                version,
                nickname: format!("n{sid}"),
                short_id: ShortId::from_bits(sid),
                connections: conns
                    .into_iter()
                    .map(|(r, est)| ConnectionInfo {
                        remote: PeerName::from_u64(r),
                        address: format!("10.0.0.{r}:6783"),
                        outbound: est,
                        established: est,
                    })
                    .collect(),
            },
        )
    }

    fn merged(entries: &[PeerEntry]) -> Topology {
        let mut t = Topology::new();
        for e in entries {
            t.merge(e.clone());
        }
        t
    }

    proptest! {
        #[test]
        fn merge_is_order_independent(entries in proptest::collection::vec(entry_strategy(), 0..12), seed: u64) {
            // Commutativity and associativity: any permutation gives the same result.
            let mut shuffled = entries.clone();
            let mut rng = <rand::rngs::StdRng as rand::SeedableRng>::seed_from_u64(seed);
            rand::seq::SliceRandom::shuffle(&mut shuffled[..], &mut rng);
            prop_assert_eq!(merged(&entries), merged(&shuffled));
        }

        #[test]
        fn merge_of_states_is_a_join(a in proptest::collection::vec(entry_strategy(), 0..8),
                                     b in proptest::collection::vec(entry_strategy(), 0..8),
                                     c in proptest::collection::vec(entry_strategy(), 0..8)) {
            let (ta, tb, tc) = (merged(&a), merged(&b), merged(&c));
            let join = |x: &Topology, y: &Topology| { let mut z = x.clone(); z.merge_all(y); z };
            // Commutative, associative, idempotent.
            prop_assert_eq!(join(&ta, &tb), join(&tb, &ta));
            prop_assert_eq!(join(&join(&ta, &tb), &tc), join(&ta, &join(&tb, &tc)));
            prop_assert_eq!(join(&ta, &ta), ta.clone());
            // The fingerprints follow the content.
            prop_assert_eq!(join(&ta, &tb).fingerprint(), join(&tb, &ta).fingerprint());
        }
    }

    #[test]
    fn a_newer_version_wins_and_a_restart_replaces() {
        let e = |uid, version| PeerEntry {
            name: PeerName::from_u64(7),
            uid: PeerUid(uid),
            version,
            nickname: "a".into(),
            short_id: ShortId::from_bits(1),
            connections: vec![],
        };
        let mut t = Topology::new();
        assert_eq!(t.merge(e(1, 5)), Merge::Added);
        assert_eq!(t.merge(e(1, 4)), Merge::Unchanged);
        assert_eq!(t.merge(e(1, 6)), Merge::Updated);
        assert!(t.is_newer(PeerName::from_u64(7), PeerUid(2), 7));
        assert_eq!(t.merge(e(2, 7)), Merge::Replaced(PeerUid(1)));
        assert_eq!(t.merge(e(1, 6)), Merge::Unchanged);
        let fp = t.fingerprint();
        t.remove(PeerName::from_u64(7));
        assert_eq!(t.buckets(), &[0; BUCKETS]);
        assert_ne!(t.fingerprint(), fp);
    }
}
