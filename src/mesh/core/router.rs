//! The router: the one object the daemon drives.
//!
//! Inputs are `handle_*(now, …)`; outputs are pulled with `poll_*()`. After
//! any input, the driver drains [`Router::poll_transmit`] (bytes to send on a
//! connection) and [`Router::poll_event`], and arms a timer for
//! [`Router::poll_timeout`], calling [`Router::handle_timeout`] when it
//! fires. `now` is milliseconds on any monotonic clock; the router never
//! reads a clock, so runs are reproducible from the seed.
//!
//! Connections: the driver reports each connection whose handshake
//! completed with [`Router::handle_connection_up`] and obeys the verdict:
//! - a connection to ourself or a peer-name collision is refused, never to
//!   be retried ([`RefuseReason::retry`]);
//! - of two connections between the same pair, both ends keep the one with
//!   the lower tie-breaker (a value both ends share, see
//!   [`NewConnection::tie_breaker`]), so they agree without talking.

use std::collections::{BTreeMap, VecDeque};

use rand::rngs::StdRng;
use rand::{Rng, SeedableRng};

use super::gossip::{GossipState, SeenWindow};
use super::routes::Routes;
use super::status::{Counters, LinkCounters};
use super::topology::{ConnectionInfo, PeerEntry, Topology};
use super::types::{ConnId, ConnVerdict, MeshConfig, MeshEvent, NewConnection, RefuseReason};
use super::wire::{self, pb, pb::mesh_message::Body};
use crate::mesh::peer::{Identity, PeerName, PeerUid};

/// One accepted connection.
pub(super) struct Link {
    pub(super) remote: Identity,
    pub(super) address: String,
    pub(super) outbound: bool,
    pub(super) established: bool,
    pub(super) tie_breaker: u64,
    pub(super) since: u64,
    pub(super) counters: LinkCounters,
}

/// The mesh router state machine. See the module docs for how to drive it.
pub struct Router {
    pub(super) me: Identity,
    pub(super) version: u64,
    pub(super) config: MeshConfig,
    pub(super) rng: StdRng,
    pub(super) topology: Topology,
    pub(super) routes: Routes,
    pub(super) conns: BTreeMap<ConnId, Link>,
    pub(super) by_name: BTreeMap<PeerName, ConnId>,
    pub(super) channels: BTreeMap<String, Option<Box<dyn GossipState>>>,
    pub(super) seen: BTreeMap<PeerName, SeenWindow>,
    pub(super) next_seq: u64,
    /// Entries to forward at the next flush, with the connection they came
    /// from (which does not need them back).
    pub(super) pending: BTreeMap<PeerName, Option<ConnId>>,
    pub(super) pending_channels: Vec<(String, Vec<u8>, Option<ConnId>)>,
    /// The highest version seen for an entry with our name that would beat
    /// ours (our previous incarnation, or a name collision).
    pub(super) outbid: Option<u64>,
    pub(super) unreachable_since: BTreeMap<PeerName, u64>,
    /// Garbage-collected entries, `(uid, version, until)`: stale copies of
    /// them still circulating are not taken back before `until`.
    pub(super) tombstones: BTreeMap<PeerName, (PeerUid, u64, u64)>,
    pub(super) transmits: VecDeque<(ConnId, Vec<u8>)>,
    pub(super) events: VecDeque<MeshEvent>,
    pub(super) route_due: Option<u64>,
    pub(super) last_route: Option<u64>,
    pub(super) flush_due: Option<u64>,
    pub(super) last_flush: Option<u64>,
    pub(super) gossip_due: u64,
    pub(super) repair_due: Option<u64>,
    /// When the next unreachable peer's grace period ends.
    pub(super) gc_due: Option<u64>,
    pub(super) counters: Counters,
}

impl Router {
    /// A router for peer `me`. `seed` drives every random choice (gossip
    /// targets, timer jitter, short-ID picks).
    pub fn new(me: Identity, config: MeshConfig, seed: u64, now: u64) -> Router {
        let mut rng = StdRng::seed_from_u64(seed);
        let gossip_due = now + jittered(&mut rng, config.gossip_interval_ms);
        let mut r = Router {
            routes: Routes::empty(me.name),
            me,
            version: 1,
            config,
            rng,
            topology: Topology::new(),
            conns: BTreeMap::new(),
            by_name: BTreeMap::new(),
            channels: BTreeMap::new(),
            seen: BTreeMap::new(),
            next_seq: 1,
            pending: BTreeMap::new(),
            pending_channels: Vec::new(),
            outbid: None,
            unreachable_since: BTreeMap::new(),
            tombstones: BTreeMap::new(),
            transmits: VecDeque::new(),
            events: VecDeque::new(),
            route_due: None,
            last_route: None,
            flush_due: None,
            last_flush: None,
            gossip_due,
            repair_due: None,
            gc_due: None,
            counters: Counters::default(),
        };
        let own = r.own_entry();
        r.topology.put(own);
        r
    }

    /// A connection completed its handshake. The driver closes it unless the
    /// verdict keeps it, and closes the replaced one on `AcceptReplacing`.
    pub fn handle_connection_up(&mut self, now: u64, conn: ConnId, new: NewConnection) -> ConnVerdict {
        let name = new.remote.name;
        if self.conns.contains_key(&conn) {
            return ConnVerdict::Refuse(RefuseReason::ConnIdInUse);
        }
        if name == self.me.name {
            let reason = if new.remote.uid == self.me.uid {
                RefuseReason::ConnectToSelf
            } else {
                RefuseReason::NameCollision { name }
            };
            return ConnVerdict::Refuse(reason);
        }
        let mut replaced = None;
        if let Some(&old) = self.by_name.get(&name) {
            let link = &self.conns[&old];
            if link.remote.uid != new.remote.uid {
                return ConnVerdict::Refuse(RefuseReason::NameCollision { name });
            }
            if new.tie_breaker >= link.tie_breaker {
                return ConnVerdict::Refuse(RefuseReason::Duplicate { kept: old });
            }
            self.conns.remove(&old);
            replaced = Some(old);
        }
        let outbound = new.outbound;
        self.conns.insert(
            conn,
            Link {
                remote: new.remote,
                address: new.address,
                outbound,
                established: self.config.establish_on_accept,
                tie_breaker: new.tie_breaker,
                since: now,
                counters: LinkCounters::default(),
            },
        );
        self.by_name.insert(name, conn);
        self.publish_own(now);
        if outbound {
            // One side starts anti-entropy, so the topology crosses once.
            let summary = self.summary();
            self.send(conn, summary);
            self.send_channel_digests(conn);
        }
        match replaced {
            Some(old) => ConnVerdict::AcceptReplacing(old),
            None => ConnVerdict::Accept,
        }
    }

    /// The data path over `conn` works (only needed when
    /// [`MeshConfig::establish_on_accept`] is off). Unknown IDs are ignored.
    pub fn handle_connection_established(&mut self, now: u64, conn: ConnId) {
        if let Some(link) = self.conns.get_mut(&conn) {
            if !link.established {
                link.established = true;
                self.publish_own(now);
            }
        }
    }

    /// A connection closed. Unknown IDs (refused or replaced connections)
    /// are ignored.
    pub fn handle_connection_down(&mut self, now: u64, conn: ConnId) {
        let Some(link) = self.conns.remove(&conn) else { return };
        if self.by_name.get(&link.remote.name) == Some(&conn) {
            self.by_name.remove(&link.remote.name);
        }
        self.publish_own(now);
    }

    /// Runs whatever timers are due.
    pub fn handle_timeout(&mut self, now: u64) {
        if self.route_due.is_some_and(|t| t <= now) || self.gc_due.is_some_and(|t| t <= now) {
            self.recompute(now);
        }
        if self.flush_due.is_some_and(|t| t <= now) {
            self.flush(now);
        }
        if self.repair_due.is_some_and(|t| t <= now) {
            self.repair();
        }
        if self.gossip_due <= now {
            self.gossip(now);
        }
    }

    /// When [`Router::handle_timeout`] should next be called.
    pub fn poll_timeout(&self) -> Option<u64> {
        [self.route_due, self.gc_due, self.flush_due, self.repair_due, Some(self.gossip_due)]
            .into_iter()
            .flatten()
            .min()
    }

    /// The next message to send: an encoded `MeshMessage` for the connection.
    pub fn poll_transmit(&mut self) -> Option<(ConnId, Vec<u8>)> {
        self.transmits.pop_front()
    }

    /// The next event for the daemon.
    pub fn poll_event(&mut self) -> Option<MeshEvent> {
        self.events.pop_front()
    }

    /// Who we are (the short ID is the current one).
    pub fn identity(&self) -> &Identity {
        &self.me
    }

    /// The topology as seen from here.
    pub fn topology(&self) -> &Topology {
        &self.topology
    }

    /// Our current routes.
    pub fn routes(&self) -> &Routes {
        &self.routes
    }

    /// Message and byte counters.
    pub fn counters(&self) -> &Counters {
        &self.counters
    }

    /// Whether routes are waiting to be recomputed.
    pub fn routes_pending(&self) -> bool {
        self.route_due.is_some()
    }

    /// An estimate of the heap bytes this router holds.
    pub fn heap_bytes(&self) -> usize {
        self.topology.heap_bytes()
            + self.routes.heap_bytes()
            + (self.seen.len() + self.pending.len() + self.unreachable_since.len()) * 48
            + self.transmits.iter().map(|(_, b)| b.capacity() + 32).sum::<usize>()
            + self.conns.len() * (std::mem::size_of::<Link>() + 64)
    }

    /// Our entry as it is now.
    fn own_entry(&self) -> PeerEntry {
        let connections = self
            .by_name
            .iter()
            .map(|(&remote, id)| {
                let l = &self.conns[id];
                ConnectionInfo { remote, address: l.address.clone(), outbound: l.outbound, established: l.established }
            })
            .collect();
        PeerEntry {
            name: self.me.name,
            uid: self.me.uid,
            version: self.version,
            nickname: self.me.nickname.clone(),
            short_id: self.me.short_id,
            connections,
        }
    }

    /// Bumps our version and sends our entry along the tree.
    pub(super) fn publish_own(&mut self, now: u64) {
        self.version += 1;
        let own = self.own_entry();
        self.topology.put(own);
        self.queue_entry(now, self.me.name, None);
        self.schedule_routes(now);
    }

    pub(super) fn queue_entry(&mut self, now: u64, name: PeerName, from: Option<ConnId>) {
        self.pending.insert(name, from);
        self.schedule_flush(now);
    }

    pub(super) fn schedule_flush(&mut self, now: u64) {
        if self.flush_due.is_none() {
            self.flush_due = Some(self.last_flush.map_or(now, |t| now.max(t + self.config.update_delay_ms)));
        }
    }

    pub(super) fn schedule_routes(&mut self, now: u64) {
        if self.route_due.is_none() {
            self.route_due = Some(self.last_route.map_or(now, |t| now.max(t + self.config.route_delay_ms)));
        }
    }

    /// Queues `bytes` for `conn`, counting them.
    pub(super) fn send(&mut self, conn: ConnId, bytes: Vec<u8>) {
        self.counters.messages_sent += 1;
        self.counters.bytes_sent += bytes.len() as u64;
        if let Some(l) = self.conns.get_mut(&conn) {
            l.counters.messages_sent += 1;
            l.counters.bytes_sent += bytes.len() as u64;
        }
        self.transmits.push_back((conn, bytes));
    }

    /// Whether an entry with this header is new to us: newer than ours, and
    /// not a stale copy of an entry we garbage-collected.
    pub(super) fn wants_entry(&self, now: u64, name: PeerName, uid: PeerUid, version: u64) -> bool {
        let buried = self.tombstones.get(&name).is_some_and(|&(u, v, until)| now < until && (version, uid) <= (v, u));
        !buried && self.topology.is_newer(name, uid, version)
    }

    /// Connections that updates and broadcasts go to, except `except`.
    pub(super) fn forward_targets(&self, except: Option<ConnId>) -> Vec<(ConnId, PeerName)> {
        self.conns
            .iter()
            .filter(|&(&id, l)| Some(id) != except && self.routes.forwards_to(l.remote.name))
            .map(|(&id, l)| (id, l.remote.name))
            .collect()
    }

    pub(super) fn summary(&self) -> Vec<u8> {
        wire::encode(Body::Summary(pb::Summary {
            count: self.topology.len() as u64,
            buckets: self.topology.buckets().to_vec(),
        }))
    }
}

/// A period with ±25% jitter, so peers do not gossip in lockstep.
pub(super) fn jittered(rng: &mut StdRng, period: u64) -> u64 {
    let j = period / 4;
    period - j + rng.gen_range(0..=2 * j)
}
