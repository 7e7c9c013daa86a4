//! Mesh control-plane scaling, on the deterministic simulator.
//!
//! For meshes of 100, 1,000 and 4,000 peers (random connected graphs of
//! average degree 4, links of 1–20 ms, default timers) it measures:
//! - cold start: every peer starts at once knowing only its neighbours; time
//!   until every peer holds the same complete topology with routes computed
//!   (simulated and wall-clock), and messages and bytes sent per peer;
//! - one change: a new link between two peers, until settled again;
//! - idle: a minute of periodic anti-entropy on a settled mesh;
//! - memory: the routers' estimated heap per peer, and the process's RSS;
//! - for scale: the size of one whole-topology message, which is what a
//!   protocol that ships the full topology (as Weave's did) sends per event
//!   per neighbour.
//!
//! It prints a table, how each figure grows per 10× peers, and JSON; then
//! criterion times route computation. `MESH_BENCH_SIZES=100,1000` picks the
//! sizes. Run with `cargo bench --bench mesh`.

use std::time::{Duration, Instant};

use criterion::{black_box, Criterion};
use rand::rngs::StdRng;
use rand::{Rng, SeedableRng};
use serde_json::json;
use weaver::mesh::core::sim::{ShortIds, Sim, SimConfig};
use weaver::mesh::core::{wire, MeshConfig, Routes, Topology};

const SEED: u64 = 0x6d65_7368;

/// One size's figures.
struct Row {
    n: usize,
    links: usize,
    converge_sim_ms: u64,
    converge_wall_s: f64,
    msgs_per_peer: f64,
    kb_per_peer: f64,
    change_sim_ms: u64,
    change_msgs_per_peer: f64,
    change_bytes_per_peer: f64,
    idle_msgs_per_peer_min: f64,
    idle_bytes_per_peer_min: f64,
    heap_kb_per_peer: f64,
    rss_kb_per_peer: f64,
    full_topology_kb: f64,
}

/// Resident set size of this process, in KiB (0 where /proc is missing).
fn rss_kb() -> f64 {
    let status = std::fs::read_to_string("/proc/self/status").unwrap_or_default();
    let line = status.lines().find(|l| l.starts_with("VmRSS:")).unwrap_or("");
    line.split_whitespace().nth(1).and_then(|v| v.parse().ok()).unwrap_or(0.0)
}

fn measure(n: usize) -> (Row, Topology) {
    let config = SimConfig {
        mesh: MeshConfig::default(),
        latency_ms: 1..=20,
        loss: 0.0,
        record_events: false,
        short_ids: ShortIds::Unique,
    };
    let rss_before = rss_kb();
    let wall = Instant::now();
    let mut sim = Sim::random(n, 4.0, config, SEED ^ n as u64);
    let converge_sim_ms = sim.run_until_converged(600_000, 10).expect("the mesh converges");
    let converge_wall_s = wall.elapsed().as_secs_f64();
    let cold = sim.stats();
    let heap: usize = (0..n).map(|i| sim.router(i).heap_bytes()).sum();
    let rss = rss_kb() - rss_before;
    let topology = sim.router(0).topology().clone();
    let full: usize = topology.iter().map(wire::entry_len).sum();

    // One change: a new link between two peers not yet linked.
    let mut rng = StdRng::seed_from_u64(SEED);
    let (a, b) = loop {
        let (a, b) = (rng.gen_range(0..n), rng.gen_range(0..n));
        if a != b && !sim.has_link(a, b) {
            break (a, b);
        }
    };
    let before = sim.stats();
    sim.add_link(a, b);
    let change_sim_ms = sim.run_until_converged(600_000, 1).expect("the change settles");
    let change = sim.stats();

    // A quiet minute.
    sim.run_for(60_000);
    let idle = sim.stats();

    let per = |x: u64| x as f64 / n as f64;
    let row = Row {
        n,
        links: sim.link_count(),
        converge_sim_ms,
        converge_wall_s,
        msgs_per_peer: per(cold.messages),
        kb_per_peer: per(cold.bytes) / 1024.0,
        change_sim_ms,
        change_msgs_per_peer: per(change.messages - before.messages),
        change_bytes_per_peer: per(change.bytes - before.bytes),
        idle_msgs_per_peer_min: per(idle.messages - change.messages),
        idle_bytes_per_peer_min: per(idle.bytes - change.bytes),
        heap_kb_per_peer: heap as f64 / n as f64 / 1024.0,
        rss_kb_per_peer: rss / n as f64,
        full_topology_kb: full as f64 / 1024.0,
    };
    (row, topology)
}

/// The figures of a row, with their names, for the table and the growth line.
fn figures(r: &Row) -> Vec<(&'static str, f64)> {
    vec![
        ("converge_sim_ms", r.converge_sim_ms as f64),
        ("converge_wall_s", r.converge_wall_s),
        ("cold_msgs_per_peer", r.msgs_per_peer),
        ("cold_kb_per_peer", r.kb_per_peer),
        ("change_sim_ms", r.change_sim_ms as f64),
        ("change_msgs_per_peer", r.change_msgs_per_peer),
        ("change_bytes_per_peer", r.change_bytes_per_peer),
        ("idle_msgs_per_peer_min", r.idle_msgs_per_peer_min),
        ("idle_bytes_per_peer_min", r.idle_bytes_per_peer_min),
        ("heap_kb_per_peer", r.heap_kb_per_peer),
        ("rss_kb_per_peer", r.rss_kb_per_peer),
        ("full_topology_kb", r.full_topology_kb),
    ]
}

fn print_table(rows: &[Row]) {
    println!("\nmesh scaling (simulated; average degree 4; links 1-20 ms; default timers)\n");
    print!("{:<24}", "peers");
    for r in rows {
        print!("{:>14}", r.n);
    }
    println!("{:>16}", "growth/10x N");
    print!("{:<24}", "links");
    for r in rows {
        print!("{:>14}", r.links);
    }
    println!();
    let (first, last) = (&rows[0], &rows[rows.len() - 1]);
    let decades = (last.n as f64 / first.n as f64).log10();
    for (i, (name, _)) in figures(first).iter().enumerate() {
        print!("{name:<24}");
        for r in rows {
            print!("{:>14.2}", figures(r)[i].1);
        }
        let (a, b) = (figures(first)[i].1, figures(last)[i].1);
        if decades > 0.0 && a > 0.0 && b > 0.0 {
            print!("{:>15.2}x", (b / a).powf(1.0 / decades));
        }
        println!();
    }
}

fn print_json(rows: &[Row]) {
    let sizes: Vec<serde_json::Value> = rows
        .iter()
        .map(|r| {
            let mut m = serde_json::Map::new();
            m.insert("peers".into(), json!(r.n));
            m.insert("links".into(), json!(r.links));
            for (k, v) in figures(r) {
                m.insert(k.into(), json!((v * 100.0).round() / 100.0));
            }
            serde_json::Value::Object(m)
        })
        .collect();
    let (first, last) = (&rows[0], &rows[rows.len() - 1]);
    let decades = (last.n as f64 / first.n as f64).log10();
    let mut growth = serde_json::Map::new();
    for (i, (k, a)) in figures(first).into_iter().enumerate() {
        let b = figures(last)[i].1;
        if decades > 0.0 && a > 0.0 && b > 0.0 {
            growth.insert(k.into(), json!(((b / a).powf(1.0 / decades) * 100.0).round() / 100.0));
        }
    }
    println!("\n{}", json!({ "bench": "mesh", "sizes": sizes, "growth_per_10x_peers": growth }));
}

fn main() {
    let sizes: Vec<usize> = std::env::var("MESH_BENCH_SIZES")
        .ok()
        .map(|v| v.split(',').filter_map(|s| s.trim().parse().ok()).collect())
        .unwrap_or_else(|| vec![100, 1_000, 4_000]);
    let mut rows = Vec::new();
    let mut topologies = Vec::new();
    for &n in &sizes {
        eprintln!("simulating {n} peers...");
        let (row, topology) = measure(n);
        rows.push(row);
        topologies.push(topology);
    }
    if rows.is_empty() {
        return;
    }
    print_table(&rows);
    print_json(&rows);

    let mut c = Criterion::default().configure_from_args().sample_size(10).measurement_time(Duration::from_secs(2));
    for t in &topologies {
        let me = t.names().next().expect("a peer");
        c.bench_function(&format!("routes/compute/{}", t.len()), |b| {
            b.iter(|| Routes::from_topology(black_box(t), me, 1))
        });
    }
    c.final_summary();
}
