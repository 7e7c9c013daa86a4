//! The ring: who owns which part of the address range, as a state-based CRDT.
//!
//! The range `[start, end)` is cut at *tokens*. A token owns the addresses
//! from itself up to the next token (or `end`). Each token has an owner, a
//! version and the free count its owner last reported. Rules:
//! - only the owner changes a token (hands it to another peer, reports its
//!   free count), and every change bumps the version;
//! - only the owner of a range inserts tokens inside it (to hand part of it
//!   away), and tokens are never removed;
//! - merging keeps, per token, the entry that is greatest by
//!   `(version, owner, free)`: a join, so merging is commutative,
//!   associative and idempotent, and two peers that have seen the same
//!   entries agree on every owner.
//!
//! A ring is empty until *seeded*: split evenly among a set of peers (the
//! `seeds`), the same way on every peer. Two rings seeded with different
//! sets were made by two halves of a network that never talked; they refuse
//! to merge ([`RingError::SeedMismatch`]) instead of handing out the same
//! addresses twice.

use std::collections::BTreeMap;

use super::space::Range;
use super::IpamError;
use crate::mesh::peer::PeerName;

/// How many versions a take-over (`rmpeer`) jumps: more than an owner's
/// own changes could add while it was cut off (a free-count report at most
/// every second: 12 days).
pub const TAKE_OVER_BUMP: u32 = 1 << 20;

/// One token's entry.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord)]
pub struct Entry {
    /// Bumped by the owner on every change.
    pub version: u32,
    /// Who owns the range from this token to the next.
    pub owner: PeerName,
    /// Free addresses the owner last reported in that range.
    pub free: u32,
}

/// Why two rings cannot merge.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub enum RingError {
    /// The rings cover different ranges (`--ipalloc-range` differs).
    #[error("the peer's IPAM range {theirs} differs from ours ({ours}); every peer needs the same --ipalloc-range")]
    RangeMismatch {
        /// Ours.
        ours: Range,
        /// Theirs.
        theirs: Range,
    },
    /// The rings were seeded separately (a split brain).
    #[error(
        "IPAM split brain: our ring was seeded by [{ours}] and the peer's by [{theirs}]; the two halves allocated \
         separately and cannot merge. Recovery: pick the half to keep; on every peer of the other half, detach its \
         containers and run `weavectl reset` (or stop weaver and move /var/lib/weave/weaver.redb aside), then start \
         it again"
    )]
    SeedMismatch {
        /// Our seeds.
        ours: String,
        /// Theirs.
        theirs: String,
    },
    /// A token outside the range or otherwise malformed.
    #[error("invalid ring entry: {0}")]
    Invalid(&'static str),
}

/// The ring of one peer.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Ring {
    range: Range,
    seeds: Vec<PeerName>,
    tokens: BTreeMap<u64, Entry>,
}

fn names(v: &[PeerName]) -> String {
    v.iter().map(|n| n.to_string()).collect::<Vec<_>>().join(", ")
}

impl Ring {
    /// An empty, unseeded ring over `range`.
    pub fn new(range: Range) -> Ring {
        Ring { range, seeds: Vec::new(), tokens: BTreeMap::new() }
    }

    /// A ring from its parts (decoded from the wire or a file), checked.
    pub fn from_parts(range: Range, seeds: Vec<PeerName>, tokens: Vec<(u64, Entry)>) -> Result<Ring, RingError> {
        let mut r = Ring::new(range);
        let mut seeds = seeds;
        seeds.sort_unstable();
        seeds.dedup();
        r.seeds = seeds;
        for (t, e) in tokens {
            if !range.contains(t) {
                return Err(RingError::Invalid("token outside the range"));
            }
            r.join_token(t, e);
        }
        Ok(r)
    }

    /// The range.
    pub fn range(&self) -> Range {
        self.range
    }

    /// The seeds, sorted; empty until seeded.
    pub fn seeds(&self) -> &[PeerName] {
        &self.seeds
    }

    /// Whether the ring has been seeded.
    pub fn is_seeded(&self) -> bool {
        !self.seeds.is_empty()
    }

    /// Every token, in order.
    pub fn tokens(&self) -> impl Iterator<Item = (u64, &Entry)> {
        self.tokens.iter().map(|(t, e)| (*t, e))
    }

    /// The entry of token `t`.
    pub fn get(&self, t: u64) -> Option<&Entry> {
        self.tokens.get(&t)
    }

    /// Every token's range with its entry, in order.
    pub fn ranges(&self) -> impl Iterator<Item = (Range, &Entry)> + '_ {
        let end = self.range.end;
        let mut it = self.tokens.iter().peekable();
        std::iter::from_fn(move || {
            let (t, e) = it.next()?;
            let next = it.peek().map_or(end, |(n, _)| **n);
            Some((Range::new(*t, next), e))
        })
    }

    /// The token whose range holds `addr`, and its entry.
    pub fn token_of(&self, addr: u64) -> Option<(u64, &Entry)> {
        if !self.range.contains(addr) {
            return None;
        }
        self.tokens.range(..=addr).next_back().map(|(t, e)| (*t, e))
    }

    /// Who owns `addr`, if the ring is seeded and holds it.
    pub fn owner_of(&self, addr: u64) -> Option<PeerName> {
        self.token_of(addr).map(|(_, e)| e.owner)
    }

    /// The ranges `peer` owns, adjacent ones joined.
    pub fn owned_by(&self, peer: PeerName) -> Vec<Range> {
        let mut out: Vec<Range> = Vec::new();
        for (r, _) in self.ranges().filter(|(_, e)| e.owner == peer) {
            match out.last_mut() {
                Some(last) if last.end == r.start => last.end = r.end,
                _ => out.push(r),
            }
        }
        out
    }

    /// Seeds an empty ring: the range is cut in `peers.len()` nearly equal
    /// parts, in order of peer name. Every peer seeding with the same set
    /// makes the same ring. Returns the tokens made.
    pub fn seed(&mut self, peers: &[PeerName]) -> Result<Vec<u64>, IpamError> {
        if self.is_seeded() {
            return Err(IpamError::AlreadySeeded);
        }
        let mut peers = peers.to_vec();
        peers.sort_unstable();
        peers.dedup();
        if peers.is_empty() {
            return Err(IpamError::NoSeeds);
        }
        let n = peers.len() as u64;
        let size = self.range.len();
        if n > size {
            return Err(IpamError::TooManySeeds { seeds: peers.len(), size });
        }
        let mut made = Vec::new();
        for (i, p) in peers.iter().enumerate() {
            let t = self.range.start + size * i as u64 / n;
            let next = self.range.start + size * (i as u64 + 1) / n;
            self.tokens.insert(t, Entry { version: 1, owner: *p, free: (next - t) as u32 });
            made.push(t);
        }
        self.seeds = peers;
        Ok(made)
    }

    /// Hands `[r.start, r.end)`, which `me` must own whole, to `to`.
    /// Returns the tokens changed (for the delta).
    pub fn grant(&mut self, me: PeerName, r: Range, to: PeerName) -> Result<Vec<u64>, IpamError> {
        if r.is_empty() || !self.range.covers(r) {
            return Err(IpamError::NotOwned(r));
        }
        let mut a = r.start;
        while a < r.end {
            let (t, e) = self.token_of(a).ok_or(IpamError::NotOwned(r))?;
            if e.owner != me {
                return Err(IpamError::NotOwned(r));
            }
            a = self.tokens.range(t + 1..).next().map_or(self.range.end, |(n, _)| *n);
        }
        let mut changed = Vec::new();
        for cut in [r.start, r.end] {
            if cut < self.range.end && !self.tokens.contains_key(&cut) {
                let (_, e) = self.token_of(cut).ok_or(IpamError::NotOwned(r))?;
                let e = Entry { version: e.version + 1, owner: e.owner, free: 0 };
                self.tokens.insert(cut, e);
                changed.push(cut);
            }
        }
        let inside: Vec<u64> = self.tokens.range(r.start..r.end).map(|(t, _)| *t).collect();
        for t in inside {
            if let Some(e) = self.tokens.get_mut(&t) {
                e.owner = to;
                e.version += 1;
                e.free = 0;
            }
            if !changed.contains(&t) {
                changed.push(t);
            }
        }
        changed.sort_unstable();
        Ok(changed)
    }

    /// Takes over every token `dead` owns (`weavectl rmpeer`): they become
    /// `me`'s, [`TAKE_OVER_BUMP`] versions up, so that changes the "dead"
    /// peer made meanwhile (if it was only cut off) lose to the take-over
    /// instead of tying with it. Returns the tokens taken.
    pub fn take_over(&mut self, me: PeerName, dead: PeerName) -> Vec<u64> {
        let mut changed = Vec::new();
        for (t, e) in self.tokens.iter_mut().filter(|(_, e)| e.owner == dead) {
            e.owner = me;
            e.version = e.version.saturating_add(TAKE_OVER_BUMP);
            changed.push(*t);
        }
        changed
    }

    /// Records the free count `me` has in token `t`'s range; a change bumps
    /// the version. Returns whether it changed.
    pub fn report_free(&mut self, me: PeerName, t: u64, free: u32) -> bool {
        match self.tokens.get_mut(&t) {
            Some(e) if e.owner == me && e.free != free => {
                e.free = free;
                e.version += 1;
                true
            }
            _ => false,
        }
    }

    fn join_token(&mut self, t: u64, e: Entry) -> bool {
        match self.tokens.get_mut(&t) {
            Some(ours) if *ours >= e => false,
            Some(ours) => {
                *ours = e;
                true
            }
            None => {
                self.tokens.insert(t, e);
                true
            }
        }
    }

    /// Merges `other` (a whole ring or a delta) into this one. Returns the
    /// tokens that were new here, and whether the seeds were adopted.
    pub fn merge(&mut self, other: &Ring) -> Result<(Vec<u64>, bool), RingError> {
        if other.range != self.range {
            return Err(RingError::RangeMismatch { ours: self.range, theirs: other.range });
        }
        let mut adopted = false;
        if !other.seeds.is_empty() {
            if self.seeds.is_empty() {
                self.seeds = other.seeds.clone();
                adopted = true;
            } else if self.seeds != other.seeds {
                return Err(RingError::SeedMismatch { ours: names(&self.seeds), theirs: names(&other.seeds) });
            }
        }
        let mut new = Vec::new();
        for (t, e) in &other.tokens {
            if self.join_token(*t, *e) {
                new.push(*t);
            }
        }
        Ok((new, adopted))
    }

    /// The part of this ring made of `tokens` (a delta), with the seeds.
    pub fn subset(&self, tokens: &[u64]) -> Ring {
        let mut r = Ring { range: self.range, seeds: self.seeds.clone(), tokens: BTreeMap::new() };
        for t in tokens {
            if let Some(e) = self.tokens.get(t) {
                r.tokens.insert(*t, *e);
            }
        }
        r
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    fn p(n: u64) -> PeerName {
        PeerName::from_u64(n)
    }

    fn range() -> Range {
        Range::new(1000, 2000)
    }

    #[test]
    fn seeding_is_even_and_deterministic() {
        let mut a = Ring::new(range());
        let mut b = Ring::new(range());
        a.seed(&[p(3), p(1), p(2)]).unwrap();
        b.seed(&[p(2), p(3), p(1), p(1)]).unwrap();
        assert_eq!(a, b);
        let owned: Vec<_> = [1, 2, 3].iter().map(|n| a.owned_by(p(*n))).collect();
        assert_eq!(owned[0], vec![Range::new(1000, 1333)]);
        assert_eq!(owned[1], vec![Range::new(1333, 1666)]);
        assert_eq!(owned[2], vec![Range::new(1666, 2000)]);
        assert_eq!(a.owner_of(1999), Some(p(3)));
        assert_eq!(a.owner_of(2000), None);
        assert!(matches!(a.seed(&[p(1)]), Err(IpamError::AlreadySeeded)));
        assert!(matches!(Ring::new(Range::new(0, 2)).seed(&[p(1), p(2), p(3)]), Err(IpamError::TooManySeeds { .. })));
    }

    #[test]
    fn grant_cuts_and_hands_over() {
        let mut a = Ring::new(range());
        a.seed(&[p(1), p(2)]).unwrap();
        let changed = a.grant(p(1), Range::new(1200, 1300), p(2)).unwrap();
        assert_eq!(changed, vec![1200, 1300]);
        assert_eq!(a.owned_by(p(1)), vec![Range::new(1000, 1200), Range::new(1300, 1500)]);
        assert_eq!(a.owned_by(p(2)), vec![Range::new(1200, 1300), Range::new(1500, 2000)]);
        // Not ours: refused, nothing changed.
        let before = a.clone();
        assert!(a.grant(p(1), Range::new(1250, 1260), p(3)).is_err());
        assert!(a.grant(p(1), Range::new(1100, 1400), p(3)).is_err());
        assert!(a.grant(p(1), Range::new(1900, 2100), p(3)).is_err());
        assert_eq!(a, before);
        // Granting up to the end needs no cut there.
        let changed = a.grant(p(2), Range::new(1900, 2000), p(3)).unwrap();
        assert_eq!(changed, vec![1900]);
        assert_eq!(a.owner_of(1999), Some(p(3)));
        // A grant across two adjacent tokens of ours.
        a.grant(p(1), Range::new(1100, 1200), p(3)).unwrap();
        a.grant(p(3), Range::new(1100, 1200), p(1)).unwrap();
        assert_eq!(a.owned_by(p(1))[0], Range::new(1000, 1200));
        // Spanning two of our tokens (1000 and 1100) in one grant.
        let changed = a.grant(p(1), Range::new(1050, 1150), p(2)).unwrap();
        assert_eq!(changed, vec![1050, 1100, 1150]);
        assert_eq!(a.owned_by(p(2))[0], Range::new(1050, 1150));
    }

    #[test]
    fn separately_seeded_rings_refuse_to_merge() {
        let mut a = Ring::new(range());
        let mut b = Ring::new(range());
        a.seed(&[p(1)]).unwrap();
        b.seed(&[p(2)]).unwrap();
        let before = a.clone();
        let e = a.merge(&b).unwrap_err();
        assert!(matches!(e, RingError::SeedMismatch { .. }));
        assert!(e.to_string().contains("split brain"), "{e}");
        assert_eq!(a, before);
        let mut c = Ring::new(Range::new(0, 10));
        assert!(matches!(c.merge(&a), Err(RingError::RangeMismatch { .. })));
        // An unseeded ring adopts.
        let mut d = Ring::new(range());
        assert!(d.merge(&a).unwrap().1);
        assert_eq!(d, a);
    }

    #[test]
    fn take_over_moves_everything_of_the_dead_peer() {
        let mut a = Ring::new(range());
        a.seed(&[p(1), p(2), p(3)]).unwrap();
        a.take_over(p(1), p(2));
        assert!(a.owned_by(p(2)).is_empty());
        assert_eq!(a.owned_by(p(1)), vec![Range::new(1000, 1666)]);
    }

    /// Rings reachable by legal operations from one seeded ring, each
    /// operation done by one replica on its own view.
    fn replicas(ops: &[(u8, u8, u16, u16, u8)]) -> Vec<Ring> {
        let mut base = Ring::new(range());
        base.seed(&[p(1), p(2), p(3)]).unwrap();
        let mut reps = vec![base.clone(), base.clone(), base];
        for &(who, kind, a, len, to) in ops {
            let i = who as usize % 3;
            let me = p(i as u64 + 1);
            match kind % 4 {
                0 | 1 => {
                    let start = 1000 + u64::from(a) % 1000;
                    let end = (start + 1 + u64::from(len) % 100).min(2000);
                    let _ = reps[i].grant(me, Range::new(start, end), p(u64::from(to) % 3 + 1));
                }
                2 => {
                    let tokens: Vec<u64> = reps[i].owned_by(me).iter().map(|r| r.start).collect();
                    if let Some(t) = tokens.first() {
                        if let Some((t, _)) = reps[i].token_of(*t) {
                            reps[i].report_free(me, t, u32::from(len));
                        }
                    }
                }
                _ => {
                    let j = to as usize % 3;
                    if i != j {
                        let other = reps[j].clone();
                        reps[i].merge(&other).unwrap();
                    }
                }
            }
        }
        reps
    }

    proptest! {
        #[test]
        fn merge_is_a_join(ops in proptest::collection::vec(any::<(u8, u8, u16, u16, u8)>(), 0..60)) {
            let reps = replicas(&ops);
            let (a, b, c) = (&reps[0], &reps[1], &reps[2]);
            let join = |x: &Ring, y: &Ring| { let mut z = x.clone(); z.merge(y).unwrap(); z };
            prop_assert_eq!(join(a, b), join(b, a));
            prop_assert_eq!(join(&join(a, b), c), join(a, &join(b, c)));
            prop_assert_eq!(join(a, a), a.clone());
            // Once all have merged, every address has one owner everywhere.
            let all = join(&join(a, b), c);
            let mut again = all.clone();
            prop_assert_eq!(again.merge(a).unwrap().0, Vec::<u64>::new());
            for addr in (1000..2000).step_by(7) {
                prop_assert!(all.owner_of(addr).is_some());
            }
        }
    }
}
