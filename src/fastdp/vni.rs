//! The VXLAN network identifier (VNI) as weaver uses it: 24 bits naming the
//! peer that put the frame on the overlay and the peer it is meant for.
//!
//! ```text
//!  23            12 11             0
//! +----------------+----------------+
//! | source ShortId | dest ShortId   |      unicast: source != dest
//! +----------------+----------------+
//! | origin ShortId | origin ShortId |      broadcast: source == dest
//! +----------------+----------------+
//! ```
//!
//! A unicast frame is never tunnelled to the peer that sent it, so a VNI whose
//! two halves are equal is free to mean "broadcast (or flood) originated by
//! this peer". No short ID has to be reserved, which matters because the mesh
//! hands out all 4096 of them. A relay keeps the VNI, so every hop knows the
//! origin and can compute its own children in the origin's broadcast tree.
//!
//! The VNI travels in the kernel's 64-bit `tun_id`, in its low 24 bits;
//! anything above them is an error, never silently truncated.

use std::fmt;

use thiserror::Error;

use crate::mesh::peer::ShortId;

/// A decoded VNI.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct Vni {
    /// The peer that put the frame on the overlay (for a broadcast: its origin).
    pub src: ShortId,
    /// The peer the frame is for; equal to `src` for a broadcast.
    pub dst: ShortId,
}

/// A `tun_id` that is not one of ours.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Error)]
#[error("tunnel id {0:#x} does not fit in a 24-bit VNI")]
pub struct VniError(pub u64);

impl Vni {
    /// The VNI of a unicast frame from `src` to `dst`. Equal IDs make a
    /// broadcast VNI; callers refuse that case before encoding.
    pub fn unicast(src: ShortId, dst: ShortId) -> Vni {
        Vni { src, dst }
    }

    /// The VNI of a broadcast (or flooded) frame originated by `origin`.
    pub fn broadcast(origin: ShortId) -> Vni {
        Vni { src: origin, dst: origin }
    }

    /// Whether this VNI marks a broadcast.
    pub fn is_broadcast(self) -> bool {
        self.src == self.dst
    }

    /// The kernel's `tun_id` for this VNI.
    pub fn tun_id(self) -> u64 {
        (u64::from(self.src.get()) << 12) | u64::from(self.dst.get())
    }

    /// Decodes a `tun_id`.
    pub fn from_tun_id(id: u64) -> Result<Vni, VniError> {
        if id >> 24 != 0 {
            return Err(VniError(id));
        }
        let id = id as u32;
        Ok(Vni { src: ShortId::from_bits(id >> 12), dst: ShortId::from_bits(id) })
    }
}

impl fmt::Display for Vni {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if self.is_broadcast() {
            write!(f, "{:#x} (broadcast from {})", self.tun_id(), self.src.get())
        } else {
            write!(f, "{:#x} ({} -> {})", self.tun_id(), self.src.get(), self.dst.get())
        }
    }
}

#[cfg(test)]
mod tests {
    use proptest::prelude::*;

    use super::*;

    fn sid(v: u32) -> ShortId {
        ShortId::from_bits(v)
    }

    #[test]
    fn layout_is_source_high_destination_low() {
        assert_eq!(Vni::unicast(sid(0x123), sid(0x456)).tun_id(), 0x123456);
        assert_eq!(Vni::from_tun_id(0xabc001).unwrap(), Vni::unicast(sid(0xabc), sid(1)));
        assert_eq!(Vni::broadcast(sid(7)).tun_id(), 0x007007);
    }

    #[test]
    fn equal_halves_mean_broadcast() {
        assert!(Vni::broadcast(sid(0)).is_broadcast());
        assert!(Vni::broadcast(sid(4095)).is_broadcast());
        assert!(!Vni::unicast(sid(1), sid(2)).is_broadcast());
        assert_eq!(Vni::from_tun_id(0xfff_fff).unwrap(), Vni::broadcast(sid(4095)));
    }

    #[test]
    fn ids_over_24_bits_are_refused() {
        assert_eq!(Vni::from_tun_id(1 << 24), Err(VniError(1 << 24)));
        assert_eq!(Vni::from_tun_id(u64::MAX), Err(VniError(u64::MAX)));
    }

    #[test]
    fn displays_both_forms() {
        assert_eq!(Vni::unicast(sid(1), sid(2)).to_string(), "0x1002 (1 -> 2)");
        assert_eq!(Vni::broadcast(sid(3)).to_string(), "0x3003 (broadcast from 3)");
    }

    proptest! {
        #[test]
        fn round_trips(src in 0u32..4096, dst in 0u32..4096) {
            let v = Vni { src: sid(src), dst: sid(dst) };
            prop_assert!(v.tun_id() < 1 << 24);
            prop_assert_eq!(Vni::from_tun_id(v.tun_id()).unwrap(), v);
        }
    }
}
