//! Frames the fast datapath hands to the sleeve: for a next hop whose
//! connection the fast datapath cannot carry (its VXLAN heartbeats fail, or
//! the peer runs the sleeve only), flows send packets up with a userspace
//! action instead of a tunnel. Its userdata names the frame's origin and
//! destination peers and the next hop, for the sleeve's frame record:
//!
//! ```text
//! "weaver-sleeve" (13 bytes) | origin (6) | destination (6) | next hop (6)
//! ```

use crate::mesh::peer::PeerName;

const TAG: &[u8] = b"weaver-sleeve";
/// The userdata's length.
pub const USERDATA_LEN: usize = TAG.len() + 18;

/// Where a frame handed to the sleeve goes.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct SleeveOut {
    pub origin: PeerName,
    /// The destination peer; the origin itself for a broadcast.
    pub dst: PeerName,
    pub next_hop: PeerName,
}

fn put(out: &mut Vec<u8>, n: PeerName) {
    out.extend_from_slice(&n.as_u64().to_be_bytes()[2..]);
}

fn get(b: &[u8]) -> PeerName {
    PeerName::from_u64(b.iter().fold(0u64, |a, x| a << 8 | u64::from(*x)))
}

impl SleeveOut {
    pub fn userdata(&self) -> Vec<u8> {
        let mut out = Vec::with_capacity(USERDATA_LEN);
        out.extend_from_slice(TAG);
        put(&mut out, self.origin);
        put(&mut out, self.dst);
        put(&mut out, self.next_hop);
        out
    }

    /// The frame's peers, if the userdata is ours; `None` for anything else.
    pub fn parse(userdata: &[u8]) -> Option<SleeveOut> {
        let rest = userdata.strip_prefix(TAG)?;
        if rest.len() != 18 {
            return None;
        }
        Some(SleeveOut { origin: get(&rest[0..6]), dst: get(&rest[6..12]), next_hop: get(&rest[12..18]) })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    proptest! {
        #[test]
        fn round_trip(o in 0u64..1 << 48, d in 0u64..1 << 48, n in 0u64..1 << 48) {
            let s = SleeveOut { origin: PeerName::from_u64(o), dst: PeerName::from_u64(d), next_hop: PeerName::from_u64(n) };
            let u = s.userdata();
            prop_assert_eq!(u.len(), USERDATA_LEN);
            prop_assert_eq!(SleeveOut::parse(&u), Some(s));
        }

        #[test]
        fn anything_else_is_not_ours(b in proptest::collection::vec(any::<u8>(), 0..40)) {
            if let Some(s) = SleeveOut::parse(&b) {
                prop_assert_eq!(s.userdata(), b);
            }
        }
    }

    #[test]
    fn heartbeat_userdata_is_not_a_sleeve_frame() {
        assert_eq!(SleeveOut::parse(b"weaver-heartbeat"), None);
        assert_eq!(SleeveOut::parse(b"weaver-sleeve"), None);
    }
}
