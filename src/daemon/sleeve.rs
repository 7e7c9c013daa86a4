//! The sleeve driver: the I/O around [`crate::sleeve`]'s pure core.
//!
//! - A capture thread reads the frames the local bridge forwards to the
//!   capture interface (packet sockets or libpcap, inbound only; with
//!   `--sleeve-gso` a tap port of the bridge; STP BPDUs filtered out),
//!   asks the [`Forwarder`] where each goes, batches them per next hop into
//!   datagrams no bigger than that connection's path MTU allows, seals them,
//!   and sends them on UDP 6783.
//! - A receive thread reads UDP 6783, finds the connection named by the
//!   header (only from that connection's peer address), opens it
//!   (authentication and replay window first), and injects frames into the
//!   bridge, relays them, or hands control datagrams (heartbeats, probes) to
//!   the mesh, which acknowledges them over TCP.
//! - The mesh tells the driver which connections exist (with their session
//!   keys), their path MTUs, and the routes (snapshots).
//!
//! Frames too big for a path are answered with ICMP "fragmentation needed"
//! (DF set) or cut into IPv4 fragments ([`oversize`]). Counters are
//! atomics, read by `weavectl status` and `/metrics`.

use std::collections::{BTreeMap, HashMap};
use std::net::{IpAddr, Ipv4Addr, SocketAddr, SocketAddrV4, UdpSocket};
use std::os::fd::AsRawFd;
use std::sync::atomic::{AtomicBool, AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex, RwLock};
use std::time::{Duration, Instant};

use serde::{Deserialize, Serialize};
use tokio::sync::{mpsc, watch};
use tracing::{debug, info, warn};

use super::dataplane::Snapshot;
use crate::mesh::conn::SessionKeys;
use crate::mesh::peer::PeerName;
use crate::plumb::memory;
use crate::plumb::packet_socket::{PacketSocket, VNET_LEN};
use crate::plumb::tap::Tap;
use crate::sleeve::busy::{BusyMeter, Quiet};
use crate::sleeve::forward::{self, Forwarder};
use crate::sleeve::link::ToSend;
use crate::sleeve::oversize::{self, Oversize};
use crate::sleeve::pieces::Reassembler;
use crate::sleeve::seal::{Opener, Sealer};
use crate::sleeve::segment::{self, VnetHdr};
use crate::sleeve::wire::{
    self, Control, ControlKind, Frame, FrameRef, Header, PieceRef, FRAME_OVERHEAD, HEADER_LEN, PIECE_HDR,
};
use crate::sockopt::{set_pmtu_discovery, PmtuDiscovery};
use nix::sys::socket::{setsockopt, sockopt};

const ETH_HLEN: usize = 14;
/// IPv4 and UDP headers: a path MTU minus this is the largest UDP payload.
pub const UDP_IPV4_OVERHEAD: usize = 28;
/// The UDP socket's receive buffer.
const UDP_RCVBUF: libc::c_int = 4 << 20;
/// The capture's ring (libpcap's buffer): bursts wait here. It is mapped
/// into the daemon, so it counts in its resident memory.
const CAPTURE_BUFFER: i32 = 2 << 20;
/// The packet-socket capture's receive buffer: bursts wait here, in kernel
/// memory.
const CAPTURE_RCVBUF: usize = 4 << 20;
/// How long a busy capture waits for more frames to batch.
const LINGER: Duration = Duration::from_micros(100);
/// A busy capture lingers only while less than this much waits: about a
/// datagram's worth (a 1500-byte path), so that small frames share
/// datagrams; bigger frames (super-frames, MTU-sized ones) go at once.
const LINGER_FILL: usize = 1400;
/// Frames injected into the bridge per burst: between bursts the injecting
/// thread yields the CPU (`sched_yield`), so that the containers reading
/// those frames run before their sockets' buffers fill. Measured natively
/// (64-byte UDP, 2 CPUs shared by sender, receiver and both daemons): at
/// 90 000 pkt/s, 10 % lost at the receiving socket without the yields,
/// 1-2 % with them.
const INJECT_BURST: usize = 64;
/// The largest UDP payload over IPv4.
const MAX_UDP_PAYLOAD: usize = 65507;
/// The smallest GSO size taken from a peer (IPv4's minimum MTU less headers).
const MIN_GSO_SIZE: u16 = 500;
/// The overlay name peers offer when they take GSO datagrams.
pub const SLEEVE_GSO: &str = "sleeve-gso";
/// The overlay a peer offers when it takes super-frames in pieces
/// ([`crate::sleeve::pieces`]).
pub const SLEEVE_PIECES: &str = "sleeve-pieces";
/// The most datagrams the kernel takes in one UDP GSO send (its
/// `UDP_MAX_SEGMENTS` before 6.9 raised it).
const UDP_GSO_SEGMENTS: usize = 64;
/// The cap on containers' GSO super-frames in GSO mode: one, with its
/// record, virtio_net_hdr, header and tag, fits a UDP datagram.
pub const GSO_MAX_SIZE: u32 = 62_000;
/// The size of a fragment check (`sleeve::link`): the largest GSO datagram,
/// a whole super-frame with the headers and the seal around it.
pub const GSO_CHECK_SIZE: usize = GSO_MAX_SIZE as usize + 128;
/// Datagrams per `sendmmsg`/`recvmmsg`.
const MAX_BATCH: usize = 32;
/// Frames read from the capture per wake-up.
const CAPTURE_BATCH: usize = 256;

/// What the driver needs to start.
pub struct SleeveSettings {
    pub me: PeerName,
    /// UDP port, for receiving and as the peers' destination port.
    pub port: u16,
    /// Where frames come from and go to.
    pub local: LocalSide,
    /// The containers' MTU: frames are at most this plus an Ethernet
    /// header and a VLAN tag.
    pub mtu: u32,
    /// Capture TCP super-frames whole (a tap, or packet sockets, with a
    /// virtio_net_hdr) and carry them whole to peers that take them
    /// (`sleeve-gso`).
    pub gso: bool,
}

/// The local side of the sleeve.
pub enum LocalSide {
    /// Bridge mode: the interface the bridge forwards to us and we inject
    /// into, and how. The sleeve's own forwarder decides where frames go.
    Capture(String, CaptureKind),
    /// Bridge mode, GSO: the tap device, a port of the bridge, that the
    /// sleeve reads the bridge's frames from and writes frames into
    /// (super-frames whole both ways).
    Tap(Tap),
    /// Bridge mode, GSO, hybrid: capture and inject on the capture pair's
    /// packet sockets (batched), as [`LocalSide::Capture`] with
    /// [`CaptureKind::Packet`], but inject super-frames whole through the
    /// tap, a port of the bridge that is never a destination (no learning,
    /// no flooding: [`crate::plumb::tap::create_inject_only`]).
    Hybrid(String, Tap),
    /// Beside the fast datapath: frames to send come from the datapath's
    /// upcalls ([`SleeveHandle::send`]), and every frame that arrives goes
    /// to the dataplane, whose forwarder decides (deliver, tunnel, relay).
    Dataplane(mpsc::Sender<Inbound>),
}

/// How bridge mode captures and injects frames.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Default)]
pub enum CaptureKind {
    /// Raw `AF_PACKET` sockets, a batch per system call both ways
    /// ([`crate::plumb::packet_socket`]); frames queue in kernel memory.
    #[default]
    Packet,
    /// libpcap (immediate mode: a mapped TPACKET_V2 ring), one system call
    /// per injected frame.
    Pcap,
    /// A tap device instead of the capture pair (GSO mode only): one
    /// system call per frame both ways, super-frames whole both ways
    /// ([`crate::plumb::tap`]).
    Tap,
    /// Packet sockets on the capture pair for everything but the
    /// super-frames that arrive whole: those are injected through a tap
    /// that the bridge never forwards to (GSO mode only).
    Hybrid,
}

impl std::str::FromStr for CaptureKind {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, String> {
        match s {
            "packet" => Ok(CaptureKind::Packet),
            "pcap" => Ok(CaptureKind::Pcap),
            "tap" => Ok(CaptureKind::Tap),
            "hybrid" => Ok(CaptureKind::Hybrid),
            _ => Err(format!("{s:?}: expected \"packet\", \"pcap\", \"tap\" or \"hybrid\"")),
        }
    }
}

/// A frame the sleeve hands the dataplane (beside the fast datapath).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Inbound {
    /// A frame that arrived from peer `prev`, in a record from `src` to `dst`.
    Peer { prev: PeerName, src: PeerName, dst: PeerName, bytes: Vec<u8> },
    /// A frame for a local container (an ICMP "fragmentation needed").
    Local(Vec<u8>),
}

/// A connection the sleeve may use.
#[derive(Clone, Debug)]
pub struct ConnUp {
    pub conn_uid: u64,
    pub peer: PeerName,
    /// The peer's underlay address and sleeve port.
    pub addr: SocketAddr,
    /// The session keys, when datagrams are sealed.
    pub keys: Option<SessionKeys>,
    /// The largest UDP payload to send at first.
    pub payload_limit: usize,
    /// Super-frames go whole in pieces (both ends offer [`SLEEVE_PIECES`]).
    pub pieces: bool,
}

/// What the driver tells the mesh.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum SleeveEvent {
    /// A control datagram arrived: acknowledge it over TCP.
    Control { conn_uid: u64, seq: u64, len: usize },
    /// The kernel refused a datagram as too big; its route now allows `limit`.
    TooBig { conn_uid: u64, limit: usize },
}

/// Counters, for `weavectl status` and `/metrics`.
#[derive(Debug, Default)]
struct Stats {
    captured: AtomicU64,
    captured_bytes: AtomicU64,
    injected: AtomicU64,
    injected_bytes: AtomicU64,
    datagrams_sent: AtomicU64,
    bytes_sent: AtomicU64,
    datagrams_received: AtomicU64,
    bytes_received: AtomicU64,
    relayed: AtomicU64,
    send_errors: AtomicU64,
    inject_errors: AtomicU64,
    /// Datagrams for no connection of ours, or from the wrong address.
    unknown: AtomicU64,
    /// Datagrams that failed to parse.
    malformed: AtomicU64,
    /// Datagrams refused: failed authentication, replays, wrong sealing.
    refused: AtomicU64,
    frag_needed: AtomicU64,
    fragmented: AtomicU64,
    no_connection: AtomicU64,
    /// Frames the kernel dropped because the capture ring was full (libpcap's count).
    capture_dropped: AtomicU64,
    /// Captured frames longer than the MTU allows (cut, so dropped).
    capture_truncated: AtomicU64,
    /// Super-frames sent whole, in one GSO datagram.
    gso_sent: AtomicU64,
    /// Super-frames received whole.
    gso_received: AtomicU64,
    /// Super-frames injected whole (through the tap).
    gso_injected: AtomicU64,
    /// Super-frames cut into MTU-sized segments here.
    segmented: AtomicU64,
    /// Unfinished frames (bad virtio_net_hdr, or impossible to finish) dropped.
    unfinished_dropped: AtomicU64,
    /// Super-frames sent in pieces (counted in `gso_sent` too).
    pieces_sent: AtomicU64,
    /// Super-frames put together from pieces (counted in `gso_received` too).
    pieces_received: AtomicU64,
    /// Pieces refused (disagreeing with their siblings, duplicates).
    pieces_refused: AtomicU64,
}

/// The counters, as `weavectl status` shows them.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct SleeveStatsView {
    pub captured: u64,
    pub captured_bytes: u64,
    pub injected: u64,
    pub injected_bytes: u64,
    pub datagrams_sent: u64,
    pub bytes_sent: u64,
    pub datagrams_received: u64,
    pub bytes_received: u64,
    pub relayed: u64,
    pub send_errors: u64,
    pub inject_errors: u64,
    pub unknown: u64,
    pub malformed: u64,
    pub refused: u64,
    pub frag_needed: u64,
    pub fragmented: u64,
    pub no_connection: u64,
    /// Frames the kernel dropped with the capture ring full.
    #[serde(default)]
    pub capture_dropped: u64,
    /// Captured frames longer than the MTU allows, dropped.
    #[serde(default)]
    pub capture_truncated: u64,
    /// TCP super-frames sent whole (GSO datagrams).
    #[serde(default)]
    pub gso_sent: u64,
    /// TCP super-frames received whole.
    #[serde(default)]
    pub gso_received: u64,
    /// TCP super-frames injected whole (into the tap).
    #[serde(default)]
    pub gso_injected: u64,
    /// Super-frames cut into MTU-sized segments here.
    #[serde(default)]
    pub segmented: u64,
    /// Unfinished frames that could not be finished, dropped.
    #[serde(default)]
    pub unfinished_dropped: u64,
    /// TCP super-frames sent whole in pieces (also in `gso_sent`).
    #[serde(default)]
    pub pieces_sent: u64,
    /// TCP super-frames put together from pieces (also in `gso_received`).
    #[serde(default)]
    pub pieces_received: u64,
    /// Pieces refused: disagreeing with their siblings, or duplicates.
    #[serde(default)]
    pub pieces_refused: u64,
    /// Super-frames whose pieces did not all arrive in time.
    #[serde(default)]
    pub pieces_lost: u64,
    /// Datagrams the kernel dropped with the UDP socket's buffer full.
    #[serde(default)]
    pub udp_dropped: u64,
    /// Pieces leave with UDP GSO, many per system call; false when the
    /// kernel has no UDP GSO, or refused it (a route whose device has no
    /// checksum offload): then one datagram each.
    #[serde(default)]
    pub udp_gso: bool,
    /// Frames the forwarder dropped, by reason.
    pub drops: BTreeMap<String, u64>,
    pub connections: usize,
}

struct TxConn {
    conn_uid: u64,
    addr: SocketAddr,
    /// Super-frames go whole: both ends offer it and the path carries them.
    gso: AtomicBool,
    /// Super-frames go whole in pieces that fit the path.
    pieces: bool,
    sealer: Mutex<Sealer>,
    overhead: usize,
    limit: AtomicUsize,
}

struct RxConn {
    peer: PeerName,
    ip: IpAddr,
    opener: Mutex<Opener>,
}

/// Where arriving frames go.
enum Deliver {
    Pcap(Mutex<pcap::Capture<pcap::Active>>),
    Packet(PacketSocket),
    /// Finished frames and super-frames, each after its virtio_net_hdr.
    Tap(Arc<Tap>),
    Dataplane(mpsc::Sender<Inbound>),
}

/// Where local frames come from (bridge mode).
enum Source {
    Pcap(pcap::Capture<pcap::Active>),
    Packet(PacketSocket),
    Tap(Arc<Tap>),
}

struct Shared {
    me: PeerName,
    port: u16,
    start: Instant,
    fwd: Mutex<Forwarder>,
    tx: RwLock<HashMap<PeerName, Arc<TxConn>>>,
    by_uid: RwLock<HashMap<u64, Arc<TxConn>>>,
    rx: RwLock<HashMap<u64, Arc<RxConn>>>,
    data: UdpSocket,
    probe: UdpSocket,
    /// GSO datagrams (up to 64 KB), sent without DF: the underlay's IP
    /// fragments carry them.
    big: Option<UdpSocket>,
    out: Deliver,
    /// Where super-frames from peers are injected whole (tap and hybrid).
    whole: Option<Arc<Tap>>,
    /// Super-frames arriving in pieces (the receive thread's).
    reassembly: Mutex<Reassembler>,
    /// The kernel takes UDP GSO sends (`UDP_SEGMENT`): off after one fails.
    udp_gso: AtomicBool,
    events: mpsc::Sender<SleeveEvent>,
    stats: Stats,
    stop: AtomicBool,
}

/// The mesh's and the API's handle on the driver.
#[derive(Clone)]
pub struct SleeveHandle {
    shared: Arc<Shared>,
}

impl std::fmt::Debug for SleeveHandle {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("SleeveHandle").field("me", &self.shared.me).finish()
    }
}

#[derive(Debug, thiserror::Error)]
pub enum SleeveError {
    #[error("UDP port {port}: {source}")]
    Udp { port: u16, source: std::io::Error },
    #[error("capture on {ifname}: {source}")]
    Pcap { ifname: String, source: pcap::Error },
    #[error("packet socket on {ifname}: {source}")]
    Packet { ifname: String, source: std::io::Error },
    #[error("{0}")]
    Thread(std::io::Error),
}

fn pcap_err(ifname: &str) -> impl Fn(pcap::Error) -> SleeveError + '_ {
    move |source| SleeveError::Pcap { ifname: ifname.to_string(), source }
}

/// Starts the driver: binds the UDP port, opens the capture, starts the
/// threads and the task that follows the mesh's routes. Returns the handle
/// and the events for the mesh.
pub fn spawn(
    s: SleeveSettings,
    mut snapshots: watch::Receiver<Option<Snapshot>>,
) -> Result<(SleeveHandle, mpsc::Receiver<SleeveEvent>), SleeveError> {
    let udp = |port| {
        let sock = UdpSocket::bind(SocketAddrV4::new(Ipv4Addr::UNSPECIFIED, port))
            .map_err(|source| SleeveError::Udp { port, source })?;
        Ok::<_, SleeveError>(sock)
    };
    let data = udp(s.port)?;
    set_pmtu_discovery(data.as_raw_fd(), PmtuDiscovery::Do)
        .map_err(|source| SleeveError::Udp { port: s.port, source })?;
    data.set_read_timeout(Some(Duration::from_millis(200)))
        .map_err(|source| SleeveError::Udp { port: s.port, source })?;
    // Room for bursts; forced past rmem_max when we may (CAP_NET_ADMIN).
    if crate::sockopt::set_int(data.as_raw_fd(), libc::SOL_SOCKET, libc::SO_RCVBUFFORCE, UDP_RCVBUF).is_err() {
        let _ = crate::sockopt::set_int(data.as_raw_fd(), libc::SOL_SOCKET, libc::SO_RCVBUF, UDP_RCVBUF);
    }
    // Coalesced datagrams from one sender arrive in one read, with their
    // size (`receive_loop` cuts them apart); a UDP GSO send from a peer
    // crosses a veth underlay as one buffer and arrives so.
    if let Err(e) = setsockopt(&data, sockopt::UdpGroSegment, &true) {
        debug!(error = %e, "no UDP GRO on the sleeve socket");
    }
    // Whether this kernel sends with UDP GSO at all (4.18+).
    let udp_gso = setsockopt(&data, sockopt::UdpGsoSegment, &0).is_ok();
    let probe = udp(0)?;
    set_pmtu_discovery(probe.as_raw_fd(), PmtuDiscovery::Probe)
        .map_err(|source| SleeveError::Udp { port: 0, source })?;
    let gso = s.gso
        && matches!(s.local, LocalSide::Capture(_, CaptureKind::Packet) | LocalSide::Tap(_) | LocalSide::Hybrid(..));
    let big = if gso {
        let b = udp(0)?;
        set_pmtu_discovery(b.as_raw_fd(), PmtuDiscovery::Dont)
            .map_err(|source| SleeveError::Udp { port: 0, source })?;
        Some(b)
    } else {
        None
    };

    let mut whole = None;
    let (out, capture) = match s.local {
        LocalSide::Capture(ifname, CaptureKind::Pcap) => {
            let (capture, inject) = open_capture(&ifname, s.mtu)?;
            (Deliver::Pcap(Mutex::new(inject)), Some(Source::Pcap(capture)))
        }
        LocalSide::Capture(ifname, kind @ (CaptureKind::Tap | CaptureKind::Hybrid)) => {
            // The tap is opened (asynchronously, it joins the bridge) by
            // the caller: LocalSide::Tap, LocalSide::Hybrid.
            return Err(SleeveError::Packet {
                ifname,
                source: std::io::Error::other(format!("the {kind:?} capture is given as its LocalSide")),
            });
        }
        LocalSide::Tap(tap) => {
            let tap = Arc::new(tap);
            whole = Some(tap.clone());
            (Deliver::Tap(tap.clone()), Some(Source::Tap(tap)))
        }
        LocalSide::Hybrid(ifname, tap) => {
            let sock_err = |source| SleeveError::Packet { ifname: ifname.clone(), source };
            let ifindex = nix::net::if_::if_nametoindex(ifname.as_str()).map_err(|e| sock_err(e.into()))?;
            let capture = open_packet_capture(ifindex, true).map_err(sock_err)?;
            let inject = PacketSocket::injector(ifindex).map_err(sock_err)?;
            whole = Some(Arc::new(tap));
            (Deliver::Packet(inject), Some(Source::Packet(capture)))
        }
        LocalSide::Capture(ifname, CaptureKind::Packet) => {
            let sock_err = |source| SleeveError::Packet { ifname: ifname.clone(), source };
            let ifindex = nix::net::if_::if_nametoindex(ifname.as_str()).map_err(|e| sock_err(e.into()))?;
            // Only the capture takes super-frames: what we inject is finished.
            let capture = open_packet_capture(ifindex, gso);
            let (capture, inject) = (capture.map_err(sock_err)?, PacketSocket::injector(ifindex).map_err(sock_err)?);
            (Deliver::Packet(inject), Some(Source::Packet(capture)))
        }
        LocalSide::Dataplane(tx) => (Deliver::Dataplane(tx), None),
    };
    let (events_tx, events_rx) = mpsc::channel(1024);
    let shared = Arc::new(Shared {
        me: s.me,
        port: s.port,
        start: Instant::now(),
        fwd: Mutex::new(Forwarder::new(s.me, forward::Config::default())),
        tx: RwLock::new(HashMap::new()),
        by_uid: RwLock::new(HashMap::new()),
        rx: RwLock::new(HashMap::new()),
        data,
        probe,
        big,
        out,
        whole,
        reassembly: Mutex::new(Reassembler::default()),
        udp_gso: AtomicBool::new(udp_gso),
        events: events_tx,
        stats: Stats::default(),
        stop: AtomicBool::new(false),
    });
    if let (Some(tap), Some(Source::Packet(_))) = (&shared.whole, &capture) {
        // Hybrid: the bridge forwards (almost) nothing to the tap; what it
        // does is read and dropped.
        let (sh, tap) = (shared.clone(), tap.clone());
        std::thread::Builder::new()
            .name("sleeve-tap-drain".into())
            .spawn(move || drain_tap(&sh, &tap))
            .map_err(SleeveError::Thread)?;
    }
    let what = match &capture {
        Some(_) => "capture",
        None => "dataplane",
    };
    if let Some(capture) = capture {
        let sh = shared.clone();
        // Super-frames are up to 64 KB, after their virtio_net_hdr.
        let frame_max = if gso {
            65536 + VNET_LEN + 64
        } else {
            usize::try_from(s.mtu).unwrap_or(65535).saturating_add(18).min(65535)
        };
        std::thread::Builder::new()
            .name("sleeve-capture".into())
            .spawn(move || capture_loop(&sh, capture, frame_max))
            .map_err(SleeveError::Thread)?;
    }
    let sh = shared.clone();
    std::thread::Builder::new()
        .name("sleeve-udp".into())
        .spawn(move || receive_loop(&sh))
        .map_err(SleeveError::Thread)?;
    let sh = shared.clone();
    tokio::spawn(async move {
        let mut known: Vec<PeerName> = Vec::new();
        let mut expire = tokio::time::interval(Duration::from_secs(10));
        loop {
            tokio::select! {
                changed = snapshots.changed() => {
                    if changed.is_err() { break; }
                    let snap = snapshots.borrow_and_update().clone();
                    let Some(snap) = snap else { continue };
                    let names: Vec<PeerName> = snap.peers.iter().map(|p| p.name).collect();
                    let mut f = lock(&sh.fwd);
                    for gone in known.iter().filter(|n| !names.contains(n)) {
                        f.handle_peer_removed(*gone);
                    }
                    f.handle_routes(snap.routes);
                    known = names;
                }
                _ = expire.tick() => {
                    let now = sh.now();
                    lock(&sh.fwd).handle_timeout(now);
                }
            }
            if sh.stop.load(Ordering::Relaxed) {
                break;
            }
        }
    });
    info!(port = s.port, local = what, "sleeve running");
    Ok((SleeveHandle { shared }, events_rx))
}

/// A packet-socket capture, its small frames through a receive ring; a
/// plain one if the kernel refuses the ring (say, pages other than 4 KB).
fn open_packet_capture(ifindex: u32, vnet: bool) -> std::io::Result<PacketSocket> {
    use crate::plumb::rx_ring::{SLOTS, SLOT_SIZE};
    match PacketSocket::capture_ring(ifindex, CAPTURE_RCVBUF, vnet, SLOT_SIZE, SLOTS) {
        Ok(s) => Ok(s),
        Err(e) => {
            warn!(error = %e, "no receive ring for the capture; every frame through the socket's buffer");
            if vnet {
                PacketSocket::capture_vnet(ifindex, CAPTURE_RCVBUF)
            } else {
                PacketSocket::capture(ifindex, CAPTURE_RCVBUF)
            }
        }
    }
}

/// Opens the capture (inbound frames, BPDUs filtered out) and the inject
/// handle on the bridge's capture interface.
fn open_capture(
    ifname: &str,
    mtu: u32,
) -> Result<(pcap::Capture<pcap::Active>, pcap::Capture<pcap::Active>), SleeveError> {
    let snaplen = i32::try_from(mtu).unwrap_or(65535).saturating_add(18).min(65535);
    let open = |buffer: i32| {
        pcap::Capture::from_device(ifname)
            .map_err(pcap_err(ifname))?
            .immediate_mode(true)
            .snaplen(snaplen)
            .buffer_size(buffer)
            .timeout(100)
            .open()
            .map_err(pcap_err(ifname))
    };
    let mut capture = open(CAPTURE_BUFFER)?;
    // Only frames the bridge sends us: never our own injections.
    capture.direction(pcap::Direction::In).map_err(pcap_err(ifname))?;
    // STP BPDUs (and other link-local control frames) are not forwarded.
    capture.filter("not ether dst 01:80:c2:00:00:00", true).map_err(pcap_err(ifname))?;
    let capture = capture.setnonblock().map_err(pcap_err(ifname))?;
    // It reads nothing: the smallest ring.
    let mut inject = open(64 << 10)?;
    inject.filter("less 1", true).map_err(pcap_err(ifname))?;
    Ok((capture, inject))
}

/// Locks a mutex, taking it over if a thread panicked while holding it (the
/// state is plain data and stays consistent between operations).
fn lock<T>(m: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|p| p.into_inner())
}

fn read<T>(m: &RwLock<T>) -> std::sync::RwLockReadGuard<'_, T> {
    m.read().unwrap_or_else(|p| p.into_inner())
}

fn write<T>(m: &RwLock<T>) -> std::sync::RwLockWriteGuard<'_, T> {
    m.write().unwrap_or_else(|p| p.into_inner())
}

fn bump(c: &AtomicU64, by: u64) {
    c.fetch_add(by, Ordering::Relaxed);
}

impl SleeveHandle {
    /// A connection the sleeve can use (replacing any earlier one to that peer).
    pub fn conn_up(&self, c: ConnUp) {
        let (sealer, opener) = match &c.keys {
            Some(k) => (Sealer::new(k, c.conn_uid), Opener::new(k, c.conn_uid)),
            None => (Sealer::plain(c.conn_uid), Opener::plain(c.conn_uid)),
        };
        let tx = Arc::new(TxConn {
            conn_uid: c.conn_uid,
            addr: c.addr,
            // Off until the path's fragment check says otherwise (set_gso).
            gso: AtomicBool::new(false),
            pieces: c.pieces,
            overhead: sealer.overhead(),
            sealer: Mutex::new(sealer),
            limit: AtomicUsize::new(c.payload_limit),
        });
        let rx = Arc::new(RxConn { peer: c.peer, ip: c.addr.ip(), opener: Mutex::new(opener) });
        let sh = &self.shared;
        if let Some(old) = write(&sh.tx).insert(c.peer, tx.clone()) {
            write(&sh.by_uid).remove(&old.conn_uid);
            write(&sh.rx).remove(&old.conn_uid);
        }
        write(&sh.by_uid).insert(c.conn_uid, tx);
        write(&sh.rx).insert(c.conn_uid, rx);
        debug!(peer = %c.peer, addr = %c.addr, sealed = c.keys.is_some(), "sleeve connection up");
    }

    /// A connection went away.
    pub fn conn_down(&self, conn_uid: u64) {
        let sh = &self.shared;
        write(&sh.rx).remove(&conn_uid);
        lock(&sh.reassembly).forget(conn_uid);
        if write(&sh.by_uid).remove(&conn_uid).is_some() {
            write(&sh.tx).retain(|_, t| t.conn_uid != conn_uid);
        }
    }

    /// The largest UDP payload the connection's path carries.
    pub fn set_payload_limit(&self, conn_uid: u64, limit: usize) {
        if let Some(t) = read(&self.shared.by_uid).get(&conn_uid) {
            t.limit.store(limit, Ordering::Relaxed);
        }
    }

    /// Whether super-frames go to the connection's peer whole (else they
    /// are cut here): the fragment check's answer.
    pub fn set_gso(&self, conn_uid: u64, on: bool) {
        if let Some(t) = read(&self.shared.by_uid).get(&conn_uid) {
            t.gso.store(on, Ordering::Relaxed);
        }
    }

    /// Sends a heartbeat, a path-MTU probe (DF) or a fragment check (no DF,
    /// only where GSO datagrams may be sent) on the connection.
    pub fn send_control(&self, conn_uid: u64, s: ToSend) {
        let sh = &self.shared;
        let Some(t) = read(&sh.by_uid).get(&conn_uid).cloned() else { return };
        let sock = match (s.probe, s.fragmented, &sh.big) {
            (true, _, _) => &sh.probe,
            (false, true, Some(big)) => big,
            (false, true, None) => return,
            (false, false, _) => &sh.data,
        };
        let kind = if s.probe { ControlKind::Probe } else { ControlKind::Heartbeat };
        let body = Control { kind, seq: s.seq }.emit(s.size.saturating_sub(t.overhead));
        let d = match lock(&t.sealer).seal_control(&body) {
            Ok(d) => d,
            Err(e) => {
                warn!(error = %e, "control datagram not sent");
                return;
            }
        };
        match sock.send_to(&d, t.addr) {
            Ok(_) => {
                bump(&sh.stats.datagrams_sent, 1);
                bump(&sh.stats.bytes_sent, d.len() as u64);
            }
            // A probe too big for the local route is an unanswered probe.
            Err(e) => debug!(error = %e, size = d.len(), "control datagram not sent"),
        }
    }

    pub fn stats(&self) -> SleeveStatsView {
        let s = &self.shared.stats;
        let g = |c: &AtomicU64| c.load(Ordering::Relaxed);
        let drops = lock(&self.shared.fwd).drops.iter().map(|(k, v)| (k.to_string(), *v)).collect();
        SleeveStatsView {
            captured: g(&s.captured),
            captured_bytes: g(&s.captured_bytes),
            injected: g(&s.injected),
            injected_bytes: g(&s.injected_bytes),
            datagrams_sent: g(&s.datagrams_sent),
            bytes_sent: g(&s.bytes_sent),
            datagrams_received: g(&s.datagrams_received),
            bytes_received: g(&s.bytes_received),
            relayed: g(&s.relayed),
            send_errors: g(&s.send_errors),
            inject_errors: g(&s.inject_errors),
            unknown: g(&s.unknown),
            malformed: g(&s.malformed),
            refused: g(&s.refused),
            frag_needed: g(&s.frag_needed),
            fragmented: g(&s.fragmented),
            no_connection: g(&s.no_connection),
            capture_dropped: g(&s.capture_dropped),
            capture_truncated: g(&s.capture_truncated),
            gso_sent: g(&s.gso_sent),
            gso_received: g(&s.gso_received),
            gso_injected: g(&s.gso_injected),
            segmented: g(&s.segmented),
            unfinished_dropped: g(&s.unfinished_dropped),
            pieces_sent: g(&s.pieces_sent),
            pieces_received: g(&s.pieces_received),
            pieces_refused: g(&s.pieces_refused),
            pieces_lost: {
                let r = lock(&self.shared.reassembly);
                r.timed_out + r.evicted
            },
            udp_dropped: udp_socket_drops(self.shared.port).unwrap_or(0),
            udp_gso: self.shared.udp_gso.load(Ordering::Relaxed),
            drops,
            connections: read(&self.shared.tx).len(),
        }
    }

    /// Sends frames the fast datapath handed up to one next hop (beside the
    /// fast datapath; in bridge mode the capture does this).
    pub fn send(&self, next_hop: PeerName, frames: Vec<Frame>) {
        bump(&self.shared.stats.captured, frames.len() as u64);
        bump(&self.shared.stats.captured_bytes, frames.iter().map(|f| f.bytes.len() as u64).sum());
        self.shared.send_frames(next_hop, frames);
    }

    /// Stops the threads (they notice within their poll interval).
    pub fn shutdown(&self) {
        self.shared.stop.store(true, Ordering::Relaxed);
    }
}

impl Shared {
    fn now(&self) -> u64 {
        self.start.elapsed().as_millis() as u64
    }

    /// Delivers a frame to the local containers: injected into the bridge,
    /// or handed to the dataplane.
    fn inject(&self, frame: &[u8]) {
        let len = frame.len() as u64;
        let r = match &self.out {
            Deliver::Pcap(h) => lock(h).sendpacket(frame).map_err(|e| e.to_string()),
            Deliver::Packet(p) => match p.send_batch(&[frame]) {
                (1, _) => Ok(()),
                (_, e) => Err(e.map_or_else(|| "not sent".to_string(), |e| e.to_string())),
            },
            Deliver::Tap(t) => t.send(&[0; VNET_LEN], frame).map_err(|e| e.to_string()),
            Deliver::Dataplane(tx) => tx.try_send(Inbound::Local(frame.to_vec())).map_err(|e| e.to_string()),
        };
        self.delivered(r, len);
    }

    /// Delivers frames to the local containers, a batch per system call
    /// where the socket allows.
    fn inject_all(&self, frames: &mut Vec<Vec<u8>>) {
        if frames.is_empty() {
            return;
        }
        for (i, burst) in frames.chunks(INJECT_BURST).enumerate() {
            if i > 0 {
                // The containers woken by the last burst run first.
                let _ = nix::sched::sched_yield();
            }
            self.inject_burst(burst);
        }
        frames.clear();
    }

    /// Delivers frames to the local containers in one system call where
    /// the socket allows.
    fn inject_burst(&self, frames: &[Vec<u8>]) {
        let Deliver::Packet(p) = &self.out else {
            for f in frames {
                self.inject(f);
            }
            return;
        };
        let refs: Vec<&[u8]> = frames.iter().map(Vec::as_slice).collect();
        let (sent, err) = p.send_batch(&refs);
        bump(&self.stats.injected, sent as u64);
        // Bytes of the frames sent: all but the failed ones, which are rare.
        let bytes: u64 = frames.iter().map(|f| f.len() as u64).sum();
        bump(&self.stats.injected_bytes, if sent == frames.len() { bytes } else { 0 });
        if let Some(e) = err {
            bump(&self.stats.inject_errors, (frames.len() - sent) as u64);
            debug!(error = %e, "inject failed");
        }
    }

    /// Delivers a super-frame whole, after its virtio_net_hdr, at once (from
    /// the receive buffer it lies in): only a tap takes them (the bridge
    /// receives them, and forwards them whole). Frames queued before it go
    /// first, so a flow keeps its order.
    fn inject_whole(&self, out: &mut Outgoing, vnet: &[u8; VNET_LEN], frame: &[u8]) {
        self.inject_all(&mut out.inject);
        let r = match &self.whole {
            Some(t) => t.send(vnet, frame).map_err(|e| e.to_string()),
            None => Err("only a tap takes super-frames whole".to_string()),
        };
        if r.is_ok() {
            bump(&self.stats.gso_injected, 1);
        }
        self.delivered(r, frame.len() as u64);
    }

    fn delivered(&self, r: Result<(), String>, len: u64) {
        match r {
            Ok(()) => {
                bump(&self.stats.injected, 1);
                bump(&self.stats.injected_bytes, len);
            }
            Err(e) => {
                bump(&self.stats.inject_errors, 1);
                debug!(error = %e, "inject failed");
            }
        }
    }

    /// Sends frames to one next hop: oversize ones answered or fragmented,
    /// the rest batched into datagrams that fit the path, sealed, sent.
    fn send_frames(&self, hop: PeerName, frames: Vec<Frame>) {
        let Some(t) = read(&self.tx).get(&hop).cloned() else {
            bump(&self.stats.no_connection, frames.len() as u64);
            return;
        };
        let limit = t.limit.load(Ordering::Relaxed);
        let max_body = limit.saturating_sub(t.overhead);
        let mut fit = Vec::with_capacity(frames.len());
        for f in frames {
            if FRAME_OVERHEAD + f.bytes.len() <= max_body {
                fit.push(f);
                continue;
            }
            // The largest IP packet the path carries inside a frame record.
            let ip_mtu = max_body.saturating_sub(FRAME_OVERHEAD + ETH_HLEN).min(usize::from(u16::MAX)) as u16;
            match oversize::handle(&f.bytes, ip_mtu) {
                // Only our own containers are told; a relayed frame's
                // sender is on another host.
                Oversize::Reply(icmp) if f.src == self.me => {
                    bump(&self.stats.frag_needed, 1);
                    self.inject(&icmp);
                }
                Oversize::Reply(_) => bump(&self.stats.frag_needed, 1),
                Oversize::Fragments(parts) => {
                    bump(&self.stats.fragmented, 1);
                    fit.extend(parts.into_iter().map(|bytes| Frame { src: f.src, dst: f.dst, bytes }));
                }
                Oversize::Drop(why) => debug!(why, len = f.bytes.len(), "oversize frame dropped"),
            }
        }
        let bodies = match wire::pack(&fit, max_body) {
            Ok(b) => b,
            Err(e) => {
                debug!(error = %e, "frames not sent");
                return;
            }
        };
        let mut datagrams = Vec::with_capacity(bodies.len());
        {
            let mut sealer = lock(&t.sealer);
            for body in bodies {
                match sealer.seal(&body) {
                    Ok(d) => datagrams.push(d),
                    Err(e) => {
                        warn!(error = %e, "datagram not sent");
                        break;
                    }
                }
            }
        }
        self.send_each(&t, &datagrams);
    }

    /// Sends datagrams to the connection's peer, a batch per `sendmmsg`.
    /// An error is the first unsent datagram's, which is then counted and
    /// skipped (a smaller path MTU the kernel learned is taken up at once).
    fn send_each(&self, t: &TxConn, datagrams: &[Vec<u8>]) {
        let mut rest = datagrams;
        while !rest.is_empty() {
            match send_batch(&self.data, t.addr, rest) {
                Ok(n) => {
                    bump(&self.stats.datagrams_sent, n as u64);
                    bump(&self.stats.bytes_sent, rest[..n].iter().map(|d| d.len() as u64).sum());
                    rest = &rest[n..];
                    continue;
                }
                Err(nix::errno::Errno::EMSGSIZE) => self.too_big(t),
                Err(nix::errno::Errno::EINTR) => continue,
                Err(e) => debug!(error = %e, to = %t.addr, "send failed"),
            }
            bump(&self.stats.send_errors, 1);
            rest = &rest[1..];
        }
    }

    /// A super-frame that arrived whole from peer `prev`: injected whole
    /// through the tap; else (packet sockets, and for relays) cut into
    /// segments, which go where any frame would. (Injected whole through a
    /// packet socket, the kernel (6.18) drops it in `validate_xmit_skb` on
    /// the capture pair's transmit.)
    fn deliver_gso(&self, prev: PeerName, vnet: [u8; VNET_LEN], f: FrameRef<'_>, out: &mut Outgoing) {
        // From the wire: a tiny GSO size would cut 64 KB into tens of
        // thousands of frames.
        let h = match VnetHdr::parse(&vnet) {
            Ok(h) if h.gso_type == VnetHdr::GSO_NONE || h.gso_size >= MIN_GSO_SIZE => h,
            _ => {
                bump(&self.stats.malformed, 1);
                return;
            }
        };
        if let Deliver::Dataplane(tx) = &self.out {
            // The datapath takes finished frames only.
            let segs = segment::finish(&h, f.bytes).unwrap_or_default();
            for bytes in segs {
                let len = bytes.len() as u64;
                let r = tx.try_send(Inbound::Peer { prev, src: f.src, dst: f.dst, bytes });
                self.delivered(r.map_err(|e| e.to_string()), len);
            }
            return;
        }
        let now = self.now();
        let v = match lock(&self.fwd).from_peer(now, prev, f.src, f.dst, f.bytes) {
            Ok(v) => v,
            Err(_) => return,
        };
        // A tap takes super-frames whole (the bridge receives them and
        // forwards them whole to the container's veth). A packet socket's
        // injection is a transmit, where the kernel drops them (see the
        // README's GSO paragraph and the design note): cut here then.
        if v.inject && self.whole.is_some() {
            let rest = forward::Verdict { inject: false, sends: v.sends };
            if !rest.sends.is_empty() {
                self.route_segments(out, rest, &h, f.bytes);
            }
            self.inject_whole(out, &vnet, f.bytes);
            return;
        }
        self.route_segments(out, v, &h, f.bytes);
    }

    /// A captured frame that is not finished (a TCP super-frame, or a
    /// partial checksum): carried whole, in one GSO datagram, when it goes
    /// to one next hop that takes those; else finished here (checksum
    /// completed, super-frame cut into MTU-sized segments) and routed like
    /// any frame.
    fn route_unfinished(&self, out: &mut Outgoing, v: forward::Verdict, vnet: [u8; VNET_LEN], bytes: Vec<u8>) {
        let h = match VnetHdr::parse(&vnet) {
            Ok(h) => h,
            Err(e) => {
                bump(&self.stats.unfinished_dropped, 1);
                debug!(error = %e, "captured frame with a bad virtio_net_hdr dropped");
                return;
            }
        };
        if let ([s], false, true) = (&v.sends[..], v.inject, h.gso_type != VnetHdr::GSO_NONE) {
            let frame = FrameRef { src: s.src, dst: s.dst, bytes: &bytes };
            if self.send_gso(s.next_hop, &vnet, frame, out) {
                out.recycle(bytes);
                return;
            }
        }
        self.route_segments(out, v, &h, &bytes);
        out.recycle(bytes);
    }

    fn route_segments(&self, out: &mut Outgoing, v: forward::Verdict, h: &VnetHdr, bytes: &[u8]) {
        match segment::finish(h, bytes) {
            Ok(segs) => {
                if segs.len() > 1 {
                    bump(&self.stats.segmented, 1);
                }
                for s in segs {
                    self.route(out, v.clone(), s);
                }
            }
            Err(e) => {
                bump(&self.stats.unfinished_dropped, 1);
                debug!(error = %e, len = bytes.len(), "unfinished frame dropped");
            }
        }
    }

    /// Sends a super-frame whole to a next hop that takes them, built and
    /// sealed in `out.datagram` (kept across super-frames): in pieces, or
    /// as one datagram the underlay fragments. False when it cannot (the
    /// hop takes neither, or the frame does not fit): the caller cuts it.
    fn send_gso(&self, hop: PeerName, vnet: &[u8; VNET_LEN], f: FrameRef<'_>, out: &mut Outgoing) -> bool {
        let Some(t) = read(&self.tx).get(&hop).cloned() else { return false };
        let whole = match &self.big {
            Some(big) if !t.pieces && t.gso.load(Ordering::Relaxed) => Some(big),
            _ => None,
        };
        if !(t.pieces || whole.is_some())
            || t.overhead + wire::VNET_LEN + FRAME_OVERHEAD + f.bytes.len() > MAX_UDP_PAYLOAD
        {
            return false;
        }
        let buf = &mut out.datagram;
        buf.clear();
        buf.resize(HEADER_LEN, 0);
        if wire::emit_gso_into(vnet, f, buf).is_err() {
            return false;
        }
        if let Err(e) = lock(&t.sealer).seal_gso_in_place(buf) {
            warn!(error = %e, "datagram not sent");
            return true;
        }
        let Some(big) = whole else {
            return self.send_pieces(&t, &out.datagram, &mut out.pieces);
        };
        match big.send_to(buf, t.addr) {
            Ok(_) => {
                bump(&self.stats.datagrams_sent, 1);
                bump(&self.stats.bytes_sent, buf.len() as u64);
                bump(&self.stats.gso_sent, 1);
            }
            Err(e) => {
                bump(&self.stats.send_errors, 1);
                debug!(error = %e, to = %t.addr, "GSO datagram not sent");
            }
        }
        true
    }

    /// Sends a sealed GSO datagram in pieces that each fit the path, all but
    /// the last one size, handed to the kernel with UDP GSO (one system
    /// call, one buffer through the kernel where the path takes it whole):
    /// each piece's headers from `buf`, its bytes from `whole` where they
    /// lie. False when it takes too many pieces (a tiny path MTU): the
    /// caller cuts the super-frame then.
    fn send_pieces(&self, t: &TxConn, whole: &[u8], buf: &mut Vec<u8>) -> bool {
        let Ok((h, _)) = Header::parse(whole) else { return false };
        let max = t.limit.load(Ordering::Relaxed).saturating_sub(HEADER_LEN + PIECE_HDR);
        if max < 256 {
            return false;
        }
        let Some(plan) = wire::plan_pieces(whole.len(), max) else { return false };
        let count = plan.len() as u16;
        let pieces: Vec<PieceRef<'_>> = plan
            .enumerate()
            .map(|(i, r)| PieceRef {
                index: i as u16,
                count,
                offset: r.start as u32,
                total: whole.len() as u32,
                bytes: &whole[r],
            })
            .collect();
        let head =
            Header { sealed: false, control: false, gso: false, piece: true, conn_uid: h.conn_uid, counter: h.counter };
        buf.clear();
        for p in &pieces {
            buf.extend_from_slice(&head.bytes());
            buf.extend_from_slice(&p.header());
        }
        bump(&self.stats.gso_sent, 1);
        bump(&self.stats.pieces_sent, 1);
        let size = HEADER_LEN + PIECE_HDR + max;
        let sent = if pieces.len() > 1 && self.udp_gso.load(Ordering::Relaxed) {
            match self.send_pieces_gso(t, buf, &pieces, size) {
                Some(n) => n,
                None => return true,
            }
        } else {
            0
        };
        // What UDP GSO did not take: one datagram each.
        let rest: Vec<Vec<u8>> = pieces[sent..]
            .iter()
            .map(|p| {
                let mut d = Vec::with_capacity(size);
                d.extend_from_slice(&head.bytes());
                p.emit(&mut d);
                d
            })
            .collect();
        self.send_each(t, &rest);
        true
    }

    /// Sends pieces with UDP GSO, as many per call as the kernel takes,
    /// each datagram gathered from its headers (in `heads`, back to back)
    /// and its bytes: how many went before the kernel refused GSO (the
    /// caller sends the rest one by one), or None when done (all sent, or
    /// given up on an error).
    fn send_pieces_gso(&self, t: &TxConn, heads: &[u8], pieces: &[PieceRef<'_>], size: usize) -> Option<usize> {
        use nix::sys::socket::{sendmsg, ControlMessage, MsgFlags, SockaddrIn};
        const H: usize = HEADER_LEN + PIECE_HDR;
        let SocketAddr::V4(v4) = t.addr else { return None };
        let to = SockaddrIn::from(v4);
        let per_call = UDP_GSO_SEGMENTS.min(MAX_UDP_PAYLOAD / size.max(1)).max(1);
        let seg = u16::try_from(size).ok()?;
        let mut done = 0;
        while done < pieces.len() {
            let end = (done + per_call).min(pieces.len());
            let iov: Vec<std::io::IoSlice<'_>> = (done..end)
                .flat_map(|i| {
                    [std::io::IoSlice::new(&heads[i * H..(i + 1) * H]), std::io::IoSlice::new(pieces[i].bytes)]
                })
                .collect();
            let cmsg = [ControlMessage::UdpGsoSegments(&seg)];
            let cmsgs: &[ControlMessage<'_>] = if end - done > 1 { &cmsg } else { &[] };
            match sendmsg(self.data.as_raw_fd(), &iov, cmsgs, MsgFlags::empty(), Some(&to)) {
                Ok(n) => {
                    bump(&self.stats.datagrams_sent, (end - done) as u64);
                    bump(&self.stats.bytes_sent, n as u64);
                    done = end;
                }
                Err(nix::errno::Errno::EINTR) => {}
                // No GSO on this route (no checksum offload on its device,
                // or an old kernel): one datagram per message from now on.
                Err(
                    e @ (nix::errno::Errno::EIO
                    | nix::errno::Errno::EINVAL
                    | nix::errno::Errno::EOPNOTSUPP
                    | nix::errno::Errno::ENOPROTOOPT),
                ) => {
                    warn!(error = %e, "UDP GSO send refused: the sleeve sends pieces one datagram each");
                    self.udp_gso.store(false, Ordering::Relaxed);
                    return Some(done);
                }
                Err(e) => {
                    if e == nix::errno::Errno::EMSGSIZE {
                        self.too_big(t);
                    }
                    bump(&self.stats.send_errors, 1);
                    debug!(error = %e, to = %t.addr, "pieces not sent");
                    return None;
                }
            }
        }
        None
    }

    /// The kernel learned a smaller path MTU (an ICMP reached it): use the
    /// route's new limit at once, and tell the mesh to search again.
    fn too_big(&self, t: &TxConn) {
        let v4 = match t.addr.ip() {
            IpAddr::V4(a) => a,
            IpAddr::V6(_) => return,
        };
        let Some(limit) = super::pmtu::udp_payload_limit(v4, t.addr.port()) else { return };
        t.limit.store(limit, Ordering::Relaxed);
        let _ = self.events.try_send(SleeveEvent::TooBig { conn_uid: t.conn_uid, limit });
    }

    /// Where frames go, grouped by next hop; injections queued.
    fn route(&self, out: &mut Outgoing, v: forward::Verdict, bytes: Vec<u8>) {
        let groups = &mut out.groups;
        if v.inject && v.sends.is_empty() {
            out.inject.push(bytes);
            return;
        }
        if v.inject {
            out.inject.push(bytes.clone());
        }
        let n = v.sends.len();
        let mut bytes = Some(bytes);
        for (i, s) in v.sends.into_iter().enumerate() {
            let b = if i + 1 == n { bytes.take().unwrap_or_default() } else { bytes.clone().unwrap_or_default() };
            groups.entry(s.next_hop).or_default().push(Frame { src: s.src, dst: s.dst, bytes: b });
        }
    }
}

/// What a batch of frames turned into: frames per next hop, and frames to
/// inject.
#[derive(Default)]
struct Outgoing {
    groups: BTreeMap<PeerName, Vec<Frame>>,
    inject: Vec<Vec<u8>>,
    /// Where a GSO datagram is built and sealed: kept, so its 60 KB are
    /// not allocated (and page-faulted in) per super-frame.
    datagram: Vec<u8>,
    /// The headers of that datagram's pieces, back to back (each piece's
    /// bytes are sent from the datagram itself), kept likewise.
    pieces: Vec<u8>,
    /// Captured super-frames' buffers, sent and free for the next capture.
    spare: Vec<Vec<u8>>,
}

/// Buffers kept for captures: enough for a batch of super-frames.
const SPARE_BUFFERS: usize = 16;

impl Outgoing {
    /// Keeps a large buffer for the next capture (small ones are cheap to
    /// allocate, and a full pool lets the rest go).
    fn recycle(&mut self, mut b: Vec<u8>) {
        if b.capacity() >= 16 << 10 && self.spare.len() < SPARE_BUFFERS {
            b.clear();
            self.spare.push(b);
        }
    }
}

/// Sends datagrams to one address with `sendmmsg`: how many went.
fn send_batch<D: AsRef<[u8]>>(sock: &UdpSocket, to: SocketAddr, datagrams: &[D]) -> Result<usize, nix::errno::Errno> {
    use nix::sys::socket::{sendmmsg, MsgFlags, MultiHeaders, SockaddrIn};
    let SocketAddr::V4(v4) = to else { return Err(nix::errno::Errno::EAFNOSUPPORT) };
    let n = datagrams.len().min(MAX_BATCH);
    let iovs: Vec<[std::io::IoSlice<'_>; 1]> =
        datagrams[..n].iter().map(|d| [std::io::IoSlice::new(d.as_ref())]).collect();
    let addrs = vec![Some(SockaddrIn::from(v4)); n];
    let mut headers = MultiHeaders::<SockaddrIn>::preallocate(n, None);
    let sent = sendmmsg(sock.as_raw_fd(), &mut headers, &iovs, &addrs, [], MsgFlags::empty())?;
    match sent.count() {
        0 => Err(nix::errno::Errno::EAGAIN),
        k => Ok(k),
    }
}

/// The kernel's drop count for our UDP socket (the last column of
/// `/proc/self/net/udp`, in this network namespace).
fn udp_socket_drops(port: u16) -> Option<u64> {
    let table = std::fs::read_to_string("/proc/self/net/udp").ok()?;
    let want = format!(":{port:04X}");
    table.lines().skip(1).find_map(|l| {
        let cols: Vec<&str> = l.split_whitespace().collect();
        if cols.get(1)?.ends_with(&want) && cols.get(2)?.starts_with("00000000:") {
            cols.last()?.parse().ok()
        } else {
            None
        }
    })
}

impl Source {
    /// Reads up to `room` frames that are waiting into `batch`, without
    /// blocking: how many were read.
    fn read(
        &mut self,
        sh: &Shared,
        room: usize,
        batch: &mut Vec<Captured>,
        bufs: &mut [Vec<u8>],
        spare: &mut Vec<Vec<u8>>,
    ) -> Result<usize, String> {
        match self {
            Source::Pcap(cap) => cap
                .dispatch(Some(room), |p| batch.push(Captured { bytes: p.data.to_vec(), vnet: None }))
                .map_err(|e| e.to_string()),
            Source::Packet(sock) => {
                let room = room.min(bufs.len());
                let mut got = Vec::with_capacity(room);
                let n = sock.recv_batch(&mut bufs[..room], &mut got).map_err(|e| e.to_string())?;
                for (r, b) in got.iter().zip(bufs.iter()) {
                    if r.truncated {
                        // Longer than the MTU allows: the offloads are not off.
                        bump(&sh.stats.capture_truncated, 1);
                        continue;
                    }
                    push_captured(batch, spare, sock.vnet(), &b[..r.len]);
                }
                Ok(n)
            }
            Source::Tap(tap) => {
                // One frame per read; a buffer is reused at once.
                let Some(buf) = bufs.first_mut() else { return Ok(0) };
                let mut n = 0;
                while n < room {
                    match tap.recv(buf) {
                        Ok(Some(len)) if len >= buf.len() => {
                            // Filled the buffer: maybe cut.
                            bump(&sh.stats.capture_truncated, 1);
                        }
                        Ok(Some(len)) => push_captured(batch, spare, true, &buf[..len]),
                        Ok(None) => break,
                        Err(e) if n == 0 => return Err(e.to_string()),
                        Err(_) => break,
                    }
                    n += 1;
                }
                Ok(n)
            }
        }
    }

    /// Sleeps until a frame is waiting, or `timeout` passed.
    fn wait(&self, timeout: Duration) {
        use nix::poll::{ppoll, PollFd, PollFlags};
        let fd = match self {
            Source::Pcap(cap) => std::os::fd::AsFd::as_fd(cap),
            Source::Packet(sock) => std::os::fd::AsFd::as_fd(sock),
            Source::Tap(tap) => std::os::fd::AsFd::as_fd(tap.as_ref()),
        };
        let mut fds = [PollFd::new(fd, PollFlags::POLLIN)];
        let _ = ppoll(&mut fds, Some(nix::sys::time::TimeSpec::from_duration(timeout)), None);
    }

    /// Frames the kernel dropped with the capture's buffer full.
    fn dropped(&mut self) -> Option<u64> {
        match self {
            Source::Pcap(cap) => cap.stats().ok().map(|st| u64::from(st.dropped) + u64::from(st.if_dropped)),
            Source::Packet(sock) => Some(sock.drops()),
            // What the bridge sent the tap that the kernel dropped with
            // the tap's queue full.
            Source::Tap(tap) => {
                let path = format!("/sys/class/net/{}/statistics/tx_dropped", tap.name());
                std::fs::read_to_string(path).ok().and_then(|s| s.trim().parse().ok())
            }
        }
    }
}

/// Queues a captured frame (after its virtio_net_hdr when `vnet`), unless
/// it stays local. A frame whose header says it is finished (no GSO,
/// checksum done) needs nothing more. An unfinished frame (a super-frame,
/// mostly) is copied into a spare buffer when there is one.
fn push_captured(batch: &mut Vec<Captured>, spare: &mut Vec<Vec<u8>>, vnet: bool, b: &[u8]) {
    let (vnet, data) = if vnet {
        match (b.get(..VNET_LEN), b.get(VNET_LEN..)) {
            (Some(h), Some(d)) => {
                let h: [u8; VNET_LEN] = h.try_into().unwrap_or([0; VNET_LEN]);
                (Some(h).filter(|h| *h != [0; VNET_LEN]), d)
            }
            _ => return,
        }
    } else {
        (None, b)
    };
    // STP BPDUs and other link-local control frames stay local.
    if data.starts_with(&[0x01, 0x80, 0xc2, 0x00, 0x00, 0x00]) {
        return;
    }
    let bytes = match (vnet, spare.pop()) {
        (Some(_), Some(mut buf)) => {
            buf.extend_from_slice(data);
            buf
        }
        _ => data.to_vec(),
    };
    batch.push(Captured { bytes, vnet });
}

/// A captured frame, and its virtio_net_hdr when it is not finished (a GSO
/// super-frame, or a partial checksum).
struct Captured {
    bytes: Vec<u8>,
    vnet: Option<[u8; VNET_LEN]>,
}

fn capture_loop(sh: &Shared, mut src: Source, frame_max: usize) {
    let mut batch: Vec<Captured> = Vec::with_capacity(CAPTURE_BATCH);
    // Receive buffers for the packet socket, touched only as far as frames
    // fill them (fewer when they take 64 KB super-frames).
    let nbufs = if frame_max > 16 << 10 { CAPTURE_BATCH / 4 } else { CAPTURE_BATCH };
    let mut bufs: Vec<Vec<u8>> = match src {
        Source::Packet(_) => (0..nbufs).map(|_| vec![0u8; frame_max]).collect(),
        Source::Tap(_) => vec![vec![0u8; frame_max]],
        Source::Pcap(_) => Vec::new(),
    };
    let mut stats_at = Instant::now();
    let mut out = Outgoing::default();
    let mut meter = BusyMeter::default();
    let mut quiet = Quiet::default();
    // Whether the capture slept a linger's time before this read.
    let mut slept = false;
    while !sh.stop.load(Ordering::Relaxed) {
        if stats_at.elapsed() >= Duration::from_secs(1) {
            stats_at = Instant::now();
            if let Some(d) = src.dropped() {
                sh.stats.capture_dropped.store(d, Ordering::Relaxed);
            }
        }
        batch.clear();
        match src.read(sh, CAPTURE_BATCH, &mut batch, &mut bufs, &mut out.spare) {
            Ok(0) => {
                let now = Instant::now();
                meter.roll(now);
                if quiet.due(now) {
                    release_buffers(&mut bufs, &mut out);
                }
                // Busy: the next frames are due in microseconds; sleep,
                // rather than be woken by the first of them.
                slept = meter.busy();
                if slept {
                    std::thread::sleep(LINGER);
                } else {
                    src.wait(Duration::from_millis(200));
                }
                continue;
            }
            Ok(n) => {
                meter.record(Instant::now(), n);
                quiet.record(batch.iter().map(|c| c.bytes.len()).sum());
            }
            Err(e) => {
                warn!(error = %e, "capture failed; retrying");
                std::thread::sleep(Duration::from_millis(200));
                continue;
            }
        }
        // Under load (more than one frame waiting, or a busy capture), and
        // with less than a datagram's worth read, linger a moment for more:
        // fuller datagrams cost fewer sends and receives per frame. A lone
        // frame of light traffic (a ping) goes at once.
        if !std::mem::take(&mut slept) && should_linger(&batch, meter.busy()) {
            // Sleep, not poll: a poll wakes at every frame, and on a busy
            // machine those wake-ups cost more than the batch saves
            // (measured: the capture thread's CPU at 90 000 small frames a
            // second fell from 43 % to 23 % of a core). Not spin either:
            // the CPU is better spent by the senders filling the batch.
            std::thread::sleep(LINGER);
            while batch.len() < CAPTURE_BATCH {
                let room = CAPTURE_BATCH - batch.len();
                match src.read(sh, room, &mut batch, &mut bufs, &mut out.spare) {
                    Ok(0) | Err(_) => break,
                    Ok(_) => {}
                }
            }
        }
        let now = sh.now();
        let verdicts: Vec<_> = {
            let mut f = lock(&sh.fwd);
            batch.iter().map(|c| f.from_local(now, &c.bytes)).collect()
        };
        for (c, v) in batch.drain(..).zip(verdicts) {
            bump(&sh.stats.captured, 1);
            bump(&sh.stats.captured_bytes, c.bytes.len() as u64);
            let Ok(v) = v else { continue };
            match c.vnet {
                None => sh.route(&mut out, v, c.bytes),
                Some(vnet) => sh.route_unfinished(&mut out, v, vnet, c.bytes),
            }
        }
        sh.inject_all(&mut out.inject);
        for (hop, frames) in std::mem::take(&mut out.groups) {
            sh.send_frames(hop, frames);
        }
    }
    debug!("capture thread stopped");
}

/// Hands a quiet thread's buffers back to the kernel: the pages of its
/// receive buffers, its kept buffers, and the allocator's free memory.
fn release_buffers(bufs: &mut [Vec<u8>], out: &mut Outgoing) {
    for b in bufs.iter_mut() {
        if let Err(e) = memory::release(b) {
            debug!(error = %e, "buffer not released");
            return;
        }
    }
    out.spare = Vec::new();
    out.datagram = Vec::new();
    out.pieces = Vec::new();
    memory::trim_heap();
    debug!("quiet: buffers handed back");
}

/// Whether a capture batch is worth lingering for: more than one frame came
/// at once, or the capture is `busy` ([`BusyMeter`]), and together they
/// would not fill a datagram.
fn should_linger(batch: &[Captured], busy: bool) -> bool {
    (batch.len() > 1 || busy) && batch.iter().map(|c| c.bytes.len()).sum::<usize>() < LINGER_FILL
}

/// Reads and drops whatever the bridge forwards to an inject-only tap
/// (hybrid mode): with learning and flooding off on its port, hardly
/// anything.
fn drain_tap(sh: &Shared, tap: &Tap) {
    use nix::poll::{ppoll, PollFd, PollFlags};
    let mut buf = vec![0u8; 2048];
    while !sh.stop.load(Ordering::Relaxed) {
        match tap.recv(&mut buf) {
            Ok(Some(_)) => continue,
            Ok(None) => {}
            Err(e) => {
                debug!(error = %e, "tap drain stopped");
                return;
            }
        }
        let mut fds = [PollFd::new(std::os::fd::AsFd::as_fd(tap), PollFlags::POLLIN)];
        let _ = ppoll(&mut fds, Some(nix::sys::time::TimeSpec::from_duration(Duration::from_secs(1))), None);
    }
}

fn receive_loop(sh: &Shared) {
    use nix::sys::socket::{recvmmsg, MsgFlags, MultiHeaders, SockaddrStorage};
    // Buffers are touched only as far as datagrams fill them.
    let mut bufs: Vec<Vec<u8>> = (0..MAX_BATCH).map(|_| vec![0u8; 65536]).collect();
    let fd = sh.data.as_raw_fd();
    let mut out = Outgoing::default();
    let mut quiet = Quiet::default();
    while !sh.stop.load(Ordering::Relaxed) {
        if quiet.due(Instant::now()) {
            lock(&sh.reassembly).shrink();
            release_buffers(&mut bufs, &mut out);
        }
        // Room for each message's UDP_GRO size. Fresh for every call: nix's
        // recvmmsg (0.29) leaves each header's control length as the last
        // call's kernel set it (0 for a datagram without one), and a
        // reused set would then drop the size of the next coalesced read.
        let mut headers = MultiHeaders::<SockaddrStorage>::preallocate(MAX_BATCH, Some(nix::cmsg_space!(i32)));
        // Whatever is queued, up to the batch, in one call; blocks (up to
        // the socket's read timeout) for the first.
        let got: Vec<(usize, Option<SocketAddr>, Option<usize>)> = {
            let mut iovs: Vec<[std::io::IoSliceMut<'_>; 1]> =
                bufs.iter_mut().map(|b| [std::io::IoSliceMut::new(b)]).collect();
            match recvmmsg(fd, &mut headers, iovs.iter_mut(), MsgFlags::MSG_WAITFORONE, None) {
                Ok(r) => r
                    .map(|m| {
                        let from = m.address.and_then(|a: SockaddrStorage| sockaddr(&a));
                        (m.bytes, from, gro_size(&m))
                    })
                    .collect(),
                Err(nix::errno::Errno::EAGAIN | nix::errno::Errno::EINTR) => continue,
                Err(e) => {
                    debug!(error = %e, "receive failed");
                    std::thread::sleep(Duration::from_millis(10));
                    continue;
                }
            }
        };
        for (i, (n, from, seg)) in got.into_iter().enumerate() {
            let (Some(from), Some(buf)) = (from, bufs.get_mut(i)) else { continue };
            let n = n.min(buf.len());
            quiet.record(n);
            // Datagrams coalesced by GRO: all `seg` bytes long but the last.
            for d in buf[..n].chunks_mut(seg.unwrap_or(n).max(1)) {
                bump(&sh.stats.datagrams_received, 1);
                bump(&sh.stats.bytes_received, d.len() as u64);
                handle_datagram(sh, d, from, &mut out);
            }
        }
        sh.inject_all(&mut out.inject);
        for (hop, frames) in std::mem::take(&mut out.groups) {
            bump(&sh.stats.relayed, frames.len() as u64);
            sh.send_frames(hop, frames);
        }
    }
    debug!("receive thread stopped");
}

/// The size of the datagrams GRO coalesced into one read, if it did.
fn gro_size<S>(m: &nix::sys::socket::RecvMsg<'_, '_, S>) -> Option<usize> {
    use nix::sys::socket::ControlMessageOwned;
    m.cmsgs().ok()?.find_map(|c| match c {
        ControlMessageOwned::UdpGroSegments(s) => usize::try_from(s).ok().filter(|s| *s > 0),
        _ => None,
    })
}

fn sockaddr(a: &nix::sys::socket::SockaddrStorage) -> Option<SocketAddr> {
    if let Some(v4) = a.as_sockaddr_in() {
        return Some(SocketAddr::V4(SocketAddrV4::from(*v4)));
    }
    a.as_sockaddr_in6().map(|v6| SocketAddr::V6(std::net::SocketAddrV6::from(*v6)))
}

/// One datagram from the wire: anything at all. Only an authentic datagram
/// of a known connection from that connection's address is acted on. It
/// is opened (decrypted) in place, and a super-frame injected from there.
fn handle_datagram(sh: &Shared, d: &mut [u8], from: SocketAddr, out: &mut Outgoing) {
    let h = match Header::parse(d) {
        Ok((h, _)) => h,
        Err(_) => {
            bump(&sh.stats.malformed, 1);
            return;
        }
    };
    let conn = match read(&sh.rx).get(&h.conn_uid) {
        Some(c) if c.ip.to_canonical() == from.ip().to_canonical() => c.clone(),
        _ => {
            bump(&sh.stats.unknown, 1);
            return;
        }
    };
    if h.piece {
        handle_piece(sh, h, d, from, out);
        return;
    }
    let opened = match lock(&conn.opener).open_in_place(d) {
        Ok(o) => o,
        Err(e) => {
            bump(&sh.stats.refused, 1);
            debug!(error = %e, %from, "datagram refused");
            return;
        }
    };
    if opened.control {
        match Control::parse(opened.body) {
            Ok(c) => {
                let _ = sh.events.try_send(SleeveEvent::Control { conn_uid: h.conn_uid, seq: c.seq, len: d.len() });
            }
            Err(_) => bump(&sh.stats.malformed, 1),
        }
        return;
    }
    if opened.gso {
        match wire::parse_gso(opened.body) {
            Ok((vnet, f)) => {
                bump(&sh.stats.gso_received, 1);
                sh.deliver_gso(conn.peer, vnet, f, out);
            }
            Err(_) => bump(&sh.stats.malformed, 1),
        }
        return;
    }
    let frames = match wire::parse_frames(opened.body) {
        Ok(f) => f,
        Err(_) => {
            bump(&sh.stats.malformed, 1);
            return;
        }
    };
    if let Deliver::Dataplane(tx) = &sh.out {
        // The dataplane's forwarder decides: deliver, tunnel on, relay.
        for fr in frames {
            let len = fr.bytes.len() as u64;
            let r = tx.try_send(Inbound::Peer { prev: conn.peer, src: fr.src, dst: fr.dst, bytes: fr.bytes });
            sh.delivered(r.map_err(|e| e.to_string()), len);
        }
        return;
    }
    let now = sh.now();
    let verdicts: Vec<_> = {
        let mut f = lock(&sh.fwd);
        frames.iter().map(|fr| f.from_peer(now, conn.peer, fr.src, fr.dst, &fr.bytes)).collect()
    };
    for (fr, v) in frames.into_iter().zip(verdicts) {
        if let Ok(v) = v {
            sh.route(out, v, fr.bytes);
        }
    }
}

/// A piece of a GSO datagram from a known connection's address: kept
/// until its datagram is whole, which then goes where a datagram that came
/// whole goes (opened, authenticated, delivered).
fn handle_piece(sh: &Shared, h: Header, d: &[u8], from: SocketAddr, out: &mut Outgoing) {
    let Some(p) = d.get(HEADER_LEN..).and_then(|b| PieceRef::parse(b).ok()) else {
        bump(&sh.stats.malformed, 1);
        return;
    };
    let done = lock(&sh.reassembly).add(sh.now(), h.conn_uid, h.counter, p);
    match done {
        Ok(None) => {}
        Ok(Some(mut whole)) => {
            match Header::parse(&whole) {
                // Only a GSO datagram goes in pieces (never pieces of pieces).
                Ok((w, _)) if w.gso && !w.piece && w.conn_uid == h.conn_uid && w.counter == h.counter => {
                    bump(&sh.stats.pieces_received, 1);
                    handle_datagram(sh, &mut whole, from, out);
                }
                _ => bump(&sh.stats.malformed, 1),
            }
            lock(&sh.reassembly).recycle(whole);
        }
        Err(e) => {
            bump(&sh.stats.pieces_refused, 1);
            debug!(error = %e, %from, "piece refused");
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn our_udp_socket_is_found_with_its_drop_count() {
        let s = UdpSocket::bind("0.0.0.0:0").expect("bind");
        let port = s.local_addr().expect("addr").port();
        assert_eq!(udp_socket_drops(port), Some(0));
        drop(s);
        assert_eq!(udp_socket_drops(port), None);
    }

    fn captured(len: usize) -> Captured {
        Captured { bytes: vec![0; len], vnet: None }
    }

    #[test]
    fn a_busy_capture_lingers_only_for_small_frames() {
        // A lone frame goes at once, whatever its size.
        assert!(!should_linger(&[captured(60)], false));
        assert!(!should_linger(&[], false));
        // A lone frame of a busy capture waits for company.
        assert!(should_linger(&[captured(60)], true));
        assert!(!should_linger(&[captured(1400)], true));
        // Several small frames, under a datagram's worth: wait for more.
        assert!(should_linger(&[captured(106), captured(106)], false));
        assert!(should_linger(&(0..13).map(|_| captured(106)).collect::<Vec<_>>(), false));
        // A datagram's worth waits already: go.
        assert!(!should_linger(&(0..14).map(|_| captured(106)).collect::<Vec<_>>(), true));
        // MTU-sized frames and super-frames fill datagrams by themselves.
        assert!(!should_linger(&[captured(1390), captured(1390)], true));
        assert!(!should_linger(&[captured(60_000), captured(60)], false));
    }
}
