//! Host plumbing over rtnetlink: container veths, addresses, links.
//!
//! Driver code (I/O). Work inside another network namespace happens on a
//! dedicated thread that has entered it, with its own netlink connection.
//!
//! - [`veth`]: a container's veth pair and `ethwe` (and the shared error type).
//! - [`bridge`]: bridge mode for the sleeve: the `weave` bridge and the
//!   `vethwe-bridge`/`vethwe-pcap` capture pair.
//! - [`tap`]: the tap device the sleeve captures and injects on in GSO mode.
//! - [`ethtool`]: netdev features (offloads) over the ethtool netlink family.
//! - [`netns`]: running code inside another network namespace.
//! - [`expose`]: the host's addresses on the overlay, and their NAT rules.
//! - [`garp`]: gratuitous ARP from a container just attached.
//! - [`packet_socket`], [`rx_ring`]: the sleeve's raw capture and injection,
//!   and the capture's receive ring.
//! - [`memory`]: buffers' pages handed back to the kernel when idle.
//! - [`threads`]: what this process's threads wait for in the kernel.

pub mod bridge;
pub mod ethtool;
pub mod expose;
pub mod garp;
pub mod memory;
pub mod netns;
pub mod packet_socket;
pub mod rx_ring;
pub mod tap;
pub mod threads;
pub mod veth;
