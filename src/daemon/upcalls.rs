//! The upcall handlers: one netlink socket and one thread per CPU, feeding
//! the dataplane's bounded queue.
//!
//! Where the kernel supports it (5.12+), the datapath dispatches upcalls per
//! CPU: CPU `i`'s upcalls go to socket `i`. Otherwise each vport names one
//! socket (round robin as ports are added). Either way:
//! - sockets set `NETLINK_NO_ENOBUFS` and large buffers (see
//!   [`UpcallSocket::open`]): what overflows is dropped and counted by the
//!   kernel as `lost`, and the socket keeps working;
//! - each handler admits at most [`RateConfig::per_second`] upcalls per
//!   second (token bucket), and the queue to the dataplane is bounded: a miss
//!   storm is shed here, counted, and cannot starve the control plane.

use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::Arc;
use std::time::Instant;

use serde::{Deserialize, Serialize};
use tokio::sync::mpsc;
use tracing::{debug, info, warn};

use super::dataplane::HeartbeatSeen;
use super::sleeve::SleeveHandle;
use crate::fastdp::heartbeat::{self, Heartbeat};
use crate::fastdp::sleeve_out::SleeveOut;
use crate::mesh::peer::PeerName;
use crate::odp::datapath::F_DISPATCH_UPCALL_PER_CPU;
use crate::odp::key::KeyAttr;
use crate::odp::packet::{Upcall, UpcallItem, UpcallKind};
use crate::odp::socket::{DpFeatures, OdpClient, UpcallSocket};
use crate::sleeve::wire::Frame;

/// Per-handler admission rate.
#[derive(Clone, Copy, Debug)]
pub struct RateConfig {
    pub per_second: u32,
    pub burst: u32,
}

impl Default for RateConfig {
    fn default() -> Self {
        RateConfig { per_second: 20_000, burst: 4_000 }
    }
}

/// Counters shared by the handlers, the dataplane and the API.
#[derive(Debug, Default)]
pub struct UpcallStats {
    pub received: AtomicU64,
    pub queue_full: AtomicU64,
    pub rate_limited: AtomicU64,
    pub malformed: AtomicU64,
    pub handlers: AtomicU64,
    pub per_cpu: AtomicBool,
}

/// The counters as `weavectl status` shows them.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct UpcallStatsView {
    pub handlers: u64,
    /// "per-cpu" or "per-vport".
    pub dispatch: String,
    pub received: u64,
    /// Dropped because the dataplane's queue was full.
    pub queue_full: u64,
    /// Dropped by the per-handler rate limit.
    pub rate_limited: u64,
    pub malformed: u64,
    /// What the kernel could not deliver (its datapath `lost` counter).
    pub kernel_lost: Option<u64>,
}

impl UpcallStats {
    pub fn view(&self, kernel_lost: Option<u64>) -> UpcallStatsView {
        let per_cpu = self.per_cpu.load(Ordering::Relaxed);
        UpcallStatsView {
            handlers: self.handlers.load(Ordering::Relaxed),
            dispatch: if per_cpu { "per-cpu" } else { "per-vport" }.into(),
            received: self.received.load(Ordering::Relaxed),
            queue_full: self.queue_full.load(Ordering::Relaxed),
            rate_limited: self.rate_limited.load(Ordering::Relaxed),
            malformed: self.malformed.load(Ordering::Relaxed),
            kernel_lost,
        }
    }
}

/// A token bucket over a monotonic clock in microseconds (pure).
#[derive(Debug, Clone)]
pub struct Bucket {
    cfg: RateConfig,
    tokens: f64,
    last_us: u64,
}

impl Bucket {
    pub fn new(cfg: RateConfig, now_us: u64) -> Bucket {
        Bucket { cfg, tokens: f64::from(cfg.burst), last_us: now_us }
    }

    /// Whether one more upcall is admitted at `now_us`.
    pub fn admit(&mut self, now_us: u64) -> bool {
        let dt = now_us.saturating_sub(self.last_us) as f64 / 1e6;
        self.last_us = self.last_us.max(now_us);
        self.tokens = (self.tokens + dt * f64::from(self.cfg.per_second)).min(f64::from(self.cfg.burst));
        if self.tokens >= 1.0 {
            self.tokens -= 1.0;
            true
        } else {
            false
        }
    }
}

/// The running handlers.
#[derive(Debug)]
pub struct Handlers {
    /// The sockets' netlink port ids.
    pub pids: Vec<u32>,
    pub per_cpu: bool,
    next: usize,
}

impl Handlers {
    /// The upcall PIDs for a new vport: none in per-CPU mode (the datapath
    /// dispatches), else the next socket in turn.
    pub fn pids_for_new_port(&mut self) -> Vec<u32> {
        if self.per_cpu || self.pids.is_empty() {
            return self.pids.first().copied().into_iter().collect();
        }
        let p = self.pids[self.next % self.pids.len()];
        self.next += 1;
        vec![p]
    }
}

/// Where the handlers send what comes up.
#[derive(Clone)]
pub struct Destinations {
    /// Misses, for the dataplane (bounded; what does not fit is dropped).
    pub misses: mpsc::Sender<Upcall>,
    /// Peers' heartbeats, for the mesh to acknowledge.
    pub heartbeats: mpsc::Sender<HeartbeatSeen>,
    /// Frames flows hand to the sleeve, when it runs beside the datapath.
    pub sleeve: Option<SleeveHandle>,
}

/// Opens one socket per CPU, points the datapath (or its existing vports) at
/// them, and starts a thread per socket. Heartbeats from peers go straight
/// to the mesh, and frames for the sleeve straight to it: never behind
/// misses in the queue and never rate-limited (a miss storm must not put
/// connections on hold, and sleeve traffic is traffic, not misses).
pub fn start(
    odp: &OdpClient,
    datapath: &str,
    dp_ifindex: i32,
    to: Destinations,
    stats: Arc<UpcallStats>,
    rate: RateConfig,
) -> Result<Handlers, String> {
    let n = std::thread::available_parallelism().map(|n| n.get()).unwrap_or(1);
    let mut socks = Vec::with_capacity(n);
    for _ in 0..n {
        let s = UpcallSocket::open(&odp.families()).map_err(|e| e.to_string())?;
        socks.push(s);
    }
    let pids = socks.iter().map(|s| s.port_id()).collect::<Result<Vec<_>, _>>().map_err(|e| e.to_string())?;
    let mut features = DpFeatures::weaver_default();
    features.bits |= F_DISPATCH_UPCALL_PER_CPU;
    let per_cpu = match odp.set_datapath(datapath, features, Some(pids.clone())) {
        Ok(d) => d.user_features.unwrap_or_default() & F_DISPATCH_UPCALL_PER_CPU != 0,
        Err(e) => {
            debug!(error = %e, "per-CPU upcall dispatch refused");
            false
        }
    };
    let mut h = Handlers { pids, per_cpu, next: 0 };
    if !per_cpu {
        for v in odp.dump_vports(dp_ifindex).map_err(|e| e.to_string())? {
            if let Some(p) = v.port_no {
                let pids = h.pids_for_new_port();
                odp.set_vport_upcall_pids(dp_ifindex, p, pids).map_err(|e| e.to_string())?;
            }
        }
    }
    stats.handlers.store(n as u64, Ordering::Relaxed);
    stats.per_cpu.store(per_cpu, Ordering::Relaxed);
    info!(handlers = n, dispatch = if per_cpu { "per-cpu" } else { "per-vport" }, "upcall handlers ready");
    for (i, sock) in socks.into_iter().enumerate() {
        let (to, stats) = (to.clone(), stats.clone());
        std::thread::Builder::new()
            .name(format!("upcalls-{i}"))
            .spawn(move || handler(sock, to, stats, rate))
            .map_err(|e| e.to_string())?;
    }
    Ok(h)
}

/// A peer's heartbeat, if the upcall is one (a userspace action marked as such).
pub fn as_heartbeat(u: &Upcall) -> Option<Result<HeartbeatSeen, heartbeat::HeartbeatError>> {
    if u.kind != UpcallKind::Action || !heartbeat::is_heartbeat_userdata(u.msg.userdata.as_deref()) {
        return None;
    }
    let from = u.msg.key.iter().find_map(|k| match k {
        KeyAttr::Tunnel(t) => t.ipv4_src,
        _ => None,
    });
    Some(Heartbeat::parse(&u.msg.packet).map(|heartbeat| HeartbeatSeen { heartbeat, from }))
}

/// A frame a flow handed to the sleeve, if the upcall is one (a userspace
/// action with the sleeve's userdata).
pub fn as_sleeve_frame(u: Box<Upcall>) -> Result<(PeerName, Frame), Box<Upcall>> {
    let out = match (&u.kind, u.msg.userdata.as_deref()) {
        (UpcallKind::Action, Some(d)) => SleeveOut::parse(d),
        _ => None,
    };
    match out {
        Some(o) => Ok((o.next_hop, Frame { src: o.origin, dst: o.dst, bytes: u.msg.packet })),
        None => Err(u),
    }
}

fn handler(mut sock: UpcallSocket, to: Destinations, stats: Arc<UpcallStats>, rate: RateConfig) {
    let Destinations { misses: queue, heartbeats, sleeve } = to;
    let start = Instant::now();
    let mut bucket = Bucket::new(rate, 0);
    // Frames for the sleeve, batched per next hop across one read.
    let mut for_sleeve: std::collections::BTreeMap<PeerName, Vec<Frame>> = Default::default();
    loop {
        let items = match sock.recv() {
            Ok(items) => items,
            Err(e) => {
                warn!(error = %e, "upcall socket failed; this handler stops");
                return;
            }
        };
        for it in items {
            match it {
                Ok(UpcallItem::Upcall(u)) => {
                    stats.received.fetch_add(1, Ordering::Relaxed);
                    match as_heartbeat(&u) {
                        Some(Ok(hb)) => {
                            if heartbeats.try_send(hb).is_err() {
                                debug!("heartbeat dropped: the mesh is busy");
                            }
                            continue;
                        }
                        Some(Err(e)) => {
                            stats.malformed.fetch_add(1, Ordering::Relaxed);
                            debug!(error = %e, "bad heartbeat frame");
                            continue;
                        }
                        None => {}
                    }
                    let u = match (&sleeve, as_sleeve_frame(u)) {
                        (Some(_), Ok((hop, f))) => {
                            for_sleeve.entry(hop).or_default().push(f);
                            continue;
                        }
                        (None, Ok(_)) => continue,
                        (_, Err(u)) => u,
                    };
                    if !bucket.admit(start.elapsed().as_micros() as u64) {
                        let n = stats.rate_limited.fetch_add(1, Ordering::Relaxed);
                        if n.is_multiple_of(4096) {
                            warn!(dropped = n + 1, "upcall storm: misses over the rate limit are dropped");
                        }
                        continue;
                    }
                    if queue.try_send(*u).is_err() {
                        if queue.is_closed() {
                            return;
                        }
                        let n = stats.queue_full.fetch_add(1, Ordering::Relaxed);
                        if n.is_multiple_of(4096) {
                            warn!(dropped = n + 1, "miss queue full: upcalls dropped");
                        }
                    }
                }
                Ok(_) => {}
                Err(e) => {
                    stats.malformed.fetch_add(1, Ordering::Relaxed);
                    debug!(error = %e, "malformed upcall");
                }
            }
        }
        if let Some(s) = &sleeve {
            for (hop, frames) in std::mem::take(&mut for_sleeve) {
                s.send(hop, frames);
            }
        }
        if queue.is_closed() {
            return;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn bucket_admits_burst_then_rate() {
        let mut b = Bucket::new(RateConfig { per_second: 1000, burst: 10 }, 0);
        assert_eq!((0..20).filter(|_| b.admit(0)).count(), 10);
        // 5 ms later: 5 more tokens.
        assert_eq!((0..20).filter(|_| b.admit(5_000)).count(), 5);
        // A long pause refills only up to the burst.
        assert_eq!((0..50).filter(|_| b.admit(10_000_000)).count(), 10);
        // Time going backwards admits nothing extra.
        assert!(!b.admit(0));
    }

    #[test]
    fn heartbeats_are_told_from_other_upcalls() {
        use crate::odp::packet::PacketMsg;
        use crate::odp::tunnel::TunnelKey;
        let hb = Heartbeat { conn_uid: 5, seq: 9, len: 100 };
        let src = std::net::Ipv4Addr::new(192, 0, 2, 1);
        let msg = PacketMsg {
            packet: hb.emit().unwrap(),
            key: vec![KeyAttr::Tunnel(TunnelKey { ipv4_src: Some(src), ..TunnelKey::default() })],
            userdata: Some(heartbeat::USERDATA.to_vec()),
            ..PacketMsg::default()
        };
        let u = Upcall { kind: UpcallKind::Action, msg: msg.clone() };
        assert_eq!(as_heartbeat(&u), Some(Ok(HeartbeatSeen { heartbeat: hb, from: Some(src) })));
        // A miss with the same bytes is a miss (a container may send anything).
        assert_eq!(as_heartbeat(&Upcall { kind: UpcallKind::Miss, msg: msg.clone() }), None);
        let other = PacketMsg { userdata: Some(b"other".to_vec()), ..msg.clone() };
        assert_eq!(as_heartbeat(&Upcall { kind: UpcallKind::Action, msg: other }), None);
        let bad = PacketMsg { packet: vec![0; 10], ..msg };
        assert!(matches!(as_heartbeat(&Upcall { kind: UpcallKind::Action, msg: bad }), Some(Err(_))));
    }

    #[test]
    fn sleeve_frames_are_told_from_other_upcalls() {
        use crate::odp::packet::PacketMsg;
        let out =
            SleeveOut { origin: PeerName::from_u64(1), dst: PeerName::from_u64(2), next_hop: PeerName::from_u64(3) };
        let msg = PacketMsg { packet: vec![7; 60], userdata: Some(out.userdata()), ..PacketMsg::default() };
        let (hop, f) =
            as_sleeve_frame(Box::new(Upcall { kind: UpcallKind::Action, msg: msg.clone() })).expect("a sleeve frame");
        assert_eq!(hop, out.next_hop);
        assert_eq!(f, Frame { src: out.origin, dst: out.dst, bytes: vec![7; 60] });
        // A miss carrying the same userdata is a miss; other userdata is not ours.
        assert!(as_sleeve_frame(Box::new(Upcall { kind: UpcallKind::Miss, msg: msg.clone() })).is_err());
        let hb = PacketMsg { userdata: Some(heartbeat::USERDATA.to_vec()), ..msg };
        assert!(as_sleeve_frame(Box::new(Upcall { kind: UpcallKind::Action, msg: hb })).is_err());
    }

    #[test]
    fn round_robin_ports_in_per_vport_mode() {
        let mut h = Handlers { pids: vec![7, 8], per_cpu: false, next: 0 };
        let got: Vec<_> = (0..4).map(|_| h.pids_for_new_port()).collect();
        assert_eq!(got, vec![vec![7], vec![8], vec![7], vec![8]]);
        let mut h = Handlers { pids: vec![7, 8], per_cpu: true, next: 0 };
        assert_eq!(h.pids_for_new_port(), vec![7]);
    }
}
