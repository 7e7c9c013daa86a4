//! The `weaver` daemon: configuration, the datapath it owns, the mesh task,
//! and the API that exposes them.

pub mod config;
pub mod dataplane;
pub mod fastdp;
pub mod mesh;
mod mesh_view;
mod targets;
