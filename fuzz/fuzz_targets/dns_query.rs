//! weaveDNS: any bytes as a DNS query (over UDP and TCP) against a small
//! fixed zone, and as gossip merged into a small record store. Never a
//! panic; a reply always parses, echoes the query's ID and fits the
//! transport.
#![no_main]
use std::net::Ipv4Addr;

use hickory_proto::op::Message;
use libfuzzer_sys::fuzz_target;
use rand::rngs::StdRng;
use rand::SeedableRng;
use weaver::dns::answer::{answer, servfail, Outcome, Transport, MAX_UDP_PAYLOAD};
use weaver::dns::{name_in, parse_domain, Records};
use weaver::mesh::core::GossipState;
use weaver::mesh::peer::PeerName;

fn store() -> Records {
    let mut r = Records::new();
    let Ok(domain) = parse_domain("weave.local") else { return r };
    for (i, host) in ["web", "web", "db", "a.b"].iter().enumerate() {
        let Ok(name) = name_in(host, &domain) else { continue };
        let addr = Ipv4Addr::new(10, 32, 0, i as u8 + 1);
        let _ = r.add(PeerName::from_u64(1), &format!("c{i}"), &name, addr, 1_000);
    }
    r.remove_container(PeerName::from_u64(1), "c3", 2_000);
    r
}

fuzz_target!(|data: &[u8]| {
    let mut records = store();
    let Ok(domain) = parse_domain("weave.local") else { return };
    let mut rng = StdRng::seed_from_u64(data.len() as u64);
    for (transport, limit) in [(Transport::Udp, usize::from(MAX_UDP_PAYLOAD)), (Transport::Tcp, 65535)] {
        match answer(data, records.zone(), &domain, transport, &mut rng) {
            Outcome::Reply(r) => {
                assert!(r.len() <= limit);
                assert_eq!(r.get(..2), data.get(..2));
                Message::from_vec(&r).expect("our reply parses");
            }
            Outcome::Forward => {
                let r = servfail(data).expect("a forwarded query can get SERVFAIL");
                Message::from_vec(&r).expect("SERVFAIL parses");
            }
            Outcome::Drop => {}
        }
    }
    let before = records.encode_full();
    if let Ok(new) = records.merge(PeerName::from_u64(2), data) {
        assert_eq!(new.is_none(), records.encode_full() == before);
    } else {
        assert_eq!(records.encode_full(), before);
    }
});
