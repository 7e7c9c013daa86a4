//! Gossip: the channel API, anti-entropy reconciliation and broadcast
//! deduplication.
//!
//! # Topology gossip (the built-in channel)
//! Changes travel as deltas: only the entries that changed, along the
//! broadcast tree. Each peer merges what it receives and forwards *what was
//! new to it* to its tree neighbours except the sender; an entry that is not
//! new goes no further, so nothing loops even while views differ.
//! Pending entries are coalesced for `update_delay_ms`, so a burst of changes
//! costs one message per connection.
//!
//! Anti-entropy repairs what deltas missed, with O(1) cost when nothing
//! differs:
//! 1. periodically (and when a connection comes up, from its initiator) a
//!    peer sends a `Summary`: 64 bucket fingerprints of its topology;
//! 2. the receiver answers with `Versions`, the (name, uid, version) of its
//!    entries in the buckets that differ;
//! 3. the first peer sends the entries the other lacks or has older, and
//!    names the ones it wants (`Update`);
//! 4. the other sends the wanted entries.
//!
//! Entries learned this way are new, so they are forwarded along the tree
//! like any other delta.
//!
//! Each peer computes the tree from its own view, so while views differ a
//! delta can miss a peer across an edge that was not yet a tree edge for the
//! sender. Such misses are repaired at once: when a peer's tree neighbours
//! change, it sends each of them a `Summary` after the tree has been stable
//! for `repair_delay_ms`. The periodic summary covers anything else (a lost
//! message).
//!
//! Garbage-collected entries leave a tombstone (name, uid, version) for two
//! grace periods, so copies still held by slower peers do not bounce back;
//! the tombstone is lifted as soon as a reachable entry lists the peer again
//! (a healed partition), since the entry is then needed even if unchanged. Weave sent its whole topology (every peer with its
//! connection list) on every change and every period: O(N) per message,
//! O(N²) across the mesh. Here a change costs one entry per peer, and a
//! quiet period costs one 0.5 KB summary per gossip target.
//!
//! # Channels
//! Other subsystems (IPAM, DNS) register a named channel. They get:
//! - `broadcast(channel, bytes)`: along the broadcast tree, delivered once
//!   to every reachable peer (deduplicated by origin and sequence number);
//! - `unicast(dst, channel, bytes)`: relayed hop by hop along unicast routes;
//! - for a channel registered with a [`GossipState`]: periodic digests and
//!   full-state exchange when digests differ, and deltas of local changes
//!   forwarded along the tree by the same what-was-new rule as topology.

use std::any::Any;

use rand::Rng;

use super::error::ChannelError;
use super::hash;
use super::topology::{bucket_of, Topology, BUCKETS};
use crate::mesh::peer::{PeerName, PeerUid};

/// The replicated state of one gossip channel: a state-based CRDT that the
/// router gossips on its owner's behalf. Merging must be commutative,
/// associative and idempotent, and `merge` must return `None` when nothing
/// was new (that is what stops forwarding).
pub trait GossipState: Any + Send {
    /// The whole state, encoded.
    fn encode_full(&self) -> Vec<u8>;

    /// A fingerprint of the state, equal on two peers only if their states
    /// are equal (with overwhelming probability). Must be stable across
    /// builds. The default hashes `encode_full`, which must then be
    /// canonical.
    fn digest(&self) -> u64 {
        hash::bytes(&self.encode_full())
    }

    /// The local changes made since the last call, encoded, if any.
    fn take_delta(&mut self) -> Option<Vec<u8>>;

    /// Merges a full state or a delta received from neighbour `from`, and
    /// returns the part that was new here, encoded for forwarding.
    fn merge(&mut self, from: PeerName, bytes: &[u8]) -> Result<Option<Vec<u8>>, ChannelError>;
}

/// Which buckets differ between our fingerprints and a peer's, if any.
pub fn differing_buckets(ours: &[u64; BUCKETS], theirs: &[u64]) -> Option<[bool; BUCKETS]> {
    let mut differ = [false; BUCKETS];
    let mut any = false;
    for (i, d) in differ.iter_mut().enumerate() {
        *d = ours[i] != theirs[i];
        any |= *d;
    }
    any.then_some(differ)
}

/// Given a peer's versions of every entry in `buckets`, which entries to
/// send it (ours newer, or missing there) and which to ask for (those of
/// theirs that `wanted` accepts). Both lists are sorted by name.
pub fn reconcile(
    t: &Topology,
    buckets: &[bool; BUCKETS],
    theirs: &mut [(PeerName, PeerUid, u64)],
    wanted: impl Fn(PeerName, PeerUid, u64) -> bool,
) -> (Vec<PeerName>, Vec<PeerName>) {
    theirs.sort_unstable();
    let mut send = Vec::new();
    for e in t.iter().filter(|e| buckets[bucket_of(e.name)]) {
        let i = theirs.partition_point(|x| x.0 < e.name);
        let newer = match theirs.get(i) {
            Some(&(n, uid, version)) if n == e.name => (e.version, e.uid) > (version, uid),
            _ => true,
        };
        if newer {
            send.push(e.name);
        }
    }
    let mut want: Vec<PeerName> = theirs
        .iter()
        .filter(|&&(n, uid, version)| buckets[bucket_of(n)] && wanted(n, uid, version))
        .map(|x| x.0)
        .collect();
    want.dedup();
    (send, want)
}

/// How many of `n` neighbours get each periodic gossip: ⌊log2 n⌋ + 1.
pub fn fanout(n: usize) -> usize {
    if n == 0 {
        0
    } else {
        (n.ilog2() as usize + 1).min(n)
    }
}

/// A random subset of `0..n` of size [`fanout`], in increasing order.
pub fn pick_subset(rng: &mut impl Rng, n: usize) -> Vec<usize> {
    let mut v = rand::seq::index::sample(rng, n, fanout(n)).into_vec();
    v.sort_unstable();
    v
}

/// Which broadcasts of one origin were seen: the highest sequence number
/// and a bitmap of the 63 before it, for the two most recent UIDs (an
/// origin that restarted numbers from scratch). Anything older than the
/// window counts as seen: a broadcast is delivered at most once.
#[derive(Clone, Debug, Default)]
pub struct SeenWindow {
    slots: [(PeerUid, u64, u64); 2],
}

impl SeenWindow {
    /// Records `(uid, seq)`; true if it was not seen before.
    pub fn check(&mut self, uid: PeerUid, seq: u64) -> bool {
        let slot = match self.slots.iter().position(|s| s.0 == uid) {
            Some(i) => i,
            None => {
                // Evict the older slot (slot 1), make room at slot 0.
                self.slots[1] = self.slots[0];
                self.slots[0] = (uid, seq, 1);
                return true;
            }
        };
        let (_, top, bits) = &mut self.slots[slot];
        if seq > *top {
            let shift = seq - *top;
            *bits = if shift >= 64 { 0 } else { *bits << shift };
            *bits |= 1;
            *top = seq;
            return true;
        }
        let k = *top - seq;
        if k >= 64 || *bits & (1 << k) != 0 {
            return false;
        }
        *bits |= 1 << k;
        true
    }
}

#[cfg(test)]
mod tests {
    use rand::SeedableRng;

    use super::*;

    #[test]
    fn broadcasts_are_seen_once() {
        let mut w = SeenWindow::default();
        let (a, b) = (PeerUid(1), PeerUid(2));
        assert!(w.check(a, 5));
        assert!(!w.check(a, 5));
        assert!(w.check(a, 3));
        assert!(w.check(a, 70));
        assert!(!w.check(a, 3), "out of the window counts as seen");
        assert!(w.check(b, 1), "a restarted origin starts afresh");
        assert!(!w.check(a, 70), "the previous incarnation is still remembered");
        assert!(!w.check(b, 1));
    }

    #[test]
    fn fanout_is_logarithmic() {
        assert_eq!([0, 1, 2, 3, 4, 8, 100].map(fanout), [0, 1, 2, 2, 3, 4, 7]);
        let mut rng = rand::rngs::StdRng::seed_from_u64(1);
        let s = pick_subset(&mut rng, 100);
        assert_eq!(s.len(), 7);
        assert!(s.windows(2).all(|w| w[0] < w[1]));
    }
}
