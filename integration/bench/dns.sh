#!/usr/bin/env bash
# The DNS and IPAM benchmark: weaveDNS's queries per second on one core
# against dnsmasq's, under the same load in the same run, and IPAM's
# allocation latency (see README.md here).
#
#   integration/bench/dns.sh [--quick] [--no-build]
#
#   --quick     one round of 3 s per server, criterion in quick mode: a
#               smoke run (under a minute once built)
#   --no-build  use the examples and the ipam bench already built in target/bench
#
# Each server in turn (weaver's, from examples/dnsserve.rs, on a
# single-threaded runtime; then dnsmasq) serves the same 1,000 names and
# is pinned to CPU 0; the load generator (examples/dnsload.rs) is pinned to
# CPU 1 and keeps a fixed window of queries in flight over UDP, checking
# every answer. Then the ipam bench (benches/ipam.rs) gives the allocation
# latency. Prints a table and the JSON, also written to
# target/bench/dns.json (logs in target/bench/dns-run). Exits non-zero if a
# measurement could not be made (a server that does not start or dies, a
# wrong or malformed answer, no answer at all); never on performance.
set -euo pipefail

ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)
cd "$ROOT"
TARGET=$ROOT/target/bench
OUT=$TARGET/dns.json
SCRATCH=$TARGET/dns-run
EX=$TARGET/release/examples
NAMES=1000
WINDOW=128
SERVER_CPU=0 CLIENT_CPU=1

die() {
  echo "bench: ==================================================" >&2
  echo "bench: FAILED: $*" >&2
  echo "bench: ==================================================" >&2
  exit 1
}

QUICK=0 BUILD=1
while [ $# -gt 0 ]; do
  case "$1" in
    --quick) QUICK=1; shift ;;
    --no-build) BUILD=0; shift ;;
    -h | --help) sed -n '2,21p' "$0"; exit 0 ;;
    *) echo "usage: $0 [--quick] [--no-build]" >&2; exit 2 ;;
  esac
done
if [ "$QUICK" = 1 ]; then
  ROUNDS=1 DURATION=3 LAT_DURATION=1 CRITERION=(--quick)
else
  ROUNDS=3 DURATION=10 LAT_DURATION=3 CRITERION=()
fi

PATH=$PATH:/usr/sbin:/sbin
for c in python3 taskset dnsmasq cargo; do
  command -v "$c" > /dev/null || die "$c not found (see integration/setup.sh: dnsmasq is in dnsmasq-base)"
done
[ "$(nproc)" -ge 2 ] || die "needs 2 CPUs (server and load generator each on its own)"

mkdir -p "$TARGET"
exec 9> "$TARGET/dns.lock"
flock -n 9 || die "another DNS benchmark is running (lock $TARGET/dns.lock)"

# The ipam bench is built with the release profile, not `cargo bench`'s:
# the same settings, but `cargo bench` would compile the library once more.
IPAM_PATH=$TARGET/ipam-bench.path
if [ "$BUILD" = 1 ]; then
  echo "bench: building the examples and the ipam bench (release) in $TARGET"
  cargo build --release --examples --bench ipam --target-dir "$TARGET" --message-format=json-render-diagnostics \
    | python3 -c 'import json, sys
for line in sys.stdin:
    m = json.loads(line)
    if m.get("reason") == "compiler-artifact" and m["target"]["name"] == "ipam" and m.get("executable"):
        print(m["executable"])' > "$IPAM_PATH"
fi
IPAM_BENCH=$(cat "$IPAM_PATH" 2> /dev/null || true)
for x in "$EX/dnsserve" "$EX/dnsload" "$IPAM_BENCH"; do
  [ -x "$x" ] || die "no ${x:-ipam bench} (run without --no-build first)"
done

# Other work (a build, a lab guest) takes CPU from the servers: wait for it
# to end (at most BENCH_WAIT s, default 900; 0: don't), then sample it.
busy_now() { echo $(($(pgrep -c -x rustc || true) + $(pgrep -c -f '^qemu-system-x86_64 -name weaver-lab' || true))); }
wait_s=${BENCH_WAIT:-900}
end=$((SECONDS + wait_s))
if [ "$wait_s" -gt 0 ] && [ "$(busy_now)" -gt 0 ]; then
  echo "bench: waiting up to ${wait_s}s for builds and lab guests to finish (BENCH_WAIT)" >&2
  while [ "$(busy_now)" -gt 0 ] && [ "$SECONDS" -lt "$end" ]; do sleep 5; done
fi

rm -rf "$SCRATCH"
mkdir -p "$SCRATCH"
HOSTS=$SCRATCH/hosts
for ((i = 0; i < NAMES; i++)); do
  echo "10.40.$((i / 250)).$((i % 250 + 1)) c$i.weave.local"
done > "$HOSTS"
SAMPLES=$SCRATCH/contention.txt
(while sleep 2; do busy_now; done) > "$SAMPLES" &
sampler=$!
SERVER_PID=""
cleanup() {
  [ -n "$SERVER_PID" ] && kill "$SERVER_PID" 2> /dev/null || true
  kill "$sampler" 2> /dev/null || true
}
trap cleanup EXIT

free_port() { python3 -c 'import socket; s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])'; }
# utime + stime of a process, in clock ticks.
cpu_ticks() { awk '{ sub(/.*\) /, ""); print $12 + $13 }' "/proc/$1/stat"; }
TCK=$(getconf CLK_TCK)

start_server() { # NAME PORT LOG
  case "$1" in
    weaver)
      taskset -c "$SERVER_CPU" "$EX/dnsserve" --hosts "$HOSTS" --listen "127.0.0.1:$2" --domain weave.local > "$3" 2>&1 &
      ;;
    dnsmasq)
      # The same names from the same file; nothing else (no resolv.conf, no
      # /etc/hosts, no config file), in the foreground, one process.
      taskset -c "$SERVER_CPU" dnsmasq -k -C /dev/null --no-resolv --no-hosts --addn-hosts="$HOSTS" \
        -p "$2" --listen-address=127.0.0.1 --bind-interfaces --log-facility=- \
        --pid-file="$SCRATCH/dnsmasq.pid" > "$3" 2>&1 &
      ;;
  esac
  SERVER_PID=$!
}

# One load run against the running server: the generator's JSON, with the
# server's CPU use (% of a core over the run's wall time) and how busy each
# of the two pinned CPUs was (anyone's work, softirqs included) added.
load() { # NAME PORT WINDOW DURATION KIND ROUND
  local before after stat0 stat1 t0 t1 json
  before=$(cpu_ticks "$SERVER_PID") || die "$1 is not running"
  stat0=$(grep "^cpu$SERVER_CPU \|^cpu$CLIENT_CPU " /proc/stat)
  t0=$(date +%s.%N)
  json=$(taskset -c "$CLIENT_CPU" "$EX/dnsload" --server "127.0.0.1:$2" --hosts "$HOSTS" \
    --window "$3" --duration "$4" --label "$1" 2>> "$SCRATCH/dnsload.log") \
    || die "the load against $1 failed (see $SCRATCH/dnsload.log and $SCRATCH/$1-$6.log)"
  t1=$(date +%s.%N)
  stat1=$(grep "^cpu$SERVER_CPU \|^cpu$CLIENT_CPU " /proc/stat)
  after=$(cpu_ticks "$SERVER_PID") || die "$1 died during the run (see $SCRATCH/$1-$6.log)"
  python3 - "$json" "$5" "$6" "$before" "$after" "$TCK" "$t0" "$t1" "$stat0" "$stat1" >> "$SCRATCH/runs.jsonl" << 'EOF_PY'
import json, sys
d = json.loads(sys.argv[1])
before, after, tck, t0, t1 = int(sys.argv[4]), int(sys.argv[5]), float(sys.argv[6]), float(sys.argv[7]), float(sys.argv[8])
def cpus(text):
    out = {}
    for line in text.splitlines():
        name, *v = line.split()
        v = [int(x) for x in v]
        out[name] = (sum(v) - v[3] - v[4], sum(v))  # busy (all but idle and iowait), total
    return out
s0, s1 = cpus(sys.argv[9]), cpus(sys.argv[10])
busy = {k: round(100 * (s1[k][0] - s0[k][0]) / max(1, s1[k][1] - s0[k][1]), 1) for k in s0}
d.update(kind=sys.argv[2], round=int(sys.argv[3]),
         server_cpu_pct=round(100 * (after - before) / tck / (t1 - t0), 1), cpu_busy_pct=busy)
print(json.dumps(d))
EOF_PY
  tail -n 1 "$SCRATCH/dnsload.log"
}

echo "bench: DNS on one core: weaver (dnsserve) and dnsmasq $(dnsmasq --version | awk 'NR == 1 { print $3 }') on CPU $SERVER_CPU, dnsload on CPU $CLIENT_CPU; $NAMES names, $ROUNDS round(s) of ${DURATION}s (window $WINDOW) and ${LAT_DURATION}s (window 1)"
for ((r = 1; r <= ROUNDS; r++)); do
  for s in weaver dnsmasq; do
    port=$(free_port)
    start_server "$s" "$port" "$SCRATCH/$s-$r.log"
    load "$s" "$port" "$WINDOW" "$DURATION" throughput "$r"
    load "$s" "$port" 1 "$LAT_DURATION" latency "$r"
    kill -0 "$SERVER_PID" 2> /dev/null || die "$s died (see $SCRATCH/$s-$r.log)"
    kill "$SERVER_PID"
    wait "$SERVER_PID" 2> /dev/null || true
    SERVER_PID=""
  done
done

echo "bench: IPAM allocation latency ($(basename "$IPAM_BENCH") --bench ${CRITERION[*]})"
"$IPAM_BENCH" --bench "${CRITERION[@]}" > "$SCRATCH/ipam.log" 2>&1 \
  || { tail -n 30 "$SCRATCH/ipam.log" >&2; die "the ipam bench failed (see $SCRATCH/ipam.log)"; }

kill "$sampler" 2> /dev/null || true
wait "$sampler" 2> /dev/null || true
busy=$(awk '$1 > 0' "$SAMPLES" | wc -l)
commit=$(git rev-parse --short HEAD 2> /dev/null || echo unknown)
dirty=false
[ -n "$(git status --porcelain --untracked-files=no 2> /dev/null)" ] && dirty=true
echo
python3 integration/bench/dns_report.py "$SCRATCH/runs.jsonl" "$SCRATCH/ipam.log" "$OUT" \
  "date=$(date -u +%Y-%m-%dT%H:%M:%SZ)" "commit=$commit" "dirty=$dirty" "quick=$QUICK" \
  "cpus=$(nproc)" "kernel=$(uname -r)" "dnsmasq=$(dnsmasq --version | awk 'NR == 1 { print $3 }')" \
  "names=$NAMES" "window=$WINDOW" "server_cpu=$SERVER_CPU" "client_cpu=$CLIENT_CPU" "rounds=$ROUNDS" "duration_s=$DURATION" "latency_duration_s=$LAT_DURATION" \
  "host_busy_samples=$busy of $(wc -l < "$SAMPLES") (2 s samples with rustc or a lab guest running)" \
  || die "could not build the report"
[ "$busy" -gt 0 ] && echo "bench: warning: other work ran during $busy samples: the numbers are noisy" >&2
echo "bench: JSON written to $OUT"
