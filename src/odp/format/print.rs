//! printf-alikes: OVS's number, address and flag formats, and the
//! `field=value[/mask],` printers the key, tunnel and action formatters share.

use std::fmt::Write as _;

use super::tables::FlagName;

/// C's `%#x`: `0` for zero, `0x...` otherwise.
pub(super) fn alt_hex(v: u128) -> String {
    if v == 0 {
        "0".to_string()
    } else {
        format!("{v:#x}")
    }
}

/// Drops one trailing `c`, as OVS's `ds_chomp` does.
pub(super) fn chomp(out: &mut String, c: char) {
    if out.ends_with(c) {
        out.pop();
    }
}

/// `format_generic_odp_key`: bytes as `%02x`, space separated.
pub(super) fn put_generic(out: &mut String, bytes: &[u8]) {
    for (i, b) in bytes.iter().enumerate() {
        if i > 0 {
            out.push(' ');
        }
        let _ = write!(out, "{b:02x}");
    }
}

/// Reads `N` bytes at `off`, or zeros if the slice is too short (never panics).
pub(super) fn rd<const N: usize>(b: &[u8], off: usize) -> [u8; N] {
    b.get(off..off + N).and_then(|s| s.try_into().ok()).unwrap_or([0; N])
}
pub(super) fn be16(b: &[u8], off: usize) -> u16 {
    u16::from_be_bytes(rd(b, off))
}
pub(super) fn be32(b: &[u8], off: usize) -> u32 {
    u32::from_be_bytes(rd(b, off))
}
pub(super) fn ne16(b: &[u8], off: usize) -> u16 {
    u16::from_ne_bytes(rd(b, off))
}
pub(super) fn ne32(b: &[u8], off: usize) -> u32 {
    u32::from_ne_bytes(rd(b, off))
}

pub(super) fn all_bytes(b: &[u8], c: u8) -> bool {
    b.iter().all(|x| *x == c)
}

/// `inet_ntop(AF_INET6)` as glibc writes it, including the `::a.b.c.d` forms
/// that Rust's `Display` no longer uses.
pub(super) fn ntop6(a: [u8; 16]) -> String {
    let w: Vec<u16> = (0..8).map(|i| u16::from_be_bytes([a[2 * i], a[2 * i + 1]])).collect();
    // The first longest run of zero words (start, length), if at least two long.
    let mut best: Option<(usize, usize)> = None;
    let mut cur: Option<(usize, usize)> = None;
    for (i, word) in w.iter().enumerate() {
        if *word == 0 {
            cur = Some(cur.map_or((i, 1), |(b, l)| (b, l + 1)));
            if let Some((cb, cl)) = cur {
                if best.is_none_or(|(_, bl)| cl > bl) {
                    best = Some((cb, cl));
                }
            }
        } else {
            cur = None;
        }
    }
    let best = best.filter(|(_, l)| *l >= 2);
    let mut s = String::new();
    let mut i = 0;
    while i < 8 {
        if let Some((b, l)) = best {
            if i >= b && i < b + l {
                if i == b {
                    s.push(':');
                }
                i += 1;
                continue;
            }
        }
        if i != 0 {
            s.push(':');
        }
        if i == 6 && best.is_some_and(|(b, l)| b == 0 && (l == 6 || (l == 5 && w[5] == 0xffff))) {
            let _ = write!(s, "{}.{}.{}.{}", a[12], a[13], a[14], a[15]);
            break;
        }
        let _ = write!(s, "{:x}", w[i]);
        i += 1;
    }
    if best.is_some_and(|(b, l)| b + l == 8) {
        s.push(':');
    }
    s
}

pub(super) fn mac_str(m: [u8; 6]) -> String {
    format!("{:02x}:{:02x}:{:02x}:{:02x}:{:02x}:{:02x}", m[0], m[1], m[2], m[3], m[4], m[5])
}

/// The fields of an MPLS label stack entry: label, tc, ttl and bos.
pub(super) fn mpls_lse(l: u32) -> (u32, u32, u32, u32) {
    (l >> 12, (l >> 9) & 7, l & 0xff, (l >> 8) & 1)
}

/// `format_flags`: set bits by name, lowest first, unnamed ones as one hex number.
pub(super) fn put_flags(out: &mut String, name: FlagName, flags: u32, del: char) {
    if flags == 0 {
        out.push('0');
        return;
    }
    let mut bad = 0;
    let mut rest = flags;
    while rest != 0 {
        let bit = rest & rest.wrapping_neg();
        match name(bit) {
            Some(s) => {
                out.push_str(s);
                out.push(del);
            }
            None => bad |= bit,
        }
        rest &= !bit;
    }
    if bad != 0 {
        let _ = write!(out, "{bad:#x}{del}");
    }
    chomp(out, del);
}

/// `format_flags_masked`: `+name` / `-name` for each masked bit.
pub(super) fn put_flags_masked(out: &mut String, name: FlagName, flags: u32, mask: u32, max: u32) {
    if mask == max {
        put_flags(out, name, flags, '|');
        return;
    }
    if mask == 0 {
        out.push_str("0/0");
        return;
    }
    let mut rest = mask;
    while rest != 0 {
        let bit = rest & rest.wrapping_neg();
        out.push(if flags & bit != 0 { '+' } else { '-' });
        out.push_str(name(bit).unwrap_or("[Unknown]"));
        rest &= !bit;
    }
}

/// `format_u8u` / `format_u8x` / `format_be16` / `format_be16x`.
pub(super) fn put_num(out: &mut String, name: &str, v: u64, m: Option<u64>, full: u64, hex: bool, verbose: bool) {
    if !verbose && m == Some(0) {
        return;
    }
    out.push_str(name);
    out.push('=');
    if hex {
        out.push_str(&alt_hex(v.into()));
    } else {
        let _ = write!(out, "{v}");
    }
    if let Some(m) = m.filter(|m| *m != full) {
        let _ = write!(out, "/{}", alt_hex(m.into()));
    }
    out.push(',');
}

/// `format_be64`, with OVS 3.1's quirk: without a mask it prints only when verbose.
pub(super) fn put_be64(out: &mut String, name: &str, v: u64, m: Option<u64>, verbose: bool) {
    if !verbose && m.unwrap_or(0) == 0 {
        return;
    }
    let _ = write!(out, "{name}=0x{v:x}");
    if let Some(m) = m.filter(|m| *m != u64::MAX) {
        let _ = write!(out, "/{}", alt_hex(m.into()));
    }
    out.push(',');
}

pub(super) fn put_eth(out: &mut String, name: &str, v: [u8; 6], m: Option<[u8; 6]>, verbose: bool) {
    if !verbose && m == Some([0; 6]) {
        return;
    }
    let _ = write!(out, "{name}={}", mac_str(v));
    if let Some(m) = m.filter(|m| *m != [0xff; 6]) {
        let _ = write!(out, "/{}", mac_str(m));
    }
    out.push(',');
}

pub(super) fn put_ipv4(out: &mut String, name: &str, v: [u8; 4], m: Option<[u8; 4]>, verbose: bool) {
    if !verbose && m == Some([0; 4]) {
        return;
    }
    let _ = write!(out, "{name}={}.{}.{}.{}", v[0], v[1], v[2], v[3]);
    if let Some(m) = m.filter(|m| *m != [0xff; 4]) {
        let _ = write!(out, "/{}.{}.{}.{}", m[0], m[1], m[2], m[3]);
    }
    out.push(',');
}

pub(super) fn put_in6(out: &mut String, name: &str, v: [u8; 16], m: Option<[u8; 16]>, verbose: bool) {
    if !verbose && m == Some([0; 16]) {
        return;
    }
    let _ = write!(out, "{name}={}", ntop6(v));
    if let Some(m) = m.filter(|m| *m != [0xff; 16]) {
        let _ = write!(out, "/{}", ntop6(m));
    }
    out.push(',');
}

pub(super) fn put_label(out: &mut String, name: &str, v: u32, m: Option<u32>, verbose: bool) {
    if !verbose && m == Some(0) {
        return;
    }
    let _ = write!(out, "{name}={}", alt_hex(v.into()));
    if let Some(m) = m.filter(|m| m & 0xfffff != 0xfffff) {
        let _ = write!(out, "/{}", alt_hex(m.into()));
    }
    out.push(',');
}

/// `format_frag`: an enumeration, so a partial mask is an error message.
pub(super) fn put_frag(out: &mut String, name: &str, v: u8, m: Option<u8>) {
    match m {
        Some(0) => {}
        Some(m) if m != 0xff => {
            let _ = write!(out, "error: partial mask not supported for frag ({}),", alt_hex(m.into()));
        }
        _ => {
            let s = match v {
                0 => "no",
                1 => "first",
                2 => "later",
                _ => "<error>",
            };
            let _ = write!(out, "{name}={s},");
        }
    }
}

/// `format_vlan_tci`.
pub(super) fn put_vlan_tci(out: &mut String, tci: u16, mask: u16, verbose: bool) {
    let (vid, mvid) = (tci & 0x0fff, mask & 0x0fff);
    let (pcp, mpcp) = (tci >> 13, mask >> 13);
    if verbose || vid != 0 || mvid != 0 {
        let _ = write!(out, "vid={vid}");
        if mvid != 0x0fff {
            let _ = write!(out, "/0x{mvid:x}");
        }
        out.push(',');
    }
    if verbose || pcp != 0 || mpcp != 0 {
        let _ = write!(out, "pcp={pcp}");
        if mpcp != 7 {
            let _ = write!(out, "/0x{mpcp:x}");
        }
        out.push(',');
    }
    if tci & 0x1000 == 0 {
        out.push_str("cfi=0,");
    }
    chomp(out, ',');
}
