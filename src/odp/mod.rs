//! The kernel Open vSwitch datapath (ODP) over generic netlink.
//!
//! Layers, bottom up; each depends only on those above it in this list:
//! - [`nla`]: netlink attributes, the TLV codec.
//! - [`frame`]: `nlmsghdr` / `genlmsghdr` / `ovs_header` framing.
//! - [`tunnel`], [`key`], [`action`]: typed flow keys, masks and actions.
//! - [`datapath`], [`vport`], [`flow`], [`packet`]: one module per family.
//! - [`mod@format`]: the `ovs-dpctl dump-flows` text grammar.
//! - [`socket`]: the only module that does I/O (neli); [`probe`] on top of it.
//!
//! Everything but `socket` and `probe` is pure and never panics on input.

pub mod action;
pub mod datapath;
pub mod flow;
pub mod format;
pub mod frame;
pub mod key;
pub mod nla;
pub mod packet;
pub mod probe;
pub mod show;
pub mod socket;
pub mod tunnel;
pub mod vport;

pub use nla::WireError;
