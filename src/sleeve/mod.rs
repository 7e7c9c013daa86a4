//! The sleeve: weaver's userspace overlay over UDP 6783, for kernels without
//! a usable fast datapath and for peers that VXLAN cannot reach.
//!
//! This module holds its sans-I/O core, so far:
//! - [`wire`]: the datagram (header, frame records naming source and
//!   destination peers, batching up to the path MTU);
//! - [`seal`]: ChaCha20-Poly1305 sealing with the connection's per-direction
//!   session keys, counter nonces, and authentication before delivery;
//! - [`replay`]: the anti-replay window;
//! - [`oversize`]: frames too big for the path: ICMP "fragmentation
//!   needed" for DF packets, IPv4 fragments for the others;
//! - [`pmtu`]: path-MTU discovery per connection (DF probes, bisection,
//!   re-verification).
//! - [`segment`]: finishing offloaded frames from a packet socket with
//!   virtio-net headers: TCP super-frames cut as software GSO would, partial
//!   checksums completed.
//!
//! - [`forward`]: where a frame goes (MAC learning, routes, broadcast trees);
//! - [`link`]: one connection's UDP path: heartbeats and path-MTU discovery.
//! - [`busy`]: whether the capture is busy enough to batch frames.
//!
//! The driver (capture and injection with pcap on the bridge, the UDP
//! socket) is `daemon::sleeve`.

pub mod busy;
pub mod forward;
pub mod link;
pub mod oversize;
pub mod pieces;
pub mod pmtu;
pub mod replay;
pub mod seal;
pub mod segment;
pub mod wire;
