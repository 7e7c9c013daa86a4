//! The fixed headers of an ODP message: `nlmsghdr`, `genlmsghdr` and
//! `ovs_header`, followed by the family's attributes.
//!
//! Requests go out through neli (see [`crate::odp::socket`]), which writes the
//! `nlmsghdr`; upcalls arrive on a plain socket and are split here, so the
//! whole receive path is pure and fuzzable.

use super::nla::{Result, WireError};

/// `sizeof(struct nlmsghdr)`.
pub const NLMSG_HDRLEN: usize = 16;
/// `genlmsghdr` (4) + `ovs_header` (4).
pub const OVS_HDRLEN: usize = 8;

pub const NLMSG_NOOP: u16 = 1;
pub const NLMSG_ERROR: u16 = 2;
pub const NLMSG_DONE: u16 = 3;
pub const NLMSG_OVERRUN: u16 = 4;

/// The part of an ODP message after `nlmsghdr`: command, version, the
/// datapath's ifindex and the raw attributes.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct OvsFrame {
    pub cmd: u8,
    pub version: u8,
    /// `ovs_header.dp_ifindex`: which datapath (0 where the request names it).
    pub dp_ifindex: i32,
    pub attrs: Vec<u8>,
}

impl OvsFrame {
    pub fn parse(buf: &[u8]) -> Result<Self> {
        if buf.len() < OVS_HDRLEN {
            return Err(WireError::Truncated { what: "genl/ovs header", need: OVS_HDRLEN, have: buf.len() });
        }
        Ok(OvsFrame {
            cmd: buf[0],
            version: buf[1],
            dp_ifindex: i32::from_ne_bytes([buf[4], buf[5], buf[6], buf[7]]),
            attrs: buf[OVS_HDRLEN..].to_vec(),
        })
    }

    pub fn buffer_len(&self) -> usize {
        OVS_HDRLEN + self.attrs.len()
    }

    pub fn emit(&self, out: &mut Vec<u8>) {
        out.extend_from_slice(&[self.cmd, self.version, 0, 0]);
        out.extend_from_slice(&self.dp_ifindex.to_ne_bytes());
        out.extend_from_slice(&self.attrs);
    }
}

/// One netlink message, borrowed from a receive buffer.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct NlMsg<'a> {
    pub kind: u16,
    pub flags: u16,
    pub seq: u32,
    pub pid: u32,
    pub payload: &'a [u8],
}

impl NlMsg<'_> {
    /// For `NLMSG_ERROR`: the (negative) errno, 0 for an ACK.
    pub fn error_code(&self) -> Result<i32> {
        if self.payload.len() < 4 {
            return Err(WireError::Truncated { what: "nlmsgerr", need: 4, have: self.payload.len() });
        }
        Ok(i32::from_ne_bytes([self.payload[0], self.payload[1], self.payload[2], self.payload[3]]))
    }
}

/// Splits a datagram from a netlink socket into its messages.
pub fn split_messages(mut buf: &[u8]) -> impl Iterator<Item = Result<NlMsg<'_>>> {
    let mut failed = false;
    std::iter::from_fn(move || {
        if failed || buf.is_empty() {
            return None;
        }
        if buf.len() < NLMSG_HDRLEN {
            failed = true;
            return Some(Err(WireError::Truncated { what: "nlmsghdr", need: NLMSG_HDRLEN, have: buf.len() }));
        }
        let len = u32::from_ne_bytes([buf[0], buf[1], buf[2], buf[3]]) as usize;
        if len < NLMSG_HDRLEN || len > buf.len() {
            failed = true;
            return Some(Err(WireError::BadHeader { what: "nlmsghdr", len, remaining: buf.len() }));
        }
        let msg = NlMsg {
            kind: u16::from_ne_bytes([buf[4], buf[5]]),
            flags: u16::from_ne_bytes([buf[6], buf[7]]),
            seq: u32::from_ne_bytes([buf[8], buf[9], buf[10], buf[11]]),
            pid: u32::from_ne_bytes([buf[12], buf[13], buf[14], buf[15]]),
            payload: &buf[NLMSG_HDRLEN..len],
        };
        buf = &buf[super::nla::align(len).min(buf.len())..];
        Some(Ok(msg))
    })
}

/// Builds a whole netlink message around a frame (used by tests, fuzz seeds
/// and the upcall path's own tests).
pub fn emit_message(kind: u16, flags: u16, seq: u32, pid: u32, frame: &OvsFrame) -> Vec<u8> {
    let len = NLMSG_HDRLEN + frame.buffer_len();
    let mut out = Vec::with_capacity(len);
    out.extend_from_slice(&(len as u32).to_ne_bytes());
    out.extend_from_slice(&kind.to_ne_bytes());
    out.extend_from_slice(&flags.to_ne_bytes());
    out.extend_from_slice(&seq.to_ne_bytes());
    out.extend_from_slice(&pid.to_ne_bytes());
    frame.emit(&mut out);
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    proptest! {
        #[test]
        fn frames_round_trip(cmd: u8, version: u8, ifi: i32, attrs in proptest::collection::vec(any::<u8>(), 0..64)) {
            let f = OvsFrame { cmd, version, dp_ifindex: ifi, attrs: attrs.iter().copied().chain(std::iter::repeat_n(0, (4 - attrs.len() % 4) % 4)).collect() };
            let m = emit_message(30, 0, 1, 2, &f);
            let msgs: Vec<_> = split_messages(&m).collect::<Result<_>>().unwrap();
            prop_assert_eq!(msgs.len(), 1);
            prop_assert_eq!(OvsFrame::parse(msgs[0].payload).unwrap(), f);
        }

        #[test]
        fn splitting_garbage_never_panics(b in proptest::collection::vec(any::<u8>(), 0..128)) {
            for m in split_messages(&b).flatten() { let _ = OvsFrame::parse(m.payload); let _ = m.error_code(); }
        }
    }
}
