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
//! [`proto`] holds the prost-generated control-plane messages.
#![deny(unsafe_code)]

pub mod api;
pub mod daemon;
pub mod fastdp;
pub mod mesh;
pub mod odp;
pub mod plumb;

/// Generated from `proto/weaver.proto`.
pub mod proto {
    #![allow(missing_docs, clippy::all)]
    include!(concat!(env!("OUT_DIR"), "/weaver.v1.rs"));
}

/// Default datapath name.
pub const DEFAULT_DATAPATH: &str = "weave";
/// Default control-plane TCP port; VXLAN uses this + 1.
pub const DEFAULT_PORT: u16 = 6783;

#[cfg(test)]
mod tests {
    use prost::Message;

    use super::proto::{frame, Frame, Hello};

    #[test]
    fn control_frames_round_trip() {
        let f = Frame { body: Some(frame::Body::Hello(Hello { magic: 0x7765_6176, min_version: 1, max_version: 1 })) };
        let bytes = f.encode_to_vec();
        assert_eq!(Frame::decode(bytes.as_slice()).unwrap(), f);
        // Garbage is an error, never a panic.
        assert!(Frame::decode(&[0xff, 0xff, 0xff][..]).is_err());
    }
}
