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
use std::sync::Arc;

use tokio::sync::{mpsc, oneshot, watch};
use tracing::{debug, info, warn};

use super::fastdp::Fastdp;
use super::mesh::Live;
use crate::api::{AttachRequest, AttachView};
use crate::fastdp::{Config, FlowOp, Forwarder, LocalPeer, PeerInfo, RouteTable, StampedOp};
use crate::mesh::core::Router;
use crate::mesh::peer::PeerName;
use crate::odp::packet::{Upcall, UpcallItem, UpcallKind};
use crate::odp::socket::{OdpClient, UpcallSocket};
use crate::odp::vport::VportType;
use crate::plumb::veth::{self, AttachSpec};

/// What the mesh tells the dataplane: peers with their underlay addresses,
/// the routes, and our own underlay address.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Snapshot {
    pub short_id: crate::mesh::peer::ShortId,
    /// The address our connections leave from (single-homed hosts).
    pub underlay: Option<Ipv4Addr>,
    pub peers: Vec<PeerInfo>,
    pub routes: RouteTable,
}

fn v4(ip: IpAddr) -> Option<Ipv4Addr> {
    match ip {
        IpAddr::V4(a) => Some(a),
        IpAddr::V6(a) => a.to_ipv4_mapped(),
    }
}

/// Builds a snapshot from the router and the live connections.
pub(super) fn snapshot<'a>(router: &Router, live: impl Iterator<Item = &'a Live>) -> Snapshot {
    let st = router.status();
    let mut underlay_of: BTreeMap<PeerName, Ipv4Addr> = BTreeMap::new();
    let mut local = None;
    for l in live {
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
    Snapshot { short_id: st.short_id, underlay: local, peers, routes: table }
}

/// Requests from the API.
#[derive(Debug)]
pub enum DpRequest {
    Attach(AttachRequest, oneshot::Sender<Result<AttachView, String>>),
    Detach(String, oneshot::Sender<Result<(), String>>),
}

/// A handle for the API.
#[derive(Debug, Clone)]
pub struct DataplaneHandle {
    tx: mpsc::Sender<DpRequest>,
}

impl DataplaneHandle {
    pub async fn attach(&self, r: AttachRequest) -> Result<AttachView, String> {
        let (tx, rx) = oneshot::channel();
        self.tx.send(DpRequest::Attach(r, tx)).await.map_err(|_| "the dataplane is not running".to_string())?;
        rx.await.map_err(|_| "the dataplane is not running".to_string())?
    }
    pub async fn detach(&self, target: String) -> Result<(), String> {
        let (tx, rx) = oneshot::channel();
        self.tx.send(DpRequest::Detach(target, tx)).await.map_err(|_| "the dataplane is not running".to_string())?;
        rx.await.map_err(|_| "the dataplane is not running".to_string())?
    }
}

struct Attachment {
    host_ifname: String,
    port_no: u32,
}

struct Dataplane {
    fwd: Forwarder,
    odp: Arc<OdpClient>,
    dp_ifindex: i32,
    upcall_pid: u32,
    mtu: u32,
    attached: BTreeMap<String, Attachment>,
    known_peers: BTreeSet<PeerName>,
}

/// Starts the dataplane for a datapath the daemon created.
pub fn spawn(
    dp: &Fastdp,
    me: PeerName,
    short_id: crate::mesh::peer::ShortId,
    vxlan_port: u16,
    mtu: u32,
    mut snapshots: watch::Receiver<Option<Snapshot>>,
) -> Result<DataplaneHandle, String> {
    let odp = dp.client.clone();
    let d = odp.get_datapath(&dp.datapath).map_err(|e| e.to_string())?.ok_or("datapath vanished")?;
    let mut sock = UpcallSocket::open(&odp.families()).map_err(|e| e.to_string())?;
    let pid = sock.port_id().map_err(|e| e.to_string())?;
    // Misses on every existing port (local and VXLAN) come to us.
    for v in odp.dump_vports(d.dp_ifindex).map_err(|e| e.to_string())? {
        if let Some(p) = v.port_no {
            odp.set_vport_upcall_pids(d.dp_ifindex, p, vec![pid]).map_err(|e| e.to_string())?;
        }
    }
    let vx = odp
        .get_vport(&format!("vxlan-{vxlan_port}"))
        .map_err(|e| e.to_string())?
        .and_then(|v| v.port_no)
        .ok_or("the VXLAN vport is missing")?;
    let local = LocalPeer { name: me, short_id, underlay: Ipv4Addr::UNSPECIFIED, vxlan_port: vx };
    let mut dataplane = Dataplane {
        fwd: Forwarder::new(local, Config::default()),
        odp,
        dp_ifindex: d.dp_ifindex,
        upcall_pid: pid,
        mtu,
        attached: BTreeMap::new(),
        known_peers: BTreeSet::new(),
    };

    // Upcalls: a blocking reader thread feeding a bounded queue. When the
    // queue is full, misses are dropped and counted: a storm cannot starve
    // the control plane.
    let (up_tx, mut up_rx) = mpsc::channel::<Upcall>(4096);
    let mut lost: u64 = 0;
    std::thread::Builder::new()
        .name("upcalls".into())
        .spawn(move || loop {
            match sock.recv() {
                Ok(items) => {
                    for it in items {
                        match it {
                            Ok(UpcallItem::Upcall(u)) => {
                                if up_tx.try_send(*u).is_err() {
                                    lost += 1;
                                    if lost % 1024 == 1 {
                                        warn!(lost, "miss queue full: upcalls dropped");
                                    }
                                }
                            }
                            Ok(_) => {}
                            Err(e) => debug!(error = %e, "malformed upcall"),
                        }
                    }
                }
                Err(e) => {
                    warn!(error = %e, "upcall socket failed; misses are no longer handled");
                    return;
                }
            }
            if up_tx.is_closed() {
                return;
            }
        })
        .map_err(|e| e.to_string())?;

    let (req_tx, mut req_rx) = mpsc::channel(16);
    tokio::spawn(async move {
        let mut stats = tokio::time::interval(std::time::Duration::from_secs(3));
        stats.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        loop {
            let wake = dataplane.fwd.poll_timeout().map(|at| at.saturating_sub(dataplane.now())).unwrap_or(5_000);
            tokio::select! {
                Some(first) = up_rx.recv() => {
                    // Bounded work per wake-up.
                    let mut batch = vec![first];
                    while batch.len() < 64 {
                        match up_rx.try_recv() { Ok(u) => batch.push(u), Err(_) => break }
                    }
                    for u in batch { dataplane.on_upcall(u); }
                }
                changed = snapshots.changed() => {
                    if changed.is_err() { break; }
                    let snap = snapshots.borrow_and_update().clone();
                    if let Some(s) = snap { dataplane.on_snapshot(s); }
                }
                Some(req) = req_rx.recv() => dataplane.on_request(req).await,
                _ = stats.tick() => dataplane.sync_stats(),
                _ = tokio::time::sleep(std::time::Duration::from_millis(wake.max(10))) => {
                    let now = dataplane.now();
                    dataplane.fwd.handle_timeout(now);
                    dataplane.apply_queued();
                }
            }
        }
    });
    Ok(DataplaneHandle { tx: req_tx })
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
        self.apply_queued();
    }

    fn on_upcall(&mut self, u: Upcall) {
        if u.kind != UpcallKind::Miss {
            return;
        }
        let now = self.now();
        let ops = self.fwd.handle_miss(now, &u.msg.key, u.msg.packet.len());
        let mut missed = Some(u);
        for op in ops {
            self.apply(op, &mut missed);
        }
        self.apply_queued();
    }

    fn apply_queued(&mut self) {
        while let Some(op) = self.fwd.poll_op() {
            self.apply(op, &mut None);
        }
    }

    /// Executes one op on the datapath. Kernel calls are short and
    /// synchronous; they run in place on this task's worker thread.
    /// `missed` is the packet of the miss being handled: an execute consumes it.
    fn apply(&mut self, op: StampedOp, missed: &mut Option<Upcall>) {
        if op.is_stale(self.fwd.epoch()) {
            return;
        }
        let odp = &self.odp;
        let r = tokio::task::block_in_place(|| match op.op {
            FlowOp::Install { mut flow, .. } => {
                flow.dp_ifindex = self.dp_ifindex;
                match odp.new_flow(&flow) {
                    Err(e) if e.errno() == Some(libc::EEXIST) => odp.set_flow(&flow),
                    r => r,
                }
            }
            FlowOp::Execute { actions } => match missed.take() {
                Some(u) if !actions.is_empty() => odp.execute(self.dp_ifindex, u.msg.packet, u.msg.key, actions),
                _ => Ok(()),
            },
            FlowOp::Delete { key } => match odp.del_flow(self.dp_ifindex, key, None) {
                Err(e) if e.errno() == Some(libc::ENOENT) => Ok(()),
                r => r,
            },
            FlowOp::Drop(reason) => {
                debug!(%reason, "miss dropped");
                Ok(())
            }
        });
        if let Err(e) = r {
            warn!(error = %e, "datapath operation failed");
        }
    }

    async fn on_request(&mut self, req: DpRequest) {
        match req {
            DpRequest::Attach(r, tx) => {
                let res = self.attach(r).await;
                let _ = tx.send(res);
            }
            DpRequest::Detach(t, tx) => {
                let res = self.detach(&t).await;
                let _ = tx.send(res);
            }
        }
    }

    async fn attach(&mut self, r: AttachRequest) -> Result<AttachView, String> {
        let addrs = r
            .cidrs
            .iter()
            .map(|c| c.parse::<ipnet::IpNet>().map_err(|e| format!("invalid address {c:?}: {e}")))
            .collect::<Result<Vec<_>, _>>()?;
        let netns = veth::netns_path(&r.target);
        // Re-attaching replaces the old port.
        let _ = self.detach(&r.target).await;
        let spec = AttachSpec { host_ifname: veth::host_ifname(&netns), netns, addrs, mtu: self.mtu };
        let a = veth::attach(&spec).await.map_err(|e| e.to_string())?;
        let v = tokio::task::block_in_place(|| {
            self.odp.create_vport(self.dp_ifindex, &a.host_ifname, VportType::Netdev, None, vec![self.upcall_pid])
        })
        .map_err(|e| e.to_string())?;
        let port_no = v.port_no.ok_or("kernel gave the port no number")?;
        let now = self.now();
        self.fwd.handle_port_added(now, port_no);
        self.apply_queued();
        self.attached.insert(r.target.clone(), Attachment { host_ifname: a.host_ifname.clone(), port_no });
        let m = a.mac;
        info!(target = %r.target, port = port_no, ifname = %a.host_ifname, "container attached");
        Ok(AttachView {
            target: r.target,
            host_ifname: a.host_ifname,
            mac: crate::odp::key::Mac(m).to_string(),
            port_no: Some(port_no),
            cidrs: r.cidrs,
        })
    }

    async fn detach(&mut self, target: &str) -> Result<(), String> {
        let Some(a) = self.attached.remove(target) else {
            return Err(format!("{target} is not attached"));
        };
        let now = self.now();
        let _ = tokio::task::block_in_place(|| self.odp.delete_vport(self.dp_ifindex, a.port_no));
        self.fwd.handle_port_removed(now, a.port_no);
        self.apply_queued();
        veth::detach(&a.host_ifname).await.map_err(|e| e.to_string())?;
        info!(%target, "container detached");
        Ok(())
    }
}
