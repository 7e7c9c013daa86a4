//! The sleeve's datagram on UDP 6783: a fixed header naming the connection
//! and a per-direction counter, then a body of one or more Ethernet frames,
//! each with the peers it goes from and to (so relays can forward it over
//! several hops). Sealed, the body is AEAD ciphertext (see [`super::seal`]).
//!
//! ```text
//! header (20 bytes, big-endian; the AEAD's associated data when sealed)
//!   0  u8   version, 1
//!   1  u8   flags: bit 0 sealed, bit 1 control, bit 2 GSO, bit 3 piece
//!             (alone); others must be 0
//!   2  u16  reserved, 0
//!   4  u64  connection UID (both ends know it; selects the keys)
//!  12  u64  counter: one per datagram and direction, never reused
//! body, plaintext: repeated
//!   6 bytes source peer name | 6 bytes destination peer name | u16 length | frame
//!   (destination == source: a broadcast originated by the source)
//! body of a GSO datagram (flag bit 2; only to peers that offer
//! `sleeve-gso`), plaintext: one TCP super-frame, whole
//!   virtio_net_hdr (10 bytes: GSO type and size, checksum start and offset)
//!   | one frame record as above
//!   (sent without don't-fragment: the underlay's IP fragments carry it)
//! a piece datagram (flag piece only; only to peers that offer
//!   `sleeve-pieces`): the header, never sealed, with the counter of the
//!   GSO datagram it is a piece of, then
//!   u16 index | u16 count | u32 offset | u32 total | bytes
//!   Together the pieces' bytes, at their offsets, are that whole GSO
//!   datagram (header, sealed body) of `total` bytes: it is opened, and
//!   authenticated, once put together, as if it had come whole. All pieces
//!   but the last are one size, sent with UDP GSO: one system call, and one
//!   buffer in the kernel, for the lot, each piece within the path MTU
//!   (where the whole datagram would leave it to IPv4 fragments)
//! body of a control datagram (flag bit 1), plaintext:
//!   u8 kind (1 heartbeat, 2 path-MTU probe) | u64 sequence | padding
//!   (acknowledged over the TCP control connection with the size that arrived)
//! body, sealed: ciphertext of the plaintext body || 16-byte tag
//! ```

use thiserror::Error;

use crate::mesh::peer::PeerName;

pub const VERSION: u8 = 1;
pub const HEADER_LEN: usize = 20;
/// Per frame in the body: two peer names and a length.
pub const FRAME_OVERHEAD: usize = 14;
const FLAG_SEALED: u8 = 1;
const FLAG_CONTROL: u8 = 2;
const FLAG_GSO: u8 = 4;
const FLAG_PIECE: u8 = 8;
/// The piece header at the start of a piece datagram's body.
pub const PIECE_HDR: usize = 12;
/// The most pieces one datagram is cut into (64 KB in pieces of 256 bytes).
pub const MAX_PIECES: u16 = 256;
/// The longest datagram that goes in pieces (a UDP payload's limit).
pub const MAX_PIECED: usize = u16::MAX as usize;
/// The virtio_net_hdr at the start of a GSO body.
pub const VNET_LEN: usize = 10;
/// The shortest control body: kind and sequence number.
pub const CONTROL_LEN: usize = 9;

/// The datagram header.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Header {
    pub sealed: bool,
    /// The body is a control message (a heartbeat or probe), not frames.
    pub control: bool,
    /// The body is one GSO super-frame with its virtio_net_hdr.
    pub gso: bool,
    /// A piece of a GSO datagram, whose counter this header carries (no
    /// other flag is set).
    pub piece: bool,
    pub conn_uid: u64,
    pub counter: u64,
}

/// One Ethernet frame in a datagram.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Frame {
    pub src: PeerName,
    /// The destination peer; equal to `src` for a broadcast.
    pub dst: PeerName,
    pub bytes: Vec<u8>,
}

/// A frame record whose frame is borrowed (from a receive buffer, or a
/// capture's), not copied.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct FrameRef<'a> {
    pub src: PeerName,
    pub dst: PeerName,
    pub bytes: &'a [u8],
}

impl Frame {
    pub fn borrowed(&self) -> FrameRef<'_> {
        FrameRef { src: self.src, dst: self.dst, bytes: &self.bytes }
    }
}

impl FrameRef<'_> {
    pub fn to_owned(self) -> Frame {
        Frame { src: self.src, dst: self.dst, bytes: self.bytes.to_vec() }
    }
}

#[derive(Clone, Debug, PartialEq, Eq, Error)]
pub enum WireError {
    #[error("datagram of {0} bytes is shorter than the header")]
    Short(usize),
    #[error("datagram version {0} is not supported")]
    Version(u8),
    #[error("unknown header flags {0:#04x}")]
    Flags(u8),
    #[error("frame record truncated at offset {0}")]
    Truncated(usize),
    #[error("empty frame at offset {0}")]
    EmptyFrame(usize),
    #[error("more than one frame in a GSO body (after offset {0})")]
    Trailing(usize),
    #[error("bad piece: {0}")]
    Piece(&'static str),
    #[error("unknown control message kind {0}")]
    ControlKind(u8),
    #[error("a frame of {len} bytes does not fit a datagram body of {max}")]
    TooBig { len: usize, max: usize },
}

impl Header {
    pub fn emit(&self, out: &mut Vec<u8>) {
        out.extend_from_slice(&self.bytes());
    }

    /// The header as it goes on the wire.
    pub fn bytes(&self) -> [u8; HEADER_LEN] {
        let mut b = [0u8; HEADER_LEN];
        b[0] = VERSION;
        b[1] = if self.sealed { FLAG_SEALED } else { 0 }
            | if self.control { FLAG_CONTROL } else { 0 }
            | if self.gso { FLAG_GSO } else { 0 }
            | if self.piece { FLAG_PIECE } else { 0 };
        b[4..12].copy_from_slice(&self.conn_uid.to_be_bytes());
        b[12..20].copy_from_slice(&self.counter.to_be_bytes());
        b
    }

    /// Splits a datagram into its header and body.
    pub fn parse(d: &[u8]) -> Result<(Header, &[u8]), WireError> {
        if d.len() < HEADER_LEN {
            return Err(WireError::Short(d.len()));
        }
        if d[0] != VERSION {
            return Err(WireError::Version(d[0]));
        }
        let both = FLAG_CONTROL | FLAG_GSO;
        let f = d[1];
        if f & !(FLAG_SEALED | both | FLAG_PIECE) != 0
            || f & both == both
            || (f & FLAG_PIECE != 0 && f != FLAG_PIECE)
            || d[2] != 0
            || d[3] != 0
        {
            return Err(WireError::Flags(f));
        }
        let be64 = |b: &[u8]| b.iter().fold(0u64, |a, x| a << 8 | u64::from(*x));
        let h = Header {
            sealed: d[1] & FLAG_SEALED != 0,
            control: d[1] & FLAG_CONTROL != 0,
            gso: d[1] & FLAG_GSO != 0,
            piece: d[1] & FLAG_PIECE != 0,
            conn_uid: be64(&d[4..12]),
            counter: be64(&d[12..20]),
        };
        Ok((h, &d[HEADER_LEN..]))
    }
}

/// Appends the body of a GSO datagram to `out`: the super-frame's
/// virtio_net_hdr and its record (written where it will be sealed, so a
/// buffer kept by the caller serves every super-frame).
pub fn emit_gso_into(vnet: &[u8; VNET_LEN], f: FrameRef<'_>, out: &mut Vec<u8>) -> Result<(), WireError> {
    let len = u16::try_from(f.bytes.len()).map_err(|_| WireError::TooBig { len: f.bytes.len(), max: 65535 })?;
    if f.bytes.is_empty() {
        return Err(WireError::EmptyFrame(VNET_LEN));
    }
    out.reserve(VNET_LEN + FRAME_OVERHEAD + f.bytes.len());
    out.extend_from_slice(vnet);
    put_name(out, f.src);
    put_name(out, f.dst);
    out.extend_from_slice(&len.to_be_bytes());
    out.extend_from_slice(f.bytes);
    Ok(())
}

/// Parses the body of a GSO datagram: exactly one record after the header,
/// borrowed from the body (a super-frame is not copied).
pub fn parse_gso(body: &[u8]) -> Result<([u8; VNET_LEN], FrameRef<'_>), WireError> {
    let vnet: [u8; VNET_LEN] = body.get(..VNET_LEN).and_then(|b| b.try_into().ok()).ok_or(WireError::Truncated(0))?;
    let rest = &body[VNET_LEN..];
    if rest.is_empty() {
        return Err(WireError::Truncated(VNET_LEN));
    }
    let (f, after) = record(rest, VNET_LEN)?;
    if !after.is_empty() {
        return Err(WireError::Trailing(VNET_LEN));
    }
    Ok((vnet, f))
}

/// One piece of a GSO datagram ([`Header::piece`]), borrowed from its own.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct PieceRef<'a> {
    pub index: u16,
    pub count: u16,
    /// Where `bytes` go in the whole datagram.
    pub offset: u32,
    /// The whole datagram's length.
    pub total: u32,
    pub bytes: &'a [u8],
}

impl PieceRef<'_> {
    /// Appends the piece header and bytes to a piece datagram.
    pub fn emit(&self, out: &mut Vec<u8>) {
        out.extend_from_slice(&self.header());
        out.extend_from_slice(self.bytes);
    }

    /// The piece header.
    pub fn header(&self) -> [u8; PIECE_HDR] {
        let mut h = [0u8; PIECE_HDR];
        h[0..2].copy_from_slice(&self.index.to_be_bytes());
        h[2..4].copy_from_slice(&self.count.to_be_bytes());
        h[4..8].copy_from_slice(&self.offset.to_be_bytes());
        h[8..12].copy_from_slice(&self.total.to_be_bytes());
        h
    }

    /// The piece after a piece datagram's header, checked for sense
    /// on its own (whether it agrees with its siblings is the
    /// reassembler's business).
    pub fn parse(body: &[u8]) -> Result<PieceRef<'_>, WireError> {
        let (h, bytes) = body.split_first_chunk::<PIECE_HDR>().ok_or(WireError::Truncated(0))?;
        let p = PieceRef {
            index: u16::from_be_bytes([h[0], h[1]]),
            count: u16::from_be_bytes([h[2], h[3]]),
            offset: u32::from_be_bytes([h[4], h[5], h[6], h[7]]),
            total: u32::from_be_bytes([h[8], h[9], h[10], h[11]]),
            bytes,
        };
        if p.count == 0 || p.count > MAX_PIECES || p.index >= p.count {
            return Err(WireError::Piece("index out of its count"));
        }
        if p.bytes.is_empty() {
            return Err(WireError::Piece("empty"));
        }
        if p.total as usize > MAX_PIECED || p.offset as usize + p.bytes.len() > p.total as usize {
            return Err(WireError::Piece("beyond the body's length"));
        }
        Ok(p)
    }
}

/// How a datagram of `total` bytes is cut into pieces of at most `max`
/// bytes: all but the last `max` long. None when that takes more than
/// [`MAX_PIECES`] (or `max` is 0, or the datagram is too long or empty).
pub fn plan_pieces(total: usize, max: usize) -> Option<impl ExactSizeIterator<Item = std::ops::Range<usize>>> {
    if max == 0 || total == 0 || total > MAX_PIECED || total.div_ceil(max) > usize::from(MAX_PIECES) {
        return None;
    }
    Some((0..total.div_ceil(max)).map(move |i| i * max..((i + 1) * max).min(total)))
}

fn name(b: &[u8]) -> PeerName {
    PeerName::from_u64(b.iter().fold(0u64, |a, x| a << 8 | u64::from(*x)))
}

fn put_name(out: &mut Vec<u8>, n: PeerName) {
    out.extend_from_slice(&n.as_u64().to_be_bytes()[2..]);
}

/// What a control datagram carries.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum ControlKind {
    /// Liveness: the UDP path works at all.
    Heartbeat,
    /// Path-MTU discovery: a datagram of exactly the size being tried.
    Probe,
}

/// A control message: its kind and sequence number (the padding that makes
/// a probe its size is not kept).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Control {
    pub kind: ControlKind,
    pub seq: u64,
}

impl Control {
    /// The plaintext body, padded with zeros to `len` bytes (at least [`CONTROL_LEN`]).
    pub fn emit(&self, len: usize) -> Vec<u8> {
        let mut out = Vec::with_capacity(len.max(CONTROL_LEN));
        out.push(match self.kind {
            ControlKind::Heartbeat => 1,
            ControlKind::Probe => 2,
        });
        out.extend_from_slice(&self.seq.to_be_bytes());
        out.resize(len.max(CONTROL_LEN), 0);
        out
    }

    pub fn parse(body: &[u8]) -> Result<Control, WireError> {
        if body.len() < CONTROL_LEN {
            return Err(WireError::Truncated(0));
        }
        let kind = match body[0] {
            1 => ControlKind::Heartbeat,
            2 => ControlKind::Probe,
            k => return Err(WireError::ControlKind(k)),
        };
        let mut seq = [0u8; 8];
        seq.copy_from_slice(&body[1..9]);
        Ok(Control { kind, seq: u64::from_be_bytes(seq) })
    }
}

/// Appends one frame record to a plaintext body.
pub fn emit_frame(out: &mut Vec<u8>, f: &Frame) {
    put_name(out, f.src);
    put_name(out, f.dst);
    out.extend_from_slice(&(f.bytes.len() as u16).to_be_bytes());
    out.extend_from_slice(&f.bytes);
}

/// The frames of a plaintext body, in order.
pub fn parse_frames(mut body: &[u8]) -> Result<Vec<Frame>, WireError> {
    let total = body.len();
    let mut out = Vec::new();
    while !body.is_empty() {
        let (f, rest) = record(body, total - body.len())?;
        out.push(f.to_owned());
        body = rest;
    }
    Ok(out)
}

/// The frame record at the start of `body` (at offset `at` of the whole
/// body, for errors), borrowed, and what follows it.
fn record(body: &[u8], at: usize) -> Result<(FrameRef<'_>, &[u8]), WireError> {
    if body.len() < FRAME_OVERHEAD {
        return Err(WireError::Truncated(at));
    }
    let len = usize::from(u16::from_be_bytes([body[12], body[13]]));
    if len == 0 {
        return Err(WireError::EmptyFrame(at));
    }
    if body.len() < FRAME_OVERHEAD + len {
        return Err(WireError::Truncated(at));
    }
    let f = FrameRef {
        src: name(&body[0..6]),
        dst: name(&body[6..12]),
        bytes: &body[FRAME_OVERHEAD..FRAME_OVERHEAD + len],
    };
    Ok((f, &body[FRAME_OVERHEAD + len..]))
}

/// Packs frames, in order, into as few plaintext bodies as fit `max_body`
/// bytes each (greedy: order is kept, so a flow's frames stay in sequence).
/// A frame that cannot fit even alone is refused: the caller answers it
/// (ICMP "fragmentation needed" for an IPv4 frame with DF, or fragments it).
pub fn pack(frames: &[Frame], max_body: usize) -> Result<Vec<Vec<u8>>, WireError> {
    let mut bodies: Vec<Vec<u8>> = Vec::new();
    let mut cur = Vec::new();
    for f in frames {
        let need = FRAME_OVERHEAD + f.bytes.len();
        if need > max_body || f.bytes.is_empty() || f.bytes.len() > usize::from(u16::MAX) {
            return Err(WireError::TooBig { len: f.bytes.len(), max: max_body.saturating_sub(FRAME_OVERHEAD) });
        }
        if cur.len() + need > max_body {
            bodies.push(std::mem::take(&mut cur));
        }
        emit_frame(&mut cur, f);
    }
    if !cur.is_empty() {
        bodies.push(cur);
    }
    Ok(bodies)
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    fn frame(src: u64, dst: u64, len: usize) -> Frame {
        Frame { src: PeerName::from_u64(src), dst: PeerName::from_u64(dst), bytes: vec![0xab; len] }
    }

    #[test]
    fn header_round_trip_and_refusals() {
        let h = Header {
            sealed: true,
            control: false,
            gso: false,
            piece: false,
            conn_uid: 0x0102030405060708,
            counter: 42,
        };
        let mut d = Vec::new();
        h.emit(&mut d);
        d.extend_from_slice(b"body");
        assert_eq!(Header::parse(&d), Ok((h, &b"body"[..])));
        assert_eq!(Header::parse(&d[..5]), Err(WireError::Short(5)));
        let mut v = d.clone();
        v[0] = 2;
        assert_eq!(Header::parse(&v), Err(WireError::Version(2)));
        let mut v = d.clone();
        v[1] = 0x80;
        assert_eq!(Header::parse(&v), Err(WireError::Flags(0x80)));
        // Control and GSO at once mean nothing.
        let mut v = d.clone();
        v[1] = 0x06;
        assert_eq!(Header::parse(&v), Err(WireError::Flags(0x06)));
        // A piece's header carries no other flag.
        for f in [0x09, 0x0a, 0x0c, 0x0d] {
            let mut v = d.clone();
            v[1] = f;
            assert_eq!(Header::parse(&v), Err(WireError::Flags(f)));
        }
        let mut v = d.clone();
        v[1] = 0x08;
        let (p, _) = Header::parse(&v).unwrap();
        assert!(p.piece && !p.sealed && !p.gso && !p.control);
    }

    #[test]
    fn pieces_cover_the_body_and_refuse_nonsense() {
        let ranges: Vec<_> = plan_pieces(10_000, 1400).unwrap().collect();
        assert_eq!(ranges.len(), 8);
        assert!(ranges[..7].iter().all(|r| r.len() == 1400));
        assert_eq!(ranges[7], 9800..10_000);
        assert!(plan_pieces(0, 1400).is_none());
        assert!(plan_pieces(10, 0).is_none());
        assert!(plan_pieces(MAX_PIECED + 1, 1400).is_none());
        assert!(plan_pieces(60_000, 200).is_none(), "300 pieces");
        assert_eq!(plan_pieces(60_000, 1400).unwrap().count(), 43);
        let p = PieceRef { index: 2, count: 3, offset: 2800, total: 3000, bytes: &[7u8; 200] };
        let mut b = Vec::new();
        p.emit(&mut b);
        assert_eq!(b.len(), PIECE_HDR + 200);
        assert_eq!(PieceRef::parse(&b), Ok(p));
        assert_eq!(PieceRef::parse(&b[..PIECE_HDR]), Err(WireError::Piece("empty")));
        assert_eq!(PieceRef::parse(&b[..5]), Err(WireError::Truncated(0)));
        let bad = |f: &dyn Fn(&mut PieceRef)| {
            let mut q = p;
            f(&mut q);
            let mut b = Vec::new();
            q.emit(&mut b);
            PieceRef::parse(&b).is_err()
        };
        assert!(bad(&|q| q.index = 3));
        assert!(bad(&|q| q.count = 0));
        assert!(bad(&|q| q.count = MAX_PIECES + 1));
        assert!(bad(&|q| q.offset = 2801));
        assert!(bad(&|q| q.total = MAX_PIECED as u32 + 1));
    }

    #[test]
    fn gso_bodies_carry_one_record_after_the_vnet_header() {
        let vnet = [1, 1, 66, 0, 0xa8, 5, 34, 0, 16, 0];
        let f = frame(1, 2, 60_000);
        let emit_gso = |vnet: &[u8; VNET_LEN], f: &Frame| {
            let mut b = Vec::new();
            emit_gso_into(vnet, f.borrowed(), &mut b).map(|()| b)
        };
        let body = emit_gso(&vnet, &f).unwrap();
        assert_eq!(body.len(), VNET_LEN + FRAME_OVERHEAD + 60_000);
        assert_eq!(parse_gso(&body), Ok((vnet, f.borrowed())));
        assert!(parse_gso(&body[..5]).is_err());
        assert!(parse_gso(&body[..body.len() - 1]).is_err());
        let mut two = body.clone();
        emit_frame(&mut two, &frame(1, 2, 10));
        assert_eq!(parse_gso(&two), Err(WireError::Trailing(VNET_LEN)));
        assert!(emit_gso(&vnet, &frame(1, 2, 70_000)).is_err());
        assert!(emit_gso(&vnet, &frame(1, 2, 0)).is_err());
    }

    #[test]
    fn packing_respects_the_size_and_refuses_giants() {
        let fs: Vec<_> = (0..10).map(|i| frame(1, 2, 100 + i)).collect();
        let bodies = pack(&fs, 400).unwrap();
        assert!(bodies.iter().all(|b| b.len() <= 400));
        let back: Vec<Frame> = bodies.iter().flat_map(|b| parse_frames(b).unwrap()).collect();
        assert_eq!(back, fs);
        assert_eq!(pack(&[frame(1, 2, 1500)], 1000), Err(WireError::TooBig { len: 1500, max: 986 }));
        assert!(pack(&[frame(1, 2, 0)], 1000).is_err());
    }

    #[test]
    fn truncated_bodies_are_refused() {
        let mut b = Vec::new();
        emit_frame(&mut b, &frame(1, 2, 10));
        assert_eq!(parse_frames(&b[..b.len() - 1]), Err(WireError::Truncated(0)));
        assert_eq!(parse_frames(&b[..5]), Err(WireError::Truncated(0)));
    }

    fn arb_frame() -> impl Strategy<Value = Frame> {
        (0u64..1 << 48, 0u64..1 << 48, proptest::collection::vec(any::<u8>(), 1..300)).prop_map(|(s, d, bytes)| Frame {
            src: PeerName::from_u64(s),
            dst: PeerName::from_u64(d),
            bytes,
        })
    }

    proptest! {
        #[test]
        fn pieces_round_trip(index in 0u16..MAX_PIECES, extra in 0u16..10, offset in 0u32..70_000, bytes in proptest::collection::vec(any::<u8>(), 1..100)) {
            let p = PieceRef { index, count: (index + 1 + extra).min(MAX_PIECES), offset, total: offset + bytes.len() as u32, bytes: &bytes };
            let mut b = Vec::new();
            p.emit(&mut b);
            let back = PieceRef::parse(&b);
            if p.total as usize <= MAX_PIECED {
                prop_assert_eq!(back, Ok(p));
            } else {
                prop_assert!(back.is_err());
            }
        }

        #[test]
        fn pack_then_parse_is_identity(fs in proptest::collection::vec(arb_frame(), 0..20), max in 320usize..2000) {
            let bodies = pack(&fs, max).unwrap();
            prop_assert!(bodies.iter().all(|b| b.len() <= max && !b.is_empty()));
            let back: Vec<Frame> = bodies.iter().flat_map(|b| parse_frames(b).unwrap()).collect();
            prop_assert_eq!(back, fs);
        }

        #[test]
        fn header_and_control_round_trip(sealed: bool, control: bool, gso: bool, piece: bool, conn_uid: u64, counter: u64,
                                         probe: bool, seq: u64, len in 0usize..2000) {
            let gso = gso && !control;
            let h = if piece {
                Header { sealed: false, control: false, gso: false, piece, conn_uid, counter }
            } else {
                Header { sealed, control, gso, piece, conn_uid, counter }
            };
            let mut d = Vec::new();
            h.emit(&mut d);
            let c = Control { kind: if probe { ControlKind::Probe } else { ControlKind::Heartbeat }, seq };
            let body = c.emit(len);
            prop_assert_eq!(body.len(), len.max(CONTROL_LEN));
            d.extend_from_slice(&body);
            let (back, b) = Header::parse(&d).unwrap();
            prop_assert_eq!(back, h);
            prop_assert_eq!(Control::parse(b).unwrap(), c);
        }

        #[test]
        fn parsing_never_panics(d in proptest::collection::vec(any::<u8>(), 0..200)) {
            if let Ok((_, body)) = Header::parse(&d) {
                let _ = parse_frames(body);
                let _ = Control::parse(body);
                let _ = PieceRef::parse(body);
            }
            let _ = parse_frames(&d);
        }
    }
}
