//! One peer's allocator: addresses out of the space it owns, space asked
//! from peers that have some, the ring seeded at first need.
//!
//! # Driving it
//! ```text
//! ipam.allocate(now, "c1", None)?        // Some(addr) at once, or None: an IpamEvent follows
//! ipam.handle_message(now, from, bytes)  // a unicast on the "ipam" channel
//! ipam.set_reachable(peers)              // when routes change
//! ipam.handle_timeout(now)               // every TICK_MS, and after gossip merged
//! while let Some((to, bytes)) = ipam.poll_unicast() { /* router.unicast(to, CHANNEL, bytes) */ }
//! while let Some(ev) = ipam.poll_event() { /* Allocated / Failed */ }
//! ```
//! Ring and claims travel as the channel's gossip state ([`GossipState`]).
//!
//! # Asking for space
//! A peer with no free address in the wanted subnet asks the reachable
//! owner with the most free space there (by the counts owners report in the
//! ring). The owner hands over half of its largest free run in the subnet
//! (by changing the ring, which gossip carries back), or says `Denied` and
//! the asker tries the next one. When every owner with space is
//! unreachable, the request fails after [`GIVE_UP_MS`] with a message
//! naming them and the way out (`weavectl rmpeer`).

use std::collections::{BTreeMap, BTreeSet, VecDeque};

use ipnet::Ipv4Net;
use serde::{Deserialize, Serialize};

use super::paxos::Paxos;
use super::ring::Ring;
use super::space::{addr, first_free, free_count, free_runs, int, usable, Range, Used};
use super::wire::{self, Request};
use super::IpamError;
use crate::mesh::core::{ChannelError, GossipState};
use crate::mesh::peer::PeerName;

/// How often the daemon should call `handle_timeout` (ms).
pub const TICK_MS: u64 = 250;
/// How long an asked peer has to hand space over before we ask another.
pub const ASK_TIMEOUT_MS: u64 = 2_000;
/// How long a request may wait for space before it fails.
pub const GIVE_UP_MS: u64 = 10_000;
/// How long a consensus proposal may run before it is proposed again.
pub const PROPOSE_AGAIN_MS: u64 = 3_000;
/// Free counts go into the ring at most this often.
pub const REPORT_MS: u64 = 1_000;

/// How the ring is first seeded (`--ipalloc-init`).
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Init {
    /// Paxos among this many expected peers, at first need.
    Consensus(usize),
    /// Seeded at once with these peers (every peer given the same list).
    Seed(Vec<PeerName>),
    /// Never seeds; waits for the ring from others and then asks for space.
    Observer,
}

/// Settings.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct IpamConfig {
    /// `--ipalloc-range`.
    pub range: Ipv4Net,
    /// `--ipalloc-default-subnet`: where addresses come from by default.
    pub default_subnet: Ipv4Net,
    /// `--ipalloc-init`.
    pub init: Init,
}

/// What happened to a request that did not complete at once.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum IpamEvent {
    /// The container got the address (with its subnet's prefix).
    Allocated {
        /// The container.
        container: String,
        /// Its address.
        addr: Ipv4Net,
    },
    /// The request failed.
    Failed {
        /// The container.
        container: String,
        /// Why, for the user.
        reason: String,
    },
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Want {
    Any(Ipv4Net),
    Exact(u64, u8),
}

#[derive(Clone, Debug)]
struct Pending {
    container: String,
    want: Want,
    since: u64,
    asked: Option<(PeerName, u64)>,
    denied: BTreeSet<PeerName>,
}

/// What survives a restart.
#[derive(Clone, Debug, Default, Serialize, Deserialize, PartialEq, Eq)]
pub struct Saved {
    /// The ring and claims, as gossiped (hex of `weaver.ipam.v1.State`).
    pub state: String,
    /// Addresses allocated here, with their containers.
    pub allocated: Vec<(std::net::Ipv4Addr, u8, String)>,
}

/// One peer's allocator; also the "ipam" channel's gossip state.
pub struct Ipam {
    pub(super) me: PeerName,
    pub(super) config: IpamConfig,
    pub(super) ring: Ring,
    pub(super) paxos: Paxos,
    /// Address → (prefix length, container), for addresses given out here.
    pub(super) used: BTreeMap<u64, (u8, String)>,
    /// The same, by container.
    by_container: BTreeMap<String, BTreeSet<u64>>,
    pending: Vec<Pending>,
    pub(super) reachable: BTreeSet<PeerName>,
    dirty: BTreeSet<u64>,
    dirty_claim: bool,
    unicasts: VecDeque<(PeerName, Vec<u8>)>,
    events: VecDeque<IpamEvent>,
    pub(super) errors: Vec<String>,
    last_report: Option<u64>,
    proposed_at: Option<u64>,
    attention: bool,
}

impl Ipam {
    /// A fresh allocator. With `Init::Seed`, the ring is seeded at once.
    pub fn new(me: PeerName, config: IpamConfig) -> Result<Ipam, IpamError> {
        let range = Range::of_net(config.range);
        if !Range::of_net(config.range).covers(Range::of_net(config.default_subnet)) {
            return Err(IpamError::OutsideRange {
                what: format!("default subnet {}", config.default_subnet),
                range: config.range.to_string(),
            });
        }
        let mut ipam = Ipam {
            me,
            ring: Ring::new(range),
            paxos: Paxos::default(),
            used: BTreeMap::new(),
            by_container: BTreeMap::new(),
            pending: Vec::new(),
            reachable: BTreeSet::new(),
            dirty: BTreeSet::new(),
            dirty_claim: false,
            unicasts: VecDeque::new(),
            events: VecDeque::new(),
            errors: Vec::new(),
            last_report: None,
            proposed_at: None,
            attention: false,
            config,
        };
        if let Init::Seed(peers) = &ipam.config.init {
            let made = ipam.ring.seed(peers)?;
            ipam.dirty.extend(made);
        }
        Ok(ipam)
    }

    /// An allocator from saved state; the state must be for the same range.
    pub fn restore(me: PeerName, config: IpamConfig, saved: &Saved) -> Result<Ipam, IpamError> {
        let mut ipam = Ipam::new(me, config)?;
        if saved.state.is_empty() {
            return Ok(ipam);
        }
        let bytes = hex_decode(&saved.state).ok_or_else(|| IpamError::Saved("the ring is not hex".into()))?;
        let st = wire::decode_state(&bytes).map_err(|e| IpamError::Saved(e.to_string()))?;
        if st.ring.range() != ipam.ring.range() {
            return Err(IpamError::Saved(format!(
                "it is for range {}, not {}; start with the old --ipalloc-range or remove the file",
                st.ring.range(),
                ipam.ring.range()
            )));
        }
        if ipam.ring.is_seeded() && st.ring.is_seeded() && ipam.ring.seeds() != st.ring.seeds() {
            return Err(IpamError::Saved("its ring was seeded by other peers than --ipalloc-init seed= names".into()));
        }
        ipam.ring = st.ring;
        for (n, c) in st.claims {
            ipam.paxos.merge_claim(n, c);
        }
        for (a, prefix, c) in &saved.allocated {
            ipam.hold(int(*a), *prefix, c);
        }
        Ok(ipam)
    }

    /// What to save.
    pub fn save(&self) -> Saved {
        Saved {
            state: hex_encode(&self.encode_full()),
            allocated: self.used.iter().map(|(a, (p, c))| (addr(*a), *p, c.clone())).collect(),
        }
    }

    /// This peer.
    pub fn me(&self) -> PeerName {
        self.me
    }

    /// The settings.
    pub fn config(&self) -> &IpamConfig {
        &self.config
    }

    /// The ring as this peer sees it.
    pub fn ring(&self) -> &Ring {
        &self.ring
    }

    /// Addresses given out here: (address with prefix, container).
    pub fn allocations(&self) -> impl Iterator<Item = (Ipv4Net, &str)> {
        self.used.iter().filter_map(|(a, (p, c))| Ipv4Net::new(addr(*a), *p).ok().map(|n| (n, c.as_str())))
    }

    /// The addresses of one container.
    pub fn addresses_of(&self, container: &str) -> Vec<Ipv4Net> {
        self.allocations().filter(|(_, c)| *c == container).map(|(n, _)| n).collect()
    }

    /// The peers the mesh can reach now (this one need not be listed).
    pub fn set_reachable(&mut self, peers: impl IntoIterator<Item = PeerName>) {
        self.reachable = peers.into_iter().filter(|p| *p != self.me).collect();
        self.attention = true;
    }

    /// Whether gossip or a message changed something that `handle_timeout`
    /// should act on now.
    pub fn needs_attention(&self) -> bool {
        self.attention
    }

    /// An address for `container` in `subnet` (the default subnet if
    /// `None`): `Some` at once, or `None` and an [`IpamEvent`] later. A
    /// container that has one there already gets the same.
    pub fn allocate(
        &mut self,
        now: u64,
        container: &str,
        subnet: Option<Ipv4Net>,
    ) -> Result<Option<Ipv4Net>, IpamError> {
        let subnet = subnet.unwrap_or(self.config.default_subnet).trunc();
        if !Range::of_net(self.config.range).covers(Range::of_net(subnet)) {
            return Err(IpamError::OutsideRange {
                what: format!("subnet {subnet}"),
                range: self.config.range.to_string(),
            });
        }
        let mine = Range::of_net(subnet);
        let held = self.by_container.get(container).and_then(|s| s.in_range(mine).next());
        if let Some((a, (p, _))) = held.and_then(|a| self.used.get_key_value(&a)) {
            return Ok(Ipv4Net::new(addr(*a), *p).ok());
        }
        if let Some(a) = self.take_any(subnet, container) {
            return Ok(Some(a));
        }
        self.queue(now, container, Want::Any(subnet));
        Ok(None)
    }

    /// Claims `cidr`'s address for `container` (an explicit address given
    /// to `attach`): `Some` at once, or `None` and an event later.
    pub fn claim(&mut self, now: u64, container: &str, cidr: Ipv4Net) -> Result<Option<Ipv4Net>, IpamError> {
        let a = int(cidr.addr());
        if !Range::of_net(self.config.range).contains(a) {
            return Err(IpamError::OutsideRange {
                what: format!("address {}", cidr.addr()),
                range: self.config.range.to_string(),
            });
        }
        match self.used.get(&a) {
            Some((_, c)) if c == container => return Ok(Some(cidr)),
            Some((_, c)) => return Err(IpamError::Taken { addr: cidr.addr().to_string(), holder: c.clone() }),
            None => {}
        }
        if self.ring.owner_of(a) == Some(self.me) {
            self.hold(a, cidr.prefix_len(), container);
            return Ok(Some(cidr));
        }
        self.queue(now, container, Want::Exact(a, cidr.prefix_len()));
        Ok(None)
    }

    /// Frees every address of `container` (or only those in `only`), and
    /// drops its waiting requests. Returns what was freed.
    pub fn release(&mut self, container: &str, only: Option<&[Ipv4Net]>) -> Vec<Ipv4Net> {
        let gone: Vec<u64> = self
            .by_container
            .get(container)
            .map(|s| s.iter().copied().filter(|a| only.is_none_or(|o| o.iter().any(|n| int(n.addr()) == *a))).collect())
            .unwrap_or_default();
        let mut out = Vec::new();
        for a in gone {
            if let Some(p) = self.unhold(a) {
                out.extend(Ipv4Net::new(addr(a), p).ok());
            }
        }
        if only.is_none() {
            self.pending.retain(|p| p.container != container);
        }
        out
    }

    /// Takes over the space of `dead`, a peer gone for good (`weavectl
    /// rmpeer`). Returns how many addresses were taken.
    pub fn rmpeer(&mut self, dead: PeerName) -> Result<u64, IpamError> {
        if dead == self.me {
            return Err(IpamError::RmPeer { peer: dead, why: "it is this peer; run `weavectl reset` on it instead" });
        }
        if self.reachable.contains(&dead) {
            return Err(IpamError::RmPeer { peer: dead, why: "it is reachable; stop it (or reset it) first" });
        }
        let taken: u64 = self.ring.owned_by(dead).iter().map(|r| r.len()).sum();
        let changed = self.ring.take_over(self.me, dead);
        self.dirty.extend(changed);
        self.attention = true;
        Ok(taken)
    }

    /// Gives all this peer's space to a reachable peer and forgets every
    /// allocation (`weavectl reset`). Returns who got it, if anyone.
    pub fn reset(&mut self) -> Option<PeerName> {
        let to = self.reachable.iter().next().copied();
        if let Some(to) = to {
            for r in self.ring.owned_by(self.me) {
                if let Ok(changed) = self.ring.grant(self.me, r, to) {
                    self.dirty.extend(changed);
                }
            }
        }
        self.used.clear();
        self.by_container.clear();
        for p in std::mem::take(&mut self.pending) {
            self.events.push_back(IpamEvent::Failed { container: p.container, reason: "IPAM was reset".into() });
        }
        to
    }

    /// A unicast from `from` on the channel.
    pub fn handle_message(&mut self, now: u64, from: PeerName, bytes: &[u8]) -> Result<(), IpamError> {
        match wire::decode_request(bytes)? {
            Request::Space(r) => self.donate(from, r),
            // Refused only when this peer owns the address by its own ring
            // and it is in use. A ring not seeded here yet, or one that
            // names another owner, may be behind or ahead of the
            // claimer's: no answer, and the claimer asks whoever owns it
            // by then after ASK_TIMEOUT_MS.
            Request::Claim(a) if self.ring.owner_of(a) == Some(self.me) => {
                let granted = !self.used.contains_key(&a) && self.grant(Range::new(a, a + 1), from);
                if !granted {
                    self.unicasts.push_back((from, wire::encode_request(Request::ClaimDenied(a))));
                }
            }
            Request::Claim(_) => {}
            Request::Denied(_) => {
                for p in self.pending.iter_mut().filter(|p| p.asked.is_some_and(|(to, _)| to == from)) {
                    p.asked = None;
                    p.denied.insert(from);
                }
            }
            Request::ClaimDenied(a) => {
                let (fail, keep): (Vec<Pending>, Vec<Pending>) =
                    self.pending.drain(..).partition(|p| matches!(p.want, Want::Exact(x, _) if x == a));
                self.pending = keep;
                for p in fail {
                    self.events.push_back(IpamEvent::Failed {
                        container: p.container,
                        reason: format!("address {} is in use on peer {from}", addr(a)),
                    });
                }
            }
        }
        self.attention = true;
        self.step(now);
        Ok(())
    }

    /// Timers, and whatever gossip brought: seeds the ring, serves waiting
    /// requests, asks for space, reports free counts.
    pub fn handle_timeout(&mut self, now: u64) {
        self.step(now);
    }

    /// The next unicast to send.
    pub fn poll_unicast(&mut self) -> Option<(PeerName, Vec<u8>)> {
        self.unicasts.pop_front()
    }

    /// The next event.
    pub fn poll_event(&mut self) -> Option<IpamEvent> {
        self.events.pop_front()
    }

    /// Requests waiting for space: (container, since).
    pub fn pending(&self) -> impl Iterator<Item = (&str, u64)> {
        self.pending.iter().map(|p| (p.container.as_str(), p.since))
    }

    fn queue(&mut self, now: u64, container: &str, want: Want) {
        if !self.pending.iter().any(|p| p.container == container && p.want == want) {
            self.pending.push(Pending {
                container: container.into(),
                want,
                since: now,
                asked: None,
                denied: BTreeSet::new(),
            });
        }
        self.attention = true;
        self.step(now);
    }

    fn hold(&mut self, a: u64, prefix: u8, container: &str) {
        self.used.insert(a, (prefix, container.to_string()));
        self.by_container.entry(container.to_string()).or_default().insert(a);
    }

    fn unhold(&mut self, a: u64) -> Option<u8> {
        let (p, c) = self.used.remove(&a)?;
        if let Some(set) = self.by_container.get_mut(&c) {
            set.remove(&a);
            if set.is_empty() {
                self.by_container.remove(&c);
            }
        }
        Some(p)
    }

    fn take_any(&mut self, subnet: Ipv4Net, container: &str) -> Option<Ipv4Net> {
        let want = usable(subnet);
        for r in self.ring.owned_by(self.me) {
            if let Some(a) = first_free(r.intersect(want), &self.used) {
                self.hold(a, subnet.prefix_len(), container);
                return Ipv4Net::new(addr(a), subnet.prefix_len()).ok();
            }
        }
        None
    }

    fn grant(&mut self, r: Range, to: PeerName) -> bool {
        match self.ring.grant(self.me, r, to) {
            Ok(changed) => {
                self.dirty.extend(changed);
                true
            }
            Err(_) => false,
        }
    }

    /// Hands half of our largest free run inside `within` to `to`.
    fn donate(&mut self, to: PeerName, within: Range) {
        let used = &self.used;
        let best = self
            .ring
            .owned_by(self.me)
            .iter()
            .flat_map(|r| free_runs(r.intersect(within), used))
            .max_by_key(|r| (r.len(), std::cmp::Reverse(r.start)));
        let granted = best.is_some_and(|run| {
            let give = Range::new(run.start + run.len() / 2, run.end);
            self.grant(give, to)
        });
        if !granted {
            self.unicasts.push_back((to, wire::encode_request(Request::Denied(within))));
        }
    }

    fn step(&mut self, now: u64) {
        self.attention = false;
        self.seed_if_needed(now);
        self.serve_pending(now);
        self.report_free(now);
    }

    fn seed_if_needed(&mut self, now: u64) {
        if self.ring.is_seeded() {
            return;
        }
        let Init::Consensus(n) = self.config.init else { return };
        let quorum = n / 2 + 1;
        let needed = !self.pending.is_empty();
        let stale = self.proposed_at.is_none_or(|t| now >= t + PROPOSE_AGAIN_MS);
        if needed && stale && self.paxos.chosen(quorum).is_none() {
            self.paxos.propose(self.me);
            self.proposed_at = Some(now);
            self.dirty_claim = true;
        }
        // Acceptor and learner duties, once anyone has started.
        if !self.paxos.claims().is_empty() {
            let mut value: Vec<PeerName> = self.reachable.iter().copied().collect();
            value.push(self.me);
            if self.paxos.think(self.me, quorum, &value) {
                self.dirty_claim = true;
            }
        }
        if let Some(peers) = self.paxos.chosen(quorum) {
            if let Ok(made) = self.ring.seed(&peers) {
                self.dirty.extend(made);
            }
        }
    }

    fn serve_pending(&mut self, now: u64) {
        let mut keep = Vec::new();
        // One request for space per subnet at a time: what it brings serves
        // the others.
        let mut asking: BTreeSet<Ipv4Net> = BTreeSet::new();
        for p in &self.pending {
            if let (Want::Any(s), Some((to, at))) = (p.want, p.asked) {
                if now < at + ASK_TIMEOUT_MS && self.reachable.contains(&to) {
                    asking.insert(s);
                }
            }
        }
        for mut p in std::mem::take(&mut self.pending) {
            let done = match p.want {
                Want::Any(subnet) => self.take_any(subnet, &p.container),
                Want::Exact(a, prefix) if self.ring.owner_of(a) == Some(self.me) => match self.used.get(&a) {
                    None => {
                        self.hold(a, prefix, &p.container);
                        Ipv4Net::new(addr(a), prefix).ok()
                    }
                    Some((_, c)) => {
                        let reason = format!("address {} is already allocated to {c}", addr(a));
                        self.events.push_back(IpamEvent::Failed { container: p.container, reason });
                        continue;
                    }
                },
                Want::Exact(..) => None,
            };
            if let Some(addr) = done {
                self.events.push_back(IpamEvent::Allocated { container: p.container, addr });
                continue;
            }
            if !self.ring.is_seeded() {
                if now >= p.since + GIVE_UP_MS && self.config.init == Init::Observer {
                    let reason = "no peer has seeded the IPAM ring yet (this peer is an observer)".to_string();
                    self.events.push_back(IpamEvent::Failed { container: p.container, reason });
                    continue;
                }
                keep.push(p);
                continue;
            }
            if let Want::Any(s) = p.want {
                if p.asked.is_none() && asking.contains(&s) {
                    keep.push(p);
                    continue;
                }
                asking.insert(s);
            }
            match self.ask(now, &mut p) {
                Ok(()) => keep.push(p),
                Err(reason) => self.events.push_back(IpamEvent::Failed { container: p.container, reason }),
            }
        }
        self.pending = keep;
    }

    /// Asks a peer for what `p` wants, unless one is on it; `Err` when the
    /// request cannot succeed (any more).
    fn ask(&mut self, now: u64, p: &mut Pending) -> Result<(), String> {
        if p.asked.is_some_and(|(to, at)| now < at + ASK_TIMEOUT_MS && self.reachable.contains(&to)) {
            return Ok(());
        }
        if let Some((to, _)) = p.asked.take() {
            p.denied.insert(to);
        }
        let (to, req) = match p.want {
            Want::Exact(a, _) => {
                let Some(owner) = self.ring.owner_of(a) else { return Err(format!("{} is not in the ring", addr(a))) };
                if !self.reachable.contains(&owner) {
                    return self.unreachable(now, p, &[owner]);
                }
                (owner, Request::Claim(a))
            }
            Want::Any(subnet) => {
                let want = usable(subnet);
                let mut best: Option<(u64, PeerName)> = None;
                let mut away = Vec::new();
                for (r, e) in self.ring.ranges() {
                    let overlap = r.intersect(want).len();
                    if e.owner == self.me || overlap == 0 || e.free == 0 || p.denied.contains(&e.owner) {
                        continue;
                    }
                    if !self.reachable.contains(&e.owner) {
                        away.push(e.owner);
                        continue;
                    }
                    let score = overlap.min(u64::from(e.free));
                    if best.is_none_or(|(s, n)| (score, std::cmp::Reverse(e.owner)) > (s, std::cmp::Reverse(n))) {
                        best = Some((score, e.owner));
                    }
                }
                match best {
                    Some((_, to)) => (to, Request::Space(Range::of_net(subnet))),
                    None if !away.is_empty() => {
                        away.sort_unstable();
                        away.dedup();
                        return self.unreachable(now, p, &away);
                    }
                    None if p.denied.is_empty() || now >= p.since + GIVE_UP_MS => {
                        return Err(format!("no free address left in {subnet}"));
                    }
                    None => {
                        // Everyone asked said no; their counts may be stale: ask again.
                        p.denied.clear();
                        return Ok(());
                    }
                }
            }
        };
        p.asked = Some((to, now));
        self.unicasts.push_back((to, wire::encode_request(req)));
        Ok(())
    }

    fn unreachable(&self, now: u64, p: &Pending, owners: &[PeerName]) -> Result<(), String> {
        if now < p.since + GIVE_UP_MS {
            return Ok(());
        }
        let names = owners.iter().map(|n| n.to_string()).collect::<Vec<_>>().join(", ");
        Err(format!(
            "all the free space for this request is owned by unreachable peers ({names}); if they are gone for \
             good, run `weavectl rmpeer NAME` on one reachable peer to take their space over"
        ))
    }

    fn report_free(&mut self, now: u64) {
        if self.last_report.is_some_and(|t| now < t + REPORT_MS) {
            return;
        }
        self.last_report = Some(now);
        let mine: Vec<(u64, Range)> =
            self.ring.ranges().filter(|(_, e)| e.owner == self.me).map(|(r, _)| (r.start, r)).collect();
        for (t, r) in mine {
            let free = free_count(r, &self.used).min(u64::from(u32::MAX)) as u32;
            if self.ring.report_free(self.me, t, free) {
                self.dirty.insert(t);
            }
        }
    }

    fn note_error(&mut self, e: String) {
        if !self.errors.contains(&e) {
            self.errors.push(e);
        }
    }
}

impl GossipState for Ipam {
    fn encode_full(&self) -> Vec<u8> {
        let claims: Vec<_> = self.paxos.claims().iter().map(|(n, c)| (*n, c)).collect();
        wire::encode_state(&self.ring, &claims)
    }

    fn take_delta(&mut self) -> Option<Vec<u8>> {
        if self.dirty.is_empty() && !self.dirty_claim {
            return None;
        }
        let tokens: Vec<u64> = std::mem::take(&mut self.dirty).into_iter().collect();
        let claims: Vec<_> = if std::mem::take(&mut self.dirty_claim) {
            self.paxos.claims().get_key_value(&self.me).map(|(n, c)| (*n, c)).into_iter().collect()
        } else {
            Vec::new()
        };
        Some(wire::encode_state(&self.ring.subset(&tokens), &claims))
    }

    fn merge(&mut self, _from: PeerName, bytes: &[u8]) -> Result<Option<Vec<u8>>, ChannelError> {
        let st = wire::decode_state(bytes).map_err(|e| ChannelError(e.to_string()))?;
        let (tokens, adopted) = match self.ring.merge(&st.ring) {
            Ok(x) => x,
            Err(e) => {
                self.note_error(e.to_string());
                return Err(ChannelError(e.to_string()));
            }
        };
        let mut new_claims = Vec::new();
        for (n, c) in st.claims {
            if self.paxos.merge_claim(n, c) {
                new_claims.push(n);
            }
        }
        if tokens.is_empty() && !adopted && new_claims.is_empty() {
            return Ok(None);
        }
        self.attention = true;
        let claims: Vec<_> =
            new_claims.iter().filter_map(|n| self.paxos.claims().get_key_value(n)).map(|(n, c)| (*n, c)).collect();
        Ok(Some(wire::encode_state(&self.ring.subset(&tokens), &claims)))
    }
}

fn hex_encode(b: &[u8]) -> String {
    b.iter().map(|x| format!("{x:02x}")).collect()
}

fn hex_decode(s: &str) -> Option<Vec<u8>> {
    if !s.len().is_multiple_of(2) {
        return None;
    }
    (0..s.len()).step_by(2).map(|i| s.get(i..i + 2).and_then(|h| u8::from_str_radix(h, 16).ok())).collect()
}
