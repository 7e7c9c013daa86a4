//! The `weaver` daemon: configuration, the datapath it owns, the mesh task,
//! and the API that exposes them.

pub mod attachments;
pub mod bridged;
pub mod config;
pub mod config_file;
pub mod dataplane;
pub mod dns;
pub mod expose;
pub mod fastdp;
pub mod ipam;
pub mod mesh;
mod mesh_view;
pub mod pmtu;
pub mod sleeve;
pub mod store;
mod targets;
pub mod upcalls;
