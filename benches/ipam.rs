//! IPAM allocation latency.
//!
//! - **Remote** (printed first): an allocation on a peer that owns no free
//!   space, which must ask another peer for some over the mesh. Measured on
//!   the deterministic mesh simulator in *simulated* milliseconds, from the
//!   `allocate` call until the allocator reports the address, with every
//!   peer driven as the daemon drives it: unicasts handled on arrival, a
//!   step whenever gossip changed the ring, a tick every
//!   [`TICK_MS`]. The clock advances 1 ms at a time, so figures are exact
//!   to 1 ms. Scenarios: two peers on one link of 10 ms (one way); 50 peers
//!   on random graphs with links of 1–20 ms (one trial per seed); and the
//!   first allocation of a fresh 3-peer mesh, which must first seed the
//!   ring by consensus (`--ipalloc-init consensus=3`, links of 10 ms).
//! - **Local** (criterion, wall clock): one `allocate` of a new container
//!   and its `release` on a peer that owns free space, for a ring of 1 and
//!   of 50 peers' tokens, and for a peer that already holds 1,000 and 10,000
//!   allocations.
//!
//! It prints a table and JSON, then criterion's figures. Run with
//! `cargo bench --bench ipam` (`-- --quick` for a short run).

use std::time::Duration;

use criterion::{black_box, BenchmarkId, Criterion};
use ipnet::Ipv4Net;
use serde_json::json;
use weaver::ipam::allocator::TICK_MS;
use weaver::ipam::{Init, Ipam, IpamConfig, IpamEvent, CHANNEL};
use weaver::mesh::core::sim::{Sim, SimConfig};
use weaver::mesh::core::Router;
use weaver::mesh::peer::PeerName;

/// The range of every scenario: room for 50 peers × 10,000 containers.
const RANGE: &str = "10.32.0.0/12";

/// Simulated time allowed for one remote allocation before it counts as
/// failed (the allocator itself gives up after 10 s).
const REMOTE_LIMIT_MS: u64 = 15_000;

fn config(init: Init) -> IpamConfig {
    let range: Ipv4Net = RANGE.parse().expect("a valid range");
    IpamConfig { range, default_subnet: range, init }
}

// ---- remote: allocators on the mesh simulator --------------------------

/// Allocators registered as the "ipam" channel of every simulated router,
/// driven the way the daemon's mesh task drives its own.
struct Mesh {
    sim: Sim,
    next_tick: u64,
}

fn reachable(r: &Router) -> Vec<PeerName> {
    r.routes().unicast().map(|h| h.dest).collect()
}

impl Mesh {
    /// `n` peers, `init` computed from their names, on a graph of average
    /// degree 3 whose links take `latency_ms` one way; runs until the mesh
    /// has converged and the allocators' gossip has settled.
    fn new(n: usize, latency_ms: u64, seed: u64, init: impl Fn(&[PeerName]) -> Init) -> Mesh {
        Mesh::with_latency(n, latency_ms..=latency_ms, seed, init)
    }

    fn with_latency(
        n: usize,
        latency_ms: std::ops::RangeInclusive<u64>,
        seed: u64,
        init: impl Fn(&[PeerName]) -> Init,
    ) -> Mesh {
        let sim_config = SimConfig { latency_ms, ..SimConfig::default() };
        let mut sim = Sim::random(n, 3.0, sim_config, seed);
        let names: Vec<PeerName> = (0..n).map(|i| sim.router(i).identity().name).collect();
        let init = init(&names);
        for (i, me) in names.iter().enumerate() {
            let ipam = Ipam::new(*me, config(init.clone())).expect("a valid IPAM configuration");
            sim.act(i, |r, _| r.register_gossip_channel(CHANNEL, Box::new(ipam)).expect("a new channel"));
        }
        sim.run_until_converged(60_000, 10).expect("the mesh converges");
        let mut mesh = Mesh { sim, next_tick: 0 };
        // Let reachability, free counts and the ring spread.
        mesh.run_for(5_000, |_| false);
        mesh
    }

    /// Runs `f` on peer `i`'s allocator (as the daemon's `with_ipam`): sends
    /// its unicasts, returns its result and events.
    fn with<R>(&mut self, i: usize, f: impl FnOnce(&mut Ipam, u64) -> R) -> (R, Vec<IpamEvent>) {
        self.sim.act(i, |router, now| {
            let reach = reachable(router);
            let (r, unicasts, events) = router
                .update_channel::<Ipam, _>(now, CHANNEL, |s| {
                    s.set_reachable(reach);
                    let r = f(s, now);
                    let unicasts: Vec<_> = std::iter::from_fn(|| s.poll_unicast()).collect();
                    let events: Vec<_> = std::iter::from_fn(|| s.poll_event()).collect();
                    (r, unicasts, events)
                })
                .expect("the ipam channel");
            for (to, bytes) in unicasts {
                // No route (yet) is the allocator's business: it asks again.
                let _ = router.unicast(now, to, CHANNEL, bytes);
            }
            (r, events)
        })
    }

    /// Advances 1 ms at a time for at most `ms`; after each, every peer
    /// handles its unicasts and, when gossip changed its state or a tick is
    /// due, steps. Stops early, returning true, once `done` holds for the
    /// events of a step.
    fn run_for(&mut self, ms: u64, mut done: impl FnMut(&[(usize, IpamEvent)]) -> bool) -> bool {
        let end = self.sim.now() + ms;
        while self.sim.now() < end {
            let now = self.sim.now() + 1;
            self.sim.run_until(now);
            let tick = now >= self.next_tick;
            if tick {
                self.next_tick = now + TICK_MS;
            }
            let mut out = Vec::new();
            for i in 0..self.sim.len() {
                let msgs = self.sim.take_channel_messages(i, CHANNEL);
                let attention = self.sim.router(i).channel::<Ipam>(CHANNEL).is_ok_and(Ipam::needs_attention);
                if msgs.is_empty() && !attention && !tick {
                    continue;
                }
                let ((), events) = self.with(i, |s, now| {
                    for (src, payload) in msgs {
                        // A bad message is the allocator's to report; none is expected here.
                        let _ = s.handle_message(now, src, &payload);
                    }
                    s.handle_timeout(now);
                });
                out.extend(events.into_iter().map(|e| (i, e)));
            }
            if done(&out) {
                return true;
            }
        }
        false
    }

    /// Allocates on peer `i` and returns the simulated ms until its address
    /// came (0 if at once), or `None` if it failed or did not come in time.
    fn time_allocation(&mut self, i: usize, container: &str) -> Option<u64> {
        let start = self.sim.now();
        let (r, _) = self.with(i, |s, now| s.allocate(now, container, None));
        match r {
            Ok(Some(_)) => return Some(0),
            Ok(None) => {}
            Err(_) => return None,
        }
        let mut ok = false;
        let finished = self.run_for(REMOTE_LIMIT_MS, |events| {
            let mine = events.iter().find(|(j, e)| *j == i && event_container(e) == container);
            ok = matches!(mine, Some((_, IpamEvent::Allocated { .. })));
            mine.is_some()
        });
        (finished && ok).then(|| self.sim.now() - start)
    }
}

fn event_container(e: &IpamEvent) -> &str {
    match e {
        IpamEvent::Allocated { container, .. } | IpamEvent::Failed { container, .. } => container,
    }
}

/// Seeds every peer but the first: peer 0 owns nothing and must ask.
fn all_but_first(names: &[PeerName]) -> Init {
    Init::Seed(names[1..].to_vec())
}

/// One remote scenario's figures (simulated ms).
struct Remote {
    name: &'static str,
    what: &'static str,
    trials: Vec<u64>,
    failed: usize,
}

impl Remote {
    fn percentile(&self, p: f64) -> Option<u64> {
        let mut v = self.trials.clone();
        v.sort_unstable();
        let i = ((v.len() as f64 - 1.0) * p).round() as usize;
        v.get(i).copied()
    }
}

/// Runs `trials` trials of one scenario: a fresh mesh from `mesh(seed)`,
/// then an allocation on peer 0 started at a varying offset from the tick.
fn remote(name: &'static str, what: &'static str, trials: u64, mesh: impl Fn(u64) -> Mesh) -> Remote {
    let mut r = Remote { name, what, trials: Vec::new(), failed: 0 };
    for seed in 0..trials {
        let mut m = mesh(seed);
        m.run_for(seed * 37 % TICK_MS, |_| false);
        match m.time_allocation(0, "c") {
            Some(ms) => r.trials.push(ms),
            None => r.failed += 1,
        }
    }
    r
}

fn remote_scenarios(trials: u64) -> Vec<Remote> {
    vec![
        // The floor is one round trip: the request, then the ring's gossip back.
        remote("2 peers, 10 ms link", "peer without space asks the other", trials, |seed| {
            Mesh::new(2, 10, seed, all_but_first)
        }),
        remote("50 peers, links 1-20 ms", "peer without space asks another (random graph per trial)", trials, |seed| {
            Mesh::with_latency(50, 1..=20, 100 + seed, all_but_first)
        }),
        remote(
            "3 peers, consensus, 10 ms",
            "first allocation of a fresh mesh: seeds the ring by Paxos",
            trials,
            |seed| Mesh::new(3, 10, 200 + seed, |_| Init::Consensus(3)),
        ),
    ]
}

fn print_remote(rows: &[Remote]) {
    println!("\nIPAM remote allocation latency (simulated ms, exact to 1 ms; mesh simulator)\n");
    println!("{:<28}{:>8}{:>8}{:>8}{:>8}{:>8}{:>8}  what", "scenario", "trials", "failed", "min", "p50", "p90", "max");
    let cell = |v: Option<u64>| v.map_or_else(|| "n/a".to_string(), |v| v.to_string());
    for r in rows {
        println!(
            "{:<28}{:>8}{:>8}{:>8}{:>8}{:>8}{:>8}  {}",
            r.name,
            r.trials.len() + r.failed,
            r.failed,
            cell(r.percentile(0.0)),
            cell(r.percentile(0.5)),
            cell(r.percentile(0.9)),
            cell(r.percentile(1.0)),
            r.what
        );
    }
    let json: Vec<_> = rows
        .iter()
        .map(|r| {
            json!({
                "scenario": r.name,
                "what": r.what,
                "trials": r.trials.len() + r.failed,
                "failed": r.failed,
                "min_ms": r.percentile(0.0),
                "p50_ms": r.percentile(0.5),
                "p90_ms": r.percentile(0.9),
                "max_ms": r.percentile(1.0),
            })
        })
        .collect();
    println!("\n{}", json!({ "bench": "ipam_remote", "unit": "simulated ms", "scenarios": json }));
}

// ---- local: one allocator, wall clock -----------------------------------

/// A peer of a ring of `peers` peers' tokens, holding `held` allocations.
fn local_allocator(peers: u64, held: usize) -> Ipam {
    let names: Vec<PeerName> = (1..=peers).map(PeerName::from_u64).collect();
    let mut ipam = Ipam::new(names[0], config(Init::Seed(names.clone()))).expect("a valid configuration");
    for k in 0..held {
        let got = ipam.allocate(0, &format!("held-{k}"), None).expect("in range");
        assert!(got.is_some(), "the peer ran out of space after {k} allocations");
    }
    ipam
}

fn bench_local(c: &mut Criterion) {
    let mut group = c.benchmark_group("ipam/allocate+release");
    for (peers, held) in [(1, 0), (50, 0), (1, 1_000), (1, 10_000), (50, 10_000)] {
        let mut ipam = local_allocator(peers, held);
        let id = BenchmarkId::from_parameter(format!("{peers}-peers/{held}-held"));
        group.bench_function(id, |b| {
            b.iter(|| {
                let a = ipam.allocate(0, black_box("new-container"), None);
                assert!(matches!(a, Ok(Some(_))), "a local allocation completes at once");
                black_box(ipam.release("new-container", None))
            })
        });
    }
    group.finish();
}

fn main() {
    let trials = std::env::var("IPAM_BENCH_TRIALS").ok().and_then(|v| v.parse().ok()).unwrap_or(20);
    let rows = remote_scenarios(trials);
    print_remote(&rows);
    println!();

    let mut c = Criterion::default().configure_from_args().measurement_time(Duration::from_secs(3));
    bench_local(&mut c);
    c.final_summary();
}
