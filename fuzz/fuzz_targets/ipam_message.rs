//! IPAM gossip and requests as peers send them: any bytes merged into a
//! seeded allocator's ring, or handled as a unicast request, never panic;
//! after a refused message the allocator still allocates, and what it
//! holds is always in space it owns.
#![no_main]
use libfuzzer_sys::fuzz_target;
use weaver::ipam::{Init, Ipam, IpamConfig};
use weaver::mesh::core::GossipState;
use weaver::mesh::peer::PeerName;

fuzz_target!(|data: &[u8]| {
    let me = PeerName::from_u64(1);
    let peer = PeerName::from_u64(2);
    let range = "10.32.0.0/24".parse().expect("range");
    let config = IpamConfig { range, default_subnet: range, init: Init::Seed(vec![me, peer]) };
    let Ok(mut ipam) = Ipam::new(me, config) else { return };
    ipam.set_reachable([peer]);
    let _ = ipam.allocate(0, "before", None);
    for (i, chunk) in data.split(|b| *b == 0xff).enumerate() {
        if i % 2 == 0 {
            let _ = ipam.merge(peer, chunk);
        } else {
            let _ = ipam.handle_message(i as u64, peer, chunk);
        }
        ipam.handle_timeout(i as u64 * 300);
    }
    let _ = ipam.allocate(100_000, "after", None);
    for (a, _) in ipam.allocations() {
        let owner = ipam.ring().owner_of(u64::from(u32::from(a.addr())));
        // Someone else's gossip may take our space (rmpeer); otherwise ours.
        assert!(owner.is_some(), "{a} outside the ring");
    }
    let _ = ipam.encode_full();
    while ipam.poll_unicast().is_some() {}
    while ipam.poll_event().is_some() {}
    let _ = ipam.status();
});
