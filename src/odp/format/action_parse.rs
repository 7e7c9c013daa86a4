//! Action parsing: `odp_actions_from_string`, cookies included.

use super::error::{FormatError, PResult};
use super::key_parse::parse_key_attr;
use super::print::all_bytes;
use super::scan::Cursor;
use super::tables::{slow_path_name, A_CLONE, A_CT_CLEAR, A_METER, A_POP_NSH, COOKIE_LEN, OFPP_NONE};
use crate::odp::action::{self, Action, SampleAction, UserspaceAction};
use crate::odp::key::KeyAttr;
use crate::odp::nla::{NlaWriter, RawNla};

/// Parses an action list as `ovs-dpctl add-flow` does (see the module docs for
/// the few differences). `drop` alone is the empty list.
pub fn parse_actions(text: &str) -> Result<Vec<Action>, FormatError> {
    if text.trim().eq_ignore_ascii_case("drop") {
        return Ok(Vec::new());
    }
    let mut c = Cursor::new(text);
    let mut out = Vec::new();
    loop {
        c.skip_delims();
        if c.at_end() {
            return Ok(out);
        }
        parse_action(&mut c, &mut out)?;
        match c.peek() {
            None | Some(b',' | b' ' | b'\t' | b'\r' | b'\n') => {}
            Some(_) => return Err(c.syntax("',' between actions")),
        }
    }
}

fn parse_action(c: &mut Cursor<'_>, out: &mut Vec<Action>) -> PResult<()> {
    c.enter()?;
    let r = parse_action_inner(c, out);
    c.leave();
    r
}

fn parse_action_inner(c: &mut Cursor<'_>, out: &mut Vec<Action>) -> PResult<()> {
    let start = c.pos;
    if matches!(c.peek(), Some(b'0'..=b'9' | b'+' | b'-')) {
        out.push(Action::Output(c.num_u32(0)?));
        return Ok(());
    }
    if c.eat("trunc(") {
        out.push(Action::Trunc(c.num_u32(0)?));
    } else if c.eat("recirc(") {
        // OVS reads only decimal here, though it prints hex; both are accepted.
        out.push(Action::Recirc(c.num_u32(0)?));
    } else if c.starts("userspace(") {
        out.push(Action::Userspace(parse_userspace(c)?));
        return Ok(());
    } else if c.eat("set(") {
        let (mut k, mut m) = (Vec::new(), Vec::new());
        parse_key_attr(c, &mut k, &mut m)?;
        out.push(set_action(c, start, k.pop(), m.pop())?);
    } else if c.starts("push_vlan(") {
        out.push(parse_push_vlan(c)?);
        return Ok(());
    } else if c.eat("pop_vlan") {
        out.push(Action::PopVlan);
        return Ok(());
    } else if c.eat("meter(") {
        let id = c.num_u32(0)?;
        out.push(Action::Other(RawNla { kind: A_METER, payload: id.to_ne_bytes().into() }));
    } else if c.eat("sample(sample=") {
        out.push(Action::Sample(parse_sample(c)?));
        return Ok(());
    } else if c.eat("clone(") {
        let inner = parse_action_list(c)?;
        let mut w = NlaWriter::new();
        action::emit_actions(&inner, &mut w);
        out.push(Action::Other(RawNla { kind: A_CLONE, payload: w.into_bytes() }));
    } else if c.eat("pop_nsh()") {
        out.push(Action::Other(RawNla { kind: A_POP_NSH, payload: Vec::new() }));
        return Ok(());
    } else if c.eat("ct_clear") {
        out.push(Action::Other(RawNla { kind: A_CT_CLEAR, payload: Vec::new() }));
        return Ok(());
    } else if c.eat("hash(") {
        // Not parsed by OVS 3.1 at all; this reads what it prints.
        let alg = if c.eat("l4(") {
            0
        } else if c.eat("sym_l4(") {
            1
        } else {
            return Err(c.syntax("l4(N) or sym_l4(N)"));
        };
        let basis = c.num_u32(0)?;
        c.expect(")")?;
        out.push(Action::Hash { alg, basis });
    } else {
        let word = c.word_at(start);
        let known = ["ct", "push_nsh", "check_pkt_len", "tnl_push", "tnl_pop", "lb_output", "push_eth", "pop_eth"];
        if known.contains(&word.as_str()) {
            return Err(c.unsupported(start, format_args!("the {word} action")));
        }
        return Err(c.syntax("an action such as an output port, set(...) or userspace(...)"));
    }
    c.expect(")")
}

/// `set(KEY)` becomes a plain set when the mask OVS would build is all ones,
/// else a masked one.
fn set_action(c: &Cursor<'_>, start: usize, k: Option<KeyAttr>, m: Option<KeyAttr>) -> PResult<Action> {
    let (Some(k), Some(m)) = (k, m) else { return Err(c.syntax("a key attribute inside set(...)")) };
    match k {
        // OVS may turn this into a masked set, which the kernel refuses.
        KeyAttr::Tunnel(_) => return Ok(Action::Set(k)),
        KeyAttr::Encap(_) => return Err(c.unsupported(start, "set(encap(...))")),
        _ => {}
    }
    match (m.fixed_payload(), &m) {
        (Some(mb), _) if all_bytes(&mb, 0xff) => Ok(Action::Set(k)),
        (Some(_), _) => Ok(Action::SetMasked { value: k, mask: m }),
        (None, KeyAttr::Other(r)) if all_bytes(&r.payload, 0xff) => Ok(Action::Set(k)),
        (None, _) => Err(c.unsupported(start, "a masked set of an attribute weaver keeps raw")),
    }
}

/// `parse_action_list`: actions up to (not including) the closing `)`.
/// A lone `drop`, which OVS prints for an empty nested list, is accepted too.
fn parse_action_list(c: &mut Cursor<'_>) -> PResult<Vec<Action>> {
    let save = c.pos;
    c.skip_delims();
    if c.rest().get(..4).is_some_and(|w| w.eq_ignore_ascii_case("drop")) {
        c.pos += 4;
        c.skip_delims();
        if c.peek() == Some(b')') {
            return Ok(Vec::new());
        }
    }
    c.pos = save;
    let mut out = Vec::new();
    loop {
        c.skip_delims();
        match c.peek() {
            Some(b')') => return Ok(out),
            None => return Err(c.syntax("')'")),
            Some(_) => parse_action(c, &mut out)?,
        }
    }
}

/// `sample(sample=P%,actions(...))`, after `sample(sample=`.
fn parse_sample(c: &mut Cursor<'_>) -> PResult<SampleAction> {
    c.skip_space();
    let at = c.pos;
    let len = c.rest().bytes().take_while(|b| b.is_ascii_alphanumeric() || b"+-.".contains(b)).count();
    let pct: f64 = c.rest()[..len].parse().map_err(|_| c.syntax("a percentage"))?;
    c.pos += len;
    c.expect("%,actions(")?;
    if !(0.0..=100.0).contains(&pct) {
        return Err(c.out_of_range(at, "a percentage from 0 to 100"));
    }
    let p = (f64::from(u32::MAX) * (pct / 100.0) + 0.5).floor();
    let probability = if p <= 0.0 {
        0
    } else if p >= f64::from(u32::MAX) {
        u32::MAX
    } else {
        p as u32
    };
    let actions = parse_action_list(c)?;
    c.expect("))")?;
    Ok(SampleAction { probability, actions, other: Vec::new() })
}

/// The four forms OVS accepts, each all or nothing.
fn parse_push_vlan(c: &mut Cursor<'_>) -> PResult<Action> {
    const FORMS: [&[&str]; 4] =
        [&["vid", "pcp"], &["vid", "pcp", "cfi"], &["tpid", "vid", "pcp"], &["tpid", "vid", "pcp", "cfi"]];
    let start = c.pos;
    for form in FORMS {
        c.pos = start + "push_vlan(".len();
        let mut vals = [0x8100u32, 0, 0, 1];
        let ok = form.iter().enumerate().all(|(i, name)| {
            (i == 0 || c.eat(",")) && c.eat_field(name) && {
                let slot = ["tpid", "vid", "pcp", "cfi"].iter().position(|n| n == name).unwrap_or(0);
                c.num(0, u32::MAX.into()).map(|v| vals[slot] = v as u32).is_ok()
            }
        }) && c.eat(")");
        if !ok {
            continue;
        }
        let [tpid, vid, pcp, cfi] = vals;
        if vid > 0xfff || pcp > 7 || tpid > 0xffff {
            return Err(c.out_of_range(start, "vid is 12 bits, pcp 3, tpid 16"));
        }
        let tci = (vid | pcp << 13 | if cfi != 0 { 0x1000 } else { 0 }) as u16;
        return Ok(Action::PushVlan { tpid: tpid as u16, tci });
    }
    c.pos = start;
    Err(c.syntax("push_vlan([tpid=T,]vid=V,pcp=P[,cfi=C])"))
}

/// `parse_odp_userspace_action`, cookies included.
fn parse_userspace(c: &mut Cursor<'_>) -> PResult<UserspaceAction> {
    c.expect("userspace(pid=")?;
    let pid = c.num_u32(0)?;
    // Without userdata OVS sends its (zeroed) cookie anyway.
    let mut userdata = vec![0u8; COOKIE_LEN];
    if let Some(cookie) = parse_cookie(c)? {
        userdata = cookie;
    } else if c.eat(",userdata(") {
        userdata = Vec::new();
        loop {
            c.skip_space();
            let pair = c.rest().as_bytes().get(..2).filter(|p| p.iter().all(u8::is_ascii_hexdigit));
            let Some(pair) = pair else { break };
            userdata.push(u8::from_str_radix(std::str::from_utf8(pair).unwrap_or("00"), 16).unwrap_or(0));
            c.pos += 2;
        }
        c.expect(")")?;
    }
    if userdata.len() < 8 {
        userdata.resize(8, 0);
    }
    let actions = c.eat(",actions");
    let mut egress_tun_port = None;
    if c.eat(",tunnel_out_port=") {
        // ODPP_NONE means "no port" to OVS.
        egress_tun_port = Some(c.num_u32(0)?).filter(|p| *p != u32::MAX);
    }
    c.expect(")")?;
    Ok(UserspaceAction { pid, userdata: Some(userdata), egress_tun_port, actions, other: Vec::new() })
}

/// The `sFlow`, `slow_path`, `flow_sample`, `ipfix` and `controller` cookies,
/// laid out as OVS 3.1's `struct user_action_cookie`.
fn parse_cookie(c: &mut Cursor<'_>) -> PResult<Option<Vec<u8>>> {
    let mut d = vec![0u8; COOKIE_LEN];
    let mut put = |off: usize, b: &[u8]| {
        if let Some(s) = d.get_mut(off..off + b.len()) {
            s.copy_from_slice(b);
        }
    };
    let ty: u16 = if c.eat(",sFlow(vid=") {
        let vid = c.num_u32(0)?;
        c.expect(",pcp=")?;
        let pcp = c.num_u32(0)?;
        c.expect(",output=")?;
        let output = c.num_u32(0)?;
        c.expect(")")?;
        let mut tci = (vid | pcp << 13) as u16;
        if tci != 0 {
            tci |= 0x1000;
        }
        put(24, &tci.to_be_bytes());
        put(28, &output.to_ne_bytes());
        1
    } else if c.eat(",slow_path(") {
        let (reason, _) = c.flags(slow_path_name, 0x7f, false)?;
        c.expect(")")?;
        put(28, &reason.to_ne_bytes());
        2
    } else if c.eat(",flow_sample(probability=") {
        let mut vals = [0u32; 5];
        for (i, name) in
            ["", ",collector_set_id=", ",obs_domain_id=", ",obs_point_id=", ",output_port="].iter().enumerate()
        {
            c.expect(name)?;
            vals[i] = c.num_u32(0)?;
        }
        let direction: u32 = if c.eat(",ingress") {
            1
        } else if c.eat(",egress") {
            2
        } else {
            0
        };
        c.expect(")")?;
        put(24, &(vals[0] as u16).to_ne_bytes());
        for (i, v) in vals[1..].iter().enumerate() {
            put(28 + 4 * i, &v.to_ne_bytes());
        }
        put(44, &direction.to_ne_bytes());
        3
    } else if c.eat(",ipfix(output_port=") {
        let port = c.num_u32(0)?;
        c.expect(")")?;
        put(24, &port.to_ne_bytes());
        4
    } else if c.eat(",controller(reason=") {
        let reason = c.num_u16(10)?;
        c.expect(",dont_send=")?;
        let dont_send = c.num_u8(10)?;
        c.expect(",continuation=")?;
        let continuation = c.num_u8(10)?;
        c.expect(",recirc_id=")?;
        let recirc_id = c.num_u32(10)?;
        c.expect(",rule_cookie=")?;
        let cookie = c.num_u64(16)?;
        c.expect(",controller_id=")?;
        let controller_id = c.num_u16(10)?;
        c.expect(",max_len=")?;
        let max_len = c.num_u16(10)?;
        c.expect(")")?;
        put(24, &[u8::from(dont_send != 0), u8::from(continuation != 0)]);
        put(26, &reason.to_ne_bytes());
        put(28, &recirc_id.to_ne_bytes());
        put(32, &cookie.to_be_bytes());
        put(40, &controller_id.to_ne_bytes());
        put(42, &max_len.to_ne_bytes());
        5
    } else {
        return Ok(None);
    };
    put(0, &ty.to_ne_bytes());
    put(4, &OFPP_NONE.to_ne_bytes());
    Ok(Some(d))
}

#[cfg(test)]
mod tests {
    use proptest::prelude::*;

    use super::*;
    use crate::odp::format::format_actions;
    use crate::odp::format::testing::{actions_round_trip, mask_like, printable};

    // tests/odp.at, "OVS datapath actions parsing and formatting - valid forms",
    // less the actions weaver does not model (ct, tnl_push/pop, erspan, and a
    // masked set of sctp, which `Action::SetMasked` cannot carry).
    const ODP_ACTIONS: &[&str] = &[
        "1,2,3",
        "userspace(pid=6633,sFlow(vid=9,pcp=7,output=10),actions)",
        "userspace(pid=6633,sFlow(vid=9,pcp=7,output=10),actions,tunnel_out_port=10)",
        "userspace(pid=9765,slow_path(0))",
        "userspace(pid=9765,slow_path(0),tunnel_out_port=10)",
        "userspace(pid=9765,slow_path(cfm))",
        "userspace(pid=9765,slow_path(cfm),tunnel_out_port=10)",
        "userspace(pid=1234567,userdata(0102030405060708090a0b0c0d0e0f),actions)",
        "userspace(pid=1234567,userdata(0102030405060708090a0b0c0d0e0f),tunnel_out_port=10)",
        "userspace(pid=6633,flow_sample(probability=123,collector_set_id=1234,obs_domain_id=2345,obs_point_id=3456,output_port=10))",
        "userspace(pid=6633,flow_sample(probability=123,collector_set_id=1234,obs_domain_id=2345,obs_point_id=3456,output_port=10,ingress))",
        "userspace(pid=6633,flow_sample(probability=123,collector_set_id=1234,obs_domain_id=2345,obs_point_id=3456,output_port=10),tunnel_out_port=10)",
        "userspace(pid=6633,flow_sample(probability=123,collector_set_id=1234,obs_domain_id=2345,obs_point_id=3456,output_port=10,egress),tunnel_out_port=10)",
        "userspace(pid=6633,ipfix(output_port=10))",
        "userspace(pid=6633,ipfix(output_port=10),tunnel_out_port=10)",
        "userspace(pid=6633,controller(reason=1,dont_send=0,continuation=1,recirc_id=4444,rule_cookie=0x5555,controller_id=0,max_len=65535))",
        "userspace(pid=6633,controller(reason=1,dont_send=1,continuation=0,recirc_id=4444,rule_cookie=0x5555,controller_id=0,max_len=65535))",
        "set(in_port(2))",
        "set(eth(src=00:01:02:03:04:05,dst=10:11:12:13:14:15))",
        "set(eth(src=00:01:02:03:04:05,dst=10:11:12:13:14:15/ff:ff:ff:00:00:00))",
        "set(eth_type(0x1234))",
        "set(ipv4(src=35.8.2.41,dst=172.16.0.20,proto=5,tos=0x80,ttl=128,frag=no))",
        "set(ipv4(src=35.8.2.41,dst=172.16.0.20,proto=5,ttl=128,frag=no))",
        "set(ipv4(src=35.8.2.41/255.255.255.0,dst=172.16.0.20,proto=5,tos=0x80,ttl=128,frag=no))",
        "set(ipv4(src=35.8.2.41/255.255.255.0,tos=0x80,ttl=128,frag=no))",
        "set(ipv4(tos=0/0x3))",
        "set(ipv4(tos=0x80/0xfc))",
        "set(ipv4(ttl=128,frag=no))",
        "set(ipv4(frag=no))",
        "set(tcp(src=80,dst=8080))",
        "set(tcp(src=80/0xff00,dst=8080))",
        "set(tcp(src=80))",
        "set(tcp(dst=8080))",
        "set(udp(src=81,dst=6632))",
        "set(udp(src=81/0xff00,dst=6632))",
        "set(udp(src=81))",
        "set(udp(dst=6633))",
        "set(sctp(src=82,dst=6633))",
        "set(icmp(type=1,code=2))",
        "set(ipv6(src=::1,dst=::2,label=0,proto=10,tclass=0x70,hlimit=128,frag=no))",
        "set(ipv6(src=::1,dst=::2))",
        "set(ipv6(label=0,proto=10,tclass=0x70,hlimit=128,frag=no))",
        "set(ipv6(label=0,proto=10,hlimit=128))",
        "set(ipv6(label=0/0xfff,proto=10,tclass=0x70/0x70))",
        "set(ipv6(label=0))",
        "set(icmpv6(type=1,code=2))",
        "set(vlan(vid=5))",
        "set(vlan(vid=3,pcp=5))",
        "set(vlan(vid=3,pcp=5,cfi=0))",
        "set(vlan(vid=5/0x3))",
        "set(vlan(vid=5/0x1)),3",
        "push_vlan(vid=12,pcp=0)",
        "push_vlan(vid=13,pcp=5,cfi=0)",
        "push_vlan(tpid=0x9100,vid=13,pcp=5)",
        "push_vlan(tpid=0x9100,vid=13,pcp=5,cfi=0)",
        "pop_vlan",
        "sample(sample=9.7%,actions(1,2,3,push_vlan(vid=1,pcp=2)))",
        "set(tunnel(tun_id=0xabcdef1234567890,src=1.1.1.1,dst=2.2.2.2,ttl=64,flags(df|csum|key)))",
        "set(tunnel(tun_id=0xabcdef1234567890,src=1.1.1.1,dst=2.2.2.2,ttl=64,flags(key)))",
        "ct_clear",
        "trunc(100)",
        "clone(1)",
        "clone(clone(push_vlan(vid=12,pcp=0),2),1)",
    ];

    #[test]
    fn odp_at_actions_round_trip() {
        for line in ODP_ACTIONS {
            assert_eq!(actions_round_trip(line), *line);
        }
    }

    fn printable_action() -> impl Strategy<Value = Action> {
        let ks = crate::odp::key::strategy::fixed_key_attr;
        let leaf = prop_oneof![
            any::<u32>().prop_map(Action::Output),
            (any::<u32>(), proptest::collection::vec(any::<u8>(), 8..20), any::<Option<u32>>(), any::<bool>())
                .prop_map(|(pid, userdata, port, actions)| Action::Userspace(UserspaceAction {
                    pid,
                    userdata: Some(userdata),
                    egress_tun_port: port.filter(|p| *p != u32::MAX),
                    actions,
                    other: vec![],
                })),
            (any::<u32>(), proptest::collection::vec(any::<u8>(), 48..=48), 0u16..7).prop_map(|(pid, mut d, ty)| {
                d[..2].copy_from_slice(&ty.to_ne_bytes());
                if ty == 2 {
                    // OVS prints unnamed reasons in hex and several reasons with
                    // commas, and reads back neither: one named reason, or none.
                    let reason = if d[28] & 0x80 != 0 { 0 } else { 1u32 << (d[28] % 7) };
                    d[28..32].copy_from_slice(&reason.to_ne_bytes());
                }
                Action::Userspace(UserspaceAction { pid, userdata: Some(d), ..Default::default() })
            }),
            ks().prop_map(|k| Action::Set(printable(k))),
            crate::odp::tunnel::strategy::tunnel_key().prop_map(|mut t| {
                t.other.clear();
                Action::Set(KeyAttr::Tunnel(t))
            }),
            (ks(), any::<u8>(), proptest::collection::vec(any::<u8>(), 1..8)).prop_map(|(k, mode, bytes)| {
                let value = printable(k);
                let mask = match mask_like(&value, mode, &bytes) {
                    // OVS cannot read back `set(recirc_id(X/Y))`.
                    KeyAttr::RecircId(_) => KeyAttr::RecircId(u32::MAX),
                    m => m,
                };
                Action::SetMasked { value, mask }
            }),
            (any::<u16>(), any::<u16>()).prop_map(|(tpid, tci)| Action::PushVlan { tpid, tci }),
            Just(Action::PopVlan),
            any::<u32>().prop_map(Action::Recirc),
            (0u32..2, any::<u32>()).prop_map(|(alg, basis)| Action::Hash { alg, basis }),
            any::<u32>().prop_map(Action::Trunc),
            any::<u32>().prop_map(|m| Action::Other(RawNla { kind: A_METER, payload: m.to_ne_bytes().into() })),
            Just(Action::Other(RawNla { kind: A_CT_CLEAR, payload: vec![] })),
        ];
        leaf.prop_recursive(2, 12, 4, |inner| {
            prop_oneof![
                (any::<u32>(), proptest::collection::vec(inner.clone(), 0..4)).prop_map(|(probability, actions)| {
                    Action::Sample(SampleAction { probability, actions, other: vec![] })
                }),
                proptest::collection::vec(inner, 0..3).prop_map(|acts| {
                    let mut w = NlaWriter::new();
                    action::emit_actions(&acts, &mut w);
                    Action::Other(RawNla { kind: A_CLONE, payload: w.into_bytes() })
                }),
            ]
        })
    }

    proptest! {
        #[test]
        fn actions_format_parse_format_is_stable(a in proptest::collection::vec(printable_action(), 0..5)) {
            let text = format_actions(&a);
            let a2 = parse_actions(&text).map_err(|e| TestCaseError::fail(format!("{text}: {e}")))?;
            prop_assert_eq!(format_actions(&a2), text);
        }
    }
}
