//! A deterministic simulation of many routers: in-memory links with latency
//! and loss, a virtual clock, seeded random topologies, partitions, heals
//! and restarts. Same seed, same run, message for message.
//!
//! Each configured link carries at most one connection at a time (plus
//! transient duplicates when a test opens them on purpose). Messages on a
//! connection arrive in order after the link's latency, unless lost; a
//! connection that closes drops what it had in flight, as TCP would.

use std::cmp::Reverse;
use std::collections::{BTreeMap, BinaryHeap};
use std::ops::RangeInclusive;

use rand::rngs::StdRng;
use rand::{Rng, SeedableRng};

use super::router::Router;
use super::types::{ConnId, ConnVerdict, Delivery, MeshConfig, MeshEvent, NewConnection};
use crate::mesh::peer::{Identity, PeerName, PeerUid, ShortId};

/// How the simulation assigns initial short IDs.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum ShortIds {
    /// Peer `i` gets `i mod 4096`: no collisions below 4096 peers.
    Unique,
    /// Uniformly random: collisions to resolve.
    Random,
    /// All the same: the worst case.
    Same,
}

/// Settings of a simulation.
#[derive(Clone, Debug)]
pub struct SimConfig {
    /// The routers' settings.
    pub mesh: MeshConfig,
    /// One-way latency of each link, drawn once per link (ms).
    pub latency_ms: RangeInclusive<u64>,
    /// Probability that a message is lost.
    pub loss: f64,
    /// Keep every router's events (tests); otherwise only count them.
    pub record_events: bool,
    /// Initial short IDs.
    pub short_ids: ShortIds,
}

impl Default for SimConfig {
    fn default() -> Self {
        SimConfig {
            mesh: MeshConfig::default(),
            latency_ms: 1..=20,
            loss: 0.0,
            record_events: true,
            short_ids: ShortIds::Unique,
        }
    }
}

/// Totals over the whole run.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct SimStats {
    /// Messages sent by all routers.
    pub messages: u64,
    /// Their bytes.
    pub bytes: u64,
    /// Messages lost on links.
    pub lost: u64,
    /// Channel messages delivered to routers' owners.
    pub channel_deliveries: u64,
    /// Errors returned by `handle_message` (should stay zero).
    pub errors: u64,
}

struct Node {
    router: Router,
    events: Vec<MeshEvent>,
    armed: Option<u64>,
}

struct End {
    node: usize,
    peer: ConnId,
    latency: u64,
}

struct Link {
    latency: u64,
    conns: Vec<(ConnId, ConnId)>,
}

#[derive(PartialEq, Eq, PartialOrd, Ord)]
enum Item {
    Timer(usize),
    Deliver(ConnId, Vec<u8>),
}

/// N routers on a virtual clock.
pub struct Sim {
    now: u64,
    config: SimConfig,
    rng: StdRng,
    nodes: Vec<Node>,
    links: BTreeMap<(usize, usize), Link>,
    ends: BTreeMap<ConnId, End>,
    queue: BinaryHeap<Reverse<(u64, u64, Item)>>,
    seq: u64,
    next_conn: u64,
    stats: SimStats,
}

impl Sim {
    /// An empty simulation at time 0.
    pub fn new(config: SimConfig, seed: u64) -> Sim {
        Sim {
            now: 0,
            config,
            rng: StdRng::seed_from_u64(seed),
            nodes: Vec::new(),
            links: BTreeMap::new(),
            ends: BTreeMap::new(),
            queue: BinaryHeap::new(),
            seq: 0,
            next_conn: 1,
            stats: SimStats::default(),
        }
    }

    /// `n` peers on a random connected graph of about `avg_degree`: a random
    /// spanning tree plus random extra links, all connected at time 0.
    pub fn random(n: usize, avg_degree: f64, config: SimConfig, seed: u64) -> Sim {
        let mut sim = Sim::new(config, seed);
        for _ in 0..n {
            sim.add_peer();
        }
        for i in 1..n {
            let j = sim.rng.gen_range(0..i);
            sim.add_link(i, j);
        }
        let target = ((avg_degree * n as f64 / 2.0) as usize).max(n.saturating_sub(1));
        let mut tries = 0;
        while sim.links.len() < target && tries < 20 * target {
            tries += 1;
            let (a, b) = (sim.rng.gen_range(0..n), sim.rng.gen_range(0..n));
            if a != b && !sim.links.contains_key(&key(a, b)) {
                sim.add_link(a, b);
            }
        }
        sim
    }

    /// Adds a peer with a random name and UID; returns its index.
    pub fn add_peer(&mut self) -> usize {
        let i = self.nodes.len();
        let name = loop {
            let n = PeerName::random(&mut self.rng);
            if self.nodes.iter().all(|x| x.router.identity().name != n) {
                break n;
            }
        };
        let short_id = match self.config.short_ids {
            ShortIds::Unique => ShortId::from_bits(i as u32),
            ShortIds::Random => ShortId::from_bits(self.rng.gen()),
            ShortIds::Same => ShortId::from_bits(1),
        };
        let me = Identity { name, nickname: format!("p{i}"), uid: PeerUid::random(&mut self.rng), short_id };
        let router = Router::new(me, self.config.mesh.clone(), self.rng.gen(), self.now);
        self.nodes.push(Node { router, events: Vec::new(), armed: None });
        self.arm(i);
        i
    }

    /// Configures a link between `a` and `b` and connects it.
    pub fn add_link(&mut self, a: usize, b: usize) {
        let latency = self.rng.gen_range(self.config.latency_ms.clone());
        self.links.insert(key(a, b), Link { latency, conns: Vec::new() });
        self.connect(a, b);
    }

    /// Opens a connection over the configured link `a`–`b` (initiated by
    /// `a`), as a completed handshake at both ends at once.
    pub fn connect(&mut self, a: usize, b: usize) {
        let Some(link) = self.links.get(&key(a, b)) else { return };
        let latency = link.latency;
        let (ca, cb) = (ConnId(self.next_conn), ConnId(self.next_conn + 1));
        self.next_conn += 2;
        let tie_breaker = self.rng.gen();
        let port = self.rng.gen_range(32768..61000);
        let (ia, ib) = (self.nodes[a].router.identity().clone(), self.nodes[b].router.identity().clone());
        let now = self.now;
        let to_b = NewConnection { remote: ib, address: format!("{}:6783", ip(b)), outbound: true, tie_breaker };
        let va = self.nodes[a].router.handle_connection_up(now, ca, to_b);
        let from_a = NewConnection { remote: ia, address: format!("{}:{port}", ip(a)), outbound: false, tie_breaker };
        let vb = self.nodes[b].router.handle_connection_up(now, cb, from_a);
        self.ends.insert(ca, End { node: a, peer: cb, latency });
        self.ends.insert(cb, End { node: b, peer: ca, latency });
        if let Some(l) = self.links.get_mut(&key(a, b)) {
            l.conns.push((ca, cb));
        }
        for v in [va, vb] {
            match v {
                ConnVerdict::Accept => {}
                ConnVerdict::AcceptReplacing(old) => self.close(old),
                ConnVerdict::Refuse(_) => self.close(ca),
            }
        }
        self.drain(a);
        self.drain(b);
    }

    /// Closes the connection that `conn` is one end of, at both ends.
    fn close(&mut self, conn: ConnId) {
        let Some(end) = self.ends.remove(&conn) else { return };
        let peer = self.ends.remove(&end.peer);
        for l in self.links.values_mut() {
            l.conns.retain(|&(x, y)| x != conn && y != conn);
        }
        let now = self.now;
        self.nodes[end.node].router.handle_connection_down(now, conn);
        self.drain(end.node);
        if let Some(p) = peer {
            self.nodes[p.node].router.handle_connection_down(now, end.peer);
            self.drain(p.node);
        }
    }

    /// Closes every connection between `a` and `b` (the link stays
    /// configured).
    pub fn disconnect(&mut self, a: usize, b: usize) {
        let conns = self.links.get(&key(a, b)).map(|l| l.conns.clone()).unwrap_or_default();
        for (ca, _) in conns {
            self.close(ca);
        }
    }

    /// Cuts every link between `side` and the other peers.
    pub fn partition(&mut self, side: &[usize]) {
        let cut: Vec<(usize, usize)> =
            self.links.keys().copied().filter(|&(a, b)| side.contains(&a) != side.contains(&b)).collect();
        for (a, b) in cut {
            self.disconnect(a, b);
        }
    }

    /// Reconnects every configured link that has no connection.
    pub fn heal(&mut self) {
        let down: Vec<(usize, usize)> =
            self.links.iter().filter(|(_, l)| l.conns.is_empty()).map(|(&k, _)| k).collect();
        for (a, b) in down {
            self.connect(a, b);
        }
    }

    /// Restarts peer `i`: same name, new UID, empty state; its links
    /// reconnect at once.
    pub fn restart(&mut self, i: usize) {
        let mine: Vec<(usize, usize)> = self.links.keys().copied().filter(|&(a, b)| a == i || b == i).collect();
        for &(a, b) in &mine {
            self.disconnect(a, b);
        }
        let mut me = self.nodes[i].router.identity().clone();
        me.uid = PeerUid::random(&mut self.rng);
        self.nodes[i].router = Router::new(me, self.config.mesh.clone(), self.rng.gen(), self.now);
        self.nodes[i].armed = None;
        self.arm(i);
        for (a, b) in mine {
            self.connect(a, b);
        }
    }

    /// Runs `f` on router `i` (to broadcast, register a channel...), then
    /// collects its output.
    pub fn act<R>(&mut self, i: usize, f: impl FnOnce(&mut Router, u64) -> R) -> R {
        let r = f(&mut self.nodes[i].router, self.now);
        self.drain(i);
        r
    }

    /// Sends what router `i` has queued, records its events, arms its timer.
    fn drain(&mut self, i: usize) {
        while let Some((conn, bytes)) = self.nodes[i].router.poll_transmit() {
            self.stats.messages += 1;
            self.stats.bytes += bytes.len() as u64;
            let Some(end) = self.ends.get(&conn) else { continue };
            if self.config.loss > 0.0 && self.rng.gen_bool(self.config.loss) {
                self.stats.lost += 1;
                continue;
            }
            let (at, to) = (self.now + end.latency, end.peer);
            self.push(at, Item::Deliver(to, bytes));
        }
        while let Some(ev) = self.nodes[i].router.poll_event() {
            if matches!(ev, MeshEvent::ChannelMessage { .. }) {
                self.stats.channel_deliveries += 1;
            }
            if self.config.record_events {
                self.nodes[i].events.push(ev);
            }
        }
        self.arm(i);
    }

    fn arm(&mut self, i: usize) {
        let t = self.nodes[i].router.poll_timeout();
        if t.is_some() && t != self.nodes[i].armed {
            self.nodes[i].armed = t;
            let at = t.unwrap_or(0).max(self.now);
            self.push(at, Item::Timer(i));
        }
    }

    fn push(&mut self, at: u64, item: Item) {
        self.seq += 1;
        self.queue.push(Reverse((at, self.seq, item)));
    }

    /// Processes everything due up to `t`, then sets the clock to `t`.
    pub fn run_until(&mut self, t: u64) {
        while self.queue.peek().is_some_and(|Reverse((at, _, _))| *at <= t) {
            let Some(Reverse((at, _, item))) = self.queue.pop() else { break };
            self.now = at;
            match item {
                Item::Timer(i) => {
                    if self.nodes[i].armed.is_some_and(|a| a <= at) {
                        self.nodes[i].armed = None;
                        self.nodes[i].router.handle_timeout(at);
                        self.drain(i);
                    }
                }
                Item::Deliver(conn, bytes) => {
                    let Some(i) = self.ends.get(&conn).map(|e| e.node) else { continue };
                    if self.nodes[i].router.handle_message(at, conn, &bytes).is_err() {
                        self.stats.errors += 1;
                    }
                    self.drain(i);
                }
            }
        }
        self.now = self.now.max(t);
    }

    /// Runs for `ms` of simulated time.
    pub fn run_for(&mut self, ms: u64) {
        self.run_until(self.now + ms);
    }

    /// Runs until [`Sim::converged`] holds, checking every `step` ms, for at
    /// most `max_ms`; returns the simulated time it took.
    pub fn run_until_converged(&mut self, max_ms: u64, step: u64) -> Option<u64> {
        let start = self.now;
        while self.now - start <= max_ms {
            if self.converged() {
                return Some(self.now - start);
            }
            self.run_for(step);
        }
        None
    }

    /// Whether every connected component of the link graph has settled:
    /// its peers hold the same topology (by fingerprint) made of exactly
    /// the component's peers, with unique short IDs, and routes computed.
    pub fn converged(&self) -> bool {
        self.components().iter().all(|comp| {
            let first = &self.nodes[comp[0]].router;
            let fp = first.topology().fingerprint();
            let mut sids: Vec<u16> = first.topology().iter().map(|e| e.short_id.get()).collect();
            sids.sort_unstable();
            sids.dedup();
            first.topology().len() == comp.len()
                && sids.len() == comp.len()
                && comp.iter().all(|&i| {
                    let r = &self.nodes[i].router;
                    !r.routes_pending()
                        && r.topology().fingerprint() == fp
                        && r.topology().get(r.identity().name).is_some_and(|e| e.short_id == r.identity().short_id)
                })
        })
    }

    /// Connected components of the links that have a connection, each
    /// sorted, in order of their lowest index.
    pub fn components(&self) -> Vec<Vec<usize>> {
        let n = self.nodes.len();
        let mut adj = vec![Vec::new(); n];
        for (&(a, b), l) in &self.links {
            if !l.conns.is_empty() {
                adj[a].push(b);
                adj[b].push(a);
            }
        }
        let mut comp = vec![usize::MAX; n];
        let mut out = Vec::new();
        for s in 0..n {
            if comp[s] != usize::MAX {
                continue;
            }
            let mut members = vec![s];
            comp[s] = out.len();
            let mut k = 0;
            while k < members.len() {
                for &j in &adj[members[k]] {
                    if comp[j] == usize::MAX {
                        comp[j] = out.len();
                        members.push(j);
                    }
                }
                k += 1;
            }
            members.sort_unstable();
            out.push(members);
        }
        out
    }

    /// The current simulated time (ms).
    pub fn now(&self) -> u64 {
        self.now
    }

    /// Number of peers.
    pub fn len(&self) -> usize {
        self.nodes.len()
    }

    /// Whether there are no peers.
    pub fn is_empty(&self) -> bool {
        self.nodes.is_empty()
    }

    /// The other end of connection `conn`: its peer and its ID there.
    pub fn peer_end(&self, conn: ConnId) -> Option<(usize, ConnId)> {
        let end = self.ends.get(&conn)?;
        Some((self.ends.get(&end.peer)?.node, end.peer))
    }

    /// Whether a link between `a` and `b` is configured.
    pub fn has_link(&self, a: usize, b: usize) -> bool {
        self.links.contains_key(&key(a, b))
    }

    /// Number of configured links.
    pub fn link_count(&self) -> usize {
        self.links.len()
    }

    /// Router `i`.
    pub fn router(&self, i: usize) -> &Router {
        &self.nodes[i].router
    }

    /// The index of the peer called `name`.
    pub fn index_of(&self, name: PeerName) -> Option<usize> {
        self.nodes.iter().position(|n| n.router.identity().name == name)
    }

    /// Takes the events router `i` produced (when recording).
    pub fn take_events(&mut self, i: usize) -> Vec<MeshEvent> {
        std::mem::take(&mut self.nodes[i].events)
    }

    /// Takes router `i`'s recorded events and returns the messages among
    /// them on `channel`: (sender, payload). The other events are dropped.
    pub fn take_channel_messages(&mut self, i: usize, channel: &str) -> Vec<(PeerName, Vec<u8>)> {
        self.take_events(i)
            .into_iter()
            .filter_map(|ev| match ev {
                MeshEvent::ChannelMessage { channel: c, src, payload, .. } if c == channel => Some((src, payload)),
                _ => None,
            })
            .collect()
    }

    /// Channel messages router `i` delivered on `channel` (when recording).
    pub fn deliveries(&self, i: usize, channel: &str) -> Vec<(PeerName, Delivery, Vec<u8>)> {
        self.nodes[i]
            .events
            .iter()
            .filter_map(|e| match e {
                MeshEvent::ChannelMessage { channel: c, src, delivery, payload } if c == channel => {
                    Some((*src, *delivery, payload.clone()))
                }
                _ => None,
            })
            .collect()
    }

    /// Totals so far.
    pub fn stats(&self) -> SimStats {
        self.stats
    }
}

fn key(a: usize, b: usize) -> (usize, usize) {
    (a.min(b), a.max(b))
}

fn ip(i: usize) -> String {
    format!("10.{}.{}.{}", (i >> 16) & 255, (i >> 8) & 255, i & 255)
}
