//! A dense snapshot of the topology for path computations.
//!
//! Peers are numbered by name order, so visiting neighbours in index order is
//! visiting them in name order: every peer that holds the same topology
//! breaks ties the same way.

use super::topology::Topology;
use crate::mesh::peer::PeerName;

/// Marks "no peer" in index arrays.
pub const NONE: u32 = u32::MAX;

/// Compressed adjacency lists.
#[derive(Debug, Default)]
struct Csr {
    start: Vec<u32>,
    adj: Vec<u32>,
}

impl Csr {
    fn new(n: usize) -> Csr {
        let mut start = Vec::with_capacity(n + 1);
        start.push(0);
        Csr { start, adj: Vec::new() }
    }

    /// Sorts and deduplicates the row being built, then closes it.
    fn end_row(&mut self) {
        let from = *self.start.last().unwrap_or(&0) as usize;
        self.adj[from..].sort_unstable();
        let mut w = from;
        for r in from..self.adj.len() {
            if w == from || self.adj[w - 1] != self.adj[r] {
                self.adj[w] = self.adj[r];
                w += 1;
            }
        }
        self.adj.truncate(w);
        self.start.push(self.adj.len() as u32);
    }

    fn row(&self, i: u32) -> &[u32] {
        let i = i as usize;
        &self.adj[self.start[i] as usize..self.start[i + 1] as usize]
    }
}

/// The topology as index-based graphs.
#[derive(Debug, Default)]
pub struct Graph {
    names: Vec<PeerName>,
    /// Every listed connection, directed from the lister (for reachability).
    listed: Csr,
    /// Established connections listed by both ends (for routing), undirected.
    sym: Csr,
}

/// Parent pointers of a breadth-first search over the symmetric graph.
#[derive(Debug)]
pub struct Bfs {
    /// Indices in the order they were reached; the root first.
    pub order: Vec<u32>,
    /// Per index: the peer it was reached from; the root is its own parent;
    /// [`NONE`] if not reached.
    pub parent: Vec<u32>,
}

impl Graph {
    /// Builds the snapshot. Connections to unknown peers or to oneself, and
    /// repeated connections, are ignored.
    pub fn build(t: &Topology) -> Graph {
        let names: Vec<PeerName> = t.names().collect();
        let n = names.len();
        let mut listed = Csr::new(n);
        let mut est = Csr::new(n);
        for (i, e) in t.iter().enumerate() {
            for c in &e.connections {
                match names.binary_search(&c.remote) {
                    Ok(j) if j != i => {
                        listed.adj.push(j as u32);
                        if c.established {
                            est.adj.push(j as u32);
                        }
                    }
                    _ => {}
                }
            }
            listed.end_row();
            est.end_row();
        }
        let mut sym = Csr::new(n);
        for i in 0..n as u32 {
            for &j in est.row(i) {
                if est.row(j).binary_search(&i).is_ok() {
                    sym.adj.push(j);
                }
            }
            sym.start.push(sym.adj.len() as u32);
        }
        Graph { names, listed, sym }
    }

    /// Number of peers.
    pub fn len(&self) -> usize {
        self.names.len()
    }

    /// The peers, by index.
    pub fn names(&self) -> &[PeerName] {
        &self.names
    }

    /// The index of `name`.
    pub fn index(&self, name: PeerName) -> Option<u32> {
        self.names.binary_search(&name).ok().map(|i| i as u32)
    }

    /// The name at `i`.
    pub fn name(&self, i: u32) -> PeerName {
        self.names[i as usize]
    }

    /// Neighbours of `i` over established, symmetric connections, in order.
    pub fn neighbours(&self, i: u32) -> &[u32] {
        self.sym.row(i)
    }

    /// Which peers can be reached from `from` by following, from each peer
    /// reached, the connections its entry lists (in any state).
    pub fn listed_reach(&self, from: u32) -> Vec<bool> {
        let mut seen = vec![false; self.len()];
        let mut stack = vec![from];
        seen[from as usize] = true;
        while let Some(i) = stack.pop() {
            for &j in self.listed.row(i) {
                if !seen[j as usize] {
                    seen[j as usize] = true;
                    stack.push(j);
                }
            }
        }
        seen
    }

    /// Breadth-first search from `root` over the symmetric graph, visiting
    /// neighbours in name order.
    pub fn bfs(&self, root: u32) -> Bfs {
        let mut parent = vec![NONE; self.len()];
        let mut order = Vec::with_capacity(self.len());
        parent[root as usize] = root;
        order.push(root);
        let mut head = 0;
        while head < order.len() {
            let i = order[head];
            head += 1;
            for &j in self.sym.row(i) {
                if parent[j as usize] == NONE {
                    parent[j as usize] = i;
                    order.push(j);
                }
            }
        }
        Bfs { order, parent }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::mesh::core::topology::{ConnectionInfo, PeerEntry};
    use crate::mesh::peer::{PeerUid, ShortId};

    fn entry(name: u64, conns: &[(u64, bool)]) -> PeerEntry {
        PeerEntry {
            name: PeerName::from_u64(name),
            uid: PeerUid(1),
            version: 1,
            nickname: String::new(),
            short_id: ShortId::from_bits(0),
            connections: conns
                .iter()
                .map(|&(r, est)| ConnectionInfo {
                    remote: PeerName::from_u64(r),
                    address: String::new(),
                    outbound: true,
                    established: est,
                })
                .collect(),
        }
    }

    #[test]
    fn only_established_symmetric_connections_route() {
        let mut t = Topology::new();
        t.merge(entry(1, &[(2, true), (3, true), (4, false)]));
        t.merge(entry(2, &[(1, true)]));
        t.merge(entry(3, &[])); // does not list 1 back
        t.merge(entry(4, &[(1, true)])); // 1 lists it unestablished
        let g = Graph::build(&t);
        assert_eq!(g.neighbours(0), &[1]);
        assert_eq!(g.bfs(0).order, vec![0, 1]);
        // Reachability follows every listed connection.
        assert_eq!(g.listed_reach(0), vec![true, true, true, true]);
        assert_eq!(g.listed_reach(2), vec![false, false, true, false]);
    }
}
