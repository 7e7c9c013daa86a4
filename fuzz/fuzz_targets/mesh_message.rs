//! Mesh messages as a connection delivers them to the router: any bytes,
//! never a panic, and a rejected message leaves the router usable.
#![no_main]
use libfuzzer_sys::fuzz_target;
use weaver::mesh::core::{ConnId, MeshConfig, NewConnection, Router};
use weaver::mesh::peer::{Identity, PeerName, PeerUid, ShortId};

fn identity(n: u64) -> Identity {
    Identity { name: PeerName::from_u64(n), nickname: format!("p{n}"), uid: PeerUid(n), short_id: ShortId::from_bits(n as u32) }
}

fuzz_target!(|data: &[u8]| {
    let mut r = Router::new(identity(1), MeshConfig::default(), 7, 0);
    let conn = ConnId(1);
    let _ = r.handle_connection_up(0, conn, NewConnection { remote: identity(2), address: "192.0.2.2:6783".into(), outbound: true, tie_breaker: 9 });
    for chunk in data.split(|b| *b == 0xff) {
        let _ = r.handle_message(1, conn, chunk);
    }
    r.handle_timeout(100_000);
    while r.poll_transmit().is_some() {}
    while r.poll_event().is_some() {}
});
