//! The daemon's local HTTP API on a Unix socket: the types both ends share,
//! the server routes, and the client `weavectl` uses.

pub mod client;
pub mod dns;
pub mod handle;
pub mod ipam;
pub mod server;
pub mod show;
pub mod target;

use serde::{Deserialize, Serialize};

use crate::odp::datapath::Datapath;
use crate::odp::flow::Flow;
use crate::odp::probe::Capability;
use crate::odp::vport::Vport;

/// Default path of the API socket.
pub const DEFAULT_SOCKET: &str = "/run/weave/weaver.sock";

/// `GET /v1/status`.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Status {
    pub version: String,
    /// "fastdp" or "sleeve".
    pub overlay: String,
    pub capability: Capability,
    pub reason: String,
    pub datapath: Option<String>,
    /// The mesh, when the daemon runs one.
    #[serde(default)]
    pub mesh: Option<MeshStatus>,
    /// The fast datapath's upcall handling, when it runs.
    #[serde(default)]
    pub upcalls: Option<crate::daemon::upcalls::UpcallStatsView>,
    /// The sleeve's counters, when it runs.
    #[serde(default)]
    pub sleeve: Option<crate::daemon::sleeve::SleeveStatsView>,
}

/// `POST /v1/stop`.
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
pub struct StopRequest {
    /// Also detach every container and forget the peers and attachments:
    /// the host is left as if weaver had never run.
    #[serde(default)]
    pub reset: bool,
}

/// The mesh part of `weavectl status`.
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
pub struct MeshStatus {
    pub name: String,
    pub nickname: String,
    pub short_id: u16,
    pub encryption: bool,
    pub discovery: bool,
    /// Addresses the connection maker dials, with their state.
    pub targets: Vec<crate::mesh::maker::TargetStatus>,
    /// Connection counts by state ("established", "connecting", "failed").
    pub connections: std::collections::BTreeMap<String, usize>,
    /// Peers in the topology, this one included.
    pub peers: usize,
}

/// One peer of `weavectl status peers`: the topology as seen from here.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct PeerView {
    pub name: String,
    pub nickname: String,
    pub uid: u64,
    pub short_id: u16,
    pub version: u64,
    pub connections: Vec<PeerLinkView>,
}

/// A connection as a peer announces it in the topology.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct PeerLinkView {
    pub name: String,
    pub nickname: String,
    pub addr: String,
    pub outbound: bool,
    pub established: bool,
}

/// One line of `weavectl status connections`.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct ConnectionView {
    /// "outbound" or "inbound".
    pub direction: String,
    pub addr: String,
    /// "connecting", "established" or "failed".
    pub state: String,
    pub peer: Option<String>,
    pub nickname: Option<String>,
    /// "fastdp", "sleeve" or "" before the overlay is chosen.
    pub overlay: String,
    pub encrypted: bool,
    pub mtu: Option<u32>,
    /// Why a connection failed or what it is doing.
    pub info: String,
    /// The fast datapath's heartbeats on this connection.
    #[serde(default)]
    pub health: Option<crate::fastdp::health::HealthView>,
    /// The sleeve's UDP path on this connection.
    #[serde(default)]
    pub sleeve: Option<crate::sleeve::link::LinkView>,
}

/// `POST /v1/connect`.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct ConnectRequest {
    pub addrs: Vec<String>,
    /// Replace the direct targets instead of adding to them.
    #[serde(default)]
    pub replace: bool,
}

/// `POST /v1/attach`: connect a container (network namespace) to the network.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct AttachRequest {
    /// A namespace name (`ip netns`), a PID, or a path like `/proc/PID/ns/net`.
    pub target: String,
    /// Addresses for `ethwe`, e.g. `10.32.1.5/12`.
    pub cidrs: Vec<String>,
    /// The container's DNS name (default: the namespace name).
    #[serde(default)]
    pub name: Option<String>,
}

/// The answer to an attach.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct AttachView {
    pub target: String,
    pub host_ifname: String,
    pub mac: String,
    pub port_no: Option<u32>,
    pub cidrs: Vec<String>,
}

/// `POST /v1/expose` and `/v1/hide`: the host's addresses on the overlay
/// (expose: as for attach; none means one from the default subnet. hide:
/// none means all).
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct ExposeRequest {
    pub cidrs: Vec<String>,
}

/// `GET /v1/dns?name=NAME`.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct DnsQuery {
    /// The name; none for every record.
    pub name: Option<String>,
}

/// `POST /v1/dns/add` and `/v1/dns/remove`.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct DnsChange {
    /// The name (`web`, or `web.weave.local`).
    pub name: String,
    /// Its addresses (remove: none means all of this peer's).
    #[serde(default)]
    pub addrs: Vec<std::net::Ipv4Addr>,
    /// The container they belong to (add: default `weave:manual`).
    #[serde(default)]
    pub container: Option<String>,
}

/// `POST /v1/rmpeer`: take over a dead peer's IPAM space.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct RmPeerRequest {
    /// Its name or nickname.
    pub peer: String,
}

/// `POST /v1/detach`.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct DetachRequest {
    pub target: String,
    /// Only these addresses (the interface stays); none: the whole interface.
    #[serde(default)]
    pub cidrs: Vec<String>,
}

/// The answer to `POST /v1/detach`.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct DetachView {
    pub target: String,
    /// Whether it was attached (detaching what is not is not an error).
    pub was_attached: bool,
    /// The addresses taken off.
    pub removed: Vec<String>,
    /// Whether `ethwe` and its veth were removed.
    pub interface_removed: bool,
}

/// `POST /v1/forget`.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct ForgetRequest {
    pub addrs: Vec<String>,
}

/// `GET /v1/datapath`: one datapath and its ports.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct DatapathView {
    pub datapath: Datapath,
    pub ports: Vec<Vport>,
}

/// `GET /v1/flows`.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct FlowsView {
    /// The datapath the flows belong to.
    pub datapath: String,
    /// The kernel's monotonic clock in ms when the dump was taken, for `used:`.
    pub now_ms: u64,
    pub flows: Vec<Flow>,
}

/// Why an attach (or an expose) failed, by what the caller can do about
/// it: the API answers each kind with its own HTTP status.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum AttachError {
    /// The request is wrong (a bad address, one outside the range): 400.
    #[error("{0}")]
    Invalid(String),
    /// The container or namespace does not exist: 404.
    #[error("{0}")]
    NotFound(String),
    /// It clashes with what is attached or allocated (an address in use,
    /// a container attached already): 409.
    #[error("{0}")]
    Conflict(String),
    /// Not possible now (no reachable IPAM space, the dataplane or mesh
    /// not running): 503.
    #[error("{0}")]
    Unavailable(String),
    /// The kernel refused (netlink, the datapath): 500.
    #[error("{0}")]
    Failed(String),
}

/// Errors come back as JSON with a message.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct ApiError {
    pub error: String,
}

/// CLOCK_MONOTONIC in milliseconds: the clock the kernel reports flow `used` in.
pub fn monotonic_ms() -> u64 {
    match nix::time::clock_gettime(nix::time::ClockId::CLOCK_MONOTONIC) {
        Ok(ts) => (ts.tv_sec() as u64) * 1000 + (ts.tv_nsec() as u64) / 1_000_000,
        Err(_) => 0,
    }
}
