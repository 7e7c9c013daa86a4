//! Unicast routes and the broadcast tree, computed over established and
//! symmetric connections (both ends list the connection as established).
//!
//! # Unicast
//! A breadth-first search from us, visiting neighbours in name order, gives
//! each destination a shortest path; the next hop is its first step. Every
//! next hop is one step closer to the destination, so forwarding hop by hop
//! never loops when peers agree on the topology, and always arrives.
//!
//! # Broadcast
//! One spanning tree per connected component, the same on every peer: the
//! breadth-first tree rooted at the component's lowest-named peer (ties by
//! name). A broadcast from any source S travels the tree outwards from S:
//! each peer forwards it to its tree neighbours except the one it came from
//! (for S's own message, to all of them). In S's tree, re-rooted at S, those
//! neighbours are exactly our children, so every peer receives it exactly
//! once. One shared tree costs a single search per recomputation, where a
//! shortest-path tree per source costs one search per peer: O(N) instead of
//! O(N²) work per topology change. Paths are at most twice the tree depth.
//!
//! While views differ (a new connection that is not yet symmetric in our
//! view), updates also go to that neighbour: [`Routes::forwards_to`].

use serde::{Deserialize, Serialize};

use super::graph::{Graph, NONE};
use super::topology::Topology;
use crate::mesh::peer::PeerName;

/// Routes as computed by one peer.
#[derive(Clone, Debug)]
pub struct Routes {
    me: PeerName,
    me_idx: u32,
    names: Vec<PeerName>,
    hop: Vec<u32>,
    parent: Vec<u32>,
    tree: Vec<PeerName>,
    direct: Vec<PeerName>,
    epoch: u64,
}

/// A newly reachable destination.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct NextHop {
    /// The destination.
    pub dest: PeerName,
    /// Its next hop (the destination itself when directly connected).
    pub via: PeerName,
}

/// A destination whose next hop changed.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct HopChange {
    /// The destination.
    pub dest: PeerName,
    /// The previous next hop.
    pub old: PeerName,
    /// The new next hop.
    pub new: PeerName,
}

/// What changed between two route computations.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct RouteChange {
    /// The epoch of the new routes: datapath operations computed under an
    /// older epoch are stale.
    pub epoch: u64,
    /// Destinations that became reachable.
    pub added: Vec<NextHop>,
    /// Destinations that are no longer reachable.
    pub removed: Vec<PeerName>,
    /// Destinations reached through a different next hop.
    pub changed: Vec<HopChange>,
    /// Our new broadcast tree neighbours, if they changed.
    pub broadcast: Option<Vec<PeerName>>,
}

impl RouteChange {
    /// Whether nothing changed.
    pub fn is_empty(&self) -> bool {
        self.added.is_empty() && self.removed.is_empty() && self.changed.is_empty() && self.broadcast.is_none()
    }
}

impl Routes {
    /// No routes: a peer that knows nobody.
    pub fn empty(me: PeerName) -> Routes {
        Routes { me, me_idx: NONE, names: vec![], hop: vec![], parent: vec![], tree: vec![], direct: vec![], epoch: 0 }
    }

    /// Computes the routes of `me` over a topology.
    pub fn from_topology(t: &Topology, me: PeerName, epoch: u64) -> Routes {
        Routes::compute(&Graph::build(t), me, epoch)
    }

    /// Computes the routes of `me` over `graph`.
    pub(crate) fn compute(graph: &Graph, me: PeerName, epoch: u64) -> Routes {
        let Some(me_idx) = graph.index(me) else {
            return Routes { epoch, ..Routes::empty(me) };
        };
        let from_me = graph.bfs(me_idx);
        let mut hop = vec![NONE; graph.len()];
        for &i in &from_me.order[1..] {
            let p = from_me.parent[i as usize];
            hop[i as usize] = if p == me_idx { i } else { hop[p as usize] };
        }
        let root = from_me.order.iter().copied().min().unwrap_or(me_idx);
        let parent = graph.bfs(root).parent;
        let mut tree = Vec::new();
        let up = parent[me_idx as usize];
        if up != me_idx {
            tree.push(graph.name(up));
        }
        for &j in graph.neighbours(me_idx) {
            if parent[j as usize] == me_idx {
                tree.push(graph.name(j));
            }
        }
        tree.sort_unstable();
        let direct = graph.neighbours(me_idx).iter().map(|&j| graph.name(j)).collect();
        Routes { me, me_idx, names: graph.names().to_vec(), hop, parent, tree, direct, epoch }
    }

    /// The epoch: it increases with every computation that changed something.
    pub fn epoch(&self) -> u64 {
        self.epoch
    }

    /// The same routes under another epoch.
    pub(crate) fn with_epoch(self, epoch: u64) -> Routes {
        Routes { epoch, ..self }
    }

    fn index(&self, name: PeerName) -> Option<usize> {
        self.names.binary_search(&name).ok()
    }

    fn hop_of(&self, i: usize) -> Option<PeerName> {
        match self.hop[i] {
            NONE => None,
            h => Some(self.names[h as usize]),
        }
    }

    /// The next hop towards `dest`, if reachable (never for ourselves).
    pub fn next_hop(&self, dest: PeerName) -> Option<PeerName> {
        self.hop_of(self.index(dest)?)
    }

    /// Every reachable destination with its next hop, by destination.
    pub fn unicast(&self) -> impl Iterator<Item = NextHop> + '_ {
        (0..self.names.len()).filter_map(|i| Some(NextHop { dest: self.names[i], via: self.hop_of(i)? }))
    }

    /// Our neighbours in the broadcast tree.
    pub fn broadcast_neighbours(&self) -> &[PeerName] {
        &self.tree
    }

    /// Our directly connected peers over established, symmetric connections.
    pub fn direct_neighbours(&self) -> &[PeerName] {
        &self.direct
    }

    /// Where we forward a broadcast originated by `src`: our tree neighbours
    /// except the one towards `src`. A source outside our component (or
    /// unknown) gets all of them.
    pub fn broadcast_next_hops(&self, src: PeerName) -> Vec<PeerName> {
        let Some(s) = self.index(src) else { return self.tree.clone() };
        if src == self.me || self.parent[s] == NONE {
            return self.tree.clone();
        }
        // Walk from the source towards the root: if we are on the way, the
        // step before us is our child towards it; otherwise it is above us.
        let (mut x, mut prev) = (s as u32, NONE);
        let toward = loop {
            if x == self.me_idx {
                break prev;
            }
            let p = self.parent[x as usize];
            if p == x {
                break self.parent[self.me_idx as usize];
            }
            (prev, x) = (x, p);
        };
        let toward = self.names[toward as usize];
        self.tree.iter().copied().filter(|&n| n != toward).collect()
    }

    /// Whether updates and broadcasts go to the directly connected `remote`:
    /// it is a tree neighbour, or the connection is not (yet) established
    /// and symmetric in our view, so the tree cannot account for it.
    pub fn forwards_to(&self, remote: PeerName) -> bool {
        self.tree.binary_search(&remote).is_ok() || self.direct.binary_search(&remote).is_err()
    }

    /// Number of reachable destinations.
    pub fn reachable(&self) -> usize {
        self.hop.iter().filter(|&&h| h != NONE).count()
    }

    /// What changed from `self` to `new`, stamped with `new`'s epoch.
    pub fn diff(&self, new: &Routes) -> RouteChange {
        let mut change = RouteChange { epoch: new.epoch, ..RouteChange::default() };
        let (mut i, mut j) = (0, 0);
        while i < self.names.len() || j < new.names.len() {
            let (dest, old, cur) = match (self.names.get(i), new.names.get(j)) {
                (Some(a), Some(b)) if a == b => {
                    i += 1;
                    j += 1;
                    (*a, self.hop_of(i - 1), new.hop_of(j - 1))
                }
                (Some(a), b) if b.is_none_or(|b| a < b) => {
                    i += 1;
                    (*a, self.hop_of(i - 1), None)
                }
                (_, Some(b)) => {
                    j += 1;
                    (*b, None, new.hop_of(j - 1))
                }
                (_, None) => break,
            };
            match (old, cur) {
                (None, Some(via)) => change.added.push(NextHop { dest, via }),
                (Some(_), None) => change.removed.push(dest),
                (Some(old), Some(new)) if old != new => change.changed.push(HopChange { dest, old, new }),
                _ => {}
            }
        }
        if self.tree != new.tree {
            change.broadcast = Some(new.tree.clone());
        }
        change
    }

    /// An estimate of the heap bytes held.
    pub fn heap_bytes(&self) -> usize {
        self.names.capacity() * 8
            + (self.hop.capacity() + self.parent.capacity()) * 4
            + (self.tree.capacity() + self.direct.capacity()) * 8
    }
}
