//! Action formatting: `format_odp_actions` and `format_odp_action`, with the
//! userspace cookies and the actions the typed model keeps raw.

use std::borrow::Cow;
use std::fmt::Write as _;

use super::key_fmt::{attr_from_raw, attr_of, fmt_attr_checked};
use super::print::{alt_hex, be16, be32, mac_str, mpls_lse, ne16, ne32, put_flags, put_generic, put_vlan_tci, rd};
use super::tables::{
    action_len, slow_path_name, Len, A_ADD_MPLS, A_CLONE, A_CT_CLEAR, A_DROP, A_LB_OUTPUT, A_METER, A_POP_ETH,
    A_POP_MPLS, A_POP_NSH, A_PUSH_ETH, A_PUSH_MPLS, A_TUNNEL_POP, COOKIE_LEN,
};
use crate::odp::action::{self, Action, SampleAction, UserspaceAction};
use crate::odp::key::KeyAttr;
use crate::odp::nla::{Nla, RawNla, NLA_TYPE_MASK};

/// Formats an action list as `ovs-dpctl dump-flows` does. An empty list is `drop`.
pub fn format_actions(actions: &[Action]) -> String {
    let mut out = String::new();
    fmt_actions(&mut out, actions);
    out
}

/// `format_odp_actions`.
pub(super) fn fmt_actions(out: &mut String, actions: &[Action]) {
    if actions.is_empty() {
        out.push_str("drop");
        return;
    }
    for (i, a) in actions.iter().enumerate() {
        if i > 0 {
            out.push(',');
        }
        fmt_action(out, a);
    }
}

/// `format_odp_action`.
fn fmt_action(out: &mut String, a: &Action) {
    match a {
        Action::Output(port) => {
            let _ = write!(out, "{port}");
        }
        Action::Userspace(u) => fmt_userspace(out, u),
        Action::Set(k) => {
            out.push_str("set(");
            fmt_attr_checked(out, &attr_of(k), None, true);
            out.push(')');
        }
        Action::SetMasked { value, mask } => fmt_set_masked(out, value, mask),
        Action::PushVlan { tpid, tci } => {
            out.push_str("push_vlan(");
            if *tpid != 0x8100 {
                let _ = write!(out, "tpid=0x{tpid:04x},");
            }
            put_vlan_tci(out, *tci, 0xffff, false);
            out.push(')');
        }
        Action::PopVlan => out.push_str("pop_vlan"),
        Action::Sample(s) => fmt_sample(out, s),
        Action::Recirc(id) => {
            let _ = write!(out, "recirc({})", alt_hex((*id).into()));
        }
        Action::Hash { alg, basis } => match alg {
            0 => {
                let _ = write!(out, "hash(l4({basis}))");
            }
            1 => {
                let _ = write!(out, "hash(sym_l4({basis}))");
            }
            _ => {
                let _ = write!(out, "hash(Unknown hash algorithm({alg}))");
            }
        },
        Action::Trunc(n) => {
            let _ = write!(out, "trunc({n})");
        }
        Action::Other(r) => fmt_other_action(out, r),
    }
}

/// A masked set, from the bytes `Action::emit` sends: value then mask, split in
/// halves as OVS splits them.
fn fmt_set_masked(out: &mut String, value: &KeyAttr, mask: &KeyAttr) {
    let kind = value.kind();
    let mut p = value.fixed_payload().unwrap_or_default();
    p.extend(mask.fixed_payload().unwrap_or_default());
    let size = p.len() / 2;
    out.push_str("set(");
    if size <= 40 {
        let a = attr_from_raw(kind, Cow::Borrowed(&p[..size]));
        let m = attr_from_raw(kind, Cow::Borrowed(&p[size..2 * size]));
        fmt_attr_checked(out, &a, Some(&m), false);
    } else {
        fmt_attr_checked(out, &attr_from_raw(kind, Cow::Owned(p)), None, false);
    }
    out.push(')');
}

/// `format_odp_sample_action`.
fn fmt_sample(out: &mut String, s: &SampleAction) {
    let pct = (100.0 * f64::from(s.probability)) / f64::from(u32::MAX);
    let _ = write!(out, "sample(sample={pct:.1}%,actions(");
    fmt_actions(out, &s.actions);
    out.push_str("))");
}

/// `format_odp_userspace_action`.
fn fmt_userspace(out: &mut String, u: &UserspaceAction) {
    let _ = write!(out, "userspace(pid={}", u.pid);
    if let Some(d) = &u.userdata {
        match (d.len() == COOKIE_LEN).then(|| cookie_text(d)).flatten() {
            Some(text) => out.push_str(&text),
            None => {
                out.push_str(",userdata(");
                for b in d {
                    let _ = write!(out, "{b:02x}");
                }
                out.push(')');
            }
        }
    }
    if u.actions {
        out.push_str(",actions");
    }
    if let Some(p) = u.egress_tun_port {
        let _ = write!(out, ",tunnel_out_port={p}");
    }
    out.push(')');
}

/// A 48-byte userdata read as OVS 3.1's `struct user_action_cookie` (host
/// byte order, x86-64 layout). `None` for the unspecified type.
fn cookie_text(d: &[u8]) -> Option<String> {
    let mut s = String::new();
    match ne16(d, 0) {
        1 => {
            let tci = be16(d, 24);
            let _ = write!(s, ",sFlow(vid={},pcp={},output={})", tci & 0x0fff, tci >> 13, ne32(d, 28));
        }
        2 => {
            s.push_str(",slow_path(");
            put_flags(&mut s, slow_path_name, ne32(d, 28), ',');
            s.push(')');
        }
        3 => {
            let _ = write!(
                s,
                ",flow_sample(probability={},collector_set_id={},obs_domain_id={},obs_point_id={},output_port={}",
                ne16(d, 24),
                ne32(d, 28),
                ne32(d, 32),
                ne32(d, 36),
                ne32(d, 40)
            );
            match ne32(d, 44) {
                1 => s.push_str(",ingress"),
                2 => s.push_str(",egress"),
                _ => {}
            }
            s.push(')');
        }
        4 => {
            let _ = write!(s, ",ipfix(output_port={})", ne32(d, 24));
        }
        5 => {
            let _ = write!(
                s,
                ",controller(reason={},dont_send={},continuation={},recirc_id={},rule_cookie={},controller_id={},max_len={})",
                ne16(d, 26),
                u8::from(d.get(24).is_some_and(|b| *b != 0)),
                u8::from(d.get(25).is_some_and(|b| *b != 0)),
                ne32(d, 28),
                alt_hex(u64::from_be_bytes(rd(d, 32)).into()),
                ne16(d, 40),
                ne16(d, 42)
            );
        }
        _ => return None,
    }
    Some(s)
}

/// An action the typed model keeps raw, under OVS 3.1's numbering.
fn fmt_other_action(out: &mut String, r: &RawNla) {
    let kind = r.kind & NLA_TYPE_MASK;
    let p = &r.payload[..];
    let typed = matches!(
        kind,
        action::OUTPUT
            | action::USERSPACE
            | action::SET
            | action::PUSH_VLAN
            | action::POP_VLAN
            | action::SAMPLE
            | action::RECIRC
            | action::HASH
            | action::SET_MASKED
            | action::TRUNC
    );
    if typed {
        match Action::parse(&Nla { kind, flags: 0, payload: p }) {
            Ok(a) if !matches!(a, Action::Other(_)) => return fmt_action(out, &a),
            _ if kind == action::USERSPACE => return out.push_str("userspace(error)"),
            _ if kind == action::SAMPLE => return out.push_str("sample(error)"),
            _ => {}
        }
    }
    match action_len(kind) {
        None => {
            let _ = write!(out, "bad length {}, expected -1 for: ", p.len());
            return put_generic_action(out, kind, p);
        }
        Some(Len::Fixed(n)) if p.len() != n => {
            let _ = write!(out, "bad length {}, expected {} for: ", p.len(), n);
            return put_generic_action(out, kind, p);
        }
        _ => {}
    }
    let mpls = |out: &mut String, name: &str| {
        let (label, tc, ttl, bos) = mpls_lse(be32(p, 0));
        let _ = write!(out, "{name}(label={label},tc={tc},ttl={ttl},bos={bos},eth_type=0x{:x})", be16(p, 4));
    };
    match kind {
        A_METER => {
            let _ = write!(out, "meter({})", ne32(p, 0));
        }
        A_LB_OUTPUT => {
            let _ = write!(out, "lb_output({})", ne32(p, 0));
        }
        A_TUNNEL_POP => {
            let _ = write!(out, "tnl_pop({})", ne32(p, 0));
        }
        A_POP_ETH => out.push_str("pop_eth"),
        A_CT_CLEAR => out.push_str("ct_clear"),
        A_POP_NSH => out.push_str("pop_nsh()"),
        A_DROP => out.push_str("drop"),
        A_POP_MPLS => {
            let _ = write!(out, "pop_mpls(eth_type=0x{:x})", be16(p, 0));
        }
        A_PUSH_MPLS => mpls(out, "push_mpls"),
        A_ADD_MPLS => mpls(out, "add_mpls"),
        A_PUSH_ETH => {
            let _ = write!(out, "push_eth(src={},dst={})", mac_str(rd(p, 0)), mac_str(rd(p, 6)));
        }
        A_CLONE => match action::parse_actions(p) {
            Ok(inner) => {
                out.push_str("clone(");
                fmt_actions(out, &inner);
                out.push(')');
            }
            Err(_) => put_generic_action(out, kind, p),
        },
        _ => put_generic_action(out, kind, p),
    }
}

/// `format_generic_odp_action`.
fn put_generic_action(out: &mut String, kind: u16, p: &[u8]) {
    let _ = write!(out, "action{kind}");
    if !p.is_empty() {
        out.push('(');
        put_generic(out, p);
        out.push(')');
    }
}

#[cfg(test)]
mod tests {
    use crate::odp::format::testing::actions_round_trip;

    /// Input and output of `ovs-dpctl normalize-actions` (OVS 3.1.0, Debian 12).
    #[test]
    fn actions_as_ovs_dpctl_31_normalizes_them() {
        let zeros48 = "00".repeat(48);
        let cases: &[(&str, String)] = &[
            ("userspace(pid=7)", format!("userspace(pid=7,userdata({zeros48}))")),
            ("userspace(pid=7,userdata(01))", "userspace(pid=7,userdata(0100000000000000))".into()),
            ("userspace(pid=7,userdata(010203040506070809))", "userspace(pid=7,userdata(010203040506070809))".into()),
            ("userspace(pid=7,userdata(),actions)", "userspace(pid=7,userdata(0000000000000000),actions)".into()),
            ("userspace(pid=7,tunnel_out_port=3)", format!("userspace(pid=7,userdata({zeros48}),tunnel_out_port=3)")),
            ("sample(sample=0%,actions())", "sample(sample=0.0%,actions(drop))".into()),
            ("sample(sample=50%,actions(1))", "sample(sample=50.0%,actions(1))".into()),
            ("recirc(5)", "recirc(0x5)".into()),
            ("set(skb_mark(5))", "set(skb_mark(0x5))".into()),
            ("set(skb_mark(5/0xf))", "set(skb_mark(0x5/0xf))".into()),
            ("set(skb_priority(0))", "set(skb_priority(0))".into()),
            ("set(dp_hash(7))", "set(dp_hash(0x7))".into()),
            ("set(arp(op=2))", "set(arp(op=2))".into()),
            (
                "set(ipv6(src=::1,dst=fe80::2,label=5,proto=6,tclass=0,hlimit=64,frag=no))",
                "set(ipv6(src=::1,dst=fe80::2,label=0x5,proto=6,tclass=0,hlimit=64,frag=no))".into(),
            ),
            ("set(tcp_flags(0xfff))", "set(tcp_flags(fin|syn|rst|psh|ack|urg|ece|cwr|ns|[200]|[400]|[800]))".into()),
            ("set(tcp_flags(+syn-ack))", "set(tcp_flags(+syn-ack))".into()),
            ("set(tcp_flags(0x12/0x13))", "set(tcp_flags(-fin+syn+ack))".into()),
            ("set(tcp_flags(0/0))", "set(tcp_flags(0/0))".into()),
            (
                "set(tunnel(tun_id=0x5,src=1.1.1.1,dst=2.2.2.2,ttl=64,tp_dst=4789,flags(df)))",
                "set(tunnel(tun_id=0x5,src=1.1.1.1,dst=2.2.2.2,ttl=64,tp_dst=4789,flags(df|key)))".into(),
            ),
            (
                "set(tunnel(tun_id=0x0,dst=2.2.2.2,ttl=64,flags(df|csum)))",
                "set(tunnel(tun_id=0x0,dst=2.2.2.2,ttl=64,flags(df|csum|key)))".into(),
            ),
            (
                "set(tunnel(dst=2.2.2.2,tos=0,ttl=64,tp_src=0,flags(0)))",
                "set(tunnel(dst=2.2.2.2,tos=0,ttl=64,tp_src=0,flags(0)))".into(),
            ),
            ("trunc(100),2,3", "trunc(100),2,3".into()),
        ];
        for (input, want) in cases {
            assert_eq!(&actions_round_trip(input), want, "{input}");
        }
    }
}
