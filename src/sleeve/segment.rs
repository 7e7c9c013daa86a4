//! Finishing offloaded frames, as pure logic. A packet socket with
//! `PACKET_VNET_HDR` hands over each frame as the kernel holds it: possibly a
//! TCP "super-frame" of up to 64 KB that the NIC was meant to segment, and
//! possibly with a checksum that the NIC was meant to complete. The sleeve
//! carries frames to peers whose path takes only ordinary ones, so it does
//! what the kernel's software GSO (`tcp_gso_segment`, `inet_gso_segment`,
//! `ipv6_gso_segment`) and `skb_checksum_help` would have done: cut the
//! super-frame into segments of at most `gso_size` payload bytes and give
//! every frame complete checksums.
//!
//! The input is the `virtio_net_hdr` that came with the frame ([`VnetHdr`])
//! and the Ethernet frame itself; the output, [`finish`], is finished
//! Ethernet frames. Nothing here panics on input: anything the kernel would
//! not have produced is a [`SegmentError`].

use thiserror::Error;

const ETH_HLEN: usize = 14;
const VLAN_HLEN: usize = 4;
const ETH_P_IP: u16 = 0x0800;
const ETH_P_IPV6: u16 = 0x86dd;
const ETH_P_8021Q: u16 = 0x8100;
const IPV6_HLEN: usize = 40;
const IPPROTO_TCP: u8 = 6;
const IPPROTO_UDP: u8 = 17;
const TCP_MIN_HLEN: usize = 20;
const TCP_FIN: u8 = 0x01;
const TCP_PSH: u8 = 0x08;
const TCP_CWR: u8 = 0x80;
/// Offset of the checksum in a TCP header.
const TCP_CSUM: usize = 16;

/// The virtio_net_hdr that comes with a captured frame (or goes with an
/// injected one): which offloads the frame still needs.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct VnetHdr {
    /// [`VnetHdr::F_NEEDS_CSUM`] and others (others are ignored here).
    pub flags: u8,
    /// One of the `GSO_*` constants, possibly with [`VnetHdr::GSO_ECN`].
    pub gso_type: u8,
    /// Length of the headers (a hint; not relied on here).
    pub hdr_len: u16,
    /// Payload bytes per segment, for a GSO frame.
    pub gso_size: u16,
    /// Where the checksummed range starts, with `F_NEEDS_CSUM`.
    pub csum_start: u16,
    /// Where, from `csum_start`, the checksum goes, with `F_NEEDS_CSUM`.
    pub csum_offset: u16,
}

impl VnetHdr {
    /// Bytes on the wire (the header without `num_buffers`).
    pub const LEN: usize = 10;
    /// The checksum at `csum_start + csum_offset` holds only the
    /// pseudo-header sum; the rest is still to be summed.
    pub const F_NEEDS_CSUM: u8 = 1;
    /// Not a super-frame.
    pub const GSO_NONE: u8 = 0;
    /// A TCP over IPv4 super-frame.
    pub const GSO_TCPV4: u8 = 1;
    /// A UDP super-frame to be IP-fragmented (UFO); not supported here.
    pub const GSO_UDP: u8 = 3;
    /// A TCP over IPv6 super-frame.
    pub const GSO_TCPV6: u8 = 4;
    /// The TCP super-frame uses ECN (CWR on its first segment only).
    pub const GSO_ECN: u8 = 0x80;

    /// Reads the header from the start of `b`. The fields are in the host's
    /// byte order, as a packet socket writes them (legacy virtio: little
    /// endian on x86 and on little-endian ARM).
    pub fn parse(b: &[u8]) -> Result<VnetHdr, SegmentError> {
        let b: &[u8; Self::LEN] = b.get(..Self::LEN).and_then(|b| b.try_into().ok()).ok_or(SegmentError::Truncated)?;
        let u16_at = |i: usize| u16::from_ne_bytes([b[i], b[i + 1]]);
        Ok(VnetHdr {
            flags: b[0],
            gso_type: b[1],
            hdr_len: u16_at(2),
            gso_size: u16_at(4),
            csum_start: u16_at(6),
            csum_offset: u16_at(8),
        })
    }

    /// The header as bytes, the inverse of [`VnetHdr::parse`].
    pub fn emit(&self) -> [u8; Self::LEN] {
        let mut b = [0u8; Self::LEN];
        b[0] = self.flags;
        b[1] = self.gso_type;
        b[2..4].copy_from_slice(&self.hdr_len.to_ne_bytes());
        b[4..6].copy_from_slice(&self.gso_size.to_ne_bytes());
        b[6..8].copy_from_slice(&self.csum_start.to_ne_bytes());
        b[8..10].copy_from_slice(&self.csum_offset.to_ne_bytes());
        b
    }

    fn needs_csum(&self) -> bool {
        self.flags & Self::F_NEEDS_CSUM != 0
    }
}

/// Why a frame could not be finished.
#[derive(Debug, Error, PartialEq, Eq)]
pub enum SegmentError {
    /// The bytes end before the headers they announce.
    #[error("truncated frame or header")]
    Truncated,
    /// A super-frame whose Ethernet payload is not IPv4 or IPv6.
    #[error("not IP (ethertype {0:#06x})")]
    NotIp(u16),
    /// A super-frame whose IP payload is not TCP.
    #[error("not TCP")]
    NotTcp,
    /// A header field the kernel would not have produced.
    #[error("bad header: {0}")]
    BadHeader(&'static str),
    /// The IP packet's own length disagrees with the frame's.
    #[error("IP packet length {ip} disagrees with the {frame} bytes after the Ethernet header")]
    LengthMismatch {
        /// Bytes the IP header says the packet has.
        ip: usize,
        /// Bytes the frame has from the IP header on.
        frame: usize,
    },
    /// A GSO type this module cannot segment (UFO, unknown types).
    #[error("unsupported GSO type {0:#04x}")]
    UnsupportedGso(u8),
    /// A super-frame with gso_size 0.
    #[error("GSO frame with gso_size 0")]
    ZeroGsoSize,
    /// A super-frame without TCP payload.
    #[error("GSO frame without payload")]
    NoPayload,
    /// The checksum named by csum_start and csum_offset lies outside the packet.
    #[error("checksum position outside the packet")]
    CsumOutOfRange,
}

/// Finishes a frame: completes a partial checksum (NEEDS_CSUM) and, for a TCP
/// super-frame, cuts it into segments of at most gso_size payload bytes each,
/// every one a complete Ethernet frame with correct IPv4 header checksum /
/// IPv6 payload length and a full TCP checksum. A frame that needs neither is
/// returned as is (one element).
pub fn finish(h: &VnetHdr, frame: &[u8]) -> Result<Vec<Vec<u8>>, SegmentError> {
    match h.gso_type {
        VnetHdr::GSO_NONE if h.needs_csum() => Ok(vec![complete_csum(h, frame)?]),
        VnetHdr::GSO_NONE => Ok(vec![frame.to_vec()]),
        t => match t & !VnetHdr::GSO_ECN {
            VnetHdr::GSO_TCPV4 => segment_tcp(h, frame, false),
            VnetHdr::GSO_TCPV6 => segment_tcp(h, frame, true),
            _ => Err(SegmentError::UnsupportedGso(t)),
        },
    }
}

/// Where the IP packet lies in a frame.
#[derive(Debug)]
struct IpPacket {
    /// Offset of the IP header (after Ethernet and an 802.1Q tag).
    l3: usize,
    /// IPv6 rather than IPv4.
    v6: bool,
    /// Offset of the transport header (no IPv6 extension headers are walked).
    l4: usize,
    /// IPv4 protocol or IPv6 next header.
    proto: u8,
    /// Offset just past the IP packet; what follows is padding.
    end: usize,
}

fn be16(b: &[u8], at: usize) -> Result<u16, SegmentError> {
    match b.get(at..at + 2) {
        Some(&[hi, lo]) => Ok(u16::from_be_bytes([hi, lo])),
        _ => Err(SegmentError::Truncated),
    }
}

/// Locates the IP packet: Ethernet header, at most one 802.1Q tag, then an
/// IPv4 header (options allowed) or a fixed IPv6 header, whose length must
/// fit in the frame. `NotIp` for any other ethertype.
fn parse_ip(frame: &[u8]) -> Result<IpPacket, SegmentError> {
    let mut l3 = ETH_HLEN;
    let mut ethertype = be16(frame, l3 - 2)?;
    if ethertype == ETH_P_8021Q {
        l3 += VLAN_HLEN;
        ethertype = be16(frame, l3 - 2)?;
    }
    let ip = frame.get(l3..).ok_or(SegmentError::Truncated)?;
    let (v6, hlen, len, proto) = match ethertype {
        ETH_P_IP => {
            let ver_ihl = *ip.first().ok_or(SegmentError::Truncated)?;
            let ihl = usize::from(ver_ihl & 0x0f) * 4;
            if ver_ihl >> 4 != 4 || ihl < 20 {
                return Err(SegmentError::BadHeader("IPv4 version or header length"));
            }
            let total = usize::from(be16(ip, 2)?);
            if total < ihl {
                return Err(SegmentError::BadHeader("IPv4 total length below the header length"));
            }
            if ip.len() < ihl {
                return Err(SegmentError::Truncated);
            }
            (false, ihl, total, ip[9])
        }
        ETH_P_IPV6 => {
            if ip.len() < IPV6_HLEN {
                return Err(SegmentError::Truncated);
            }
            if ip[0] >> 4 != 6 {
                return Err(SegmentError::BadHeader("IPv6 version"));
            }
            (true, IPV6_HLEN, IPV6_HLEN + usize::from(be16(ip, 4)?), ip[6])
        }
        other => return Err(SegmentError::NotIp(other)),
    };
    if len > ip.len() {
        return Err(SegmentError::LengthMismatch { ip: len, frame: ip.len() });
    }
    Ok(IpPacket { l3, v6, l4: l3 + hlen, proto, end: l3 + len })
}

/// Completes a partial checksum as `skb_checksum_help` does: the field at
/// `csum_start + csum_offset` already holds the pseudo-header sum, so the
/// checksum is the complement of the folded sum from `csum_start` to the end
/// of the IP packet (trailing padding excluded; for a non-IP frame, to the
/// end of the frame). A UDP checksum of 0 is sent as 0xffff (0 means none).
fn complete_csum(h: &VnetHdr, frame: &[u8]) -> Result<Vec<u8>, SegmentError> {
    let start = usize::from(h.csum_start);
    let at = start + usize::from(h.csum_offset);
    let (end, udp) = match parse_ip(frame) {
        Ok(ip) => (ip.end, ip.proto == IPPROTO_UDP && ip.l4 == start),
        Err(SegmentError::NotIp(_)) => (frame.len(), false),
        Err(e) => return Err(e),
    };
    if at + 2 > end {
        return Err(SegmentError::CsumOutOfRange);
    }
    let mut out = frame.to_vec();
    let mut c = !fold(sum(0, &out[start..end]));
    if udp && c == 0 {
        c = 0xffff;
    }
    out[at..at + 2].copy_from_slice(&c.to_be_bytes());
    Ok(out)
}

/// The parts of a TCP super-frame that every segment repeats.
struct SuperFrame<'a> {
    ip: IpPacket,
    /// Ethernet, IP and TCP headers, as they came.
    headers: &'a [u8],
    /// The TCP payload to be cut.
    payload: &'a [u8],
}

/// Checks that `frame` is what the kernel hands over for a TCP super-frame
/// of the given IP version: the IP packet fills the frame exactly, carries
/// TCP (no IPv6 extension headers, no IPv4 fragment), and has payload.
fn parse_super_frame<'a>(h: &VnetHdr, frame: &'a [u8], v6: bool) -> Result<SuperFrame<'a>, SegmentError> {
    if h.gso_size == 0 {
        return Err(SegmentError::ZeroGsoSize);
    }
    let ip = parse_ip(frame)?;
    if ip.v6 != v6 {
        return Err(SegmentError::BadHeader("GSO type disagrees with the IP version"));
    }
    if ip.end != frame.len() {
        return Err(SegmentError::LengthMismatch { ip: ip.end - ip.l3, frame: frame.len() - ip.l3 });
    }
    if ip.proto != IPPROTO_TCP {
        return Err(SegmentError::NotTcp);
    }
    if !v6 && be16(frame, ip.l3 + 6)? & 0x3fff != 0 {
        return Err(SegmentError::BadHeader("IPv4 fragment in a GSO frame"));
    }
    let tcp = &frame[ip.l4..];
    let doff = usize::from(*tcp.get(12).ok_or(SegmentError::Truncated)? >> 4) * 4;
    if doff < TCP_MIN_HLEN {
        return Err(SegmentError::BadHeader("TCP data offset"));
    }
    if tcp.len() < doff {
        return Err(SegmentError::Truncated);
    }
    if h.needs_csum() && usize::from(h.csum_start) + usize::from(h.csum_offset) + 2 > frame.len() {
        return Err(SegmentError::CsumOutOfRange);
    }
    let (headers, payload) = frame.split_at(ip.l4 + doff);
    if payload.is_empty() {
        return Err(SegmentError::NoPayload);
    }
    Ok(SuperFrame { ip, headers, payload })
}

/// Cuts a TCP super-frame as `tcp_gso_segment` does: segment i carries
/// payload bytes `[i * gso_size, (i + 1) * gso_size)`, sequence number
/// `seq + i * gso_size`, IPv4 identification `id + i`; FIN and PSH stay on
/// the last segment only, CWR on the first only. Every segment gets its IP
/// length, IPv4 header checksum and a full TCP checksum.
fn segment_tcp(h: &VnetHdr, frame: &[u8], v6: bool) -> Result<Vec<Vec<u8>>, SegmentError> {
    let sf = parse_super_frame(h, frame, v6)?;
    let gso = usize::from(h.gso_size);
    let l4 = sf.ip.l4;
    let seq = u32::from_be_bytes([frame[l4 + 4], frame[l4 + 5], frame[l4 + 6], frame[l4 + 7]]);
    let pieces = sf.payload.len().div_ceil(gso);
    let mut out = Vec::with_capacity(pieces);
    for (i, piece) in sf.payload.chunks(gso).enumerate() {
        let mut seg = Vec::with_capacity(sf.headers.len() + piece.len());
        seg.extend_from_slice(sf.headers);
        seg.extend_from_slice(piece);
        // At most 65535 pieces of at most 65535 bytes: the product fits a
        // u32, and sequence numbers wrap as TCP's do.
        let advance = (i as u32).wrapping_mul(u32::from(h.gso_size));
        fix_ip(&mut seg, &sf.ip, i as u16);
        fix_tcp(&mut seg, &sf.ip, seq.wrapping_add(advance), i == 0, i + 1 == pieces);
        out.push(seg);
    }
    Ok(out)
}

/// Sets a segment's IP length; for IPv4 also the identification (the
/// original's plus `index`, wrapping) and the header checksum.
fn fix_ip(seg: &mut [u8], ip: &IpPacket, index: u16) {
    let l3 = ip.l3;
    if ip.v6 {
        let plen = (seg.len() - ip.l4) as u16;
        seg[l3 + 4..l3 + 6].copy_from_slice(&plen.to_be_bytes());
        return;
    }
    let total = (seg.len() - l3) as u16;
    seg[l3 + 2..l3 + 4].copy_from_slice(&total.to_be_bytes());
    let id = u16::from_be_bytes([seg[l3 + 4], seg[l3 + 5]]).wrapping_add(index);
    seg[l3 + 4..l3 + 6].copy_from_slice(&id.to_be_bytes());
    seg[l3 + 10..l3 + 12].copy_from_slice(&[0, 0]);
    let c = !fold(sum(0, &seg[l3..ip.l4]));
    seg[l3 + 10..l3 + 12].copy_from_slice(&c.to_be_bytes());
}

/// Sets a segment's TCP sequence number and flags, then its checksum over
/// the pseudo-header and the whole TCP segment.
fn fix_tcp(seg: &mut [u8], ip: &IpPacket, seq: u32, first: bool, last: bool) {
    let l4 = ip.l4;
    seg[l4 + 4..l4 + 8].copy_from_slice(&seq.to_be_bytes());
    if !last {
        seg[l4 + 13] &= !(TCP_FIN | TCP_PSH);
    }
    if !first {
        seg[l4 + 13] &= !TCP_CWR;
    }
    seg[l4 + TCP_CSUM..l4 + TCP_CSUM + 2].copy_from_slice(&[0, 0]);
    let tcp_len = seg.len() - l4;
    let s = sum(pseudo_header_sum(seg, ip, tcp_len), &seg[l4..]);
    seg[l4 + TCP_CSUM..l4 + TCP_CSUM + 2].copy_from_slice(&(!fold(s)).to_be_bytes());
}

/// The unfolded sum of the TCP pseudo-header: addresses, protocol and TCP
/// length (RFC 793 for IPv4, RFC 8200 section 8.1 for IPv6).
fn pseudo_header_sum(seg: &[u8], ip: &IpPacket, tcp_len: usize) -> u64 {
    let addrs = if ip.v6 { ip.l3 + 8..ip.l3 + 40 } else { ip.l3 + 12..ip.l3 + 20 };
    sum(u64::from(IPPROTO_TCP) + tcp_len as u64, &seg[addrs])
}

/// Adds `data` to a running one's-complement sum, unfolded. `data` must
/// start at an even offset of the checksummed range (an odd last byte is
/// padded with zero, as at the range's end). Summing big-endian 32-bit words
/// gives the same folded result as 16-bit ones, since 2^16 = 1 modulo
/// 0xffff; a u64 cannot overflow for any frame.
fn sum(mut acc: u64, data: &[u8]) -> u64 {
    let mut words = data.chunks_exact(4);
    for w in &mut words {
        acc += u64::from(u32::from_be_bytes([w[0], w[1], w[2], w[3]]));
    }
    let mut tail = words.remainder().chunks(2);
    for c in &mut tail {
        let w = match *c {
            [hi, lo] => u16::from_be_bytes([hi, lo]),
            [hi] => u16::from_be_bytes([hi, 0]),
            _ => 0,
        };
        acc += u64::from(w);
    }
    acc
}

/// Folds an unfolded sum to 16 bits with end-around carries (not
/// complemented).
fn fold(mut s: u64) -> u16 {
    while s > 0xffff {
        s = (s & 0xffff) + (s >> 16);
    }
    s as u16
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::sleeve::oversize::checksum;
    use proptest::prelude::*;

    const ACK: u8 = 0x10;

    /// How a test super-frame is built.
    #[derive(Clone, Debug)]
    struct Spec {
        v6: bool,
        vlan: bool,
        /// IPv4 option bytes (a multiple of 4, at most 40).
        ip_opts: usize,
        /// TCP option bytes (a multiple of 4, at most 40).
        tcp_opts: usize,
        seq: u32,
        id: u16,
        flags: u8,
        payload: Vec<u8>,
    }

    impl Spec {
        fn l3(&self) -> usize {
            if self.vlan {
                18
            } else {
                14
            }
        }
        fn l4(&self) -> usize {
            self.l3() + if self.v6 { 40 } else { 20 + self.ip_opts }
        }
        fn hdrs(&self) -> usize {
            self.l4() + 20 + self.tcp_opts
        }
    }

    /// Deterministic filler, so large payloads cost no proptest values.
    fn filler(len: usize, seed: u32) -> Vec<u8> {
        let mut x = seed | 1;
        (0..len)
            .map(|_| {
                x ^= x << 13;
                x ^= x >> 17;
                x ^= x << 5;
                x as u8
            })
            .collect()
    }

    /// The pseudo-header, written out plainly (no shared code with `sum`).
    fn pseudo(v6: bool, ip: &[u8], tcp_len: usize) -> Vec<u8> {
        let mut p = Vec::new();
        if v6 {
            p.extend_from_slice(&ip[8..40]);
            p.extend_from_slice(&(tcp_len as u32).to_be_bytes());
            p.extend_from_slice(&[0, 0, 0, 6]);
        } else {
            p.extend_from_slice(&ip[12..20]);
            p.extend_from_slice(&[0, 6]);
            p.extend_from_slice(&(tcp_len as u16).to_be_bytes());
        }
        p
    }

    /// A plain 16-bit-word one's-complement sum, folded, not complemented.
    fn naive_fold(bytes: &[u8]) -> u16 {
        let mut s: u32 = 0;
        for (i, b) in bytes.iter().enumerate() {
            s += if i % 2 == 0 { u32::from(*b) << 8 } else { u32::from(*b) };
            s = (s & 0xffff) + (s >> 16);
        }
        s as u16
    }

    /// Ethernet + IP + TCP headers and payload as the kernel hands over a
    /// super-frame: NEEDS_CSUM, the pseudo-header sum in the TCP checksum
    /// field, valid IPv4 header checksum, IP length covering everything.
    fn build(s: &Spec, gso_size: u16) -> (VnetHdr, Vec<u8>) {
        let mut f = vec![2, 0, 0, 0, 0, 2, 2, 0, 0, 0, 0, 1];
        if s.vlan {
            f.extend_from_slice(&[0x81, 0x00, 0x20, 0x07]);
        }
        let tcp_len = 20 + s.tcp_opts + s.payload.len();
        if s.v6 {
            f.extend_from_slice(&[0x86, 0xdd, 0x60, 0x01, 0x23, 0x45]);
            f.extend_from_slice(&(tcp_len as u16).to_be_bytes());
            f.extend_from_slice(&[6, 64]);
            f.extend_from_slice(&[0xfd, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0xa, 1]);
            f.extend_from_slice(&[0xfd, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0xb, 2]);
        } else {
            f.extend_from_slice(&[0x08, 0x00]);
            let ihl = 20 + s.ip_opts;
            let mut ip = vec![0x40 | (ihl / 4) as u8, 0];
            ip.extend_from_slice(&((ihl + tcp_len) as u16).to_be_bytes());
            ip.extend_from_slice(&s.id.to_be_bytes());
            ip.extend_from_slice(&[0x40, 0, 64, 6, 0, 0, 10, 32, 0, 1, 10, 40, 0, 2]);
            ip.resize(ihl, 1); // NOP options
            let c = checksum(&ip);
            ip[10..12].copy_from_slice(&c.to_be_bytes());
            f.extend_from_slice(&ip);
        }
        let mut tcp = vec![0x9c, 0x40, 0x01, 0xbb];
        tcp.extend_from_slice(&s.seq.to_be_bytes());
        tcp.extend_from_slice(&[0x11, 0x22, 0x33, 0x44, ((20 + s.tcp_opts) / 4 * 16) as u8, s.flags]);
        tcp.extend_from_slice(&[0xfa, 0xf0, 0, 0, 0, 0]);
        tcp.resize(20 + s.tcp_opts, 1);
        let l4 = s.l4();
        let p = pseudo(s.v6, &f[s.l3()..], tcp_len);
        tcp[16..18].copy_from_slice(&naive_fold(&p).to_be_bytes());
        f.extend_from_slice(&tcp);
        f.extend_from_slice(&s.payload);
        let gso_type = if s.v6 { VnetHdr::GSO_TCPV6 } else { VnetHdr::GSO_TCPV4 };
        let h = VnetHdr {
            flags: VnetHdr::F_NEEDS_CSUM,
            gso_type,
            hdr_len: s.hdrs() as u16,
            gso_size,
            csum_start: l4 as u16,
            csum_offset: 16,
        };
        (h, f)
    }

    /// The TCP checksum of a finished frame verifies (plain computation).
    fn tcp_ok(v6: bool, l3: usize, l4: usize, frame: &[u8]) -> bool {
        let mut all = pseudo(v6, &frame[l3..], frame.len() - l4);
        all.extend_from_slice(&frame[l4..]);
        checksum(&all) == 0
    }

    /// Everything the segmentation rules promise about `segs`.
    fn check_segments(s: &Spec, orig: &[u8], gso: usize, segs: &[Vec<u8>]) -> Result<(), TestCaseError> {
        let (l3, l4, hdrs) = (s.l3(), s.l4(), s.hdrs());
        let n = s.payload.len().div_ceil(gso);
        prop_assert_eq!(segs.len(), n);
        let mut payload = Vec::new();
        for (i, seg) in segs.iter().enumerate() {
            prop_assert!(seg.len() > hdrs && seg.len() <= hdrs + gso, "segment {} has {} bytes", i, seg.len());
            payload.extend_from_slice(&seg[hdrs..]);
            if s.v6 {
                prop_assert_eq!(usize::from(u16::from_be_bytes([seg[l3 + 4], seg[l3 + 5]])), seg.len() - l4);
            } else {
                prop_assert_eq!(checksum(&seg[l3..l4]), 0, "IPv4 header checksum of segment {}", i);
                prop_assert_eq!(usize::from(u16::from_be_bytes([seg[l3 + 2], seg[l3 + 3]])), seg.len() - l3);
                let id = u16::from_be_bytes([seg[l3 + 4], seg[l3 + 5]]);
                prop_assert_eq!(id, s.id.wrapping_add(i as u16));
            }
            prop_assert!(tcp_ok(s.v6, l3, l4, seg), "TCP checksum of segment {}", i);
            let seq = u32::from_be_bytes([seg[l4 + 4], seg[l4 + 5], seg[l4 + 6], seg[l4 + 7]]);
            prop_assert_eq!(seq, s.seq.wrapping_add((i * gso) as u32));
            let fl = seg[l4 + 13];
            let last = i + 1 == n;
            let want = (s.flags & !(TCP_FIN | TCP_PSH | TCP_CWR))
                | if last { s.flags & (TCP_FIN | TCP_PSH) } else { 0 }
                | if i == 0 { s.flags & TCP_CWR } else { 0 };
            prop_assert_eq!(fl, want, "flags of segment {}", i);
            // Apart from the fields above, the headers are the original's.
            let mask = |f: &[u8]| {
                let mut h = f[..hdrs].to_vec();
                let ip_fields: &[usize] = if s.v6 { &[4, 5] } else { &[2, 3, 4, 5, 10, 11] };
                for &o in ip_fields {
                    h[l3 + o] = 0;
                }
                for o in [4, 5, 6, 7, 13, 16, 17] {
                    h[l4 + o] = 0;
                }
                h
            };
            prop_assert_eq!(mask(seg), mask(orig));
        }
        prop_assert_eq!(payload, s.payload.clone());
        Ok(())
    }

    fn gso_sizes() -> impl Strategy<Value = u16> {
        prop_oneof![1u16..9000, Just(1336u16), Just(1448u16)]
    }

    fn spec(v6: bool, vlan: bool) -> impl Strategy<Value = Spec> {
        (1usize..65000, any::<u32>(), any::<u32>(), any::<u16>(), 0usize..=10, 0usize..=10, any::<u8>()).prop_map(
            move |(len, seed, seq, id, ip_opts, tcp_opts, flags)| Spec {
                v6,
                vlan,
                ip_opts: if v6 { 0 } else { ip_opts * 4 },
                tcp_opts: tcp_opts * 4,
                seq,
                id,
                flags: flags | TCP_FIN | TCP_PSH | TCP_CWR,
                payload: filler(len, seed),
            },
        )
    }

    proptest! {
        #![proptest_config(ProptestConfig { cases: 64, ..ProptestConfig::default() })]

        /// IPv4 super-frames segment as Linux's software GSO does.
        #[test]
        fn ipv4_super_frames_segment(s in spec(false, false), gso in gso_sizes()) {
            let (h, f) = build(&s, gso);
            let segs = finish(&h, &f).unwrap();
            check_segments(&s, &f, usize::from(gso), &segs)?;
        }

        /// IPv6 super-frames too.
        #[test]
        fn ipv6_super_frames_segment(s in spec(true, false), gso in gso_sizes()) {
            let (h, f) = build(&s, gso);
            let segs = finish(&h, &f).unwrap();
            check_segments(&s, &f, usize::from(gso), &segs)?;
        }

        /// And VLAN-tagged ones, of either version.
        #[test]
        fn vlan_super_frames_segment(s in spec(false, true), s6 in spec(true, true), gso in gso_sizes()) {
            for s in [s, s6] {
                let (h, f) = build(&s, gso);
                let segs = finish(&h, &f).unwrap();
                check_segments(&s, &f, usize::from(gso), &segs)?;
            }
        }
    }

    proptest! {
        /// A partial checksum on an ordinary frame is completed, over the IP
        /// packet only (non-zero trailing padding does not count).
        #[test]
        fn partial_checksums_complete(s in spec(false, false), v6: bool, vlan: bool, pad in 0usize..20, odd in 1usize..300) {
            let s = Spec { v6, vlan, payload: s.payload[..odd.min(s.payload.len())].to_vec(), ..s };
            let (mut h, mut f) = build(&s, 0);
            h.gso_type = VnetHdr::GSO_NONE;
            let len = f.len();
            f.extend(std::iter::repeat_n(0xa5, pad));
            let out = finish(&h, &f).unwrap();
            prop_assert_eq!(out.len(), 1);
            prop_assert_eq!(out[0].len(), f.len());
            prop_assert!(tcp_ok(v6, s.l3(), s.l4(), &out[0][..len]));
            // The result is complete: finishing it again without the flag
            // gives it back unchanged.
            let done = VnetHdr::default();
            prop_assert_eq!(finish(&done, &out[0]).unwrap(), vec![out[0].clone()]);
        }

        /// Nothing panics, whatever the header says about whatever bytes.
        #[test]
        fn arbitrary_input_never_panics(
            flags: u8, gso_type: u8, hdr_len: u16, gso_size: u16, csum_start: u16, csum_offset: u16,
            bytes in proptest::collection::vec(any::<u8>(), 0..200),
        ) {
            let h = VnetHdr { flags, gso_type, hdr_len, gso_size, csum_start, csum_offset };
            let _ = finish(&h, &bytes);
            let _ = VnetHdr::parse(&bytes);
        }

        /// Nor on a real super-frame with a header made arbitrary, bytes
        /// changed and its end cut.
        #[test]
        fn mangled_super_frames_never_panic(
            s in spec(false, false), v6: bool, gso_size: u16, csum_start: u16, csum_offset: u16, gso_type: u8,
            pokes in proptest::collection::vec((0usize..120, any::<u8>()), 0..4), cut in 0usize..70000,
        ) {
            let s = Spec { v6, payload: s.payload[..s.payload.len().min(3000)].to_vec(), ..s };
            let (mut h, mut f) = build(&s, gso_size);
            h.csum_start = csum_start;
            h.csum_offset = csum_offset;
            if gso_type % 2 == 0 {
                h.gso_type = gso_type;
            }
            for (at, b) in pokes {
                if let Some(x) = f.get_mut(at) {
                    *x = b;
                }
            }
            f.truncate(cut);
            let _ = finish(&h, &f);
        }

        /// `parse` reads back what `emit` wrote.
        #[test]
        fn vnet_hdr_round_trips(
            flags: u8, gso_type: u8, hdr_len: u16, gso_size: u16, csum_start: u16, csum_offset: u16,
        ) {
            let h = VnetHdr { flags, gso_type, hdr_len, gso_size, csum_start, csum_offset };
            prop_assert_eq!(VnetHdr::parse(&h.emit()), Ok(h));
        }
    }

    /// A small TCP/IPv4 frame as the kernel hands it over (NEEDS_CSUM, the
    /// pseudo-header sum 0x1471 in the checksum field), written out byte by
    /// byte, and its checksum computed outside this code (Python: the
    /// complemented 16-bit one's-complement sum of the pseudo-header and the
    /// segment with the field zeroed).
    #[test]
    fn known_answer() {
        const FRAME: &str = concat!(
            "020000000002020000000001",                 // Ethernet addresses
            "0800",                                     // IPv4
            "4500003412344000400614460a2000010a280002", // IPv4 header
            "9c4001bb010203041122334450",               // TCP ports, seq, ack, offset
            "18faf014710000",                           // flags, window, pseudo sum, urgent
            "68656c6c6f2c207765617665",                 // "hello, weave"
        );
        const TCP_CSUM_WANTED: u16 = 0x79e1;
        let f: Vec<u8> =
            (0..FRAME.len()).step_by(2).map(|i| u8::from_str_radix(&FRAME[i..i + 2], 16).unwrap()).collect();
        let h = VnetHdr { flags: VnetHdr::F_NEEDS_CSUM, csum_start: 34, csum_offset: 16, ..VnetHdr::default() };
        let out = finish(&h, &f).unwrap().remove(0);
        assert_eq!(u16::from_be_bytes([out[50], out[51]]), TCP_CSUM_WANTED);
        let mut rest = out.clone();
        rest[50..52].copy_from_slice(&f[50..52]);
        assert_eq!(rest, f, "nothing else changes");
        // The same frame as a super-frame that fits in one segment comes out
        // the same.
        let g = VnetHdr { gso_type: VnetHdr::GSO_TCPV4, gso_size: 1448, hdr_len: 54, ..h };
        assert_eq!(finish(&g, &f).unwrap(), vec![out]);
    }

    #[test]
    fn udp_zero_checksum_is_sent_as_ffff() {
        let mut f = vec![2, 0, 0, 0, 0, 2, 2, 0, 0, 0, 0, 1, 8, 0];
        f.extend_from_slice(&[0x45, 0, 0, 30, 0, 0, 0, 0, 64, 17, 0, 0, 10, 0, 0, 1, 10, 0, 0, 2]);
        f.extend_from_slice(&[0x30, 0x39, 0x1a, 0x85, 0, 10, 0, 0, 0, 0]);
        // Pseudo-header sum in the field, then a payload word that brings
        // the whole sum to 0xffff, i.e. a checksum of 0.
        let mut p = f[26..34].to_vec();
        p.extend_from_slice(&[0, 17, 0, 10]);
        f[40..42].copy_from_slice(&naive_fold(&p).to_be_bytes());
        let w = !naive_fold(&f[34..]);
        f[42..44].copy_from_slice(&w.to_be_bytes());
        let h = VnetHdr { flags: VnetHdr::F_NEEDS_CSUM, csum_start: 34, csum_offset: 6, ..VnetHdr::default() };
        let out = finish(&h, &f).unwrap().remove(0);
        assert_eq!(&out[40..42], &[0xff, 0xff]);
    }

    #[test]
    fn frames_needing_nothing_come_back_unchanged() {
        let s =
            Spec { v6: false, vlan: false, ip_opts: 0, tcp_opts: 0, seq: 1, id: 1, flags: ACK, payload: vec![9; 100] };
        let (mut h, f) = build(&s, 0);
        h.gso_type = VnetHdr::GSO_NONE;
        let done = finish(&h, &f).unwrap().remove(0);
        assert_eq!(finish(&VnetHdr::default(), &done).unwrap(), vec![done.clone()]);
        // Garbage without anything to do passes too: not ours to judge.
        assert_eq!(finish(&VnetHdr::default(), &[1, 2, 3]).unwrap(), vec![vec![1, 2, 3]]);
    }

    #[test]
    fn malformed_super_frames_are_errors() {
        let s =
            Spec { v6: false, vlan: false, ip_opts: 0, tcp_opts: 0, seq: 1, id: 1, flags: ACK, payload: vec![9; 3000] };
        let (h, f) = build(&s, 1448);
        assert_eq!(finish(&h, &f).unwrap().len(), 3);
        let with = |g: VnetHdr| finish(&g, &f);
        assert_eq!(with(VnetHdr { gso_size: 0, ..h }), Err(SegmentError::ZeroGsoSize));
        assert_eq!(with(VnetHdr { gso_type: VnetHdr::GSO_UDP, ..h }), Err(SegmentError::UnsupportedGso(3)));
        assert_eq!(with(VnetHdr { gso_type: 0x80, ..h }), Err(SegmentError::UnsupportedGso(0x80)));
        assert_eq!(with(VnetHdr { gso_type: 7, ..h }), Err(SegmentError::UnsupportedGso(7)));
        assert!(with(VnetHdr { gso_type: VnetHdr::GSO_TCPV4 | VnetHdr::GSO_ECN, ..h }).is_ok());
        assert!(matches!(with(VnetHdr { gso_type: VnetHdr::GSO_TCPV6, ..h }), Err(SegmentError::BadHeader(_))));
        assert_eq!(with(VnetHdr { csum_start: 3040, ..h }), Err(SegmentError::CsumOutOfRange));

        // Padding after a super-frame, or a frame shorter than its IP length.
        let mut padded = f.clone();
        padded.push(0);
        assert!(matches!(finish(&h, &padded), Err(SegmentError::LengthMismatch { .. })));
        assert!(matches!(finish(&h, &f[..f.len() - 1]), Err(SegmentError::LengthMismatch { .. })));

        // Headers only.
        let (h0, f0) = build(&Spec { payload: vec![], ..s.clone() }, 1448);
        assert_eq!(finish(&h0, &f0), Err(SegmentError::NoPayload));

        // UDP inside, ARP outside.
        let mut udp = f.clone();
        udp[14 + 9] = 17;
        assert_eq!(finish(&h, &udp), Err(SegmentError::NotTcp));
        let mut arp = f.clone();
        arp[12..14].copy_from_slice(&[0x08, 0x06]);
        assert_eq!(finish(&h, &arp), Err(SegmentError::NotIp(0x0806)));
        assert_eq!(finish(&h, &f[..10]), Err(SegmentError::Truncated));

        // A partial checksum whose place lies past the IP packet.
        let g = VnetHdr { gso_type: VnetHdr::GSO_NONE, csum_start: 34, csum_offset: 3020, ..h };
        assert_eq!(finish(&g, &f), Err(SegmentError::CsumOutOfRange));
    }

    #[test]
    fn sequence_numbers_and_ids_wrap() {
        let s = Spec {
            v6: false,
            vlan: false,
            ip_opts: 0,
            tcp_opts: 0,
            seq: u32::MAX - 100,
            id: u16::MAX,
            flags: ACK,
            payload: vec![1; 1000],
        };
        let (h, f) = build(&s, 500);
        let segs = finish(&h, &f).unwrap();
        check_segments(&s, &f, 500, &segs).unwrap();
        assert_eq!(u16::from_be_bytes([segs[1][18], segs[1][19]]), 0);
    }
}
