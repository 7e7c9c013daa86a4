//! Property tests on the simulator: after gossip settles, every peer holds
//! the same topology, routes are complete and loop-free, broadcasts arrive
//! exactly once; partitions heal, restarts replace, short IDs end unique.

use std::collections::BTreeMap;

use proptest::prelude::*;

use super::sim::{ShortIds, Sim, SimConfig};
use super::tests::test_config;
use super::MeshEvent;
use crate::mesh::peer::PeerName;

/// Settling takes a few hundred simulated ms; this is generous.
const SETTLE_MS: u64 = 20_000;

/// Cases per property: `MESH_SIM_CASES` overrides the default (for soaks).
fn cases(default: u32) -> u32 {
    std::env::var("MESH_SIM_CASES").ok().and_then(|v| v.parse().ok()).unwrap_or(default)
}

fn settle(sim: &mut Sim) {
    let took = sim.run_until_converged(SETTLE_MS, 10);
    assert!(took.is_some(), "did not converge in {SETTLE_MS} ms:\n{}", dump(sim));
    assert_eq!(sim.stats().errors, 0);
}

/// Every peer of a component holds exactly the same topology, and following
/// next hops from any peer reaches any other of its component, without loops.
fn check_settled(sim: &Sim) {
    let index: BTreeMap<PeerName, usize> = (0..sim.len()).map(|i| (sim.router(i).identity().name, i)).collect();
    for comp in sim.components() {
        let first = sim.router(comp[0]).topology();
        assert_eq!(first.len(), comp.len());
        for &i in &comp {
            assert_eq!(sim.router(i).topology(), first, "peer {i} differs from peer {}", comp[0]);
        }
        for &a in &comp {
            assert_eq!(sim.router(a).routes().reachable(), comp.len() - 1);
            for &b in &comp {
                let dst = sim.router(b).identity().name;
                let mut cur = a;
                for _ in 0..comp.len() {
                    if cur == b {
                        break;
                    }
                    let hop = sim.router(cur).routes().next_hop(dst).expect("a route");
                    cur = index[&hop];
                }
                assert_eq!(cur, b, "{a} does not reach {b} hop by hop");
            }
        }
    }
}

/// A random mesh: (peers, average degree, seed).
fn arb_mesh(max_n: usize) -> impl Strategy<Value = (usize, f64, u64)> {
    (2..=max_n, 2.0f64..4.0, any::<u64>())
}

fn build((n, d, seed): (usize, f64, u64)) -> Sim {
    Sim::random(n, d, test_config(), seed)
}

proptest! {
    #![proptest_config(ProptestConfig { cases: cases(32), ..ProptestConfig::default() })]

    #[test]
    fn random_meshes_converge_with_consistent_routes(mesh in arb_mesh(30)) {
        let mut sim = build(mesh);
        settle(&mut sim);
        check_settled(&sim);
        // Settled means quiet: nothing but periodic gossip goes on.
        let before = sim.stats().messages;
        sim.run_for(1_000);
        let per_peer = (sim.stats().messages - before) as f64 / sim.len() as f64;
        prop_assert!(per_peer < 12.0, "{per_peer} messages per peer per second when idle");
    }

    #[test]
    fn broadcasts_reach_every_peer_exactly_once(mesh in arb_mesh(24)) {
        let mut sim = build(mesh);
        settle(&mut sim);
        let n = sim.len();
        for i in 0..n {
            sim.act(i, |r, _| r.register_channel("b").unwrap());
        }
        for s in 0..n {
            sim.act(s, |r, now| r.broadcast(now, "b", vec![s as u8]).unwrap());
        }
        sim.run_for(500);
        // Each peer got each other's broadcast once, and no copy more: the
        // tree carried each broadcast n - 1 times.
        for i in 0..n {
            let mut got: Vec<u8> = sim.deliveries(i, "b").into_iter().map(|(_, _, p)| p[0]).collect();
            got.sort_unstable();
            let want: Vec<u8> = (0..n as u8).filter(|&s| s as usize != i).collect();
            prop_assert_eq!(got, want, "peer {}", i);
            prop_assert_eq!(sim.router(i).counters().broadcast_duplicates, 0);
        }
    }

    #[test]
    fn a_change_costs_each_peer_one_copy(mesh in arb_mesh(30), pick: (usize, usize)) {
        let (n, d, seed) = mesh;
        let mut cfg = test_config();
        cfg.mesh.gossip_interval_ms = 600_000; // only the change itself
        let mut sim = Sim::random(n, d, cfg, seed);
        settle(&mut sim);
        let (a, b) = (pick.0 % n, pick.1 % n);
        prop_assume!(a != b && !sim.has_link(a, b));
        sim.run_for(2_000); // let the last redundant copies of the start land
        let before: Vec<u64> = (0..n).map(|i| sim.router(i).counters().entries_received).collect();
        sim.add_link(a, b);
        settle(&mut sim);
        // Two entries changed (a's and b's): every other peer received each
        // of them, a and b the other's. Copies beyond that happen only while
        // the new link is not yet part of everyone's tree: a and b swap
        // entries by anti-entropy too, and the tree path between them is a
        // cycle with the new link for a moment (typically 5 extra copies in
        // all, whatever the size).
        let mut extra = 0;
        for (i, before) in before.iter().enumerate() {
            let got = sim.router(i).counters().entries_received - before;
            let want = if i == a || i == b { 1 } else { 2 };
            prop_assert!(got >= want, "peer {} got {}", i, got);
            extra += got - want;
        }
        prop_assert!(extra <= n as u64 + 2, "{} extra copies", extra);
    }

    #[test]
    fn duplicate_connections_leave_one_per_pair(mesh in arb_mesh(16), dups in proptest::collection::vec((any::<usize>(), any::<bool>()), 1..10)) {
        let mut sim = build(mesh);
        let links: Vec<(usize, usize)> = (0..sim.len()).flat_map(|a| (0..sim.len()).map(move |b| (a, b))).filter(|&(a, b)| a < b).collect();
        let links: Vec<(usize, usize)> = links.into_iter().filter(|&(a, b)| sim.has_link(a, b)).collect();
        for (k, reverse) in dups {
            // A second connection on an existing link, from either end.
            let (a, b) = links[k % links.len()];
            if reverse { sim.connect(b, a) } else { sim.connect(a, b) }
        }
        settle(&mut sim);
        check_settled(&sim);
        for i in 0..sim.len() {
            let conns = sim.router(i).status().connections;
            let mut remotes: Vec<PeerName> = conns.iter().map(|c| c.remote).collect();
            remotes.sort_unstable();
            remotes.dedup();
            prop_assert_eq!(remotes.len(), conns.len(), "peer {} keeps two connections to one peer", i);
            for c in conns {
                // The other end kept the very same connection.
                let (j, theirs) = sim.peer_end(c.conn).expect("the connection is open at both ends");
                prop_assert!(sim.router(j).status().connections.iter().any(|x| x.conn == theirs));
            }
        }
    }

    #[test]
    fn partitions_heal(mesh in arb_mesh(20), cut in proptest::collection::vec(any::<bool>(), 20)) {
        let mut sim = build(mesh);
        settle(&mut sim);
        let side: Vec<usize> = (0..sim.len()).filter(|&i| cut[i]).collect();
        sim.partition(&side);
        // Each side settles on its own, after garbage-collecting the other.
        settle(&mut sim);
        check_settled(&sim);
        sim.heal();
        settle(&mut sim);
        check_settled(&sim);
        prop_assert_eq!(sim.components().len(), 1);
    }

    #[test]
    fn restarted_peers_replace_their_old_entry(mesh in arb_mesh(20), pick: usize) {
        let mut sim = build(mesh);
        settle(&mut sim);
        let victim = pick % sim.len();
        let name = sim.router(victim).identity().name;
        let old_uid = sim.router(victim).identity().uid;
        for i in 0..sim.len() {
            sim.take_events(i);
        }
        sim.restart(victim);
        settle(&mut sim);
        check_settled(&sim);
        let new_uid = sim.router(victim).identity().uid;
        for i in (0..sim.len()).filter(|&i| i != victim) {
            prop_assert_eq!(sim.router(i).topology().get(name).map(|e| e.uid), Some(new_uid));
            let events = sim.take_events(i);
            let removed = events.contains(&MeshEvent::PeerRemoved { name, uid: old_uid });
            let added = events.iter().any(|e| matches!(e, MeshEvent::PeerAdded { name: n, uid, .. } if *n == name && *uid == new_uid));
            prop_assert!(removed && added, "peer {} saw no replacement", i);
        }
    }

    #[test]
    fn short_id_collisions_end_unique(n in 2usize..20, seed: u64, all_same: bool) {
        let mut cfg = test_config();
        cfg.short_ids = if all_same { ShortIds::Same } else { ShortIds::Random };
        let mut sim = Sim::random(n, 3.0, cfg, seed);
        settle(&mut sim); // includes: short IDs unique and agreed
        for i in 0..n {
            let me = sim.router(i).identity().clone();
            let changes: Vec<MeshEvent> = sim.take_events(i).into_iter().filter(|e| matches!(e, MeshEvent::ShortIdChanged { .. })).collect();
            // Every change was announced, and the last one is the current ID.
            if let Some(MeshEvent::ShortIdChanged { new, .. }) = changes.last() {
                prop_assert_eq!(*new, me.short_id);
            }
        }
    }

    #[test]
    fn lossy_links_still_converge(n in 2usize..16, seed: u64) {
        let mut cfg = test_config();
        cfg.loss = 0.05;
        let mut sim = Sim::random(n, 3.0, cfg, seed);
        settle(&mut sim);
        check_settled(&sim);
    }
}

#[test]
fn same_seed_same_run() {
    let run = || {
        let mut sim = Sim::random(30, 3.0, SimConfig { short_ids: ShortIds::Random, ..test_config() }, 99);
        let t = sim.run_until_converged(SETTLE_MS, 10);
        (t, sim.stats(), sim.router(7).topology().fingerprint())
    };
    assert_eq!(run(), run());
}

/// Each component's peers with their views, for failure messages.
fn dump(sim: &Sim) -> String {
    use std::fmt::Write;
    let mut out = String::new();
    let idx = |n: PeerName| sim.index_of(n).map_or(format!("{n}"), |i| i.to_string());
    for comp in sim.components() {
        let _ = writeln!(out, "component {comp:?}");
        for &i in &comp {
            let r = sim.router(i);
            let t = r.topology();
            let _ = writeln!(
                out,
                "  peer {i} sid {} fp {:x} routes pending {} timeout {:?}",
                r.identity().short_id.get(),
                t.fingerprint(),
                r.routes_pending(),
                r.poll_timeout()
            );
            for e in t.iter() {
                let conns: Vec<String> = e
                    .connections
                    .iter()
                    .map(|c| format!("{}{}", idx(c.remote), if c.established { "" } else { "?" }))
                    .collect();
                let _ = writeln!(
                    out,
                    "    {} uid {:x} v{} sid {} -> {}",
                    idx(e.name),
                    e.uid.0 & 0xffff,
                    e.version,
                    e.short_id.get(),
                    conns.join(",")
                );
            }
        }
    }
    out
}
