//! Server tests on loopback: answers over UDP and TCP, snapshots, and
//! forwarding to fake upstreams (one that answers, one that never does).

use hickory_proto::op::{Message, MessageType, OpCode, Query, ResponseCode};
use hickory_proto::rr::rdata::A;
use hickory_proto::rr::{RData, Record, RecordType};

use super::*;
use crate::dns::parse_domain;

fn zone_with(name: &str, ip: Ipv4Addr) -> Arc<Zone> {
    let mut z = Zone::new();
    z.insert(name, ip);
    Arc::new(z)
}

fn query(id: u16, name: &str, t: RecordType) -> Vec<u8> {
    let mut m = Message::new(id, MessageType::Query, OpCode::Query);
    m.metadata.recursion_desired = true;
    m.add_query(Query::query(Name::from_ascii(name).expect("name"), t));
    m.to_vec().expect("encode")
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

async fn start(upstreams: Vec<SocketAddr>, fwd: Duration) -> (DnsServer, watch::Sender<Arc<Zone>>) {
    let (tx, rx) = watch::channel(zone_with("web.weave.local.", Ipv4Addr::new(10, 32, 0, 1)));
    let domain = parse_domain("weave.local").expect("domain");
    let mut config = DnsConfig::new("127.0.0.1:0".parse().expect("addr"), domain, upstreams);
    config.forward_timeout = fwd;
    (DnsServer::spawn(config, rx).await.expect("spawn"), tx)
}

async fn ask_udp(server: SocketAddr, q: &[u8]) -> Message {
    let c = UdpSocket::bind("127.0.0.1:0").await.expect("bind");
    c.send_to(q, server).await.expect("send");
    let mut buf = vec![0u8; 4096];
    let len = timeout(Duration::from_secs(5), c.recv(&mut buf)).await.expect("reply in time").expect("recv");
    Message::from_vec(buf.get(..len).expect("len")).expect("reply parses")
}

/// A fake upstream that answers every A query with 192.0.2.7; returns its
/// address and a counter of queries seen.
async fn fake_upstream() -> SocketAddr {
    let s = UdpSocket::bind("127.0.0.1:0").await.expect("bind");
    let addr = s.local_addr().expect("addr");
    tokio::spawn(async move {
        let mut buf = vec![0u8; 4096];
        while let Ok((len, peer)) = s.recv_from(&mut buf).await {
            let Ok(q) = Message::from_vec(buf.get(..len).unwrap_or_default()) else { continue };
            let mut r = Message::response(q.metadata.id, OpCode::Query);
            r.metadata.recursion_available = true;
            r.add_queries(q.queries.clone());
            if let Some(q0) = q.queries.first() {
                r.add_answer(Record::from_rdata(q0.name().clone(), 60, RData::A(A(Ipv4Addr::new(192, 0, 2, 7)))));
            }
            let _ = s.send_to(&r.to_vec().expect("encode"), peer).await;
        }
    });
    addr
}

#[tokio::test]
async fn answers_over_udp_from_the_latest_snapshot() {
    let (server, tx) = start(vec![], Duration::from_millis(200)).await;
    let m = ask_udp(server.udp_addr(), &query(7, "WEB.weave.local.", RecordType::A)).await;
    assert_eq!(m.metadata.id, 7);
    assert_eq!(m.metadata.response_code, ResponseCode::NoError);
    assert!(m.metadata.authoritative);
    assert_eq!(addrs(&m), vec![Ipv4Addr::new(10, 32, 0, 1)]);

    tx.send(zone_with("web.weave.local.", Ipv4Addr::new(10, 32, 0, 2))).expect("publish");
    let m = ask_udp(server.udp_addr(), &query(8, "web.weave.local.", RecordType::A)).await;
    assert_eq!(addrs(&m), vec![Ipv4Addr::new(10, 32, 0, 2)]);

    let m = ask_udp(server.udp_addr(), &query(9, "gone.weave.local.", RecordType::A)).await;
    assert_eq!(m.metadata.response_code, ResponseCode::NXDomain);

    // With no upstreams, outside names fail at once.
    let m = ask_udp(server.udp_addr(), &query(10, "example.com.", RecordType::A)).await;
    assert_eq!(m.metadata.response_code, ResponseCode::ServFail);
}

#[tokio::test]
async fn answers_over_tcp() {
    let (server, _tx) = start(vec![], Duration::from_millis(200)).await;
    let mut s = TcpStream::connect(server.tcp_addr().expect("tcp")).await.expect("connect");
    for id in [1, 2] {
        write_msg(&mut s, &query(id, "web.weave.local.", RecordType::A)).await.expect("write");
        let r = timeout(Duration::from_secs(5), read_msg(&mut s)).await.expect("in time").expect("read");
        let m = Message::from_vec(&r).expect("parse");
        assert_eq!(m.metadata.id, id);
        assert_eq!(addrs(&m), vec![Ipv4Addr::new(10, 32, 0, 1)]);
    }
}

#[tokio::test]
async fn forwards_outside_names_upstream() {
    let up = fake_upstream().await;
    let (server, _tx) = start(vec![up], Duration::from_secs(2)).await;
    let m = ask_udp(server.udp_addr(), &query(0x4242, "example.com.", RecordType::A)).await;
    assert_eq!(m.metadata.id, 0x4242);
    assert_eq!(m.metadata.response_code, ResponseCode::NoError);
    assert_eq!(addrs(&m), vec![Ipv4Addr::new(192, 0, 2, 7)]);
}

#[tokio::test]
async fn servfail_when_the_upstream_never_answers() {
    let silent = UdpSocket::bind("127.0.0.1:0").await.expect("bind");
    let (server, _tx) = start(vec![silent.local_addr().expect("addr")], Duration::from_millis(150)).await;
    let started = Instant::now();
    let m = ask_udp(server.udp_addr(), &query(5, "example.com.", RecordType::A)).await;
    assert_eq!(m.metadata.id, 5);
    assert_eq!(m.metadata.response_code, ResponseCode::ServFail);
    assert_eq!(m.queries.len(), 1);
    assert!(started.elapsed() >= Duration::from_millis(150));
    let mut buf = [0u8; 512];
    let (len, _) = silent.recv_from(&mut buf).await.expect("the query reached the upstream");
    assert_eq!(buf.get(..2), Some(&[0u8, 5][..]));
    assert!(len > 12);
}

#[tokio::test]
async fn garbage_does_not_stop_the_server() {
    let (server, _tx) = start(vec![], Duration::from_millis(100)).await;
    let c = UdpSocket::bind("127.0.0.1:0").await.expect("bind");
    for junk in [&b"x"[..], &[0u8; 11], &[0xff; 40]] {
        c.send_to(junk, server.udp_addr()).await.expect("send");
    }
    let m = ask_udp(server.udp_addr(), &query(3, "web.weave.local.", RecordType::A)).await;
    assert_eq!(m.metadata.id, 3);
}
