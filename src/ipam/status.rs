//! What `weavectl status ipam` shows: owned ranges per peer, free space,
//! unreachable owners, and anything wrong.

use serde::{Deserialize, Serialize};

use super::allocator::Ipam;
use super::space::{free_count, Range};

/// One owner's share of the ring.
#[derive(Clone, Debug, Serialize, Deserialize, PartialEq, Eq)]
pub struct OwnerView {
    /// The peer.
    pub peer: String,
    /// Its ranges, as `first-last`.
    pub ranges: Vec<String>,
    /// Addresses it owns.
    pub size: u64,
    /// Free addresses it last reported.
    pub free: u64,
    /// Whether it is this peer or reachable from it.
    pub reachable: bool,
}

/// IPAM's state on one peer.
#[derive(Clone, Debug, Serialize, Deserialize, PartialEq, Eq)]
pub struct IpamStatus {
    /// The range.
    pub range: String,
    /// The default subnet.
    pub default_subnet: String,
    /// How the ring is seeded (`consensus=3`, `seed=...`, `observer`).
    pub init: String,
    /// Whether the ring is seeded, and by whom.
    pub seeds: Vec<String>,
    /// Owners, this peer first.
    pub owners: Vec<OwnerView>,
    /// Addresses allocated here.
    pub allocated: usize,
    /// Free addresses this peer owns.
    pub free_here: u64,
    /// Requests waiting for space.
    pub pending: usize,
    /// Owners of space that cannot be reached now.
    pub unreachable_owners: Vec<String>,
    /// Consensus progress while unseeded.
    pub consensus: Option<String>,
    /// Problems: a split brain, allocations in space now owned elsewhere.
    pub errors: Vec<String>,
}

impl Ipam {
    /// The status.
    pub fn status(&self) -> IpamStatus {
        let ring = self.ring();
        let mut owners: Vec<OwnerView> = Vec::new();
        let mut names: Vec<_> = ring.tokens().map(|(_, e)| e.owner).collect();
        names.sort_unstable_by_key(|n| (*n != self.me, *n));
        names.dedup();
        for n in names {
            let ranges = ring.owned_by(n);
            let free = ring.ranges().filter(|(_, e)| e.owner == n).map(|(_, e)| u64::from(e.free)).sum();
            owners.push(OwnerView {
                peer: n.to_string(),
                size: ranges.iter().map(Range::len).sum(),
                ranges: ranges.iter().map(Range::to_string).collect(),
                free,
                reachable: n == self.me || self.reachable.contains(&n),
            });
        }
        let mine = ring.owned_by(self.me);
        let free_here = mine.iter().map(|r| free_count(*r, &self.used)).sum();
        let mut errors = self.errors.clone();
        let lost: Vec<String> = self
            .used
            .keys()
            .filter(|a| ring.is_seeded() && ring.owner_of(**a) != Some(self.me))
            .map(|a| super::space::addr(*a).to_string())
            .collect();
        if !lost.is_empty() {
            errors.push(format!(
                "{} address(es) allocated here now lie in space owned by another peer (was this peer removed with \
                 rmpeer while alive?): {}",
                lost.len(),
                lost.iter().take(8).cloned().collect::<Vec<_>>().join(", ")
            ));
        }
        let consensus = match &self.config().init {
            super::Init::Consensus(n) if !ring.is_seeded() => Some(format!(
                "waiting for consensus: {} of {} peers promised (a majority, {}, is needed)",
                self.paxos.promised_top(),
                n,
                n / 2 + 1
            )),
            _ => None,
        };
        IpamStatus {
            range: self.config().range.to_string(),
            default_subnet: self.config().default_subnet.to_string(),
            init: match &self.config().init {
                super::Init::Consensus(n) => format!("consensus={n}"),
                super::Init::Seed(v) => {
                    format!("seed={}", v.iter().map(|n| n.to_string()).collect::<Vec<_>>().join(","))
                }
                super::Init::Observer => "observer".into(),
            },
            seeds: ring.seeds().iter().map(|n| n.to_string()).collect(),
            unreachable_owners: owners.iter().filter(|o| !o.reachable).map(|o| o.peer.clone()).collect(),
            owners,
            allocated: self.used.len(),
            free_here,
            pending: self.pending().count(),
            consensus,
            errors,
        }
    }
}
