//! Host plumbing over rtnetlink: container veths, addresses, links.
//!
//! Driver code (I/O). Work inside another network namespace happens on a
//! dedicated thread that has entered it, with its own netlink connection.

pub mod veth;
