//! weaver: one flat virtual Ethernet across the containers of many Linux
//! hosts, on the kernel's Open vSwitch datapath (ODP).
//!
//! Layers depend downward only:
//! 1. [`odp`]'s wire modules: bytes ⇄ typed netlink attributes, keys, actions
//!    and the four ODP families. Pure; never panic on input.
//! 2. [`odp::format`]: the `ovs-dpctl dump-flows` grammar over those types.
//! 3. [`odp::socket`] / [`odp::probe`]: the only netlink I/O (neli).
//! 4. [`api`]: the daemon's local HTTP API (types shared with `weavectl`).
//! 5. The binaries `weaver` and `weavectl`.
//!
//! The control-plane messages are prost-generated from `proto/*.proto`:
//! `conn.proto` (handshake and framing) and `mesh.proto` (gossip).
#![deny(unsafe_code)]

pub mod api;
pub mod daemon;
pub mod dns;
pub mod fastdp;
pub mod ipam;
pub mod mesh;
pub mod odp;
pub mod plumb;
pub mod sleeve;
pub mod sockopt;

/// Default datapath name.
pub const DEFAULT_DATAPATH: &str = "weave";
/// Default control-plane TCP port; VXLAN uses this + 1.
pub const DEFAULT_PORT: u16 = 6783;
