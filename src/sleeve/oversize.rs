//! Frames too big for a connection's path, as pure logic: an IPv4 packet
//! with don't-fragment gets an ICMP "fragmentation needed" back to its
//! sender, with the next-hop MTU, so the sender's PMTU discovery adapts; one
//! without is cut into IPv4 fragments that fit. Anything else is dropped
//! with a reason. The input is a whole Ethernet frame as captured.

use std::net::Ipv4Addr;

const ETH_HLEN: usize = 14;
const ETH_P_IP: u16 = 0x0800;
const DF: u16 = 0x4000;
const MF: u16 = 0x2000;
const OFFSET_MASK: u16 = 0x1fff;

/// What to do with a frame whose IP packet exceeds `mtu`.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Oversize {
    /// Send this frame back out of the port the original came from.
    Reply(Vec<u8>),
    /// Forward these frames instead of the original.
    Fragments(Vec<Vec<u8>>),
    /// Drop it, for this reason.
    Drop(&'static str),
}

/// The one's-complement Internet checksum of `data`.
pub fn checksum(data: &[u8]) -> u16 {
    let mut sum: u32 = 0;
    for c in data.chunks(2) {
        let w = if c.len() == 2 { u16::from_be_bytes([c[0], c[1]]) } else { u16::from(c[0]) << 8 };
        sum += u32::from(w);
    }
    while sum > 0xffff {
        sum = (sum & 0xffff) + (sum >> 16);
    }
    !(sum as u16)
}

struct Ip<'a> {
    header: &'a [u8],
    payload: &'a [u8],
    flags_off: u16,
}

fn parse_ipv4(frame: &[u8]) -> Result<Ip<'_>, &'static str> {
    if frame.len() < ETH_HLEN + 20 {
        return Err("frame too short for IPv4");
    }
    if u16::from_be_bytes([frame[12], frame[13]]) != ETH_P_IP {
        return Err("not IPv4 (VLAN-tagged or another protocol)");
    }
    let ip = &frame[ETH_HLEN..];
    let ihl = usize::from(ip[0] & 0x0f) * 4;
    if ip[0] >> 4 != 4 || ihl < 20 || ip.len() < ihl {
        return Err("malformed IPv4 header");
    }
    let total = usize::from(u16::from_be_bytes([ip[2], ip[3]]));
    if total < ihl || total > ip.len() {
        return Err("IPv4 total length disagrees with the frame");
    }
    Ok(Ip { header: &ip[..ihl], payload: &ip[ihl..total], flags_off: u16::from_be_bytes([ip[6], ip[7]]) })
}

/// Decides for a frame whose IPv4 packet may exceed `mtu` (the largest IP
/// packet the path carries, in bytes). A packet that fits needs nothing:
/// `Fragments` with the frame unchanged.
pub fn handle(frame: &[u8], mtu: u16) -> Oversize {
    let ip = match parse_ipv4(frame) {
        Ok(ip) => ip,
        Err(why) => return Oversize::Drop(why),
    };
    let total = ip.header.len() + ip.payload.len();
    if total <= usize::from(mtu) {
        return Oversize::Fragments(vec![frame[..ETH_HLEN + total].to_vec()]);
    }
    if usize::from(mtu) < 68 {
        return Oversize::Drop("path MTU below the IPv4 minimum of 68");
    }
    if ip.flags_off & DF != 0 {
        return match frag_needed(frame, &ip, mtu) {
            Some(r) => Oversize::Reply(r),
            None => Oversize::Drop("cannot answer an ICMP packet with an ICMP error"),
        };
    }
    Oversize::Fragments(fragment(frame, &ip, mtu))
}

/// ICMP type 3 code 4 to the sender, from the original destination, quoting
/// the original header and 8 bytes of its payload (RFC 792, RFC 1191).
fn frag_needed(frame: &[u8], ip: &Ip<'_>, mtu: u16) -> Option<Vec<u8>> {
    let proto = ip.header[9];
    if proto == 1 {
        // An ICMP error must not answer an ICMP error; echo requests may be
        // answered, but keeping it simple and safe: only non-ICMP and echo.
        let t = ip.payload.first().copied().unwrap_or(0);
        if t != 8 && t != 0 {
            return None;
        }
    }
    let src = Ipv4Addr::new(ip.header[12], ip.header[13], ip.header[14], ip.header[15]);
    let dst = Ipv4Addr::new(ip.header[16], ip.header[17], ip.header[18], ip.header[19]);
    let quote_len = ip.header.len() + ip.payload.len().min(8);
    let quote = &frame[ETH_HLEN..ETH_HLEN + quote_len];
    let mut icmp = vec![3, 4, 0, 0, 0, 0];
    icmp.extend_from_slice(&mtu.to_be_bytes());
    icmp.extend_from_slice(quote);
    let c = checksum(&icmp);
    icmp[2..4].copy_from_slice(&c.to_be_bytes());
    let total = (20 + icmp.len()) as u16;
    let mut h = vec![0x45, 0];
    h.extend_from_slice(&total.to_be_bytes());
    h.extend_from_slice(&[0, 0, 0, 0, 64, 1, 0, 0]);
    h.extend_from_slice(&dst.octets());
    h.extend_from_slice(&src.octets());
    let c = checksum(&h);
    h[10..12].copy_from_slice(&c.to_be_bytes());
    let mut out = Vec::with_capacity(ETH_HLEN + h.len() + icmp.len());
    out.extend_from_slice(&frame[6..12]); // to the sender's MAC
    out.extend_from_slice(&frame[0..6]); // from the MAC it sent to
    out.extend_from_slice(&ETH_P_IP.to_be_bytes());
    out.extend_from_slice(&h);
    out.extend_from_slice(&icmp);
    Some(out)
}

/// IPv4 fragments of at most `mtu` bytes each (RFC 791): payload pieces in
/// multiples of 8 bytes, offsets relative to the original's, MF on all but
/// the last (which keeps the original's MF). Options go in the first only.
fn fragment(frame: &[u8], ip: &Ip<'_>, mtu: u16) -> Vec<Vec<u8>> {
    let base_off = ip.flags_off & OFFSET_MASK;
    let orig_mf = ip.flags_off & MF;
    let mut out = Vec::new();
    let mut done = 0usize;
    let mut first = true;
    while done < ip.payload.len() {
        let hdr: Vec<u8> = if first { ip.header.to_vec() } else { short_header(ip.header) };
        let room = (usize::from(mtu) - hdr.len()) / 8 * 8;
        let take = room.min(ip.payload.len() - done);
        let last = done + take == ip.payload.len();
        let mut h = hdr;
        let total = (h.len() + take) as u16;
        h[2..4].copy_from_slice(&total.to_be_bytes());
        let off = base_off + (done / 8) as u16;
        let flags = if last { orig_mf } else { MF };
        h[6..8].copy_from_slice(&(flags | off).to_be_bytes());
        h[10..12].copy_from_slice(&[0, 0]);
        let c = checksum(&h);
        h[10..12].copy_from_slice(&c.to_be_bytes());
        let mut f = Vec::with_capacity(ETH_HLEN + h.len() + take);
        f.extend_from_slice(&frame[..ETH_HLEN]);
        f.extend_from_slice(&h);
        f.extend_from_slice(&ip.payload[done..done + take]);
        out.push(f);
        done += take;
        first = false;
    }
    out
}

/// The header without options, for fragments after the first.
fn short_header(h: &[u8]) -> Vec<u8> {
    let mut s = h[..20].to_vec();
    s[0] = 0x45;
    s
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    fn ipv4_frame(df: bool, proto: u8, payload: &[u8]) -> Vec<u8> {
        let mut f = vec![2, 0, 0, 0, 0, 2, 2, 0, 0, 0, 0, 1, 8, 0];
        let total = (20 + payload.len()) as u16;
        let mut h = vec![0x45, 0];
        h.extend_from_slice(&total.to_be_bytes());
        h.extend_from_slice(&[0x12, 0x34]);
        h.extend_from_slice(&(if df { DF } else { 0 }).to_be_bytes());
        h.extend_from_slice(&[64, proto, 0, 0, 10, 0, 0, 1, 10, 0, 0, 2]);
        let c = checksum(&h);
        h[10..12].copy_from_slice(&c.to_be_bytes());
        f.extend_from_slice(&h);
        f.extend_from_slice(payload);
        f
    }

    #[test]
    fn df_gets_frag_needed_with_the_mtu() {
        let f = ipv4_frame(true, 17, &[7u8; 2000]);
        let Oversize::Reply(r) = handle(&f, 1400) else { panic!("no reply") };
        assert_eq!(&r[0..6], &f[6..12], "to the sender");
        let ip = &r[ETH_HLEN..];
        assert_eq!(checksum(&ip[..20]), 0, "IP checksum");
        assert_eq!(&ip[12..16], &[10, 0, 0, 2]);
        assert_eq!(&ip[16..20], &[10, 0, 0, 1]);
        let icmp = &ip[20..];
        assert_eq!((icmp[0], icmp[1]), (3, 4));
        assert_eq!(u16::from_be_bytes([icmp[6], icmp[7]]), 1400);
        assert_eq!(checksum(icmp), 0, "ICMP checksum");
        assert_eq!(&icmp[8..28], &f[ETH_HLEN..ETH_HLEN + 20], "quotes the header");
        assert_eq!(icmp.len(), 8 + 28);
    }

    #[test]
    fn icmp_errors_are_not_answered() {
        let f = ipv4_frame(true, 1, &[3u8; 2000]);
        assert!(matches!(handle(&f, 1400), Oversize::Drop(_)));
        let echo = ipv4_frame(true, 1, &[8u8; 2000]);
        assert!(matches!(handle(&echo, 1400), Oversize::Reply(_)));
    }

    #[test]
    fn fitting_frames_pass_and_junk_is_dropped() {
        let f = ipv4_frame(true, 6, &[1u8; 100]);
        assert_eq!(handle(&f, 1400), Oversize::Fragments(vec![f.clone()]));
        let mut arp = f.clone();
        arp[12..14].copy_from_slice(&[8, 6]);
        assert!(matches!(handle(&arp, 1400), Oversize::Drop(_)));
        assert!(matches!(handle(&f[..20], 1400), Oversize::Drop(_)));
        assert!(matches!(handle(&ipv4_frame(false, 6, &[1u8; 3000]), 40), Oversize::Drop(_)));
    }

    proptest! {
        #[test]
        fn fragments_fit_and_reassemble(len in 1usize..6000, mtu in 68u16..1500) {
            let payload: Vec<u8> = (0..len).map(|i| i as u8).collect();
            let f = ipv4_frame(false, 17, &payload);
            let Oversize::Fragments(frags) = handle(&f, mtu) else { panic!("not fragmented") };
            let mut whole = vec![0u8; len];
            let mut covered = 0;
            for (i, fr) in frags.iter().enumerate() {
                let ip = &fr[ETH_HLEN..];
                prop_assert!(ip.len() <= usize::from(mtu));
                prop_assert_eq!(checksum(&ip[..20]), 0);
                let fo = u16::from_be_bytes([ip[6], ip[7]]);
                prop_assert_eq!(fo & MF != 0, i + 1 < frags.len());
                let off = usize::from(fo & OFFSET_MASK) * 8;
                let data = &ip[20..usize::from(u16::from_be_bytes([ip[2], ip[3]]))];
                whole[off..off + data.len()].copy_from_slice(data);
                covered += data.len();
            }
            prop_assert_eq!(covered, len);
            prop_assert_eq!(whole, payload);
        }

        #[test]
        fn never_panics(bytes in proptest::collection::vec(any::<u8>(), 0..300), mtu: u16) {
            let _ = handle(&bytes, mtu);
        }
    }
}
