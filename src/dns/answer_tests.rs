//! Query handler tests: answers, error codes for bad input, truncation.

use std::collections::BTreeSet;

use rand::rngs::StdRng;
use rand::SeedableRng;

use super::*;
use crate::dns::parse_domain;

const ID: u16 = 0xbeef;

fn ip(d: u8) -> Ipv4Addr {
    Ipv4Addr::new(10, 32, 0, d)
}

fn n(s: &str) -> Name {
    Name::from_ascii(s).expect("name")
}

fn domain() -> Name {
    parse_domain("weave.local").expect("domain")
}

fn zone() -> Zone {
    let mut z = Zone::new();
    for d in 1..=3 {
        z.insert("web.weave.local.", ip(d));
    }
    z.insert("db.weave.local.", ip(9));
    z.insert("x.sub.weave.local.", ip(10));
    z
}

fn message(name: &str, t: RecordType) -> Message {
    let mut m = Message::new(ID, MessageType::Query, OpCode::Query);
    m.metadata.recursion_desired = true;
    m.add_query(Query::query(n(name), t));
    m
}

fn query(name: &str, t: RecordType) -> Vec<u8> {
    message(name, t).to_vec().expect("encode")
}

fn ask_with(bytes: &[u8], z: &Zone, transport: Transport, seed: u64) -> Outcome {
    answer(bytes, z, &domain(), transport, &mut StdRng::seed_from_u64(seed))
}

fn ask(bytes: &[u8]) -> Outcome {
    ask_with(bytes, &zone(), Transport::Udp, 1)
}

fn reply(o: Outcome) -> Message {
    match o {
        Outcome::Reply(b) => Message::from_vec(&b).expect("reply parses"),
        other => panic!("expected a reply, got {other:?}"),
    }
}

fn addrs(m: &Message) -> Vec<Ipv4Addr> {
    m.answers
        .iter()
        .filter_map(|r| match r.data {
            RData::A(A(a)) => Some(a),
            _ => None,
        })
        .collect()
}

#[test]
fn a_gives_every_address_in_varying_order() {
    let mut orders = BTreeSet::new();
    for seed in 0..20 {
        let m = reply(ask_with(&query("web.weave.local.", RecordType::A), &zone(), Transport::Udp, seed));
        assert_eq!(m.metadata.id, ID);
        assert_eq!(m.metadata.message_type, MessageType::Response);
        assert_eq!(m.metadata.response_code, ResponseCode::NoError);
        assert!(m.metadata.authoritative && m.metadata.recursion_available && m.metadata.recursion_desired);
        assert_eq!(m.queries, message("web.weave.local.", RecordType::A).queries);
        assert!(m.answers.iter().all(|r| r.ttl == TTL_SECS));
        let got = addrs(&m);
        assert_eq!(got.iter().copied().collect::<BTreeSet<_>>(), BTreeSet::from([ip(1), ip(2), ip(3)]));
        orders.insert(got);
    }
    assert!(orders.len() > 1, "the order is shuffled");
}

#[test]
fn names_are_case_insensitive_and_the_question_keeps_its_case() {
    let m = reply(ask(&query("DB.Weave.LOCAL.", RecordType::A)));
    assert_eq!(addrs(&m), vec![ip(9)]);
    assert_eq!(m.queries[0].name().to_ascii(), "DB.Weave.LOCAL.");
    assert_eq!(m.answers[0].name.to_ascii(), "DB.Weave.LOCAL.");
}

#[test]
fn unknown_names_in_our_domain_are_nxdomain() {
    let m = reply(ask(&query("nope.weave.local.", RecordType::A)));
    assert_eq!(m.metadata.response_code, ResponseCode::NXDomain);
    assert!(m.metadata.authoritative);
    assert!(m.answers.is_empty());
    let m = reply(ask(&query("nope.weave.local.", RecordType::AAAA)));
    assert_eq!(m.metadata.response_code, ResponseCode::NXDomain);
}

#[test]
fn other_types_of_a_known_name_are_empty() {
    for t in [RecordType::AAAA, RecordType::MX, RecordType::TXT, RecordType::Unknown(65000)] {
        let m = reply(ask(&query("web.weave.local.", t)));
        assert_eq!(m.metadata.response_code, ResponseCode::NoError, "{t}");
        assert!(m.answers.is_empty());
    }
    // The domain itself and names above records exist, without addresses.
    for name in ["weave.local.", "sub.weave.local."] {
        let m = reply(ask(&query(name, RecordType::A)));
        assert_eq!(m.metadata.response_code, ResponseCode::NoError, "{name}");
        assert!(m.answers.is_empty());
    }
    let m = reply(ask(&query("web.weave.local.", RecordType::ANY)));
    assert_eq!(addrs(&m).len(), 3);
    let m = reply(ask(&query("web.weave.local.", RecordType::AXFR)));
    assert_eq!(m.metadata.response_code, ResponseCode::NotImp);
}

#[test]
fn other_classes_are_refused() {
    let mut m = message("web.weave.local.", RecordType::A);
    m.queries[0].set_query_class(DNSClass::CH);
    let r = reply(ask(&m.to_vec().expect("encode")));
    assert_eq!(r.metadata.response_code, ResponseCode::Refused);
    assert!(r.answers.is_empty());
}

#[test]
fn reverse_lookups_of_our_addresses() {
    let m = reply(ask(&query("1.0.32.10.in-addr.arpa.", RecordType::PTR)));
    assert_eq!(m.metadata.response_code, ResponseCode::NoError);
    assert!(m.metadata.authoritative);
    let names: Vec<_> = m.answers.iter().map(|r| r.data.clone()).collect();
    assert_eq!(names, vec![RData::PTR(PTR(n("web.weave.local.")))]);
    let m = reply(ask(&query("1.0.32.10.IN-ADDR.ARPA.", RecordType::A)));
    assert_eq!(m.metadata.response_code, ResponseCode::NoError);
    assert!(m.answers.is_empty());
    // Addresses we do not hold, and partial or IPv6 reverse names, go upstream.
    for name in ["99.0.32.10.in-addr.arpa.", "0.32.10.in-addr.arpa.", "1.0.0.0.ip6.arpa."] {
        assert_eq!(ask(&query(name, RecordType::PTR)), Outcome::Forward, "{name}");
    }
}

#[test]
fn reverse_names_parse_strictly() {
    assert_eq!(reverse_v4(&n("4.3.2.1.in-addr.arpa.")), Some(Ipv4Addr::new(1, 2, 3, 4)));
    for bad in ["256.3.2.1.in-addr.arpa.", "+4.3.2.1.in-addr.arpa.", "4.3.2.1.in-addr.com.", "0004.3.2.1.in-addr.arpa."]
    {
        let labels: Vec<&[u8]> = bad.trim_end_matches('.').split('.').map(str::as_bytes).collect();
        let mut name = Name::from_labels(labels).expect("raw labels");
        name.set_fqdn(true);
        assert_eq!(reverse_v4(&name), None, "{bad}");
    }
}

#[test]
fn outside_names_are_forwarded() {
    assert_eq!(ask(&query("example.com.", RecordType::A)), Outcome::Forward);
    assert_eq!(ask(&query("weave.local.example.com.", RecordType::A)), Outcome::Forward);
    assert_eq!(ask(&query(".", RecordType::NS)), Outcome::Forward);
}

/// A query header: ID, flags, and the four counts.
fn header(flags: u16, qd: u16) -> Vec<u8> {
    let mut h = Vec::new();
    for v in [ID, flags, qd, 0, 0, 0] {
        h.extend_from_slice(&v.to_be_bytes());
    }
    h
}

#[test]
fn malformed_queries_get_formerr() {
    // A header promising a question that is not there.
    let m = reply(ask(&header(0x0100, 1)));
    assert_eq!(m.metadata.response_code, ResponseCode::FormErr);
    assert_eq!(m.metadata.id, ID);
    assert!(m.metadata.recursion_desired);
    // A label pointing forward (compression loop), then garbage.
    let mut b = header(0x0100, 1);
    b.extend_from_slice(&[0xc0, 0x0c, 0, 1, 0, 1]);
    assert_eq!(reply(ask(&b)).metadata.response_code, ResponseCode::FormErr);
    // No question at all.
    assert_eq!(reply(ask(&header(0x0100, 0))).metadata.response_code, ResponseCode::FormErr);
}

#[test]
fn oversized_names_get_formerr() {
    let mut b = header(0x0100, 1);
    for _ in 0..5 {
        b.push(63);
        b.extend_from_slice(&[b'a'; 63]);
    }
    b.extend_from_slice(&[0, 0, 1, 0, 1]);
    assert_eq!(reply(ask(&b)).metadata.response_code, ResponseCode::FormErr);
    // A label over 63 bytes.
    let mut b = header(0x0100, 1);
    b.push(64);
    b.extend_from_slice(&[b'a'; 64]);
    b.extend_from_slice(&[0, 0, 1, 0, 1]);
    assert_eq!(reply(ask(&b)).metadata.response_code, ResponseCode::FormErr);
}

#[test]
fn several_questions_get_formerr() {
    let mut m = message("web.weave.local.", RecordType::A);
    m.add_query(Query::query(n("db.weave.local."), RecordType::A));
    let r = reply(ask(&m.to_vec().expect("encode")));
    assert_eq!(r.metadata.response_code, ResponseCode::FormErr);
    assert!(r.answers.is_empty());
}

#[test]
fn other_opcodes_get_notimp() {
    for op in [OpCode::Status, OpCode::Notify, OpCode::Update, OpCode::Unknown(9)] {
        let mut m = message("web.weave.local.", RecordType::A);
        m.metadata.op_code = op;
        let r = reply(ask(&m.to_vec().expect("encode")));
        assert_eq!(r.metadata.response_code, ResponseCode::NotImp, "{op}");
        assert_eq!(r.metadata.op_code, op);
    }
}

#[test]
fn headerless_bytes_and_responses_are_dropped() {
    for len in 0..12 {
        assert_eq!(ask(&vec![0; len]), Outcome::Drop);
    }
    let mut m = message("web.weave.local.", RecordType::A);
    m.metadata.message_type = MessageType::Response;
    assert_eq!(ask(&m.to_vec().expect("encode")), Outcome::Drop);
}

#[test]
fn edns_is_answered_and_bad_versions_refused() {
    let mut m = message("web.weave.local.", RecordType::A);
    let mut e = Edns::new();
    e.set_max_payload(4096);
    m.set_edns(e.clone());
    let r = reply(ask(&m.to_vec().expect("encode")));
    assert_eq!(r.edns.as_ref().map(|e| e.max_payload()), Some(MAX_UDP_PAYLOAD));
    assert_eq!(addrs(&r).len(), 3);
    e.set_version(1);
    m.set_edns(e);
    let r = reply(ask(&m.to_vec().expect("encode")));
    // BADVERS is 16 (which hickory also calls BADSIG).
    assert_eq!(u16::from(r.metadata.response_code), 16);
    assert!(r.answers.is_empty());
}

#[test]
fn big_answers_are_truncated_on_udp_without_edns() {
    let mut z = Zone::new();
    for d in 1..=60 {
        z.insert("many.weave.local.", ip(d));
    }
    let q = query("many.weave.local.", RecordType::A);
    let Outcome::Reply(b) = ask_with(&q, &z, Transport::Udp, 1) else { panic!("no reply") };
    assert!(b.len() <= 512);
    let m = Message::from_vec(&b).expect("parse");
    assert!(m.metadata.truncation);
    assert!(m.answers.is_empty());
    assert_eq!(m.queries.len(), 1);

    let m = reply(ask_with(&q, &z, Transport::Tcp, 1));
    assert!(!m.metadata.truncation);
    assert_eq!(addrs(&m).len(), 60);

    let mut big = message("many.weave.local.", RecordType::A);
    let mut e = Edns::new();
    e.set_max_payload(4096);
    big.set_edns(e);
    let Outcome::Reply(b) = ask_with(&big.to_vec().expect("encode"), &z, Transport::Udp, 1) else { panic!() };
    assert!(b.len() <= usize::from(MAX_UDP_PAYLOAD));
    assert_eq!(addrs(&Message::from_vec(&b).expect("parse")).len(), 60);
}

#[test]
fn servfail_copies_the_question() {
    let q = query("example.com.", RecordType::A);
    let m = Message::from_vec(&servfail(&q).expect("reply")).expect("parse");
    assert_eq!(m.metadata.response_code, ResponseCode::ServFail);
    assert_eq!(m.metadata.id, ID);
    assert_eq!(m.queries, message("example.com.", RecordType::A).queries);
    assert!(servfail(&[1, 2, 3]).is_none());
    let m = Message::from_vec(&servfail(&header(0, 3)).expect("reply")).expect("parse");
    assert_eq!(m.metadata.response_code, ResponseCode::ServFail);
}
