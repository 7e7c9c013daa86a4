//! `tunnel(...)`: the tunnel key attribute's own numbers, length table and
//! flags, its formatter (`format_odp_tun_attr`) and its parser.

use std::fmt::Write as _;

use ovs_sys as sys;

use super::error::PResult;
use super::key_fmt::check_len;
use super::print::{chomp, ne32, put_be64, put_flags, put_flags_masked, put_generic, put_in6, put_ipv4, put_num, rd};
use super::scan::{scan_fields, Cursor};
use super::tables::{mask_is_const, n, Len};
use crate::odp::nla::{NlaIter, NlaWriter, RawNla, NLA_TYPE_MASK};
use crate::odp::tunnel::TunnelKey;

// Tunnel key attributes.
const T_GENEVE: u16 = n!(OVS_TUNNEL_KEY_ATTR_GENEVE_OPTS);
const T_VXLAN: u16 = n!(OVS_TUNNEL_KEY_ATTR_VXLAN_OPTS);
const T_IPV6_SRC: u16 = n!(OVS_TUNNEL_KEY_ATTR_IPV6_SRC);
const T_IPV6_DST: u16 = n!(OVS_TUNNEL_KEY_ATTR_IPV6_DST);
const T_PAD: u16 = n!(OVS_TUNNEL_KEY_ATTR_PAD);
const T_ERSPAN: u16 = n!(OVS_TUNNEL_KEY_ATTR_ERSPAN_OPTS);
/// OVS 3.1 calls 16 `GTPU_OPTS`; the 6.1 kernel uses it for `IPV4_INFO_BRIDGE`.
const T_OVS_MAX: u16 = T_ERSPAN + 1;
const VXLAN_GBP: u16 = n!(OVS_VXLAN_EXT_GBP);

// `FLOW_TNL_F_*`, the bits OVS prints in `flags(...)`.
const TNL_OAM: u32 = 1 << 0;
const TNL_DF: u32 = 1 << 1;
const TNL_CSUM: u32 = 1 << 2;
const TNL_KEY: u32 = 1 << 3;
const TNL_ALL: u32 = 0xf;

fn tun_flag_name(bit: u32) -> Option<&'static str> {
    match bit {
        TNL_DF => Some("df"),
        TNL_CSUM => Some("csum"),
        TNL_KEY => Some("key"),
        TNL_OAM => Some("oam"),
        _ => None,
    }
}

/// `ovs_tun_key_attr_lens`, for the tunnel attributes kept raw.
fn tun_len(kind: u16) -> Option<Len> {
    use Len::*;
    Some(match kind {
        T_GENEVE | T_ERSPAN | T_OVS_MAX => Variable,
        T_VXLAN => Nested,
        T_IPV6_SRC | T_IPV6_DST => Fixed(16),
        k if k > T_OVS_MAX => return None,
        // The typed ones never reach here with a wrong length; PAD has no entry.
        _ => Fixed(0),
    })
}

/// `format_odp_tun_attr`, over the typed tunnel key in the order
/// `TunnelKey::emit` sends it.
pub(super) fn fmt_tunnel(out: &mut String, t: &TunnelKey, m: Option<&TunnelKey>, verbose: bool) {
    let (mut flags, mut mflags) = (0u32, 0u32);
    if let Some(id) = t.id {
        put_be64(out, "tun_id", id, m.map(|m| m.id.unwrap_or(0)), verbose);
        flags |= TNL_KEY;
        if m.is_some() {
            mflags |= TNL_KEY;
        }
    }
    let ip = |a: Option<std::net::Ipv4Addr>| a.map_or([0; 4], |a| a.octets());
    if let Some(v) = t.ipv4_src {
        put_ipv4(out, "src", v.octets(), m.map(|m| ip(m.ipv4_src)), verbose);
    }
    if let Some(v) = t.ipv4_dst {
        put_ipv4(out, "dst", v.octets(), m.map(|m| ip(m.ipv4_dst)), verbose);
    }
    if let Some(v) = t.tos {
        put_num(out, "tos", v.into(), m.map(|m| m.tos.unwrap_or(0).into()), 0xff, true, verbose);
    }
    if let Some(v) = t.ttl {
        put_num(out, "ttl", v.into(), m.map(|m| m.ttl.unwrap_or(0).into()), 0xff, false, verbose);
    }
    for (set, bit) in [(t.dont_fragment, TNL_DF), (t.csum, TNL_CSUM), (t.oam, TNL_OAM)] {
        if set {
            flags |= bit;
        }
    }
    if let Some(v) = t.tp_src {
        put_num(out, "tp_src", v.into(), m.map(|m| m.tp_src.unwrap_or(0).into()), 0xffff, false, verbose);
    }
    if let Some(v) = t.tp_dst {
        put_num(out, "tp_dst", v.into(), m.map(|m| m.tp_dst.unwrap_or(0).into()), 0xffff, false, verbose);
    }
    for o in &t.other {
        fmt_tunnel_other(out, o, m, verbose);
    }
    if let Some(m) = m {
        for (set, bit) in [(m.dont_fragment, TNL_DF), (m.csum, TNL_CSUM), (m.oam, TNL_OAM)] {
            if set {
                mflags |= bit;
            }
        }
    }
    let mask = m.map(|_| mflags);
    if verbose || mask != Some(0) {
        out.push_str("flags(");
        match mask {
            Some(mf) => put_flags_masked(out, tun_flag_name, flags, mf & TNL_ALL, TNL_ALL),
            None => put_flags(out, tun_flag_name, flags, '|'),
        }
        out.push_str("),");
    }
    chomp(out, ',');
}

/// A tunnel attribute the typed key keeps raw.
fn fmt_tunnel_other(out: &mut String, o: &RawNla, m: Option<&TunnelKey>, verbose: bool) {
    let kind = o.kind & NLA_TYPE_MASK;
    let ma: Option<Vec<u8>> = m.map(|m| {
        m.other.iter().find(|x| x.kind & NLA_TYPE_MASK == kind).map_or_else(
            || if tun_len(kind) == Some(Len::Nested) { Vec::new() } else { vec![0; o.payload.len()] },
            |x| x.payload.clone(),
        )
    });
    if !check_len(out, kind, &o.payload, ma.as_deref(), tun_len(kind), true) {
        return;
    }
    match kind {
        T_IPV6_SRC | T_IPV6_DST => {
            let name = if kind == T_IPV6_SRC { "ipv6_src" } else { "ipv6_dst" };
            put_in6(out, name, rd(&o.payload, 0), ma.map(|m| rd(&m, 0)), verbose);
        }
        T_PAD => {}
        T_VXLAN => {
            out.push_str("vxlan(");
            fmt_vxlan(out, &o.payload, ma.as_deref(), verbose);
            out.push_str("),");
        }
        _ => put_unknown_key(out, kind, &o.payload, ma.as_deref()),
    }
}

/// `format_odp_tun_vxlan_opt`.
fn fmt_vxlan(out: &mut String, payload: &[u8], mask: Option<&[u8]>, verbose: bool) {
    for a in NlaIter::new(payload) {
        let Ok(a) = a else { break };
        let ma: Option<Vec<u8>> = mask.map(|mp| {
            NlaIter::new(mp)
                .filter_map(Result::ok)
                .find(|x| x.kind == a.kind)
                .map_or_else(|| vec![0; a.payload.len()], |x| x.payload.to_vec())
        });
        let len = match a.kind {
            VXLAN_GBP => Some(Len::Fixed(4)),
            k if k > VXLAN_GBP => None,
            _ => Some(Len::Fixed(0)),
        };
        if !check_len(out, a.kind, a.payload, ma.as_deref(), len, true) {
            continue;
        }
        if a.kind == VXLAN_GBP {
            let split = |g: u32| (u64::from(g & 0xffff), u64::from((g >> 16) & 0xff));
            let (id, fl) = split(ne32(a.payload, 0));
            let mv = ma.as_ref().map(|m| split(ne32(m, 0)));
            out.push_str("gbp(");
            put_num(out, "id", id, mv.map(|m| m.0), 0xffff, false, verbose);
            put_num(out, "flags", fl, mv.map(|m| m.1), 0xff, true, verbose);
            chomp(out, ',');
            out.push_str("),");
        } else {
            put_unknown_key(out, a.kind, a.payload, ma.as_deref());
        }
    }
    chomp(out, ',');
}

/// `format_unknown_key`. OVS checks the mask as if the tunnel attribute
/// number were a key attribute number; so does this.
fn put_unknown_key(out: &mut String, kind: u16, k: &[u8], m: Option<&[u8]>) {
    let _ = write!(out, "key{kind}(");
    put_generic(out, k);
    if let Some(m) = m.filter(|m| !mask_is_const(kind, m, 0xff)) {
        out.push('/');
        put_generic(out, m);
    }
    out.push_str("),");
}

/// `tunnel(...)`: each field given sets the attribute in both key and mask.
pub(super) fn parse_tunnel(c: &mut Cursor<'_>) -> PResult<(TunnelKey, TunnelKey)> {
    let (mut k, mut m) = (TunnelKey::default(), TunnelKey::default());
    scan_fields(c, |c| {
        let at = c.pos;
        if c.eat_field("tun_id") {
            let (v, mv) = c.masked(|c| c.num_u64(0), u64::MAX)?;
            (k.id, m.id) = (Some(v), Some(mv));
        } else if c.eat_field("src") {
            let (v, mv) = c.masked(Cursor::ipv4, [0xff; 4])?;
            (k.ipv4_src, m.ipv4_src) = (Some(v.into()), Some(mv.into()));
        } else if c.eat_field("dst") {
            let (v, mv) = c.masked(Cursor::ipv4, [0xff; 4])?;
            (k.ipv4_dst, m.ipv4_dst) = (Some(v.into()), Some(mv.into()));
        } else if c.eat_field("ipv6_src") || c.eat_field("ipv6_dst") {
            let kind =
                if c.text.get(at..).is_some_and(|s| s.starts_with("ipv6_src")) { T_IPV6_SRC } else { T_IPV6_DST };
            let (v, mv) = c.masked(Cursor::ipv6, [0xff; 16])?;
            set_other(&mut k.other, kind, v.to_vec());
            set_other(&mut m.other, kind, mv.to_vec());
        } else if c.eat_field("tos") {
            let (v, mv) = c.masked(|c| c.num_u8(0), 0xff)?;
            (k.tos, m.tos) = (Some(v), Some(mv));
        } else if c.eat_field("ttl") {
            let (v, mv) = c.masked(|c| c.num_u8(0), 0xff)?;
            (k.ttl, m.ttl) = (Some(v), Some(mv));
        } else if c.eat_field("tp_src") {
            let (v, mv) = c.masked(|c| c.num_u16(0), 0xffff)?;
            (k.tp_src, m.tp_src) = (Some(v), Some(mv));
        } else if c.eat_field("tp_dst") {
            let (v, mv) = c.masked(|c| c.num_u16(0), 0xffff)?;
            (k.tp_dst, m.tp_dst) = (Some(v), Some(mv));
        } else if c.eat("vxlan(gbp(") {
            let (v, mv) = parse_gbp(c)?;
            // OVS only emits the option when it is nonzero.
            for (other, g) in [(&mut k.other, v), (&mut m.other, mv)] {
                if g != 0 {
                    let mut w = NlaWriter::new();
                    w.put_u32(VXLAN_GBP, g);
                    set_other(other, T_VXLAN, w.into_bytes());
                }
            }
        } else if c.eat("flags(") {
            let (f, fm) = c.flags(tun_flag_name, TNL_ALL, true)?;
            c.expect(")")?;
            // The `key` flag is implied by tun_id and never sent.
            (k.dont_fragment, k.csum, k.oam) = (f & TNL_DF != 0, f & TNL_CSUM != 0, f & TNL_OAM != 0);
            (m.dont_fragment, m.csum, m.oam) = (fm & TNL_DF != 0, fm & TNL_CSUM != 0, fm & TNL_OAM != 0);
        } else if c.starts("erspan(") || c.starts("geneve(") || c.starts("gtpu(") || c.starts("vxlan(") {
            return Err(c.unsupported(at, format_args!("the {}(...) tunnel option", c.word_at(at))));
        } else {
            return Ok(false);
        }
        Ok(true)
    })?;
    Ok((k, m))
}

fn set_other(other: &mut Vec<RawNla>, kind: u16, payload: Vec<u8>) {
    other.retain(|o| o.kind & NLA_TYPE_MASK != kind);
    other.push(RawNla { kind, payload });
}

/// `scan_vxlan_gbp`: `[id=N[/M]][,][flags=N[/M]]))`, as one u32 each.
fn parse_gbp(c: &mut Cursor<'_>) -> PResult<(u32, u32)> {
    let (mut id, mut idm, mut fl, mut flm) = (0u32, 0u32, 0u32, 0u32);
    if c.eat("id=") {
        let (v, m) = c.masked(|c| c.num_u16(0), 0xffff)?;
        (id, idm) = (v.into(), m.into());
    }
    c.eat(",");
    if c.eat("flags=") {
        let (v, m) = c.masked(|c| c.num_u8(0), 0xff)?;
        (fl, flm) = (v.into(), m.into());
    }
    c.expect("))")?;
    Ok(((fl << 16) | id, (flm << 16) | idm))
}

#[cfg(test)]
mod tests {
    use crate::odp::action::Action;
    use crate::odp::format::testing::actions_round_trip;
    use crate::odp::format::{format_key, parse_actions, parse_key};
    use crate::odp::key::KeyAttr;

    #[test]
    fn vxlan_tunnel_flow_as_weave_installs_it() {
        // Decapsulated VXLAN traffic: match the tunnel, send to a port.
        let text = "recirc_id(0),tunnel(tun_id=0x5d,src=192.168.48.12,dst=192.168.48.11,ttl=64/0,tp_dst=6784,flags(-df-csum+key)),in_port(3),eth(src=22:33:44:55:66:77/ff:ff:ff:ff:ff:ff,dst=00:00:00:00:00:00/01:00:00:00:00:00),eth_type(0x0800),ipv4(frag=no)";
        let (k, m) = parse_key(text).unwrap();
        let want = "recirc_id(0),tunnel(tun_id=0x5d,src=192.168.48.12,dst=192.168.48.11,tp_dst=6784,flags(-df-csum+key)),in_port(3),eth(src=22:33:44:55:66:77,dst=00:00:00:00:00:00/01:00:00:00:00:00),eth_type(0x0800),ipv4(frag=no)";
        assert_eq!(format_key(&k, Some(&m)), want);
        let acts = "set(tunnel(tun_id=0x5d,src=192.168.48.11,dst=192.168.48.12,ttl=64,tp_dst=6784,flags(df|key))),4";
        assert_eq!(actions_round_trip(acts), acts);
        let parsed = parse_actions(acts).unwrap();
        let Action::Set(KeyAttr::Tunnel(t)) = &parsed[0] else { panic!("{parsed:?}") };
        assert_eq!((t.id, t.dont_fragment, t.csum, t.tp_dst), (Some(0x5d), true, false, Some(6784)));
    }
}
