//! The mesh task: the one owner of the mesh [`Router`] and the connection
//! [`Maker`]. It accepts and dials TCP connections, runs their handshakes,
//! feeds the router what arrives and sends what it emits, and answers the
//! API's requests. Every input is handled by a function of its own.

use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::{Duration, Instant};

use tokio::net::{TcpListener, TcpStream};
use tokio::sync::mpsc;
use tracing::{debug, info, warn};

use super::dataplane::{v4, DataplaneHandle, HeartbeatSeen, SendHeartbeat};
use super::sleeve::{ConnUp, SleeveEvent, SleeveHandle, UDP_IPV4_OVERHEAD};
use super::targets;
use crate::api::handle::{MeshHandle, MeshRequest};
use crate::api::{ConnectRequest, ForgetRequest};
use crate::fastdp::health::{Health, HealthConfig, OverlayState, Transition};
use crate::fastdp::heartbeat::{self, Ack, Heartbeat};
use crate::fastdp::Vni;
use crate::mesh::conn::{self, AcceptLimiter, ConnConfig, ConnError, ConnEvent, Established, LimitConfig, Payload};
use crate::mesh::core::{ConnId, ConnVerdict, MeshConfig, MeshEvent, NewConnection, RefuseReason, Router};
use crate::mesh::maker::{self, BackoffConfig, Maker};
use crate::mesh::peer::Identity;
use crate::sleeve::link::{Fragments, Link, LinkConfig, LinkState};

/// What the mesh task needs to start.
pub struct MeshSettings {
    /// Where the dataplane learns peers and routes (latest snapshot wins).
    pub dataplane: Option<tokio::sync::watch::Sender<Option<super::dataplane::Snapshot>>>,
    pub identity: Identity,
    pub conn: ConnConfig,
    pub port: u16,
    pub peers: Vec<String>,
    pub discovery: bool,
    pub conn_limit: usize,
    pub state_dir: PathBuf,
    /// The fast datapath's heartbeats, when this host runs it.
    pub fastdp: Option<FastdpLink>,
    /// The sleeve, when this host runs it.
    pub sleeve: Option<SleeveLink>,
    /// IPAM's settings, and its state saved by the last run.
    pub ipam: Option<(crate::ipam::IpamConfig, Option<crate::ipam::Saved>)>,
    /// How long a container's namespace must be gone before IPAM releases
    /// its addresses.
    pub ipam_grace: Duration,
    /// weaveDNS's domain, and where the live zone goes (to the server).
    pub dns: Option<(hickory_proto::rr::Name, tokio::sync::watch::Sender<Arc<crate::dns::Zone>>)>,
}

/// What the mesh needs to run each connection's sleeve path.
pub struct SleeveLink {
    pub handle: SleeveHandle,
    /// Control datagrams that arrived (to acknowledge), and sends the
    /// kernel refused as too big.
    pub events: mpsc::Receiver<SleeveEvent>,
    /// The UDP port peers receive the sleeve on.
    pub port: u16,
    pub link: LinkConfig,
    /// The containers' MTU.
    pub mtu: u32,
}

struct SleeveState {
    handle: SleeveHandle,
    port: u16,
    link: LinkConfig,
    mtu: u32,
}

/// What the mesh needs to check each connection's fast datapath.
pub struct FastdpLink {
    pub dataplane: DataplaneHandle,
    /// Heartbeats that arrived, to acknowledge.
    pub seen: mpsc::Receiver<HeartbeatSeen>,
    /// The overlay MTU: full heartbeats are this big plus an Ethernet header.
    pub mtu: u32,
    pub vxlan_port: u16,
    pub health: HealthConfig,
    /// Peers (names, nicknames or IPs) reached over the sleeve only.
    pub sleeve_peers: Vec<String>,
}

struct FastdpState {
    dataplane: DataplaneHandle,
    mtu: u32,
    vxlan_port: u16,
    health: HealthConfig,
    sleeve_peers: Vec<String>,
}

/// Something that happened in a helper task.
enum TaskEvent {
    Handshake {
        conn: ConnId,
        addr: String,
        /// Our end's address: the underlay address this peer is reached from.
        local: Option<SocketAddr>,
        target: Option<String>,
        outbound: bool,
        result: Result<Box<Established>, Failure>,
    },
    Conn(ConnId, ConnEvent),
}

/// Why a connection attempt failed, and whether retrying can ever help.
struct Failure {
    error: String,
    permanent: bool,
}

impl From<ConnError> for Failure {
    fn from(e: ConnError) -> Self {
        Failure { permanent: e.is_permanent(), error: e.to_string() }
    }
}

/// A live connection.
pub(super) struct Live {
    pub handle_tx: mpsc::Sender<Payload>,
    pub closer: conn::Closer,
    pub info: conn::ConnInfo,
    pub addr: String,
    pub outbound: bool,
    /// The maker target this connection satisfies, if any.
    pub target: Option<String>,
    /// Our end's address.
    pub local: Option<SocketAddr>,
    /// The remote end's IP: its underlay address.
    pub remote_ip: std::net::IpAddr,
    /// What the router was told when the connection came up, to tell it
    /// again when the connection returns from hold.
    pub new_conn: NewConnection,
    /// The fast datapath's health on this connection, when both ends run it.
    pub health: Option<Health>,
    /// Why there is no health, for `status connections`.
    pub no_health: &'static str,
    /// Withdrawn from the router while on hold.
    pub withdrawn: bool,
    /// The sleeve path, when both ends run the sleeve.
    pub sleeve: Option<Link>,
    /// The payload limit the driver was last given.
    pub sleeve_limit: usize,
    /// Traffic to the peer goes over the sleeve (as last published).
    pub on_sleeve: bool,
}

impl Live {
    /// Whether traffic to this peer goes over the sleeve: its fast
    /// datapath is on hold (or absent) and its sleeve path is usable.
    pub(super) fn over_sleeve(&self) -> bool {
        let fastdp_ok = self.health.as_ref().is_some_and(|h| h.state() != OverlayState::OnHold);
        !self.withdrawn && !fastdp_ok && self.sleeve.as_ref().is_some_and(Link::usable)
    }
}

/// A connection whose handshake is under way.
pub(super) struct Pending {
    pub addr: String,
    pub outbound: bool,
}

pub(super) struct MeshTask {
    pub router: Router,
    pub maker: Maker,
    pub live: BTreeMap<ConnId, Live>,
    pub pending: BTreeMap<ConnId, Pending>,
    /// Recent failures (address, error), newest last, for `status connections`.
    pub failures: Vec<(String, bool, String)>,
    pub discovery: bool,
    conn_cfg: Arc<ConnConfig>,
    port: u16,
    limiter: AcceptLimiter,
    next_conn: u64,
    start: Instant,
    events_tx: mpsc::Sender<TaskEvent>,
    state_dir: PathBuf,
    dropped_sends: u64,
    dataplane: Option<tokio::sync::watch::Sender<Option<super::dataplane::Snapshot>>>,
    fastdp: Option<FastdpState>,
    sleeve: Option<SleeveState>,
    pub(super) ipam: super::ipam::IpamDriver,
    pub(super) ipam_on: bool,
    pub(super) dns: Option<super::dns::DnsDriver>,
}

const MAX_FAILURES_SHOWN: usize = 16;

/// Starts the mesh: binds the control port and spawns the task. Returns
/// the API's handle and the task's join handle; the task ends when
/// `shutdown` resolves.
pub async fn spawn(
    s: MeshSettings,
    shutdown: impl std::future::Future<Output = ()> + Send + 'static,
) -> std::io::Result<(MeshHandle, tokio::task::JoinHandle<()>)> {
    let listener = TcpListener::bind(SocketAddr::from(([0, 0, 0, 0], s.port))).await?;
    info!(port = s.port, name = %s.identity.name, nickname = %s.identity.nickname, "mesh listening");
    let (api_tx, api_rx) = mpsc::channel(64);
    let (events_tx, events_rx) = mpsc::channel(1024);
    let now = Instant::now();
    let seed = s.identity.uid.0;
    let mut maker = Maker::new(BackoffConfig::default(), seed);
    let mut direct = targets::load(&s.state_dir);
    direct.extend(s.peers.iter().cloned());
    for t in direct {
        maker.add_direct(0, t);
    }
    let (fastdp, seen) = match s.fastdp {
        Some(f) => (
            Some(FastdpState {
                dataplane: f.dataplane,
                mtu: f.mtu,
                vxlan_port: f.vxlan_port,
                health: f.health,
                sleeve_peers: f.sleeve_peers,
            }),
            Some(f.seen),
        ),
        None => (None, None),
    };
    let (sleeve, sleeve_events) = match s.sleeve {
        Some(l) => (Some(SleeveState { handle: l.handle, port: l.port, link: l.link, mtu: l.mtu }), Some(l.events)),
        None => (None, None),
    };
    let mut router = Router::new(s.identity.clone(), MeshConfig::default(), seed, 0);
    let ipam_on = s.ipam.is_some();
    if let Some((config, saved)) = s.ipam {
        let me = s.identity.name;
        let ipam = match &saved {
            Some(saved) => crate::ipam::Ipam::restore(me, config, saved),
            None => crate::ipam::Ipam::new(me, config),
        }
        .map_err(|e| std::io::Error::other(e.to_string()))?;
        router
            .register_gossip_channel(crate::ipam::CHANNEL, Box::new(ipam))
            .map_err(|e| std::io::Error::other(e.to_string()))?;
    }
    let dns = match s.dns {
        Some((domain, zone)) => {
            router
                .register_gossip_channel(crate::dns::CHANNEL, Box::<crate::dns::Records>::default())
                .map_err(|e| std::io::Error::other(e.to_string()))?;
            Some(super::dns::DnsDriver::new(domain, zone))
        }
        None => None,
    };
    let task = MeshTask {
        router,
        maker,
        live: BTreeMap::new(),
        pending: BTreeMap::new(),
        failures: Vec::new(),
        discovery: s.discovery,
        conn_cfg: Arc::new(s.conn),
        port: s.port,
        limiter: AcceptLimiter::new(LimitConfig { max_connections: s.conn_limit, ..LimitConfig::default() }, now),
        next_conn: 1,
        start: now,
        events_tx,
        state_dir: s.state_dir.clone(),
        dropped_sends: 0,
        dataplane: s.dataplane,
        fastdp,
        sleeve,
        ipam: super::ipam::IpamDriver::new(s.state_dir.clone(), s.ipam_grace),
        ipam_on,
        dns,
    };
    let join = tokio::spawn(task.run(listener, api_rx, events_rx, seen, sleeve_events, shutdown));
    Ok((MeshHandle::new(api_tx), join))
}

impl MeshTask {
    /// Whether traffic goes over the kernel fast datapath (or the sleeve).
    pub(super) fn dataplane_active(&self) -> bool {
        self.dataplane.is_some()
    }

    /// Whether this host runs the fast datapath.
    pub(super) fn runs_fastdp(&self) -> bool {
        self.fastdp.is_some()
    }

    /// Whether a password is set: every connection is then encrypted.
    pub(super) fn encrypted(&self) -> bool {
        self.conn_cfg.encrypted()
    }

    pub(super) fn now(&self) -> u64 {
        self.start.elapsed().as_millis() as u64
    }

    /// The overlay MTU, when this host runs the fast datapath or the sleeve.
    pub(super) fn overlay_mtu(&self) -> Option<u32> {
        self.fastdp.as_ref().map(|f| f.mtu).or(self.sleeve.as_ref().map(|s| s.mtu))
    }

    fn conn_id(&mut self) -> ConnId {
        let id = ConnId(self.next_conn);
        self.next_conn += 1;
        id
    }

    async fn run(
        mut self,
        listener: TcpListener,
        mut api_rx: mpsc::Receiver<MeshRequest>,
        mut events_rx: mpsc::Receiver<TaskEvent>,
        mut seen: Option<mpsc::Receiver<HeartbeatSeen>>,
        mut sleeve_events: Option<mpsc::Receiver<SleeveEvent>>,
        shutdown: impl std::future::Future<Output = ()> + Send + 'static,
    ) {
        tokio::pin!(shutdown);
        loop {
            self.run_health();
            self.run_sleeve();
            if self.ipam_on || self.dns.is_some() {
                self.run_ipam();
            }
            self.run_dns();
            self.drain_router();
            self.dial_due();
            let health = self.live.values().filter_map(|l| l.health.as_ref().map(Health::poll_timeout)).min();
            let links = self.live.values().filter_map(|l| l.sleeve.as_ref().map(Link::poll_timeout)).min();
            let ipam = self.ipam_on.then(|| self.ipam.next_tick());
            let wake = [self.router.poll_timeout(), self.maker.poll_timeout(), health, links, ipam]
                .into_iter()
                .flatten()
                .min();
            let sleep = match wake {
                Some(at) => Duration::from_millis(at.saturating_sub(self.now())),
                None => Duration::from_secs(3600),
            };
            tokio::select! {
                _ = &mut shutdown => break,
                accepted = listener.accept() => match accepted {
                    Ok((stream, addr)) => self.on_accept(stream, addr),
                    Err(e) => warn!(error = %e, "accept failed"),
                },
                Some(ev) = events_rx.recv() => self.on_event(ev),
                Some(req) = api_rx.recv() => self.on_request(req),
                Some(hb) = async { match &mut seen { Some(r) => r.recv().await, None => std::future::pending().await } } => {
                    self.on_heartbeat_seen(hb);
                }
                Some(ev) = async { match &mut sleeve_events { Some(r) => r.recv().await, None => std::future::pending().await } } => {
                    self.on_sleeve_event(ev);
                }
                _ = tokio::time::sleep(sleep) => {
                    let now = self.now();
                    self.router.handle_timeout(now);
                }
            }
        }
        info!("mesh shutting down");
        for (_, mut l) in std::mem::take(&mut self.live) {
            l.closer.close("peer shutting down");
        }
    }

    /// Sends what the router emitted and acts on its events.
    fn drain_router(&mut self) {
        while let Some((conn, bytes)) = self.router.poll_transmit() {
            if let Some(l) = self.live.get(&conn) {
                if l.handle_tx.try_send(Payload::Mesh(bytes)).is_err() {
                    // Gossip is anti-entropic: a dropped message is repaired
                    // by the next exchange. Counted, not logged per message.
                    self.dropped_sends += 1;
                }
            }
        }
        let mut changed = false;
        while let Some(ev) = self.router.poll_event() {
            changed |= matches!(
                ev,
                MeshEvent::RouteChange(_)
                    | MeshEvent::PeerAdded { .. }
                    | MeshEvent::PeerRemoved { .. }
                    | MeshEvent::ShortIdChanged { .. }
            );
            match ev {
                MeshEvent::PeerAdded { name, nickname, .. } => info!(peer = %name, %nickname, "peer added"),
                MeshEvent::PeerRemoved { name, .. } => info!(peer = %name, "peer removed"),
                MeshEvent::ShortIdChanged { old, new } => {
                    info!(old = old.get(), new = new.get(), "our short ID changed")
                }
                MeshEvent::RouteChange(c) => {
                    debug!(?c, "routes changed");
                    if self.discovery {
                        self.discover();
                    }
                }
                MeshEvent::ChannelMessage { channel, src, payload, .. } if channel == crate::ipam::CHANNEL => {
                    self.on_ipam_message(src, payload);
                }
                MeshEvent::ChannelUpdated { channel } if channel == crate::dns::CHANNEL => self.publish_zone(),
                MeshEvent::ChannelMessage { .. } | MeshEvent::ChannelUpdated { .. } => {}
            }
        }
        if changed {
            self.publish_dataplane();
        }
    }

    /// Gives the dataplane the current peers and routes.
    fn publish_dataplane(&self) {
        if let Some(tx) = &self.dataplane {
            let snap = Some(super::dataplane::snapshot(&self.router, self.live.values()));
            // Unchanged snapshots wake nobody.
            tx.send_if_modified(|cur| {
                let changed = *cur != snap;
                if changed {
                    *cur = snap;
                }
                changed
            });
        }
    }

    /// Adds the listen addresses other peers dial (their outbound
    /// connections) as discovered targets.
    fn discover(&mut self) {
        let now = self.now();
        let me = self.router.identity().name;
        let connected: Vec<_> = self.live.values().map(|l| l.info.remote.name).collect();
        let mut found = Vec::new();
        for p in self.router.topology().iter() {
            for c in &p.connections {
                if c.outbound && c.remote != me && !connected.contains(&c.remote) {
                    found.push(c.address.clone());
                }
            }
        }
        for a in found {
            if let Ok(a) = maker::normalise(&a, self.port) {
                self.maker.add_discovered(now, a);
            }
        }
    }

    fn dial_due(&mut self) {
        let now = self.now();
        while let Some(addr) = self.maker.poll_connect(now) {
            let conn = self.conn_id();
            self.pending.insert(conn, Pending { addr: addr.clone(), outbound: true });
            let cfg = self.conn_cfg.clone();
            let tx = self.events_tx.clone();
            tokio::spawn(async move {
                let mut local = None;
                let result = match tokio::time::timeout(cfg.handshake_timeout, TcpStream::connect(&addr)).await {
                    Ok(Ok(stream)) => {
                        local = stream.local_addr().ok();
                        conn::establish(stream, &cfg, true).await.map(Box::new).map_err(Failure::from)
                    }
                    Ok(Err(e)) => Err(Failure { error: format!("connect to {addr}: {e}"), permanent: false }),
                    Err(_) => Err(Failure { error: format!("connect to {addr}: timed out"), permanent: false }),
                };
                let ev = TaskEvent::Handshake {
                    conn,
                    addr: addr.clone(),
                    local,
                    target: Some(addr),
                    outbound: true,
                    result,
                };
                let _ = tx.send(ev).await;
            });
        }
    }

    fn on_accept(&mut self, stream: TcpStream, addr: SocketAddr) {
        if let Err(refusal) = self.limiter.try_accept(Instant::now()) {
            warn!(%addr, %refusal, "connection refused");
            return;
        }
        let conn = self.conn_id();
        self.pending.insert(conn, Pending { addr: addr.to_string(), outbound: false });
        let cfg = self.conn_cfg.clone();
        let tx = self.events_tx.clone();
        tokio::spawn(async move {
            let local = stream.local_addr().ok();
            let result = conn::establish(stream, &cfg, false).await.map(Box::new).map_err(Failure::from);
            let ev =
                TaskEvent::Handshake { conn, addr: addr.to_string(), local, target: None, outbound: false, result };
            let _ = tx.send(ev).await;
        });
    }

    fn on_event(&mut self, ev: TaskEvent) {
        match ev {
            TaskEvent::Handshake { conn, addr, local, target, outbound, result } => {
                self.pending.remove(&conn);
                match result {
                    Ok(est) => self.on_established(conn, addr, local, target, outbound, *est),
                    Err(e) => self.on_failed(addr, target, outbound, e),
                }
            }
            TaskEvent::Conn(conn, ConnEvent::Message(bytes)) => {
                let now = self.now();
                if let Err(e) = self.router.handle_message(now, conn, &bytes) {
                    debug!(?conn, error = %e, "bad mesh message");
                }
            }
            TaskEvent::Conn(conn, ConnEvent::Overlay(bytes)) => self.on_overlay(conn, &bytes),
            TaskEvent::Conn(conn, ConnEvent::Closed(reason)) => self.on_closed(conn, reason.to_string()),
        }
    }

    fn remember_failure(&mut self, addr: String, outbound: bool, error: String) {
        self.failures.retain(|(a, _, _)| *a != addr);
        self.failures.push((addr, outbound, error));
        if self.failures.len() > MAX_FAILURES_SHOWN {
            self.failures.remove(0);
        }
    }

    fn on_failed(&mut self, addr: String, target: Option<String>, outbound: bool, f: Failure) {
        if !outbound {
            self.limiter.release();
        }
        warn!(%addr, error = %f.error, "connection failed");
        if let Some(t) = &target {
            let now = self.now();
            self.maker.handle_attempt_failed(now, t, f.error.clone(), f.permanent);
        }
        self.remember_failure(addr, outbound, f.error);
    }

    fn on_established(
        &mut self,
        conn: ConnId,
        addr: String,
        local: Option<SocketAddr>,
        target: Option<String>,
        outbound: bool,
        est: Established,
    ) {
        let now = self.now();
        let info = est.info.clone();
        let new = NewConnection {
            remote: info.remote.clone(),
            address: addr.clone(),
            outbound,
            tie_breaker: info.conn_uid(),
        };
        let new_copy = new.clone();
        let verdict = self.router.handle_connection_up(now, conn, new);
        let mut handle = conn::spawn(est);
        match verdict {
            ConnVerdict::Accept | ConnVerdict::AcceptReplacing(_) => {
                if let ConnVerdict::AcceptReplacing(old) = verdict {
                    self.retire(old, "replaced by a duplicate connection");
                }
                info!(peer = %info.remote.name, nickname = %info.remote.nickname, %addr, outbound, encrypted = info.encrypted(), "connection established");
                if let Some(t) = &target {
                    self.maker.handle_connected(now, t);
                }
                let mut rx = std::mem::replace(&mut handle.rx, mpsc::channel(1).1);
                let tx = self.events_tx.clone();
                tokio::spawn(async move {
                    while let Some(ev) = rx.recv().await {
                        let closed = matches!(ev, ConnEvent::Closed(_));
                        if tx.send(TaskEvent::Conn(conn, ev)).await.is_err() || closed {
                            break;
                        }
                    }
                });
                let remote_ip = handle.remote_addr.ip();
                let (health, no_health) = self.new_health(&info, local, remote_ip);
                let sleeve = self.new_sleeve(&info, remote_ip);
                let sleeve_limit = sleeve.as_ref().map_or(0, Link::payload_limit);
                self.live.insert(
                    conn,
                    Live {
                        handle_tx: handle.tx,
                        closer: handle.closer,
                        info,
                        addr,
                        outbound,
                        target,
                        local,
                        remote_ip,
                        new_conn: new_copy,
                        health,
                        no_health,
                        withdrawn: false,
                        sleeve,
                        sleeve_limit,
                        on_sleeve: false,
                    },
                );
                self.follow_sleeve(conn);
                self.publish_dataplane();
            }
            ConnVerdict::Refuse(reason) => {
                handle.closer.close(reason.to_string());
                if !outbound {
                    self.limiter.release();
                }
                match (&reason, &target) {
                    // We are connected to that peer already: the target is satisfied.
                    (RefuseReason::Duplicate { kept }, Some(t)) => {
                        self.maker.handle_connected(now, t);
                        if let Some(l) = self.live.get_mut(kept) {
                            l.target.get_or_insert_with(|| t.clone());
                        }
                    }
                    (_, Some(t)) => self.maker.handle_attempt_failed(now, t, reason.to_string(), !reason.retry()),
                    _ => {}
                }
                if !matches!(reason, RefuseReason::Duplicate { .. }) {
                    warn!(%addr, %reason, "connection refused");
                    self.remember_failure(addr, outbound, reason.to_string());
                }
            }
        }
    }

    /// Closes a connection the router no longer counts.
    fn retire(&mut self, conn: ConnId, why: &str) {
        if let Some(mut l) = self.live.remove(&conn) {
            self.sleeve_down(&l);
            l.closer.close(why);
            if !l.outbound {
                self.limiter.release();
            }
            if let Some(t) = l.target {
                let now = self.now();
                self.maker.handle_connected(now, &t);
            }
        }
    }

    fn on_closed(&mut self, conn: ConnId, reason: String) {
        let now = self.now();
        self.router.handle_connection_down(now, conn);
        if let Some(l) = self.live.remove(&conn) {
            self.sleeve_down(&l);
            info!(peer = %l.info.remote.name, addr = %l.addr, %reason, "connection closed");
            if !l.outbound {
                self.limiter.release();
            }
            if let Some(t) = &l.target {
                self.maker.handle_disconnected(now, t, reason.clone());
            }
            self.remember_failure(l.addr, l.outbound, reason);
            self.publish_dataplane();
        }
    }

    /// The health check of a new connection: when both ends run the fast
    /// datapath and the underlay is IPv4.
    fn new_health(
        &self,
        info: &conn::ConnInfo,
        local: Option<SocketAddr>,
        remote_ip: std::net::IpAddr,
    ) -> (Option<Health>, &'static str) {
        let Some(f) = &self.fastdp else { return (None, "this host runs no fast datapath") };
        if !info.remote_overlays.iter().any(|o| o == "fastdp") {
            return (None, "the peer runs no fast datapath");
        }
        let r = &info.remote;
        let forced = f.sleeve_peers.iter().any(|p| {
            *p == r.name.to_string()
                || *p == r.nickname
                || p.parse::<std::net::IpAddr>().ok() == Some(remote_ip.to_canonical())
        });
        if forced {
            return (None, "sleeve forced for this peer (--sleeve-peer)");
        }
        // VXLAN carries frames in clear: with a password, traffic between
        // untrusted peers goes over the sleeve, which seals it (both ends
        // decide the same, from the same handshake).
        if info.datapath_keys().is_some() {
            return (None, "encrypted: the fast datapath does not encrypt, the sleeve seals");
        }
        let (Some(_), Some(dst)) = (local.and_then(|a| v4(a.ip())), v4(remote_ip)) else {
            return (None, "the fast datapath needs an IPv4 underlay");
        };
        let path_mtu = super::pmtu::path_mtu(dst, f.vxlan_port);
        (Some(Health::new(self.now(), f.health.clone(), f.mtu, path_mtu)), "")
    }

    /// Sends the heartbeats that are due and acts on connections whose
    /// heartbeats stopped.
    fn run_health(&mut self) {
        let Some(f) = &self.fastdp else { return };
        let now = self.now();
        let me = self.router.identity().short_id;
        let mut changes = Vec::new();
        for (id, l) in self.live.iter_mut() {
            let Some(h) = l.health.as_mut().filter(|h| h.poll_timeout() <= now) else { continue };
            if let Some(t) = h.handle_timeout(now) {
                changes.push((*id, t));
            }
            let (Some(src), Some(dst)) = (l.local.and_then(|a| v4(a.ip())), v4(l.remote_ip)) else { continue };
            let vni = Vni::unicast(me, l.info.remote.short_id).tun_id() as u32;
            let path = heartbeat::Path { vni, src, dst, ttl: crate::fastdp::Config::default().tunnel_ttl };
            while let Some(p) = h.poll_probe(now) {
                let hb = Heartbeat { conn_uid: l.info.conn_uid(), seq: p.seq, len: p.len };
                // A full queue loses the heartbeat, as the wire could.
                let _ = f.dataplane.try_heartbeat(SendHeartbeat { path, heartbeat: hb });
            }
        }
        for (id, t) in changes {
            self.on_transition(id, t);
        }
    }

    /// A peer's heartbeat arrived through our tunnel: acknowledge it on the
    /// control connection it names, if we use the fast datapath on it. (A
    /// connection we keep off it, `--sleeve-peer`, goes unacknowledged, so
    /// the peer moves it to the sleeve too.)
    fn on_heartbeat_seen(&mut self, seen: HeartbeatSeen) {
        let hb = seen.heartbeat;
        let Some(l) = self.live.values().find(|l| l.info.conn_uid() == hb.conn_uid) else {
            debug!(conn_uid = hb.conn_uid, from = ?seen.from, "heartbeat for no live connection");
            return;
        };
        if l.health.is_none() {
            debug!(conn_uid = hb.conn_uid, "heartbeat on a connection kept off the fast datapath");
            return;
        }
        let ack = Ack { conn_uid: hb.conn_uid, seq: hb.seq, len: hb.len, sleeve: false };
        let _ = l.handle_tx.try_send(Payload::Overlay(ack.encode()));
    }

    /// An overlay message arrived on a control connection.
    fn on_overlay(&mut self, conn: ConnId, bytes: &[u8]) {
        let now = self.now();
        let ack = match Ack::decode(bytes) {
            Ok(Some(a)) => a,
            Ok(None) => return,
            Err(e) => {
                debug!(?conn, error = %e, "bad overlay message");
                return;
            }
        };
        let Some(l) = self.live.get_mut(&conn) else { return };
        if ack.conn_uid != l.info.conn_uid() {
            debug!(?conn, "acknowledgement names another connection");
            return;
        }
        if ack.sleeve {
            let t = l.sleeve.as_mut().and_then(|k| k.handle_ack(now, ack.seq, ack.len));
            if let (Some(s), Some(k)) = (&self.sleeve, l.sleeve.as_mut()) {
                fragments_changed(&s.handle, l.info.conn_uid(), &l.info.remote.name, &l.addr, k);
            }
            if let Some(t) = t {
                if t.to == LinkState::Up {
                    info!(peer = %l.info.remote.name, addr = %l.addr, "sleeve path up");
                }
                self.reconsider(conn);
            }
            return;
        }
        let t = l.health.as_mut().and_then(|h| h.handle_ack(now, ack.seq, ack.len));
        if let Some(t) = t {
            self.on_transition(conn, t);
        }
    }

    /// A connection's fast datapath changed state: on hold, it is withdrawn
    /// from the router (routes then avoid it, through other peers where they
    /// can); back on the fast datapath, it is announced again.
    fn on_transition(&mut self, conn: ConnId, t: Transition) {
        let Some(l) = self.live.get(&conn) else { return };
        let (peer, addr) = (l.info.remote.name, l.addr.clone());
        match t.to {
            OverlayState::OnHold => {
                warn!(%peer, %addr, reason = %t.reason, "connection on hold: fast datapath heartbeats lost");
            }
            OverlayState::Fastdp => {
                info!(%peer, %addr, reason = %t.reason, from = %t.from, "connection on the fast datapath");
            }
            OverlayState::Probing => {}
        }
        self.reconsider(conn);
    }

    /// Whether the connection carries traffic on some overlay: the fast
    /// datapath unless on hold, or the sleeve unless its path is down. A
    /// connection with neither check carries the control plane only and is
    /// left as it is.
    fn carries_traffic(l: &Live) -> bool {
        let fastdp = l.health.as_ref().map(|h| h.state() != OverlayState::OnHold);
        let sleeve = l.sleeve.as_ref().map(Link::usable);
        match (fastdp, sleeve) {
            (None, None) => true,
            (f, s) => f.unwrap_or(false) || s.unwrap_or(false),
        }
    }

    /// Withdraws a connection that carries no traffic from the router
    /// (routes then avoid it, through other peers where they can), and
    /// announces it again when it does.
    fn reconsider(&mut self, conn: ConnId) {
        let now = self.now();
        let Some(l) = self.live.get_mut(&conn) else { return };
        let (peer, addr) = (l.info.remote.name, l.addr.clone());
        let carries = Self::carries_traffic(l);
        if !carries && !l.withdrawn {
            l.withdrawn = true;
            warn!(%peer, %addr, "connection withdrawn from routing: no overlay carries its traffic");
            self.router.handle_connection_down(now, conn);
        } else if carries && l.withdrawn {
            l.withdrawn = false;
            info!(%peer, %addr, "connection carries traffic again");
            let new = l.new_conn.clone();
            match self.router.handle_connection_up(now, conn, new) {
                ConnVerdict::Accept => {}
                ConnVerdict::AcceptReplacing(old) => self.retire(old, "replaced by a duplicate connection"),
                ConnVerdict::Refuse(reason) => {
                    info!(%peer, %addr, %reason, "connection back from hold is not needed; closing it");
                    self.retire(conn, &reason.to_string());
                    return;
                }
            }
        }
        // Routes, or the overlay traffic takes, may have changed.
        self.follow_sleeve(conn);
        self.publish_dataplane();
    }

    /// Notes whether the connection's traffic goes over the sleeve. When it
    /// moves there from the fast datapath, the path's MTU is searched again
    /// from the route's: the path may have changed since it was verified
    /// (often the very reason the fast datapath failed).
    fn follow_sleeve(&mut self, conn: ConnId) {
        let now = self.now();
        let port = self.sleeve.as_ref().map(|s| s.port);
        let Some(l) = self.live.get_mut(&conn) else { return };
        let over = l.over_sleeve();
        if over && !l.on_sleeve {
            info!(peer = %l.info.remote.name, addr = %l.addr, "traffic moves to the sleeve");
            let route = port.zip(v4(l.remote_ip)).and_then(|(p, ip)| super::pmtu::udp_payload_limit(ip, p));
            if let (Some(link), Some(limit), true) = (l.sleeve.as_mut(), route, l.health.is_some()) {
                link.handle_too_big(now, limit);
            }
        } else if !over && l.on_sleeve {
            info!(peer = %l.info.remote.name, addr = %l.addr, "traffic leaves the sleeve");
        }
        l.on_sleeve = over;
    }

    /// The sleeve path of a new connection: when both ends run the sleeve
    /// and the underlay is IPv4. Datagrams are sealed with the connection's
    /// session keys unless both ends trust each other's subnet.
    fn new_sleeve(&self, info: &conn::ConnInfo, remote_ip: std::net::IpAddr) -> Option<Link> {
        let s = self.sleeve.as_ref()?;
        if !info.remote_overlays.iter().any(|o| o == "sleeve") {
            return None;
        }
        let dst = v4(remote_ip)?;
        let limit = super::pmtu::udp_payload_limit(dst, s.port).unwrap_or(1500 - UDP_IPV4_OVERHEAD);
        let keys = info.datapath_keys().cloned();
        let sealed = keys.is_some();
        let both =
            |what: &str| [&self.conn_cfg.overlays, &info.remote_overlays].iter().all(|o| o.iter().any(|x| x == what));
        let gso = both(super::sleeve::SLEEVE_GSO);
        // In pieces that fit the path: no fragments, so no check.
        let pieces = gso && both(super::sleeve::SLEEVE_PIECES);
        // Super-frames go whole only once the path is shown to carry
        // datagrams that big (as IPv4 fragments); cut until then.
        s.handle.conn_up(ConnUp {
            conn_uid: info.conn_uid(),
            peer: info.remote.name,
            addr: SocketAddr::new(std::net::IpAddr::V4(dst), s.port),
            keys,
            payload_limit: limit,
            pieces,
        });
        let mut link = Link::new(self.now(), s.link.clone(), limit);
        link.sealed = sealed;
        link.pieces = pieces;
        if gso && !pieces {
            link.check_fragments(self.now(), super::sleeve::GSO_CHECK_SIZE);
        }
        Some(link)
    }

    fn sleeve_down(&self, l: &Live) {
        if let (Some(s), Some(_)) = (&self.sleeve, &l.sleeve) {
            s.handle.conn_down(l.info.conn_uid());
        }
    }

    /// Sends the sleeve heartbeats and probes that are due, gives the
    /// driver each path's current MTU, and acts on paths that went down or
    /// came back.
    fn run_sleeve(&mut self) {
        let Some(s) = &self.sleeve else { return };
        let now = self.now();
        let mut changed = Vec::new();
        for (id, l) in self.live.iter_mut() {
            let uid = l.info.conn_uid();
            let Some(link) = l.sleeve.as_mut().filter(|k| k.poll_timeout() <= now) else { continue };
            if let Some(t) = link.handle_timeout(now) {
                warn!(peer = %l.info.remote.name, addr = %l.addr, "sleeve path down: UDP heartbeats unanswered");
                changed.push((*id, t));
            }
            while let Some(send) = link.poll_send(now) {
                s.handle.send_control(uid, send);
            }
            fragments_changed(&s.handle, uid, &l.info.remote.name, &l.addr, link);
            let limit = link.payload_limit();
            if limit != l.sleeve_limit {
                l.sleeve_limit = limit;
                info!(peer = %l.info.remote.name, limit, state = ?link.pmtu_state(), "sleeve path MTU");
                s.handle.set_payload_limit(uid, limit);
            }
        }
        for (id, _) in changed {
            self.reconsider(id);
        }
    }

    fn on_sleeve_event(&mut self, ev: SleeveEvent) {
        let now = self.now();
        match ev {
            SleeveEvent::Control { conn_uid, seq, len } => {
                let Some(l) = self.live.values().find(|l| l.info.conn_uid() == conn_uid) else { return };
                let ack = Ack { conn_uid, seq, len, sleeve: true };
                let _ = l.handle_tx.try_send(Payload::Overlay(ack.encode()));
            }
            SleeveEvent::TooBig { conn_uid, limit } => {
                if let Some(link) =
                    self.live.values_mut().filter(|l| l.info.conn_uid() == conn_uid).find_map(|l| l.sleeve.as_mut())
                {
                    info!(conn_uid, limit, "the kernel lowered the sleeve path MTU; searching again");
                    link.handle_too_big(now, limit);
                }
            }
        }
    }

    fn on_request(&mut self, req: MeshRequest) {
        match req {
            MeshRequest::Status(tx) => {
                let _ = tx.send(self.status_view());
            }
            MeshRequest::Peers(tx) => {
                let _ = tx.send(self.peers_view());
            }
            MeshRequest::Connections(tx) => {
                let _ = tx.send(self.connections_view());
            }
            MeshRequest::Connect(r, tx) => {
                let _ = tx.send(self.connect(r));
            }
            MeshRequest::Forget(r, tx) => {
                let _ = tx.send(self.forget(r));
            }
            MeshRequest::Ipam(r) => self.on_ipam_request(r),
            MeshRequest::Dns(r) => self.on_dns_request(r),
        }
    }

    fn connect(&mut self, r: ConnectRequest) -> Result<(), String> {
        let addrs = r
            .addrs
            .iter()
            .map(|a| maker::normalise(a, self.port).map_err(|e| e.to_string()))
            .collect::<Result<Vec<_>, _>>()?;
        let now = self.now();
        if r.replace {
            self.maker.replace_direct(now, addrs);
        } else {
            for a in addrs {
                self.maker.add_direct(now, a);
            }
        }
        targets::save(&self.state_dir, &self.maker.direct_targets()).map_err(|e| e.to_string())
    }

    fn forget(&mut self, r: ForgetRequest) -> Result<(), String> {
        for a in &r.addrs {
            let a = maker::normalise(a, self.port).map_err(|e| e.to_string())?;
            self.maker.forget(&a);
        }
        targets::save(&self.state_dir, &self.maker.direct_targets()).map_err(|e| e.to_string())
    }
}

/// Tells the sleeve driver the fragment check's new answer, if any: super-
/// frames go to the peer whole over a path that carries them, else are cut.
fn fragments_changed(
    h: &super::sleeve::SleeveHandle,
    uid: u64,
    peer: &crate::mesh::peer::PeerName,
    addr: &str,
    link: &mut Link,
) {
    match link.take_fragments_change() {
        Some(Fragments::Carried) => {
            info!(%peer, %addr, "sleeve path carries fragmented datagrams: TCP super-frames go whole");
            h.set_gso(uid, true);
        }
        Some(f) => {
            info!(%peer, %addr, fragments = %f, "sleeve path does not carry fragmented datagrams: super-frames are cut");
            h.set_gso(uid, false);
        }
        None => {}
    }
}
