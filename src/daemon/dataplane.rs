//! The fast-datapath driver: the one owner of the [`Forwarder`]. It reads
//! misses from the kernel, asks the forwarder what to do, and executes the
//! answers (install, execute, delete) on the datapath. It learns peers and
//! routes from the mesh as coalesced snapshots, and attaches containers.
//!
//! Layout (documented in README): each container's veth is a netdev vport
//! of the datapath, the datapath's own internal port `weave` belongs to the
//! host, and one VXLAN vport carries traffic between hosts. No bridge: every
//! hop costs, and traffic between host and containers still crosses the
//! host's stack (netfilter, conntrack) on the internal port.

use std::collections::{BTreeMap, BTreeSet};
use std::net::{IpAddr, Ipv4Addr};
use std::path::PathBuf;
use std::sync::Arc;

use tokio::sync::{mpsc, oneshot, watch};
use tracing::{debug, info, warn};

use super::attachments::{self, Saved};
use super::fastdp::Fastdp;
use super::mesh::Live;
use super::sleeve::{Inbound, SleeveHandle};
use super::upcalls::{self, Handlers, RateConfig, UpcallStats, UpcallStatsView};
use crate::api::{AttachError, AttachRequest, AttachView};
use crate::fastdp::heartbeat::{self, Heartbeat};
use crate::fastdp::{Config, FlowOp, Forwarder, LocalPeer, Location, PeerInfo, RouteTable, StampedOp};
use crate::mesh::core::Router;
use crate::mesh::peer::PeerName;
use crate::odp::action::Action;
use crate::odp::key::{EthernetKey, KeyAttr, Mac};
use crate::odp::packet::{Upcall, UpcallKind};
use crate::odp::socket::{OdpClient, OpSocket};
use crate::odp::vport::VportType;
use crate::plumb::veth;

/// What the mesh tells the dataplane: peers with their underlay addresses,
/// the routes, and our own underlay address.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Snapshot {
    pub short_id: crate::mesh::peer::ShortId,
    /// The address our connections leave from (single-homed hosts).
    pub underlay: Option<Ipv4Addr>,
    pub peers: Vec<PeerInfo>,
    pub routes: RouteTable,
    /// The peers whose direct connections carry traffic over the sleeve,
    /// not VXLAN: their fast datapath fails (or is forced off, or the peer
    /// has none) and their sleeve path is up.
    pub sleeve_hops: BTreeSet<PeerName>,
}

/// The IPv4 address, also of an IPv4-mapped IPv6 one.
pub(super) fn v4(ip: IpAddr) -> Option<Ipv4Addr> {
    match ip.to_canonical() {
        IpAddr::V4(a) => Some(a),
        IpAddr::V6(_) => None,
    }
}

/// Builds a snapshot from the router and the live connections.
pub(super) fn snapshot<'a>(router: &Router, live: impl Iterator<Item = &'a Live>) -> Snapshot {
    let st = router.status();
    let mut underlay_of: BTreeMap<PeerName, Ipv4Addr> = BTreeMap::new();
    let mut local = None;
    let mut sleeve_hops = BTreeSet::new();
    for l in live {
        if l.over_sleeve() {
            sleeve_hops.insert(l.info.remote.name);
        }
        if let Some(ip) = v4(l.remote_ip) {
            underlay_of.insert(l.info.remote.name, ip);
        }
        if local.is_none() {
            local = l.local.and_then(|a| v4(a.ip()));
        }
    }
    // Peers we are not connected to: the address others see them at (the
    // IP of any connection to them, inbound or outbound).
    for p in router.topology().iter() {
        for c in &p.connections {
            if let std::collections::btree_map::Entry::Vacant(e) = underlay_of.entry(c.remote) {
                if let Some(ip) = c.address.parse::<std::net::SocketAddr>().ok().and_then(|a| v4(a.ip())) {
                    e.insert(ip);
                }
            }
        }
    }
    let peers = st
        .peers
        .iter()
        .filter(|p| p.name != st.name)
        .filter_map(|p| {
            underlay_of.get(&p.name).map(|ip| PeerInfo { name: p.name, short_id: p.short_id, underlay: *ip })
        })
        .collect();
    let routes = router.routes();
    let mut table = RouteTable::new();
    for h in routes.unicast() {
        table.next_hops.insert(h.dest, h.via);
    }
    for p in &st.peers {
        let kids = routes.broadcast_next_hops(p.name);
        if !kids.is_empty() {
            table.broadcast.insert(p.name, kids);
        }
    }
    Snapshot { short_id: st.short_id, underlay: local, peers, routes: table, sleeve_hops }
}

/// A heartbeat for the dataplane to send through the tunnel.
#[derive(Debug, Clone, Copy)]
pub struct SendHeartbeat {
    pub path: heartbeat::Path,
    pub heartbeat: Heartbeat,
}

/// A heartbeat that arrived through the tunnel, for the mesh to acknowledge.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct HeartbeatSeen {
    pub heartbeat: Heartbeat,
    /// The outer source address.
    pub from: Option<Ipv4Addr>,
}

/// Requests from the API and the mesh.
#[derive(Debug)]
pub enum DpRequest {
    Attach(AttachRequest, oneshot::Sender<Result<AttachView, AttachError>>),
    /// Whether an attach of the target with these addresses would change
    /// nothing (the attachment, then), or is refused; asked before IPAM
    /// allocates, so that a refused attach allocates nothing.
    Check(String, Vec<String>, oneshot::Sender<Result<Option<AttachView>, AttachError>>),
    /// Detach a container (only some addresses, when given).
    Detach(String, Vec<ipnet::IpNet>, oneshot::Sender<Result<crate::api::DetachView, String>>),
    /// Detach every container and forget them (`weavectl stop --reset`).
    DetachAll(oneshot::Sender<()>),
    Heartbeat(SendHeartbeat),
    /// Stop the task (before the datapath is removed under it).
    Shutdown(oneshot::Sender<()>),
}

/// What the dataplane task is busy with, and since when: reported when it
/// does not answer (a stop that timed out).
#[derive(Debug, Default)]
pub struct Activity {
    what: std::sync::atomic::AtomicU8,
    since_ms: std::sync::atomic::AtomicU64,
}

impl Activity {
    const NAMES: [&'static str; 8] = [
        "waiting",
        "upcalls",
        "frames from the sleeve",
        "a snapshot",
        "a request",
        "flow statistics",
        "timers",
        "ended",
    ];
    pub const WAITING: u8 = 0;
    pub const UPCALLS: u8 = 1;
    pub const INBOUND: u8 = 2;
    pub const SNAPSHOT: u8 = 3;
    pub const REQUEST: u8 = 4;
    pub const STATS: u8 = 5;
    pub const TIMERS: u8 = 6;
    pub const ENDED: u8 = 7;

    /// Records that the task now does `what` (one of the constants).
    pub fn set(&self, what: u8) {
        use std::sync::atomic::Ordering::Relaxed;
        self.what.store(what, Relaxed);
        self.since_ms.store(crate::api::monotonic_ms(), Relaxed);
    }

    /// "a request for 5012 ms".
    pub fn describe(&self) -> String {
        use std::sync::atomic::Ordering::Relaxed;
        let what = Self::NAMES.get(usize::from(self.what.load(Relaxed))).copied().unwrap_or("?");
        let since = crate::api::monotonic_ms().saturating_sub(self.since_ms.load(Relaxed));
        format!("{what} for {since} ms")
    }
}

/// A handle for the API and the mesh.
#[derive(Debug, Clone)]
pub struct DataplaneHandle {
    tx: mpsc::Sender<DpRequest>,
    /// The upcall counters (none in bridge mode).
    stats: Option<Arc<UpcallStats>>,
    activity: Arc<Activity>,
}

impl DataplaneHandle {
    /// A handle on a task that serves the requests without a datapath
    /// (bridge mode).
    pub(super) fn without_upcalls(tx: mpsc::Sender<DpRequest>) -> DataplaneHandle {
        DataplaneHandle { tx, stats: None, activity: Arc::default() }
    }

    pub async fn attach(&self, r: AttachRequest) -> Result<AttachView, AttachError> {
        let gone = || AttachError::Unavailable("the dataplane is not running".into());
        let (tx, rx) = oneshot::channel();
        self.tx.send(DpRequest::Attach(r, tx)).await.map_err(|_| gone())?;
        rx.await.map_err(|_| gone())?
    }
    /// See [`DpRequest::Check`]: `Ok(Some(_))` is the attachment as it is.
    pub async fn check(&self, target: String, cidrs: Vec<String>) -> Result<Option<AttachView>, AttachError> {
        let gone = || AttachError::Unavailable("the dataplane is not running".into());
        let (tx, rx) = oneshot::channel();
        self.tx.send(DpRequest::Check(target, cidrs, tx)).await.map_err(|_| gone())?;
        rx.await.map_err(|_| gone())?
    }
    pub async fn detach(&self, target: String, cidrs: Vec<ipnet::IpNet>) -> Result<crate::api::DetachView, String> {
        let (tx, rx) = oneshot::channel();
        self.tx
            .send(DpRequest::Detach(target, cidrs, tx))
            .await
            .map_err(|_| "the dataplane is not running".to_string())?;
        rx.await.map_err(|_| "the dataplane is not running".to_string())?
    }
    pub async fn detach_all(&self) {
        let (tx, rx) = oneshot::channel();
        if self.tx.send(DpRequest::DetachAll(tx)).await.is_ok() {
            let _ = rx.await;
        }
    }
    /// What the task is busy with (see [`Activity`]).
    pub fn activity(&self) -> String {
        self.activity.describe()
    }
    /// Stops the dataplane task and waits for it.
    pub async fn shutdown(&self) {
        let (tx, rx) = oneshot::channel();
        if self.tx.send(DpRequest::Shutdown(tx)).await.is_ok() {
            let _ = rx.await;
        }
    }
    /// Queues a heartbeat; `false` when the queue is full (the heartbeat is
    /// lost, as it could be on the wire).
    pub fn try_heartbeat(&self, h: SendHeartbeat) -> bool {
        self.tx.try_send(DpRequest::Heartbeat(h)).is_ok()
    }
    /// The upcall counters, with the kernel's `lost` count when known.
    pub fn upcall_stats(&self, kernel_lost: Option<u64>) -> Option<UpcallStatsView> {
        self.stats.as_ref().map(|s| s.view(kernel_lost))
    }
}

/// What a no-wait operation was, for its error report.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum OpKind {
    Install,
    Execute,
    Delete,
    Heartbeat,
}

/// The kinds of the last operations sent, by sequence number (bounded).
#[derive(Default)]
struct SentOps {
    ring: std::collections::VecDeque<(u32, OpKind)>,
}

impl SentOps {
    const KEEP: usize = 4096;
    fn record(&mut self, seq: u32, k: OpKind) {
        if self.ring.len() == Self::KEEP {
            self.ring.pop_front();
        }
        self.ring.push_back((seq, k));
    }
    fn get(&self, seq: u32) -> Option<OpKind> {
        self.ring.iter().rev().find(|(s, _)| *s == seq).map(|(_, k)| *k)
    }
}

struct Attachment {
    host_ifname: String,
    port_no: u32,
    cidrs: Vec<String>,
    mac: String,
    netns: Option<attachments::NetnsId>,
}

struct Dataplane {
    fwd: Forwarder,
    odp: Arc<OdpClient>,
    /// Installs, deletes and executes, without waiting for the kernel.
    ops: OpSocket,
    sent_ops: SentOps,
    dp_ifindex: i32,
    handlers: Handlers,
    mtu: u32,
    attached: BTreeMap<String, Attachment>,
    known_peers: BTreeSet<PeerName>,
    state_dir: PathBuf,
    /// The upcall port that hands frames to the sleeve, when it runs.
    sleeve_pid: Option<u32>,
}

/// A packet to execute: its bytes and the key the kernel is given.
type Packet = (Vec<u8>, Vec<KeyAttr>);

/// What the dataplane needs to start.
pub struct DataplaneSettings {
    pub me: PeerName,
    pub short_id: crate::mesh::peer::ShortId,
    pub vxlan_port: u16,
    pub mtu: u32,
    pub state_dir: PathBuf,
}

/// The sleeve beside the fast datapath: where flows' userspace actions
/// hand frames, and the frames that arrive over it.
pub struct SleeveSide {
    pub handle: SleeveHandle,
    pub inbound: mpsc::Receiver<Inbound>,
}

/// Starts the dataplane for a datapath the daemon created: the upcall
/// handlers, the heartbeat flow, the containers a previous run attached
/// (their veths survive a crash or a stop), then the task. Returns the
/// handle and the heartbeats that arrive, for the mesh to acknowledge.
pub async fn spawn(
    dp: &Fastdp,
    s: DataplaneSettings,
    mut snapshots: watch::Receiver<Option<Snapshot>>,
    sleeve: Option<SleeveSide>,
) -> Result<(DataplaneHandle, mpsc::Receiver<HeartbeatSeen>), String> {
    let odp = dp.client.clone();
    let d = odp.get_datapath(&dp.datapath).map_err(|e| e.to_string())?.ok_or("datapath vanished")?;
    let vx = odp
        .get_vport(&format!("vxlan-{}", s.vxlan_port))
        .map_err(|e| e.to_string())?
        .and_then(|v| v.port_no)
        .ok_or("the VXLAN vport is missing")?;

    // Upcalls: one handler thread per CPU feeding a bounded queue. When the
    // queue is full, misses are dropped and counted: a storm cannot starve
    // the control plane.
    let (up_tx, mut up_rx) = mpsc::channel::<Upcall>(4096);
    let (seen_tx, seen_rx) = mpsc::channel(256);
    let stats = Arc::new(UpcallStats::default());
    let (sleeve_handle, mut inbound) = match sleeve {
        Some(s) => (Some(s.handle), Some(s.inbound)),
        None => (None, None),
    };
    let has_sleeve = sleeve_handle.is_some();
    let to = upcalls::Destinations { misses: up_tx, heartbeats: seen_tx, sleeve: sleeve_handle };
    let handlers = upcalls::start(&odp, &dp.datapath, d.dp_ifindex, to, stats.clone(), RateConfig::default())?;
    // Heartbeats from peers come up as action upcalls, never as misses.
    let hb_pid = handlers.pids.first().copied().ok_or("no upcall handler")?;
    odp.new_flow(&heartbeat::receive_flow(d.dp_ifindex, vx, hb_pid)).map_err(|e| format!("heartbeat flow: {e}"))?;

    let local = LocalPeer { name: s.me, short_id: s.short_id, underlay: Ipv4Addr::UNSPECIFIED, vxlan_port: vx };
    let ops = OpSocket::open(&odp.families()).map_err(|e| e.to_string())?;
    let mut dataplane = Dataplane {
        fwd: Forwarder::new(local, Config::default()),
        ops,
        sent_ops: SentOps::default(),
        odp,
        dp_ifindex: d.dp_ifindex,
        handlers,
        mtu: s.mtu,
        attached: BTreeMap::new(),
        known_peers: BTreeSet::new(),
        state_dir: s.state_dir,
        sleeve_pid: if has_sleeve { Some(hb_pid) } else { None },
    };
    // The internal port (the host's side: `weave`) is a local port like a
    // container's: traffic between the host and containers crosses the
    // host's own stack there, where netfilter and conntrack see it.
    let now = dataplane.now();
    dataplane.fwd.handle_port_added(now, crate::odp::vport::LOCAL_PORT);
    dataplane.readopt().await;

    let (req_tx, mut req_rx) = mpsc::channel(256);
    let activity = Arc::new(Activity::default());
    let doing = activity.clone();
    tokio::spawn(async move {
        let mut stats = tokio::time::interval(std::time::Duration::from_secs(3));
        stats.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        loop {
            let wake = dataplane.fwd.poll_timeout().map(|at| at.saturating_sub(dataplane.now())).unwrap_or(5_000);
            doing.set(Activity::WAITING);
            tokio::select! {
                Some(first) = up_rx.recv() => {
                    doing.set(Activity::UPCALLS);
                    // Bounded work per wake-up.
                    let mut batch = vec![first];
                    while batch.len() < 64 {
                        match up_rx.try_recv() { Ok(u) => batch.push(u), Err(_) => break }
                    }
                    for u in batch { dataplane.on_upcall(u); }
                }
                Some(first) = async { match &mut inbound { Some(r) => r.recv().await, None => std::future::pending().await } } => {
                    doing.set(Activity::INBOUND);
                    dataplane.on_inbound(first);
                    // Bounded work per wake-up.
                    for _ in 0..63 {
                        match inbound.as_mut().map(mpsc::Receiver::try_recv) {
                            Some(Ok(f)) => dataplane.on_inbound(f),
                            _ => break,
                        }
                    }
                    dataplane.apply_queued();
                }
                changed = snapshots.changed() => {
                    if changed.is_err() { break; }
                    doing.set(Activity::SNAPSHOT);
                    let snap = snapshots.borrow_and_update().clone();
                    if let Some(s) = snap { dataplane.on_snapshot(s); }
                }
                Some(req) = req_rx.recv() => {
                    doing.set(Activity::REQUEST);
                    if let DpRequest::Shutdown(done) = req {
                        let _ = done.send(());
                        break;
                    }
                    dataplane.on_request(req).await
                }
                _ = stats.tick() => {
                    doing.set(Activity::STATS);
                    dataplane.sync_stats();
                    dataplane.check_ops();
                }
                _ = tokio::time::sleep(std::time::Duration::from_millis(wake.max(10))) => {
                    doing.set(Activity::TIMERS);
                    let now = dataplane.now();
                    dataplane.fwd.handle_timeout(now);
                    dataplane.apply_queued();
                }
            }
        }
        doing.set(Activity::ENDED);
    });
    Ok((DataplaneHandle { tx: req_tx, stats: Some(stats), activity }, seen_rx))
}

impl Dataplane {
    /// CLOCK_MONOTONIC in ms: the clock of the kernel's flow `used` times.
    fn now(&self) -> u64 {
        crate::api::monotonic_ms()
    }

    /// Feeds the kernel's flow statistics to the forwarder, so that MACs and
    /// flows in use are kept and idle ones expire.
    fn sync_stats(&mut self) {
        let flows = match tokio::task::block_in_place(|| self.odp.dump_flows(self.dp_ifindex)) {
            Ok(f) => f,
            Err(e) => {
                warn!(error = %e, "flow dump failed");
                return;
            }
        };
        let now = self.now();
        for f in flows {
            // Flows that are not the forwarder's (added by hand) are left alone.
            self.fwd.handle_flow_stats(now, &f.key, f.used);
        }
        self.apply_queued();
    }

    fn on_snapshot(&mut self, s: Snapshot) {
        let now = self.now();
        let mut me = self.fwd.local().clone();
        me.short_id = s.short_id;
        if let Some(u) = s.underlay {
            me.underlay = u;
        }
        self.fwd.handle_local(now, me);
        let names: BTreeSet<PeerName> = s.peers.iter().map(|p| p.name).collect();
        for gone in self.known_peers.difference(&names) {
            self.fwd.handle_peer_removed(now, *gone);
        }
        for p in &s.peers {
            self.fwd.handle_peer(now, *p);
        }
        self.known_peers = names;
        self.fwd.handle_routes(now, s.routes);
        if let Some(pid) = self.sleeve_pid {
            self.fwd.handle_sleeve_hops(now, pid, s.sleeve_hops);
        }
        self.apply_queued();
    }

    /// A frame from the sleeve: one that arrived from a peer is decided as
    /// if it had come through the tunnel; one for a local container (an
    /// ICMP reply to it) goes to its port.
    fn on_inbound(&mut self, f: Inbound) {
        let vx = self.fwd.local().vxlan_port;
        let key = |bytes: &[u8], in_port: u32| {
            let (dst, src) = Mac::of_frame(bytes).unwrap_or_default();
            let ethertype = bytes.get(12..14).map_or(0, |b| u16::from_be_bytes([b[0], b[1]]));
            vec![KeyAttr::InPort(in_port), KeyAttr::Ethernet(EthernetKey { src, dst }), KeyAttr::EthType(ethertype)]
        };
        match f {
            Inbound::Peer { prev, src, dst, bytes } => {
                let now = self.now();
                let ops = self.fwd.handle_sleeve_frame(now, prev, src, dst, &bytes);
                let k = key(&bytes, vx);
                let mut packet = Some((bytes, k));
                for op in ops {
                    self.apply(op, &mut packet);
                }
            }
            Inbound::Local(bytes) => {
                let port =
                    Mac::of_frame(&bytes).and_then(|(dst, _)| self.fwd.mac(dst)).and_then(|e| match e.location {
                        Location::Local(p) => Some(p),
                        Location::Remote(_) => None,
                    });
                let Some(port) = port else {
                    debug!("reply for no local container dropped");
                    return;
                };
                let k = key(&bytes, crate::odp::vport::LOCAL_PORT);
                match self.ops.execute(self.dp_ifindex, bytes, k, vec![Action::Output(port)]) {
                    Ok(seq) => self.sent_ops.record(seq, OpKind::Execute),
                    Err(e) => debug!(error = %e, "reply not delivered"),
                }
            }
        }
    }

    fn on_upcall(&mut self, u: Upcall) {
        // Heartbeats are taken by the handlers; other action upcalls are not ours.
        if u.kind != UpcallKind::Miss {
            return;
        }
        let now = self.now();
        let ops = self.fwd.handle_miss(now, &u.msg.key, u.msg.packet.len());
        let mut missed = Some((u.msg.packet, u.msg.key));
        for op in ops {
            self.apply(op, &mut missed);
        }
        self.apply_queued();
    }

    fn send_heartbeat(&mut self, h: SendHeartbeat) {
        let frame = match h.heartbeat.emit() {
            Ok(f) => f,
            Err(e) => {
                warn!(error = %e, "heartbeat not sent");
                return;
            }
        };
        let (key, actions) = heartbeat::send_actions(&h.path, self.fwd.local().vxlan_port, None);
        match self.ops.execute(self.dp_ifindex, frame, key, actions) {
            Ok(seq) => self.sent_ops.record(seq, OpKind::Heartbeat),
            // The frame is lost, which the missing acknowledgement reports.
            Err(e) => debug!(error = %e, dst = %h.path.dst, "heartbeat not sent"),
        }
    }

    fn apply_queued(&mut self) {
        while let Some(op) = self.fwd.poll_op() {
            self.apply(op, &mut None);
        }
    }

    /// Executes one op on the datapath. Kernel calls are short and
    /// synchronous; they run in place on this task's worker thread.
    /// `missed` is the packet being handled: an execute consumes it.
    fn apply(&mut self, op: StampedOp, missed: &mut Option<Packet>) {
        if op.is_stale(self.fwd.epoch()) {
            return;
        }
        let dp = self.dp_ifindex;
        let (what, r) = match op.op {
            FlowOp::Install { mut flow, .. } => {
                flow.dp_ifindex = dp;
                (OpKind::Install, self.ops.put_flow(&flow))
            }
            FlowOp::Execute { actions } => match missed.take() {
                Some((packet, key)) if !actions.is_empty() => {
                    (OpKind::Execute, self.ops.execute(dp, packet, key, actions))
                }
                _ => return,
            },
            FlowOp::Delete { key } => (OpKind::Delete, self.ops.del_flow(dp, key)),
            FlowOp::Drop(reason) => {
                debug!(%reason, "miss dropped");
                return;
            }
        };
        match r {
            Ok(seq) => self.sent_ops.record(seq, what),
            Err(e) => warn!(error = %e, "datapath operation failed"),
        }
    }

    /// Reports the operations the kernel refused (they were sent without
    /// waiting), on the stats tick: off the miss path, and failures are
    /// rare. A delete of a flow already gone is not a failure.
    fn check_ops(&mut self) {
        for (seq, errno) in self.ops.drain_errors() {
            let what = self.sent_ops.get(seq);
            if what == Some(OpKind::Delete) && errno == libc::ENOENT {
                continue;
            }
            if what == Some(OpKind::Heartbeat) {
                // A lost heartbeat is what its missing acknowledgement reports.
                debug!(seq, errno, "heartbeat refused by the kernel");
                continue;
            }
            let e = std::io::Error::from_raw_os_error(errno);
            warn!(op = ?what, seq, error = %e, "the kernel refused a datapath operation");
        }
    }

    async fn on_request(&mut self, req: DpRequest) {
        match req {
            DpRequest::Attach(r, tx) => {
                let res = self.attach(r).await;
                let _ = tx.send(res);
            }
            DpRequest::Check(target, cidrs, tx) => {
                let res = self.check(&target, &cidrs).await.map(|p| match p {
                    attachments::Prior::Same => self.view(&target),
                    _ => None,
                });
                let _ = tx.send(res);
            }
            DpRequest::Detach(t, cidrs, tx) => {
                let res = if cidrs.is_empty() {
                    self.detach(&t).await.map(|removed| attachments::detached(&t, removed))
                } else {
                    let held = self.attached.get_mut(&t).map(|a| &mut a.cidrs);
                    let r = attachments::remove_addresses(&t, held, &cidrs).await;
                    self.save();
                    r
                };
                let _ = tx.send(res);
            }
            DpRequest::DetachAll(tx) => {
                let targets: Vec<String> = self.attached.keys().cloned().collect();
                for t in targets {
                    if let Err(e) = self.detach(&t).await {
                        warn!(target = %t, error = %e, "detach failed");
                    }
                }
                let _ = tx.send(());
            }
            DpRequest::Heartbeat(h) => self.send_heartbeat(h),
            DpRequest::Shutdown(done) => {
                let _ = done.send(());
            }
        }
    }

    /// The attachments, as recorded.
    fn records(&self) -> Vec<Saved> {
        self.attached
            .iter()
            .map(|(t, a)| Saved {
                target: t.clone(),
                host_ifname: a.host_ifname.clone(),
                cidrs: a.cidrs.clone(),
                mac: a.mac.clone(),
                netns: a.netns,
            })
            .collect()
    }

    /// Writes the attachments to the state directory.
    fn save(&self) {
        if let Err(e) = attachments::save(&self.state_dir, &self.records()) {
            warn!(error = %e, "could not record the attached containers");
        }
    }

    /// Adds a host veth as a netdev vport.
    fn add_port(&mut self, ifname: &str) -> Result<u32, String> {
        let pids = self.handlers.pids_for_new_port();
        let v = tokio::task::block_in_place(|| {
            self.odp.create_vport(self.dp_ifindex, ifname, VportType::Netdev, None, pids)
        })
        .map_err(|e| e.to_string())?;
        let port_no = v.port_no.ok_or("kernel gave the port no number")?;
        let now = self.now();
        self.fwd.handle_port_added(now, port_no);
        self.apply_queued();
        Ok(port_no)
    }

    /// Takes back the containers an earlier run attached, whose veths
    /// survived it (a crash, a restart), and removes host veths of ours that
    /// no record names (left by a run that died mid-attach).
    async fn readopt(&mut self) {
        for s in attachments::surviving(&self.state_dir).await {
            match self.add_port(&s.host_ifname) {
                Ok(port_no) => {
                    info!(target = %s.target, ifname = %s.host_ifname, port = port_no, "container re-attached");
                    // Lists of older versions lack the namespace: it is the
                    // one the target names now.
                    let netns = s.netns.or_else(|| attachments::netns_id(&s.target).ok());
                    let a = Attachment { host_ifname: s.host_ifname, port_no, cidrs: s.cidrs, mac: s.mac, netns };
                    self.attached.insert(s.target, a);
                }
                Err(e) => warn!(target = %s.target, error = %e, "could not re-attach container"),
            }
        }
        let ours: BTreeSet<&String> = self.attached.values().map(|a| &a.host_ifname).collect();
        attachments::remove_unowned_veths(&ours).await;
        self.save();
    }

    /// What an attach of `target` with `cidrs` finds (see [`attachments::prior`]).
    async fn check(&self, target: &str, cidrs: &[String]) -> Result<attachments::Prior, AttachError> {
        let asked = attachments::asked(cidrs)?;
        attachments::prior(target, asked.as_deref(), &self.records()).await
    }

    /// The attachment of `target`, as an attach answers it.
    fn view(&self, target: &str) -> Option<AttachView> {
        self.attached.get(target).map(|a| AttachView {
            target: target.to_string(),
            host_ifname: a.host_ifname.clone(),
            mac: a.mac.clone(),
            port_no: Some(a.port_no),
            cidrs: a.cidrs.clone(),
        })
    }

    /// Attaches a container. Attached already, the same: nothing changes;
    /// attached in a namespace since gone (or its veth gone): replaced.
    async fn attach(&mut self, r: AttachRequest) -> Result<AttachView, AttachError> {
        let spec = attachments::attach_spec(&r, self.mtu)?;
        match self.check(&r.target, &r.cidrs).await? {
            attachments::Prior::Same => {
                return self.view(&r.target).ok_or_else(|| AttachError::Failed("attachment vanished".into()))
            }
            attachments::Prior::Stale => {
                info!(target = %r.target, "replacing a stale attachment");
                let _ = self.detach(&r.target).await;
            }
            attachments::Prior::Fresh => {}
        }
        let netns = Some(attachments::netns_id(&r.target)?);
        let a = veth::attach(&spec).await.map_err(|e| AttachError::Failed(e.to_string()))?;
        let port_no = match self.add_port(&a.host_ifname) {
            Ok(p) => p,
            Err(e) => {
                let _ = veth::detach(&a.host_ifname).await;
                return Err(AttachError::Failed(e));
            }
        };
        self.attached.insert(
            r.target.clone(),
            Attachment {
                host_ifname: a.host_ifname.clone(),
                port_no,
                cidrs: r.cidrs.clone(),
                mac: crate::odp::key::Mac(a.mac).to_string(),
                netns,
            },
        );
        self.save();
        let m = a.mac;
        info!(target = %r.target, port = port_no, ifname = %a.host_ifname, "container attached");
        attachments::announce(&spec, a.mac).await;
        Ok(AttachView {
            target: r.target,
            host_ifname: a.host_ifname,
            mac: crate::odp::key::Mac(m).to_string(),
            port_no: Some(port_no),
            cidrs: r.cidrs,
        })
    }

    /// Removes the container's port and veth. `Ok(None)`: it was not attached.
    async fn detach(&mut self, target: &str) -> Result<Option<Vec<String>>, String> {
        let Some(a) = self.attached.remove(target) else {
            return Ok(None);
        };
        let now = self.now();
        let _ = tokio::task::block_in_place(|| self.odp.delete_vport(self.dp_ifindex, a.port_no));
        self.fwd.handle_port_removed(now, a.port_no);
        self.apply_queued();
        self.save();
        veth::detach(&a.host_ifname).await.map_err(|e| e.to_string())?;
        info!(%target, "container detached");
        Ok(Some(a.cidrs))
    }
}

#[cfg(test)]
mod tests {
    use super::Activity;

    #[test]
    fn activity_names_what_and_how_long() {
        let a = Activity::default();
        assert!(a.describe().starts_with("waiting for "), "{}", a.describe());
        a.set(Activity::STATS);
        let d = a.describe();
        assert!(d.starts_with("flow statistics for ") && d.ends_with(" ms"), "{d}");
        a.set(Activity::ENDED);
        assert!(a.describe().starts_with("ended for "));
        // Every constant has a name.
        for w in 0..=Activity::ENDED {
            a.set(w);
            assert!(!a.describe().starts_with('?'));
        }
        a.set(200);
        assert!(a.describe().starts_with("? for "));
    }
}
