//! What the forwarder is told: who we are, who the peers are, and the routes.
//!
//! These are plain values so that the core depends on nothing of the mesh's
//! internals. The daemon fills a [`RouteTable`] from the mesh's routes:
//! `next_hops` from `Routes::unicast()`, and `broadcast[origin]` from
//! `Routes::broadcast_next_hops(origin)` for every known origin, ourselves
//! included (for us: all our broadcast tree neighbours).

use std::collections::{BTreeMap, BTreeSet};
use std::net::Ipv4Addr;

use super::op::Dep;
use crate::mesh::peer::{PeerName, ShortId};

/// Our own identity and datapath ports.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct LocalPeer {
    /// Our peer name.
    pub name: PeerName,
    /// Our short ID: the source half of the VNIs we send.
    pub short_id: ShortId,
    /// Our underlay address: the outer source of the tunnels we send.
    pub underlay: Ipv4Addr,
    /// The datapath port number of the VXLAN vport.
    pub vxlan_port: u32,
}

/// A remote peer as the datapath needs to know it.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct PeerInfo {
    /// The peer's name.
    pub name: PeerName,
    /// Its short ID, which names it inside VNIs.
    pub short_id: ShortId,
    /// Its underlay address: the outer destination of tunnels to it.
    pub underlay: Ipv4Addr,
}

/// Tunables. All durations are in milliseconds of the caller's clock.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Config {
    /// A learned MAC is forgotten after this long unseen. Misses and the
    /// `used` times of flows keyed on it as source both count as seen.
    pub mac_timeout_ms: u64,
    /// An installed flow is deleted after this long unused.
    pub flow_idle_ms: u64,
    /// The TTL of the outer IPv4 header of the tunnels we send.
    pub tunnel_ttl: u8,
    /// The outer UDP destination port, or `None` for the one the VXLAN
    /// vport was created with (the kernel's default when `tp_dst` is absent).
    pub tunnel_dst_port: Option<u16>,
}

impl Default for Config {
    fn default() -> Config {
        Config { mac_timeout_ms: 300_000, flow_idle_ms: 10_000, tunnel_ttl: 64, tunnel_dst_port: None }
    }
}

/// The routes, as plain values.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct RouteTable {
    /// The next hop towards each reachable destination peer (the
    /// destination itself when directly connected).
    pub next_hops: BTreeMap<PeerName, PeerName>,
    /// For each broadcast origin, our children in that origin's broadcast
    /// tree: the peers we forward its broadcasts to. For ourselves as the
    /// origin, all our tree neighbours.
    pub broadcast: BTreeMap<PeerName, Vec<PeerName>>,
}

impl RouteTable {
    /// No routes at all.
    pub fn new() -> RouteTable {
        RouteTable::default()
    }

    /// Adds (or replaces) the next hop towards `dest`.
    pub fn with_next_hop(mut self, dest: PeerName, via: PeerName) -> RouteTable {
        self.next_hops.insert(dest, via);
        self
    }

    /// Sets our children in `origin`'s broadcast tree.
    pub fn with_children(mut self, origin: PeerName, children: impl IntoIterator<Item = PeerName>) -> RouteTable {
        self.broadcast.insert(origin, children.into_iter().collect());
        self
    }

    /// The next hop towards `dest`.
    pub fn next_hop(&self, dest: PeerName) -> Option<PeerName> {
        self.next_hops.get(&dest).copied()
    }

    /// Our children in `origin`'s broadcast tree (none if unknown).
    pub fn children(&self, origin: PeerName) -> &[PeerName] {
        self.broadcast.get(&origin).map_or(&[], Vec::as_slice)
    }

    /// The same table with every child list sorted and deduplicated, and
    /// empty child lists dropped, so that equal routes compare equal.
    pub(crate) fn normalized(mut self) -> RouteTable {
        for c in self.broadcast.values_mut() {
            c.sort_unstable();
            c.dedup();
        }
        self.broadcast.retain(|_, c| !c.is_empty());
        self
    }

    /// The dependencies that differ between two normalized tables: a
    /// [`Dep::Route`] for each destination whose next hop changed (added,
    /// removed or moved), a [`Dep::Tree`] for each origin whose children did.
    pub(crate) fn changed_deps(&self, new: &RouteTable) -> BTreeSet<Dep> {
        let mut out = BTreeSet::new();
        let dests: BTreeSet<_> = self.next_hops.keys().chain(new.next_hops.keys()).collect();
        for d in dests {
            if self.next_hops.get(d) != new.next_hops.get(d) {
                out.insert(Dep::Route(*d));
            }
        }
        let origins: BTreeSet<_> = self.broadcast.keys().chain(new.broadcast.keys()).collect();
        for o in origins {
            if self.broadcast.get(o) != new.broadcast.get(o) {
                out.insert(Dep::Tree(*o));
            }
        }
        out
    }
}

/// The known peers, indexed by name and by short ID.
#[derive(Clone, Debug, Default)]
pub(crate) struct Peers {
    by_name: BTreeMap<PeerName, PeerInfo>,
    by_short: BTreeMap<ShortId, BTreeSet<PeerName>>,
}

impl Peers {
    pub(crate) fn get(&self, name: PeerName) -> Option<&PeerInfo> {
        self.by_name.get(&name)
    }

    /// The one peer with this short ID; `None` if there is none or, while
    /// the mesh resolves a collision, more than one.
    pub(crate) fn by_short_id(&self, id: ShortId) -> Option<&PeerInfo> {
        match self.by_short.get(&id) {
            Some(names) if names.len() == 1 => self.by_name.get(names.first()?),
            _ => None,
        }
    }

    /// The peers that have this short ID (more than one during a collision).
    pub(crate) fn with_short_id(&self, id: ShortId) -> impl Iterator<Item = PeerName> + '_ {
        self.by_short.get(&id).into_iter().flatten().copied()
    }

    /// Adds or replaces a peer; returns the previous entry.
    pub(crate) fn upsert(&mut self, info: PeerInfo) -> Option<PeerInfo> {
        let old = self.remove(info.name);
        self.by_short.entry(info.short_id).or_default().insert(info.name);
        self.by_name.insert(info.name, info);
        old
    }

    /// Removes a peer; returns its entry.
    pub(crate) fn remove(&mut self, name: PeerName) -> Option<PeerInfo> {
        let old = self.by_name.remove(&name)?;
        if let Some(set) = self.by_short.get_mut(&old.short_id) {
            set.remove(&name);
            if set.is_empty() {
                self.by_short.remove(&old.short_id);
            }
        }
        Some(old)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn p(n: u64) -> PeerName {
        PeerName::from_u64(n)
    }

    fn info(n: u64, sid: u32) -> PeerInfo {
        PeerInfo { name: p(n), short_id: ShortId::from_bits(sid), underlay: Ipv4Addr::new(10, 0, 0, n as u8) }
    }

    #[test]
    fn route_diff_names_only_what_changed() {
        let old = RouteTable::new()
            .with_next_hop(p(2), p(2))
            .with_next_hop(p(3), p(2))
            .with_next_hop(p(4), p(4))
            .with_children(p(1), [p(2), p(4)])
            .with_children(p(5), [p(2)])
            .normalized();
        let new = RouteTable::new()
            .with_next_hop(p(2), p(2))
            .with_next_hop(p(3), p(4))
            .with_next_hop(p(6), p(4))
            .with_children(p(1), [p(4), p(2), p(2)])
            .with_children(p(5), [p(4)])
            .normalized();
        let want: BTreeSet<Dep> =
            [Dep::Route(p(3)), Dep::Route(p(4)), Dep::Route(p(6)), Dep::Tree(p(5))].into_iter().collect();
        assert_eq!(old.changed_deps(&new), want);
        assert!(new.changed_deps(&new).is_empty());
    }

    #[test]
    fn empty_child_lists_equal_absent_ones() {
        let a = RouteTable::new().with_children(p(1), []).normalized();
        assert!(a.changed_deps(&RouteTable::new()).is_empty());
        assert_eq!(a.children(p(1)), &[] as &[PeerName]);
    }

    #[test]
    fn short_ids_resolve_only_when_unique() {
        let mut peers = Peers::default();
        peers.upsert(info(2, 7));
        assert_eq!(peers.by_short_id(ShortId::from_bits(7)).map(|i| i.name), Some(p(2)));
        peers.upsert(info(3, 7));
        assert_eq!(peers.by_short_id(ShortId::from_bits(7)), None);
        // Peer 3 moves to another ID: 7 is unique again.
        peers.upsert(info(3, 8));
        assert_eq!(peers.by_short_id(ShortId::from_bits(7)).map(|i| i.name), Some(p(2)));
        assert_eq!(peers.remove(p(2)), Some(info(2, 7)));
        assert_eq!(peers.by_short_id(ShortId::from_bits(7)), None);
        assert_eq!(peers.remove(p(2)), None);
    }
}
