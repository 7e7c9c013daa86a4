//! The router's upkeep: flushing coalesced updates, periodic gossip, route
//! recomputation (with our own entry's fix-ups and garbage collection), and
//! the repair that follows a change of broadcast tree.

use rand::Rng;

use super::gossip;
use super::graph::Graph;
use super::router::{jittered, Router};
use super::routes::Routes;
use super::types::{ConnId, MeshEvent};
use super::wire::{self, pb, pb::mesh_message::Body};
use crate::mesh::peer::{PeerName, ShortId};

impl Router {
    /// Sends pending entries and channel deltas along the tree.
    pub(super) fn flush(&mut self, now: u64) {
        self.flush_due = None;
        self.last_flush = Some(now);
        let pending = std::mem::take(&mut self.pending);
        let chans = std::mem::take(&mut self.pending_channels);
        let mut out = Vec::new();
        for (id, remote) in self.forward_targets(None) {
            let entries = pending
                .iter()
                .filter(|&(&n, &from)| from != Some(id) && n != remote)
                .filter_map(|(&n, _)| self.topology.get(n));
            for msg in wire::encode_updates(entries, &[], self.config.max_update_bytes) {
                out.push((id, msg));
            }
            for (channel, delta, _) in chans.iter().filter(|c| c.2 != Some(id)) {
                let body = Body::ChannelUpdate(pb::ChannelUpdate { channel: channel.clone(), delta: delta.clone() });
                out.push((id, wire::encode(body)));
            }
        }
        for (id, msg) in out {
            self.send(id, msg);
        }
    }

    /// Periodic anti-entropy with a logarithmic random subset of neighbours.
    pub(super) fn gossip(&mut self, now: u64) {
        self.gossip_due = now + jittered(&mut self.rng, self.config.gossip_interval_ms);
        let ids: Vec<ConnId> = self.conns.keys().copied().collect();
        let summary = self.summary();
        for i in gossip::pick_subset(&mut self.rng, ids.len()) {
            self.send(ids[i], summary.clone());
            self.send_channel_digests(ids[i]);
        }
    }

    /// Our gossip channels' digests, to `conn`.
    pub(super) fn send_channel_digests(&mut self, conn: ConnId) {
        let digests: Vec<Vec<u8>> = self
            .channels
            .iter()
            .filter_map(|(name, s)| {
                let digest = s.as_ref()?.digest();
                Some(wire::encode(Body::ChannelDigest(pb::ChannelDigest { channel: name.clone(), digest })))
            })
            .collect();
        for d in digests {
            self.send(conn, d);
        }
    }

    /// Recomputes routes (coalesced), after settling our own entry and
    /// collecting garbage.
    pub(super) fn recompute(&mut self, now: u64) {
        self.route_due = None;
        self.gc_due = None;
        self.last_route = Some(now);
        self.resolve_own(now);
        self.route_due = None;
        let graph = Graph::build(&self.topology);
        self.collect_garbage(now, &graph);
        let new = Routes::compute(&graph, self.me.name, self.routes.epoch() + 1);
        let change = self.routes.diff(&new);
        if change.broadcast.is_some() {
            self.repair_due = Some(now + self.config.repair_delay_ms);
        }
        self.routes = if change.is_empty() {
            new.with_epoch(self.routes.epoch())
        } else {
            self.events.push_back(MeshEvent::RouteChange(change));
            new
        };
    }

    /// Our tree settled after a change: summaries to our tree neighbours.
    pub(super) fn repair(&mut self) {
        self.repair_due = None;
        let summary = self.summary();
        for (id, _) in self.conns_to(self.routes.broadcast_neighbours()) {
            self.send(id, summary.clone());
        }
    }

    /// Our connections to the given peers.
    pub(super) fn conns_to(&self, peers: &[PeerName]) -> Vec<(ConnId, PeerName)> {
        peers.iter().filter_map(|p| Some((*self.by_name.get(p)?, *p))).collect()
    }

    /// Outbids an entry with our name, and moves off a short ID that a
    /// lower-named peer holds (to a random free one).
    pub(super) fn resolve_own(&mut self, now: u64) {
        let mut changed = false;
        if let Some(v) = self.outbid.take() {
            self.version = self.version.max(v);
            changed = true;
        }
        let sid = self.me.short_id;
        if self.topology.iter().any(|e| e.name < self.me.name && e.short_id == sid) {
            let mut used = vec![false; usize::from(ShortId::MAX) + 1];
            for e in self.topology.iter().filter(|e| e.name != self.me.name) {
                used[usize::from(e.short_id.get())] = true;
            }
            let free: Vec<u32> = (0..used.len() as u32).filter(|&i| !used[i as usize]).collect();
            if !free.is_empty() {
                let new = ShortId::from_bits(free[self.rng.gen_range(0..free.len())]);
                self.events.push_back(MeshEvent::ShortIdChanged { old: sid, new });
                self.me.short_id = new;
                changed = true;
            }
        }
        if changed {
            self.publish_own(now);
        }
    }

    /// Removes peers that stayed unreachable (by any listed connection) for
    /// the grace period, leaving a tombstone so that stale copies still
    /// circulating do not bring them back. A tombstone is lifted as soon as
    /// a reachable entry lists the peer again (a healed partition), and we
    /// then ask a neighbour for what we lack.
    pub(super) fn collect_garbage(&mut self, now: u64, graph: &Graph) {
        let Some(me) = graph.index(self.me.name) else { return };
        let reach = graph.listed_reach(me);
        let mut lifted = false;
        if !self.tombstones.is_empty() {
            // The graph numbers peers in the topology's order.
            for (e, _) in self.topology.iter().zip(&reach).filter(|(_, &r)| r) {
                for c in &e.connections {
                    lifted |= self.tombstones.remove(&c.remote).is_some();
                }
            }
            self.tombstones.retain(|_, t| t.2 > now);
        }
        let mut next = None::<u64>;
        for (i, &reached) in reach.iter().enumerate() {
            let name = graph.name(i as u32);
            if reached {
                if !self.unreachable_since.is_empty() {
                    self.unreachable_since.remove(&name);
                }
                continue;
            }
            let due = *self.unreachable_since.entry(name).or_insert(now) + self.config.gc_grace_ms;
            if due > now {
                next = Some(next.map_or(due, |t| t.min(due)));
                continue;
            }
            self.unreachable_since.remove(&name);
            if let Some(e) = self.topology.remove(name) {
                self.seen.remove(&name);
                self.tombstones.insert(name, (e.uid, e.version, now + 2 * self.config.gc_grace_ms));
                self.events.push_back(MeshEvent::PeerRemoved { name, uid: e.uid });
            }
        }
        self.gc_due = next;
        if lifted {
            let ids: Vec<ConnId> = self.conns.keys().copied().collect();
            let summary = self.summary();
            for i in gossip::pick_subset(&mut self.rng, ids.len()) {
                self.send(ids[i], summary.clone());
            }
        }
    }
}
