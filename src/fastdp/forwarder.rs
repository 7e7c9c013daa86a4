//! [`Forwarder`]: the state machine the datapath driver feeds with misses,
//! topology and flow statistics, and drains of flow operations.

use std::collections::{BTreeMap, BTreeSet, VecDeque};

use super::cache::{FlowCache, FlowEntry};
use super::decide::{classify, decide, Decision, Ingress, SleeveHops, World};
use super::input::{Config, LocalPeer, PeerInfo, Peers, RouteTable};
use super::mac::{Learned, MacEntry, MacTable};
use super::megaflow::{MatchKey, Upcall};
use super::op::{Dep, DropReason, Epoch, FlowOp, Location, StampedOp};
use super::vni::Vni;
use crate::mesh::peer::PeerName;
use crate::odp::action::Action;
use crate::odp::flow::Flow;
use crate::odp::key::{EthernetKey, KeyAttr, Mac};

/// What the forwarder has done, for metrics. Per-packet drops are counted
/// here, by [`DropReason::kind`], rather than logged.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Counters {
    /// Misses handled.
    pub misses: u64,
    /// Bytes of the missed packets.
    pub miss_bytes: u64,
    /// Install ops issued.
    pub installs: u64,
    /// Execute ops issued.
    pub executes: u64,
    /// Of those, floods of an unknown destination (executed, not installed).
    pub floods: u64,
    /// Delete ops issued.
    pub deletes: u64,
    /// MACs seen at a new location.
    pub mac_moves: u64,
    /// Dropped misses, by reason.
    pub drops: BTreeMap<&'static str, u64>,
}

/// The sans-I/O forwarding core of the fast datapath. See the [module
/// docs](super) for the encoding, the invariants and how to drive it.
#[derive(Clone, Debug)]
pub struct Forwarder {
    cfg: Config,
    world: World,
    macs: MacTable,
    cache: FlowCache,
    epoch: Epoch,
    queue: VecDeque<StampedOp>,
    counters: Counters,
}

impl Forwarder {
    /// A forwarder that knows no peers, ports or routes yet.
    pub fn new(me: LocalPeer, cfg: Config) -> Forwarder {
        let world = World {
            me,
            ttl: cfg.tunnel_ttl,
            tp_dst: cfg.tunnel_dst_port,
            peers: Peers::default(),
            routes: RouteTable::default(),
            ports: BTreeSet::new(),
            sleeve: None,
        };
        let macs = MacTable::new(cfg.mac_timeout_ms);
        Forwarder {
            cfg,
            world,
            macs,
            cache: FlowCache::default(),
            epoch: Epoch(0),
            queue: VecDeque::new(),
            counters: Counters::default(),
        }
    }

    /// The current epoch.
    pub fn epoch(&self) -> Epoch {
        self.epoch
    }

    /// Whether the driver should still apply `op` (see [`StampedOp::is_stale`]).
    pub fn is_current(&self, op: &StampedOp) -> bool {
        !op.is_stale(self.epoch)
    }

    /// Our identity and VXLAN port changed (a new short ID after a
    /// collision, a new underlay address). Flows that use the overlay are
    /// deleted; all flows if the VXLAN port number changed.
    pub fn handle_local(&mut self, _now: u64, me: LocalPeer) {
        if me == self.world.me {
            return;
        }
        let gone = if me.vxlan_port != self.world.me.vxlan_port {
            let all: Vec<MatchKey> = self.cache.iter().map(|e| e.key).collect();
            all.iter().filter_map(|k| self.cache.remove(k)).collect()
        } else {
            self.cache.invalidate(&[Dep::Peer(self.world.me.name)])
        };
        self.world.me = me;
        self.bump_and_queue(gone);
    }

    /// A local container port was added to the datapath. Broadcast flows are
    /// rebuilt to include it.
    pub fn handle_port_added(&mut self, _now: u64, port: u32) {
        if port == self.world.me.vxlan_port || !self.world.ports.insert(port) {
            return;
        }
        let gone = self.cache.invalidate(&[Dep::LocalPorts]);
        self.bump_and_queue(gone);
    }

    /// A local port went away: its MACs are forgotten, and the flows from
    /// it, to it, or to all local ports are deleted.
    pub fn handle_port_removed(&mut self, _now: u64, port: u32) {
        if !self.world.ports.remove(&port) {
            return;
        }
        let mut deps = vec![Dep::Port(port), Dep::LocalPorts];
        deps.extend(self.macs.remove_where(|l| l == Location::Local(port)).into_iter().map(Dep::Mac));
        let gone = self.cache.invalidate(&deps);
        self.bump_and_queue(gone);
    }

    /// A peer's short ID and underlay address, new or changed. Flows that
    /// used the old values, or that a short-ID collision makes ambiguous,
    /// are deleted. Our own name is ignored (see [`Forwarder::handle_local`]).
    pub fn handle_peer(&mut self, _now: u64, info: PeerInfo) {
        let old = self.world.peers.get(info.name).copied();
        if info.name == self.world.me.name || old == Some(info) {
            return;
        }
        let mut deps = BTreeSet::from([Dep::Peer(info.name)]);
        for sid in [Some(info.short_id), old.map(|o| o.short_id)].into_iter().flatten() {
            deps.extend(self.world.peers.with_short_id(sid).map(Dep::Peer));
        }
        self.world.peers.upsert(info);
        let gone = self.cache.invalidate(&deps);
        self.bump_and_queue(gone);
    }

    /// A peer left: its MACs are forgotten, and every flow that named it
    /// (as destination, next hop, broadcast child or source) is deleted.
    pub fn handle_peer_removed(&mut self, _now: u64, name: PeerName) {
        let mut deps = BTreeSet::from([Dep::Peer(name)]);
        if let Some(old) = self.world.peers.remove(name) {
            deps.extend(self.world.peers.with_short_id(old.short_id).map(Dep::Peer));
        }
        deps.extend(self.macs.remove_where(|l| l == Location::Remote(name)).into_iter().map(Dep::Mac));
        let gone = self.cache.invalidate(&deps);
        self.bump_and_queue(gone);
    }

    /// New routes. Only the flows whose next hop or broadcast children
    /// changed are deleted; the epoch moves only if something changed.
    pub fn handle_routes(&mut self, _now: u64, routes: RouteTable) {
        let new = routes.normalized();
        let changed = self.world.routes.changed_deps(&new);
        self.world.routes = new;
        if !changed.is_empty() {
            let gone = self.cache.invalidate(&changed);
            self.bump_and_queue(gone);
        }
    }

    /// The next hops reached over the sleeve rather than VXLAN (their
    /// connections' fast datapath fails, or the peer runs the sleeve only),
    /// and the upcall port that hands frames to the sleeve. Flows that
    /// tunnel to a hop that moved either way are deleted.
    pub fn handle_sleeve_hops(&mut self, _now: u64, pid: u32, hops: BTreeSet<PeerName>) {
        let old = self.world.sleeve.take().unwrap_or_default();
        let mut changed: BTreeSet<Dep> = old.hops.symmetric_difference(&hops).map(|p| Dep::Peer(*p)).collect();
        if old.pid != pid {
            changed.extend(hops.iter().chain(old.hops.iter()).map(|p| Dep::Peer(*p)));
        }
        self.world.sleeve = Some(SleeveHops { pid, hops });
        if !changed.is_empty() {
            let deps: Vec<Dep> = changed.into_iter().collect();
            let gone = self.cache.invalidate(&deps);
            self.bump_and_queue(gone);
        }
    }

    /// A frame that arrived over the sleeve from peer `prev`, in a record
    /// from `src` to `dst`: decided as if it had come through the tunnel
    /// with `VNI(src, dst)` (a broadcast when `dst == src`), learning its
    /// source MAC at `src`. Returns deletes a MAC move made necessary, then
    /// an execute (never an install: the frame is not in the datapath), or
    /// a drop.
    pub fn handle_sleeve_frame(
        &mut self,
        now: u64,
        prev: PeerName,
        src: PeerName,
        dst: PeerName,
        frame: &[u8],
    ) -> Vec<StampedOp> {
        let Some((dmac, smac)) = Mac::of_frame(frame) else { return vec![self.refuse(DropReason::SleeveRunt)] };
        if smac.is_multicast() {
            return vec![self.refuse(DropReason::MulticastSource(smac))];
        }
        let me = self.world.me.name;
        if src == me {
            return vec![self.refuse(DropReason::FromSelf)];
        }
        let sid = |n: PeerName| {
            if n == me {
                Some(self.world.me.short_id)
            } else {
                self.world.peers.get(n).map(|i| i.short_id)
            }
        };
        let (Some(s), Some(d)) = (sid(src), sid(dst)) else {
            return vec![self.refuse(DropReason::UnknownPeer(if sid(src).is_none() { src } else { dst }))];
        };
        let vni = if dst == src { Vni::broadcast(s) } else { Vni::unicast(s, d) };
        let prev_ip = self.world.peers.get(prev).map_or(std::net::Ipv4Addr::UNSPECIFIED, |i| i.underlay);
        let ingress = Ingress::Tunnel { origin: src, vni, prev: prev_ip };
        let key =
            MatchKey { in_port: self.world.me.vxlan_port, eth: EthernetKey { src: smac, dst: dmac }, tunnel: None };
        let mut out = Vec::new();
        if let Learned::Moved(_) = self.macs.learn(now, smac, Location::Remote(src)) {
            self.counters.mac_moves += 1;
            let gone = self.cache.invalidate(&[Dep::Mac(smac)]);
            self.epoch.0 += 1;
            out.extend(gone.into_iter().map(|e| self.delete_op(&e)));
        }
        match decide(&self.world, &self.macs, &key, &ingress) {
            Decision::Refuse(r) => out.push(self.refuse(r)),
            Decision::Execute { actions } | Decision::Install { actions, .. } => out.push(self.execute(actions)),
        }
        out
    }

    /// A packet missed the flow table. `key` is the upcall's key. Returns
    /// the ops for this packet, in order: deletes of flows a MAC move made
    /// wrong, then an install (unless the flow is already installed under
    /// the current epoch), then an execute of the packet; or a single drop.
    pub fn handle_miss(&mut self, now: u64, key: &[KeyAttr], packet_len: usize) -> Vec<StampedOp> {
        self.counters.misses += 1;
        self.counters.miss_bytes += packet_len as u64;
        let upcall = match Upcall::parse(key) {
            Ok(u) => u,
            Err(e) => return vec![self.refuse(e.into())],
        };
        let (ingress, mkey) = match classify(&self.world, &upcall) {
            Ok(x) => x,
            Err(r) => return vec![self.refuse(r)],
        };
        let mut out = Vec::new();
        if let Learned::Moved(_) = self.macs.learn(now, mkey.eth.src, ingress.location()) {
            self.counters.mac_moves += 1;
            let gone = self.cache.invalidate(&[Dep::Mac(mkey.eth.src)]);
            self.epoch.0 += 1;
            out.extend(gone.into_iter().map(|e| self.delete_op(&e)));
        }
        match decide(&self.world, &self.macs, &mkey, &ingress) {
            Decision::Refuse(r) => out.push(self.refuse(r)),
            Decision::Execute { actions } => {
                self.counters.floods += 1;
                out.push(self.execute(actions));
            }
            // No megaflow can match a tagged frame (see `megaflow`).
            Decision::Install { actions, .. } if upcall.vlan => out.push(self.execute(actions)),
            Decision::Install { actions, deps } => {
                self.install(now, mkey, ingress.location(), &actions, deps, &mut out);
                out.push(self.execute(actions));
            }
        }
        out
    }

    /// A flow's statistics from a dump: `used` is its last use in this
    /// clock's milliseconds (`None`: never used). Keeps the flow, and the
    /// MAC it is keyed on as source, alive. Returns whether the flow is one
    /// of ours; the driver decides what to do with others.
    pub fn handle_flow_stats(&mut self, now: u64, key: &[KeyAttr], used: Option<u64>) -> bool {
        let Ok(u) = Upcall::parse(key) else { return false };
        let Some(source) = self.cache.get(&u.key).map(|e| e.source) else { return false };
        if let Some(t) = used.map(|t| t.min(now)) {
            self.cache.touch(&u.key, t);
            self.macs.refresh(u.key.eth.src, source, t);
        }
        true
    }

    /// Time passed: MACs unseen for [`Config::mac_timeout_ms`] are forgotten
    /// (with the flows that depend on them), and flows unused for
    /// [`Config::flow_idle_ms`] are deleted.
    pub fn handle_timeout(&mut self, now: u64) {
        let expired: Vec<Dep> = self.macs.expire(now).into_iter().map(Dep::Mac).collect();
        if !expired.is_empty() {
            let gone = self.cache.invalidate(&expired);
            self.bump_and_queue(gone);
        }
        for e in self.cache.expire_idle(now, self.cfg.flow_idle_ms) {
            let op = self.delete_op(&e);
            self.queue.push_back(op);
        }
    }

    /// The next op the invalidating handlers queued (deletes).
    pub fn poll_op(&mut self) -> Option<StampedOp> {
        self.queue.pop_front()
    }

    /// When [`Forwarder::handle_timeout`] is next due.
    pub fn poll_timeout(&self) -> Option<u64> {
        let idle = self.cache.next_idle_expiry(self.cfg.flow_idle_ms);
        [self.macs.next_expiry(), idle].into_iter().flatten().min()
    }

    /// The flows installed, oldest first.
    pub fn flows(&self) -> impl Iterator<Item = &FlowEntry> + '_ {
        self.cache.iter()
    }

    /// The installed flow with this match.
    pub fn flow(&self, key: &MatchKey) -> Option<&FlowEntry> {
        self.cache.get(key)
    }

    /// Where `mac` was learned, and when last seen.
    pub fn mac(&self, mac: Mac) -> Option<&MacEntry> {
        self.macs.entry(mac)
    }

    /// Every learned MAC, in no particular order.
    pub fn macs(&self) -> impl Iterator<Item = (Mac, &MacEntry)> + '_ {
        self.macs.iter()
    }

    /// The current routes (normalized).
    pub fn routes(&self) -> &RouteTable {
        &self.world.routes
    }

    /// Our identity.
    pub fn local(&self) -> &LocalPeer {
        &self.world.me
    }

    /// The counters.
    pub fn counters(&self) -> &Counters {
        &self.counters
    }

    /// What a miss with this match would decide now, without learning.
    #[cfg(test)]
    pub(crate) fn recompute(&self, key: &MatchKey) -> Decision {
        match classify(&self.world, &Upcall { key: *key, vlan: false }) {
            Ok((ingress, k)) => decide(&self.world, &self.macs, &k, &ingress),
            Err(r) => Decision::Refuse(r),
        }
    }

    fn install(
        &mut self,
        now: u64,
        key: MatchKey,
        source: Location,
        actions: &[Action],
        deps: BTreeSet<Dep>,
        out: &mut Vec<StampedOp>,
    ) {
        match self.cache.get(&key) {
            Some(e) if e.actions == actions && e.epoch == self.epoch => return,
            Some(e) if e.actions == actions => self.cache.reinstalled(&key, self.epoch),
            Some(_) => {
                let old = self.cache.remove(&key).expect("present");
                out.push(self.delete_op(&old));
                self.cache.insert(self.entry(now, key, source, actions, &deps));
            }
            None => {
                self.cache.insert(self.entry(now, key, source, actions, &deps));
            }
        }
        self.counters.installs += 1;
        let flow = Flow { key: key.key(), mask: Some(key.mask()), actions: Some(actions.to_vec()), ..Flow::default() };
        out.push(self.stamp(FlowOp::Install { flow, deps: deps.into_iter().collect() }));
    }

    fn entry(&self, now: u64, key: MatchKey, source: Location, actions: &[Action], deps: &BTreeSet<Dep>) -> FlowEntry {
        FlowEntry {
            key,
            actions: actions.to_vec(),
            deps: deps.clone(),
            source,
            epoch: self.epoch,
            installed: now,
            used: now,
        }
    }

    fn execute(&mut self, actions: Vec<Action>) -> StampedOp {
        self.counters.executes += 1;
        self.stamp(FlowOp::Execute { actions })
    }

    fn refuse(&mut self, r: DropReason) -> StampedOp {
        *self.counters.drops.entry(r.kind()).or_default() += 1;
        self.stamp(FlowOp::Drop(r))
    }

    fn delete_op(&mut self, e: &FlowEntry) -> StampedOp {
        self.counters.deletes += 1;
        self.stamp(FlowOp::Delete { key: e.key.key() })
    }

    fn stamp(&self, op: FlowOp) -> StampedOp {
        StampedOp { epoch: self.epoch, op }
    }

    /// Something changed that can make earlier decisions wrong: a new epoch,
    /// and deletes for the flows it invalidated.
    fn bump_and_queue(&mut self, gone: Vec<FlowEntry>) {
        self.epoch.0 += 1;
        for e in gone {
            let op = self.delete_op(&e);
            self.queue.push_back(op);
        }
    }
}
