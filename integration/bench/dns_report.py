#!/usr/bin/env python3
"""The report of integration/bench/dns.sh: a table on stdout, JSON to a file.

  dns_report.py RUNS_JSONL IPAM_LOG JSON_OUT [KEY=VALUE...]

RUNS_JSONL has one dnsload report a line (with dns.sh's kind, round and
server_cpu_pct added); IPAM_LOG is the output of `cargo bench --bench ipam`
(its `ipam_remote` JSON line and criterion's estimates). The KEY=VALUE pairs
go into the JSON's `meta`. Standard library only.
"""

import json
import re
import statistics
import sys

SERVERS = ["weaver", "dnsmasq"]
# Criterion's units, in microseconds.
UNITS = {"ps": 1e-6, "ns": 1e-3, "µs": 1.0, "us": 1.0, "ms": 1e3, "s": 1e6}


def die(msg):
    print(f"dns_report: {msg}", file=sys.stderr)
    sys.exit(1)


def get(run, path):
    """A value inside a dnsload report by dotted path, or None."""
    for key in path.split("."):
        run = run.get(key) if isinstance(run, dict) else None
    return run


def spread(runs, path):
    """Median, min and max of a figure over the rounds, or None."""
    values = [v for v in (get(r, path) for r in runs) if v is not None]
    if not values:
        return None
    return {"median": statistics.median(values), "min": min(values), "max": max(values), "rounds": values}


# The table's rows: label, kind of run, figure, format.
ROWS = [
    ("answered (queries/s), window 128", "throughput", "qps", "{:,.0f}"),
    ("latency p50 (ms), window 128", "throughput", "latency_ms.p50", "{:.3f}"),
    ("latency p99 (ms), window 128", "throughput", "latency_ms.p99", "{:.3f}"),
    ("lost (%), window 128", "throughput", "lost_pct", "{:.3f}"),
    ("server CPU (% of a core), window 128", "throughput", "server_cpu_pct", "{:.0f}"),
    ("answered per server CPU-second, window 128", "throughput", "qps_per_cpu_s", "{:,.0f}"),
    ("server's CPU busy (%, anyone), window 128", "throughput", "server_core_busy_pct", "{:.0f}"),
    ("generator's CPU busy (%, anyone), window 128", "throughput", "client_core_busy_pct", "{:.0f}"),
    ("answered (queries/s), one at a time", "latency", "qps", "{:,.0f}"),
    ("latency p50 (ms), one at a time", "latency", "latency_ms.p50", "{:.3f}"),
    ("latency p99 (ms), one at a time", "latency", "latency_ms.p99", "{:.3f}"),
]


def dns_section(runs):
    by = {(s, k): [r for r in runs if r["label"] == s and r["kind"] == k] for s in SERVERS for k in ("throughput", "latency")}
    for key, rs in by.items():
        if not rs:
            die(f"no {key[1]} run of {key[0]}")
    results = {s: {} for s in SERVERS}
    ratios = {}
    table = []
    for label, kind, path, fmt in ROWS:
        cells = []
        for s in SERVERS:
            sp = spread(by[(s, kind)], path)
            results[s][f"{kind}.{path}"] = sp
            if sp is None:
                cells.append("n/a")
            elif len(sp["rounds"]) > 1:
                cells.append(f"{fmt.format(sp['median'])} ({fmt.format(sp['min'])}-{fmt.format(sp['max'])})")
            else:
                cells.append(fmt.format(sp["median"]))
        w, d = results["weaver"][f"{kind}.{path}"], results["dnsmasq"][f"{kind}.{path}"]
        ratio = None
        if w is not None and d is not None and d["median"] > 0 and "lost" not in path and "busy" not in path:
            ratio = round(w["median"] / d["median"], 2)
            ratios[f"{kind}.{path}"] = ratio
        table.append([label] + cells + ["n/a" if ratio is None else f"{ratio:.2f}"])
    # Errors the load generator counted (any wrong or malformed reply
    # already failed the run), summed over the rounds.
    for s in SERVERS:
        for k in ("unexpected", "send_errors", "recv_errors", "lost"):
            results[s][k] = sum(r.get(k, 0) for r in runs if r["label"] == s)
        results[s]["client_cpu_pct"] = spread(
            [{"v": 100 * r["client_cpu_s"] / r["duration_s"]} for r in by[(s, "throughput")] if r.get("client_cpu_s") is not None],
            "v",
        )
    return results, ratios, table


def ipam_section(log):
    remote = None
    for line in log.splitlines():
        if line.startswith('{"bench":"ipam_remote"'):
            remote = json.loads(line)
    if remote is None:
        die("no ipam_remote line in the ipam bench's output")
    local = {}
    pat = re.compile(r"(ipam/\S+)\s+time:\s+\[([\d.]+) (\S+) ([\d.]+) (\S+) ([\d.]+) (\S+)\]")
    for m in pat.finditer(log):
        lo, mid, hi = (float(m.group(i)) * UNITS.get(m.group(i + 1), float("nan")) for i in (2, 4, 6))
        local[m.group(1)] = {"low_us": round(lo, 3), "estimate_us": round(mid, 3), "high_us": round(hi, 3)}
    if not local:
        die("no criterion estimates in the ipam bench's output")
    return remote, local


def print_table(rows, header):
    widths = [max(len(str(r[i])) for r in rows + [header]) for i in range(len(header))]
    line = lambda r: "| " + " | ".join(str(c).ljust(w) if i == 0 else str(c).rjust(w) for i, (c, w) in enumerate(zip(r, widths))) + " |"
    print(line(header))
    print("|" + "|".join("-" * (w + 2) for w in widths) + "|")
    for r in rows:
        print(line(r))


def main(argv):
    if len(argv) < 3:
        die(__doc__)
    runs_path, ipam_path, out = argv[:3]
    meta = dict(kv.split("=", 1) for kv in argv[3:])
    with open(runs_path) as f:
        runs = [json.loads(l) for l in f if l.strip()]
    for r in runs:
        # Throughput per unit of the server's own CPU: what other work on
        # the machine (which takes the pinned core from the server) skews least.
        cpu = r.get("server_cpu_pct")
        r["qps_per_cpu_s"] = round(r["qps"] / (cpu / 100)) if cpu else None
        busy = r.get("cpu_busy_pct", {})
        r["server_core_busy_pct"] = busy.get(f"cpu{meta.get('server_cpu', 0)}")
        r["client_core_busy_pct"] = busy.get(f"cpu{meta.get('client_cpu', 1)}")
    with open(ipam_path) as f:
        remote, local = ipam_section(f.read())
    results, ratios, table = dns_section(runs)

    print(f"==== DNS on one core: weaver against dnsmasq {meta.get('dnsmasq', '')} "
          f"({meta.get('names')} names, UDP, median of {meta.get('rounds')} round(s), range in brackets)")
    print_table(table, ["metric", "weaver", "dnsmasq", "weaver/dnsmasq"])
    for s in SERVERS:
        r = results[s]
        cpu = r["client_cpu_pct"]
        print(f"{s}: load generator CPU {cpu['median']:.0f} % of a core" if cpu else f"{s}:", end="")
        print(f"; lost {r['lost']}, unexpected replies {r['unexpected']}, send errors {r['send_errors']}, receive errors {r['recv_errors']} (all rounds)")
    print()
    print("==== IPAM allocation latency")
    print_table(
        [[s["scenario"], s["trials"], s["failed"], s["min_ms"], s["p50_ms"], s["p90_ms"], s["max_ms"]] for s in remote["scenarios"]],
        ["remote: simulated ms", "trials", "failed", "min", "p50", "p90", "max"],
    )
    print()
    print_table(
        [[k.removeprefix("ipam/"), f"{v['estimate_us']:.3f}", f"{v['low_us']:.3f}-{v['high_us']:.3f}"] for k, v in local.items()],
        ["local: allocate + release (wall)", "µs", "95 % interval"],
    )
    print()
    print("goals: the issue sets no bound for these figures: measured, not judged")

    doc = {
        "meta": meta,
        "units": {"qps": "answered queries/s", "latency": "ms", "cpu": "% of one core",
                  "ipam_remote": "simulated ms", "ipam_local": "µs of wall time per allocate + release"},
        "dns": {"results": results, "ratios_weaver_over_dnsmasq": ratios, "runs": runs},
        "ipam": {"remote": remote["scenarios"], "local": local},
        "goals": [],
    }
    with open(out, "w") as f:
        json.dump(doc, f, indent=1)
    print()
    print(json.dumps({"dns": {s: {k: (v["median"] if isinstance(v, dict) else v) for k, v in results[s].items()} for s in SERVERS},
                      "ratios_weaver_over_dnsmasq": ratios,
                      "ipam": {"remote_p50_ms": {s["scenario"]: s["p50_ms"] for s in remote["scenarios"]},
                               "local_us": {k: v["estimate_us"] for k, v in local.items()}}}))


if __name__ == "__main__":
    main(sys.argv[1:])
