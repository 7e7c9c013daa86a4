//! Seeding the ring by consensus (`--ipalloc-init consensus=N`): single
//! decree Paxos over gossip.
//!
//! Every participant is acceptor, learner and, when it needs the ring,
//! proposer. Its whole Paxos state is one [`Claim`] that only it changes and
//! that is gossiped with the ring; claims merge by keeping the greater
//! `(promise, accepted)` per node, which only grow. Each peer then *thinks*
//! over the claims it has seen:
//! - an acceptor promises the highest proposal it has seen (and so refuses
//!   everything lower from then on);
//! - a proposer whose proposal has been promised by a quorum picks the value
//!   of the highest accepted proposal among them, or its own (the peers it
//!   knows) if none, and accepts it itself;
//! - an acceptor accepts the proposal it promised once its proposer has;
//! - a value accepted under one proposal by a quorum is chosen.
//!
//! Quorums are majorities of the N expected peers, so two quorums share an
//! acceptor and two halves of a partition cannot choose different values.

use std::collections::BTreeMap;

use crate::mesh::peer::PeerName;

/// A proposal number: a round, then the proposer's name to break ties.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct ProposalId {
    /// The round; 0 means none.
    pub round: u64,
    /// Who proposed it.
    pub node: u64,
}

impl ProposalId {
    /// Whether this is a real proposal.
    pub fn is_some(&self) -> bool {
        self.round > 0
    }
}

/// One node's Paxos state.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Claim {
    /// The highest proposal promised.
    pub promise: ProposalId,
    /// The proposal accepted, if any (`round` 0: none).
    pub accepted: ProposalId,
    /// The value accepted with it: peers to seed, sorted.
    pub value: Option<Vec<PeerName>>,
}

impl Claim {
    fn order(&self) -> (ProposalId, ProposalId) {
        (self.promise, self.accepted)
    }
}

/// The claims one peer has seen, its own included.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Paxos {
    claims: BTreeMap<PeerName, Claim>,
}

impl Paxos {
    /// Every claim, by node.
    pub fn claims(&self) -> &BTreeMap<PeerName, Claim> {
        &self.claims
    }

    /// Merges one node's claim; returns whether it was new.
    pub fn merge_claim(&mut self, node: PeerName, c: Claim) -> bool {
        match self.claims.get_mut(&node) {
            Some(ours) if ours.order() >= c.order() => false,
            Some(ours) => {
                *ours = c;
                true
            }
            None => {
                self.claims.insert(node, c);
                true
            }
        }
    }

    /// Starts (or restarts) a proposal by `me`, numbered above every one
    /// seen. Returns its id.
    pub fn propose(&mut self, me: PeerName) -> ProposalId {
        let top = self.claims.values().map(|c| c.promise.round.max(c.accepted.round)).max().unwrap_or(0);
        let id = ProposalId { round: top + 1, node: me.as_u64() };
        let mine = self.claims.entry(me).or_default();
        mine.promise = id;
        id
    }

    /// Whether `me` has a proposal of its own still open.
    pub fn proposing(&self, me: PeerName) -> bool {
        self.claims.get(&me).is_some_and(|c| c.promise.node == me.as_u64() && c.promise.is_some())
    }

    /// Acts on what `me` has seen. `value` is what `me` would propose (the
    /// peers it knows). Returns whether `me`'s claim changed.
    pub fn think(&mut self, me: PeerName, quorum: usize, value: &[PeerName]) -> bool {
        let before = self.claims.get(&me).cloned();
        let top = self.claims.values().map(|c| c.promise).max().unwrap_or_default();
        let mine = self.claims.entry(me).or_default();
        // Acceptor: promise the highest proposal seen.
        if top > mine.promise {
            mine.promise = top;
        }
        let promise = mine.promise;
        let accepted = mine.accepted;
        if promise.is_some() && accepted != promise {
            if promise.node == me.as_u64() {
                // Proposer: a quorum promised ours?
                let promised: Vec<&Claim> = self.claims.values().filter(|c| c.promise == promise).collect();
                if promised.len() >= quorum {
                    let prior = promised
                        .iter()
                        .filter(|c| c.accepted.is_some() && c.value.is_some())
                        .max_by_key(|c| c.accepted)
                        .and_then(|c| c.value.clone());
                    let mut v = prior.unwrap_or_else(|| value.to_vec());
                    v.sort_unstable();
                    v.dedup();
                    let mine = self.claims.entry(me).or_default();
                    mine.accepted = promise;
                    mine.value = Some(v);
                }
            } else {
                // Acceptor: the proposer we promised has accepted its value.
                let proposer = PeerName::from_u64(promise.node);
                let v = self.claims.get(&proposer).filter(|c| c.accepted == promise).and_then(|c| c.value.clone());
                if let Some(v) = v {
                    let mine = self.claims.entry(me).or_default();
                    mine.accepted = promise;
                    mine.value = Some(v);
                }
            }
        }
        self.claims.get(&me).cloned() != before
    }

    /// The chosen value, once a quorum accepted one proposal.
    pub fn chosen(&self, quorum: usize) -> Option<Vec<PeerName>> {
        let mut count: BTreeMap<ProposalId, usize> = BTreeMap::new();
        for c in self.claims.values().filter(|c| c.accepted.is_some()) {
            *count.entry(c.accepted).or_default() += 1;
        }
        let (id, _) = count.into_iter().filter(|(_, n)| *n >= quorum).max()?;
        self.claims.values().find(|c| c.accepted == id).and_then(|c| c.value.clone())
    }

    /// How many nodes promised the highest proposal seen (for status).
    pub fn promised_top(&self) -> usize {
        let top = self.claims.values().map(|c| c.promise).max().unwrap_or_default();
        self.claims.values().filter(|c| c.promise == top && top.is_some()).count()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use rand::rngs::StdRng;
    use rand::{Rng, SeedableRng};

    fn p(n: u64) -> PeerName {
        PeerName::from_u64(n)
    }

    /// `n` nodes, some proposing, gossiping random pairs with random drops
    /// and a partition for a while; every node that learns a value learns
    /// the same one, and with the partition healed all learn it.
    fn run(seed: u64, n: usize, quorum: usize, proposers: usize) -> Vec<Option<Vec<PeerName>>> {
        let mut rng = StdRng::seed_from_u64(seed);
        let mut nodes: Vec<Paxos> = vec![Paxos::default(); n];
        // Each proposer proposes the peers it "knows": a random subset with itself.
        let values: Vec<Vec<PeerName>> = (0..n)
            .map(|i| {
                let mut v: Vec<PeerName> =
                    (0..n).filter(|j| *j == i || rng.gen_bool(0.7)).map(|j| p(j as u64 + 1)).collect();
                v.sort_unstable();
                v
            })
            .collect();
        for (i, node) in nodes.iter_mut().enumerate().take(proposers) {
            node.propose(p(i as u64 + 1));
        }
        let side: Vec<bool> = (0..n).map(|_| rng.gen_bool(0.5)).collect();
        for step in 0..4000 {
            let partitioned = step < 1500;
            let a = rng.gen_range(0..n);
            let b = rng.gen_range(0..n);
            if a == b || (partitioned && side[a] != side[b]) || rng.gen_bool(0.2) {
                continue;
            }
            let from = nodes[a].clone();
            for (k, c) in from.claims() {
                nodes[b].merge_claim(*k, c.clone());
            }
            nodes[b].think(p(b as u64 + 1), quorum, &values[b]);
            // A proposer that has not got its value chosen after a while retries.
            if step % 700 == 699 && b < proposers && nodes[b].chosen(quorum).is_none() {
                nodes[b].propose(p(b as u64 + 1));
            }
            let chosen: Vec<_> = nodes.iter().filter_map(|x| x.chosen(quorum)).collect();
            assert!(chosen.windows(2).all(|w| w[0] == w[1]), "two values chosen (seed {seed})");
        }
        nodes.iter().map(|x| x.chosen(quorum)).collect()
    }

    #[test]
    fn one_value_is_chosen_and_learned() {
        for seed in 0..60 {
            let n = 3 + (seed as usize % 5);
            let out = run(seed, n, n / 2 + 1, 1 + seed as usize % 3);
            let first = out[0].clone();
            assert!(first.is_some(), "seed {seed}: nothing chosen");
            assert!(out.iter().all(|v| *v == first), "seed {seed}: {out:?}");
        }
    }

    #[test]
    fn a_minority_chooses_nothing() {
        let mut a = Paxos::default();
        a.propose(p(1));
        for _ in 0..3 {
            a.think(p(1), 2, &[p(1)]);
        }
        assert_eq!(a.chosen(2), None);
        // The second node hears, promises, and the proposer gets its quorum.
        let mut b = Paxos::default();
        for (k, c) in a.claims() {
            b.merge_claim(*k, c.clone());
        }
        assert!(b.think(p(2), 2, &[p(2)]));
        for (k, c) in b.claims() {
            a.merge_claim(*k, c.clone());
        }
        a.think(p(1), 2, &[p(1), p(2)]);
        for (k, c) in a.claims() {
            b.merge_claim(*k, c.clone());
        }
        b.think(p(2), 2, &[p(2)]);
        assert_eq!(b.chosen(2), Some(vec![p(1), p(2)]));
        // A stale claim changes nothing.
        assert!(!b.merge_claim(p(1), Claim::default()));
    }
}
