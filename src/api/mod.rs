//! The daemon's local HTTP API on a Unix socket: the types both ends share,
//! the server routes, and the client `weavectl` uses.

pub mod client;
pub mod server;

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
