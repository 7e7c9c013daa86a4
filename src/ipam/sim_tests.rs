//! IPAM over the mesh simulator: many allocators gossiping their ring over
//! real routers on a virtual clock, with partitions and heals.

use std::collections::{BTreeMap, BTreeSet};

use ipnet::Ipv4Net;
use rand::rngs::StdRng;
use rand::{Rng, SeedableRng};

use super::allocator::TICK_MS;
use super::{Init, Ipam, IpamConfig, IpamEvent, CHANNEL};
use crate::mesh::core::sim::{Sim, SimConfig};
use crate::mesh::core::{GossipState, Router};
use crate::mesh::peer::PeerName;

struct Lab {
    sim: Sim,
    allocated: usize,
    failed: Vec<String>,
    /// Per peer: container → address, as the events and returns said.
    got: Vec<BTreeMap<String, Ipv4Net>>,
}

fn config(init: Init, range: &str) -> IpamConfig {
    let range: Ipv4Net = range.parse().unwrap();
    IpamConfig { range, default_subnet: range, init }
}

fn name(sim: &Sim, i: usize) -> PeerName {
    sim.router(i).identity().name
}

fn reachable(r: &Router) -> Vec<PeerName> {
    r.routes().unicast().map(|h| h.dest).collect()
}

impl Lab {
    fn new(n: usize, seed: u64, init: impl Fn(&Sim) -> Init, range: &str) -> Lab {
        let mut sim = Sim::random(n, 3.0, SimConfig::default(), seed);
        let init = init(&sim);
        for i in 0..n {
            let me = name(&sim, i);
            let ipam = Ipam::new(me, config(init.clone(), range)).unwrap();
            sim.act(i, |r, _| r.register_gossip_channel(CHANNEL, Box::new(ipam)).unwrap());
        }
        Lab { sim, allocated: 0, failed: Vec::new(), got: vec![BTreeMap::new(); n] }
    }

    fn ipam(&self, i: usize) -> &Ipam {
        self.sim.router(i).channel::<Ipam>(CHANNEL).unwrap()
    }

    fn with<R>(&mut self, i: usize, f: impl FnOnce(&mut Ipam, u64) -> R) -> R {
        let (r, out) = self.sim.act(i, |router, now| {
            let reach = reachable(router);
            let (r, unicasts, events) = router
                .update_channel::<Ipam, _>(now, CHANNEL, |s| {
                    s.set_reachable(reach);
                    let r = f(s, now);
                    let mut u = Vec::new();
                    while let Some(x) = s.poll_unicast() {
                        u.push(x);
                    }
                    let mut e = Vec::new();
                    while let Some(x) = s.poll_event() {
                        e.push(x);
                    }
                    (r, u, e)
                })
                .unwrap();
            for (to, bytes) in unicasts {
                let _ = router.unicast(now, to, CHANNEL, bytes);
            }
            (r, events)
        });
        for ev in out {
            match ev {
                IpamEvent::Allocated { container, addr } => {
                    self.allocated += 1;
                    self.got[i].insert(container, addr);
                }
                IpamEvent::Failed { reason, .. } => self.failed.push(reason),
            }
        }
        r
    }

    /// Advances the clock one tick: every peer handles its messages and timers.
    fn tick(&mut self) {
        let t = self.sim.now() + TICK_MS;
        self.sim.run_until(t);
        for i in 0..self.sim.len() {
            let msgs = self.sim.take_channel_messages(i, CHANNEL);
            self.with(i, |s, now| {
                for (src, payload) in msgs {
                    s.handle_message(now, src, &payload).unwrap();
                }
                s.handle_timeout(now);
            });
        }
    }

    fn allocate(&mut self, i: usize, container: &str) {
        let r = self.with(i, |s, now| s.allocate(now, container, None).unwrap());
        if let Some(a) = r {
            self.allocated += 1;
            self.got[i].insert(container.to_string(), a);
        }
    }

    fn pending(&self) -> usize {
        (0..self.sim.len()).map(|i| self.ipam(i).pending().count()).sum()
    }

    /// No address is held by two live peers, and each peer holds only
    /// addresses it owns.
    fn check_unique(&self, live: &[usize]) {
        let mut seen: BTreeMap<Ipv4Net, usize> = BTreeMap::new();
        for &i in live {
            let ipam = self.ipam(i);
            for (a, c) in ipam.allocations() {
                assert_eq!(self.got[i].get(c), Some(&a), "peer {i}: {c} holds {a} but was told otherwise");
                assert_eq!(
                    ipam.ring().owner_of(u64::from(u32::from(a.addr()))),
                    Some(ipam.me()),
                    "peer {i} holds {a} outside its space"
                );
                if let Some(j) = seen.insert(a, i) {
                    panic!("{a} allocated on peers {j} and {i}");
                }
            }
        }
    }

    fn check_rings_agree(&self, live: &[usize]) {
        let first = self.ipam(live[0]).encode_full();
        for &i in live {
            assert_eq!(self.ipam(i).encode_full(), first, "peer {i}'s ring differs from peer {}'s", live[0]);
        }
    }
}

#[test]
fn fifty_peers_allocate_ten_thousand_addresses_through_partitions() {
    let n = 50;
    // 16,384 addresses for 10,000 allocations: most peers run out of their
    // first share and must ask others for space.
    let mut lab = Lab::new(n, 7, |_| Init::Consensus(50), "10.40.0.0/18");
    let mut rng = StdRng::seed_from_u64(11);
    lab.sim.run_until_converged(60_000, 50).expect("mesh converges");
    let mut next = 0usize;
    let mut alive: Vec<String> = Vec::new();
    let pick = |rng: &mut StdRng| {
        // Skewed: a fifth of the peers do most of the allocating.
        if rng.gen_bool(0.7) {
            rng.gen_range(0..n / 5) * 5
        } else {
            rng.gen_range(0..n)
        }
    };
    let round = |lab: &mut Lab, rng: &mut StdRng, count: usize, next: &mut usize, alive: &mut Vec<String>| {
        for _ in 0..count {
            let i = pick(rng);
            let c = format!("c{}-{}", i, *next);
            *next += 1;
            lab.allocate(i, &c);
            alive.push(c);
            if next.is_multiple_of(40) {
                lab.tick();
            }
        }
    };
    // Phase 1: all connected; the first request seeds the ring by consensus.
    round(&mut lab, &mut rng, 4000, &mut next, &mut alive);
    for _ in 0..200 {
        lab.tick();
        if lab.pending() == 0 {
            break;
        }
    }
    assert!(lab.ipam(0).ring().is_seeded());
    assert_eq!(lab.ipam(0).ring().seeds().len(), 50, "consensus seeds every peer");
    assert_eq!(lab.failed, Vec::<String>::new());
    let live: Vec<usize> = (0..n).collect();
    lab.check_unique(&live);

    // Phase 2: a partition; both sides go on allocating (and releasing).
    let side: Vec<usize> = (0..20).collect();
    lab.sim.partition(&side);
    for _ in 0..20 {
        lab.tick();
    }
    round(&mut lab, &mut rng, 3000, &mut next, &mut alive);
    let mut released = 0;
    for k in 0..300 {
        let c = alive.swap_remove(rng.gen_range(0..alive.len()));
        let i: usize = c[1..c.find('-').unwrap()].parse().unwrap();
        released += lab.with(i, |s, _| s.release(&c, None)).len();
        lab.got[i].remove(&c);
        if k % 50 == 0 {
            lab.tick();
        }
    }
    for _ in 0..(super::allocator::GIVE_UP_MS / TICK_MS + 20) {
        lab.tick();
    }
    lab.check_unique(&live);
    let failed_in_partition = lab.failed.len();
    assert!(lab.failed.iter().all(|r| r.contains("unreachable")), "{:?}", lab.failed.first());

    // Phase 3: healed; allocate until 10,000 succeeded.
    lab.sim.heal();
    lab.sim.run_until_converged(120_000, 50).expect("mesh converges after heal");
    while lab.allocated < 10_000 {
        let want = 10_000 - lab.allocated;
        round(&mut lab, &mut rng, want.min(500), &mut next, &mut alive);
        for _ in 0..100 {
            lab.tick();
            if lab.pending() == 0 {
                break;
            }
        }
        assert_eq!(lab.failed.len(), failed_in_partition, "failed after heal: {:?}", lab.failed.last());
    }
    for _ in 0..40 {
        lab.tick();
    }
    lab.check_unique(&live);
    lab.check_rings_agree(&live);
    let held: usize = live.iter().map(|i| lab.ipam(*i).allocations().count()).sum();
    eprintln!(
        "ipam sim: {} allocated, {} released, {} held, {failed_in_partition} failed in the partition, {} messages",
        lab.allocated,
        released,
        held,
        lab.sim.stats().messages
    );
    assert!(lab.allocated >= 10_000);
    assert!(released > 250);
    assert_eq!(held, lab.allocated - released);
    // Space moved: some peer owns more than its first share.
    assert!(live.iter().any(|i| lab.ipam(*i).status().owners[0].size > (1 << 14) / 50 + 1));

    // rmpeer: peer 3 dies; peer 4 takes its space over, and every peer
    // learns it.
    let dead = 3;
    let dead_name = name(&lab.sim, dead);
    let others: Vec<usize> = (0..n).filter(|i| *i != dead).collect();
    lab.sim.partition(&[dead]);
    for _ in 0..40 {
        lab.tick();
    }
    let had = lab.ipam(4).ring().owned_by(dead_name);
    assert!(!had.is_empty());
    let taken = lab.with(4, |s, _| s.rmpeer(dead_name)).unwrap();
    assert_eq!(taken, had.iter().map(|r| r.len()).sum::<u64>());
    for _ in 0..40 {
        lab.tick();
    }
    lab.check_rings_agree(&others);
    for &i in &others {
        assert!(lab.ipam(i).ring().owned_by(dead_name).is_empty());
    }
    // The dead peer's space is allocatable again, by peer 4.
    lab.got[dead].clear();
    for k in 0..50 {
        lab.allocate(4, &format!("after-rmpeer-{k}"));
    }
    for _ in 0..40 {
        lab.tick();
    }
    lab.check_unique(&others);
    let status = lab.ipam(4).status();
    assert!(status.errors.is_empty(), "{:?}", status.errors);
    assert_eq!(status.owners.iter().map(|o| o.size).sum::<u64>(), 1 << 14);
}

#[test]
fn separately_seeded_halves_refuse_to_merge() {
    let n = 4;
    let mut lab = Lab::new(n, 3, |_| Init::Consensus(2), "10.32.0.0/16");
    lab.sim.run_until_converged(30_000, 50).unwrap();
    lab.sim.partition(&[0, 1]);
    for _ in 0..40 {
        lab.tick();
    }
    // Each half reaches a quorum of 2 of its own (a misconfiguration: the
    // whole mesh has 4) and seeds separately.
    lab.allocate(0, "a");
    lab.allocate(2, "b");
    for _ in 0..60 {
        lab.tick();
    }
    assert!(lab.ipam(0).ring().is_seeded() && lab.ipam(2).ring().is_seeded());
    assert_ne!(lab.ipam(0).ring().seeds(), lab.ipam(2).ring().seeds());
    let before: Vec<Vec<u8>> = (0..n).map(|i| lab.ipam(i).encode_full()).collect();
    lab.sim.heal();
    lab.sim.run_until_converged(30_000, 50).unwrap();
    for _ in 0..40 {
        lab.tick();
    }
    for (i, before) in before.iter().enumerate() {
        let ipam = lab.ipam(i);
        let st = ipam.status();
        assert!(
            st.errors.iter().any(|e| e.contains("split brain") && e.contains("Recovery")),
            "peer {i}: {:?}",
            st.errors
        );
        // The rings did not mix: seeds unchanged, no token of the other half taken.
        let seeds_before = super::wire::decode_state(before).unwrap().ring.seeds().to_vec();
        assert_eq!(ipam.ring().seeds(), &seeds_before[..]);
    }
    assert!(lab.sim.stats().errors > 0);
}

#[test]
fn a_minority_cannot_seed_and_observers_wait_for_the_ring() {
    let mut lab = Lab::new(5, 5, |_| Init::Consensus(5), "10.32.0.0/16");
    lab.sim.run_until_converged(30_000, 50).unwrap();
    lab.sim.partition(&[0, 1]);
    for _ in 0..20 {
        lab.tick();
    }
    lab.allocate(0, "minority");
    for _ in 0..60 {
        lab.tick();
    }
    assert!(!lab.ipam(0).ring().is_seeded(), "two of five seeded the ring");
    let st = lab.ipam(0).status();
    assert!(st.consensus.as_deref().is_some_and(|c| c.contains("waiting for consensus")), "{st:?}");
    lab.sim.heal();
    lab.sim.run_until_converged(30_000, 50).unwrap();
    for _ in 0..60 {
        lab.tick();
    }
    assert!(lab.got[0].contains_key("minority"), "allocated once the majority was there");
    let live: Vec<usize> = (0..5).collect();
    lab.check_rings_agree(&live);

    // Observers never seed, and get space from the seeded peers.
    let mut lab = Lab::new(3, 9, |s| Init::Seed(vec![name(s, 0), name(s, 1)]), "10.32.0.0/24");
    let me = name(&lab.sim, 2);
    let obs = Ipam::new(me, config(Init::Observer, "10.32.0.0/24")).unwrap();
    assert!(!obs.ring().is_seeded());
    lab.sim.run_until_converged(30_000, 50).unwrap();
    lab.allocate(2, "x");
    for _ in 0..40 {
        lab.tick();
    }
    assert!(lab.got[2].contains_key("x"));
    assert!(lab.ipam(2).ring().owned_by(me).len() == 1);
    lab.check_unique(&[0, 1, 2]);
}

#[test]
fn explicit_addresses_are_claimed_from_their_owner() {
    let mut lab = Lab::new(3, 1, |s| Init::Seed(vec![name(s, 0), name(s, 1), name(s, 2)]), "10.32.0.0/24");
    lab.sim.run_until_converged(30_000, 50).unwrap();
    for _ in 0..10 {
        lab.tick();
    }
    // 10.32.0.200 belongs to peer 2's third; peer 0 claims it.
    let want: Ipv4Net = "10.32.0.200/24".parse().unwrap();
    let owner = lab.ipam(0).ring().owner_of(u64::from(u32::from(want.addr()))).unwrap();
    assert_eq!(owner, name(&lab.sim, 2));
    let r = lab.with(0, |s, now| s.claim(now, "c", want).unwrap());
    assert_eq!(r, None);
    for _ in 0..20 {
        lab.tick();
    }
    assert_eq!(lab.got[0].get("c"), Some(&want));
    // Claimed again elsewhere: refused with the holder named.
    let r = lab.with(1, |s, now| s.claim(now, "d", want).unwrap());
    assert_eq!(r, None);
    for _ in 0..20 {
        lab.tick();
    }
    assert!(lab.failed.iter().any(|f| f.contains("10.32.0.200") && f.contains("in use")), "{:?}", lab.failed);
    // A local duplicate, and an address outside the range, are errors at once.
    let e = lab.with(0, |s, now| s.claim(now, "other", want)).unwrap_err();
    assert!(e.to_string().contains("already allocated to c"), "{e}");
    let e = lab.with(0, |s, now| s.claim(now, "x", "192.168.1.1/24".parse().unwrap())).unwrap_err();
    assert!(e.to_string().contains("outside the IPAM range"), "{e}");
    // Same container, same subnet: the same address.
    let a = lab.with(1, |s, now| s.allocate(now, "same", None).unwrap()).unwrap();
    let b = lab.with(1, |s, now| s.allocate(now, "same", None).unwrap()).unwrap();
    assert_eq!(a, b);
    let all: BTreeSet<_> = lab.ipam(1).allocations().map(|(a, _)| a).collect();
    assert_eq!(all.len(), lab.ipam(1).allocations().count());
}

#[test]
fn state_survives_a_restart() {
    let me = PeerName::from_u64(1);
    let cfg = config(Init::Seed(vec![me]), "10.32.0.0/24");
    let mut a = Ipam::new(me, cfg.clone()).unwrap();
    let x = a.allocate(0, "c1", None).unwrap().unwrap();
    let y = a.allocate(0, "c2", Some("10.32.0.128/25".parse().unwrap())).unwrap().unwrap();
    let saved = a.save();
    let text = serde_json::to_string(&saved).unwrap();
    let back: super::Saved = serde_json::from_str(&text).unwrap();
    let b = Ipam::restore(me, cfg.clone(), &back).unwrap();
    assert_eq!(b.addresses_of("c1"), vec![x]);
    assert_eq!(b.addresses_of("c2"), vec![y]);
    assert_eq!(b.encode_full(), a.encode_full());
    // Another range: refused with a clear message.
    let other = config(Init::Seed(vec![me]), "10.33.0.0/24");
    let e = Ipam::restore(me, other, &back).err().unwrap().to_string();
    assert!(e.contains("not 10.33.0.0-10.33.0.255"), "{e}");
    let bad = super::Saved { state: "zz".into(), allocated: vec![] };
    assert!(Ipam::restore(me, cfg, &bad).is_err());
}

#[test]
fn rmpeer_of_a_live_peer_is_refused_and_reported_after_the_fact() {
    let mut lab = Lab::new(3, 4, |s| Init::Seed(vec![name(s, 0), name(s, 1), name(s, 2)]), "10.32.0.0/24");
    lab.sim.run_until_converged(30_000, 50).unwrap();
    for _ in 0..10 {
        lab.tick();
    }
    lab.allocate(0, "a");
    lab.allocate(0, "b");
    let victim = name(&lab.sim, 0);
    // Reachable: refused, nothing changes.
    let e = lab.with(1, |s, _| s.rmpeer(victim)).unwrap_err();
    assert!(e.to_string().contains("it is reachable"), "{e}");
    let me1 = name(&lab.sim, 1);
    let e = lab.with(1, |s, _| s.rmpeer(me1)).unwrap_err();
    assert!(e.to_string().contains("it is this peer"), "{e}");
    // Cut off, it looks dead: peer 1 takes its space (the operator's
    // mistake), then the network heals.
    lab.sim.partition(&[0]);
    for _ in 0..20 {
        lab.tick();
    }
    lab.with(1, |s, _| s.rmpeer(victim)).unwrap();
    lab.sim.heal();
    lab.sim.run_until_converged(30_000, 50).unwrap();
    for _ in 0..20 {
        lab.tick();
    }
    // Peer 0 learns its space is gone and says so: its two containers'
    // addresses now lie in peer 1's space.
    let st = lab.ipam(0).status();
    assert!(
        st.errors.iter().any(|e| e.contains("2 address(es) allocated here now lie in space owned by another peer")),
        "{:?}",
        st.errors
    );
    assert!(lab.ipam(0).ring().owned_by(victim).is_empty());
    lab.check_rings_agree(&[0, 1, 2]);
}

/// A claim that reaches the owner before the seeded ring does (the claimer
/// learned the seeding first) is not refused: the owner does not answer,
/// and grants it when the claimer asks again.
#[test]
fn a_claim_that_outruns_the_ring_is_granted_on_retry() {
    use super::allocator::ASK_TIMEOUT_MS;
    let (p0, p1) = (PeerName::from_u64(0x0a), PeerName::from_u64(0x0b));
    let mut owner = Ipam::new(p0, config(Init::Consensus(2), "10.32.0.0/24")).unwrap();
    let mut claimer = Ipam::new(p1, config(Init::Seed(vec![p0, p1]), "10.32.0.0/24")).unwrap();
    owner.set_reachable([p1]);
    claimer.set_reachable([p0]);
    claimer.handle_timeout(0);
    let theirs = (1..255)
        .map(|i| format!("10.32.0.{i}/24").parse::<Ipv4Net>().unwrap())
        .find(|n| claimer.ring().owner_of(u64::from(u32::from(n.addr()))) == Some(p0))
        .expect("the seeded ring gives p0 some of the range");
    assert_eq!(claimer.claim(0, "c", theirs).unwrap(), None);
    let (to, req) = claimer.poll_unicast().expect("the claim is sent");
    assert_eq!(to, p0);
    owner.handle_message(0, p1, &req).unwrap();
    assert!(owner.poll_unicast().is_none(), "a peer without the ring refused the claim");
    // The ring arrives, then the claimer asks again.
    owner.merge(p1, &claimer.encode_full()).unwrap();
    claimer.handle_timeout(ASK_TIMEOUT_MS);
    let (to, req) = claimer.poll_unicast().expect("the claim is asked again");
    assert_eq!(to, p0);
    owner.handle_message(ASK_TIMEOUT_MS, p1, &req).unwrap();
    assert!(owner.poll_unicast().is_none(), "the owner refused a free address");
    let grant = owner.take_delta().expect("the grant is gossiped");
    claimer.merge(p0, &grant).unwrap();
    claimer.handle_timeout(ASK_TIMEOUT_MS + TICK_MS);
    let mut events = Vec::new();
    while let Some(e) = claimer.poll_event() {
        events.push(e);
    }
    assert!(
        events
            .iter()
            .any(|e| matches!(e, IpamEvent::Allocated { container, addr } if container == "c" && *addr == theirs)),
        "{events:?}"
    );
}
