#!/usr/bin/env bash
# The sleeve benchmark: weaver's userspace overlay (plain and encrypted)
# against the Linux vxlan device and plain routed veth, natively on this
# machine (network namespaces, no lab guest), in one run (see README.md
# here).
#
#   integration/bench/sleeve.sh [--quick] [--bin-dir DIR] [-- GUEST-BENCH-ARGS...]
#
#   --quick        2 s per iperf3 run, one round: a smoke run
#   --bin-dir DIR  use weaver/weavectl from DIR instead of building them
#
# Needs root and a kernel without openvswitch (the machines the sleeve is
# for). Prints the console of guest-bench.sh, then a table, the goals and
# the JSON; writes the JSON to target/bench/sleeve.json and the console to
# target/bench/sleeve-console.log. Exits non-zero if any measurement failed
# or a daemon misbehaved; performance goals are reported (met / NOT MET),
# never asserted on.
set -euo pipefail

ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)
cd "$ROOT"
TARGET=$ROOT/target/bench
OUT=$TARGET/sleeve.json
LOG=$TARGET/sleeve-console.log
# Scratch (daemon logs, iperf3 JSON, weaver's state) and API sockets: kept
# after the run for the evidence, wiped at the start of the next.
SCRATCH=$TARGET/sleeve-run
LAYOUTS="sleeve sleeve_enc sleeve_nogso sleeve_pcap vxlan veth"

die() {
  echo "bench: ==================================================" >&2
  echo "bench: FAILED: $*" >&2
  echo "bench: ==================================================" >&2
  exit 1
}

QUICK=0 BIN="" ARGS=()
while [ $# -gt 0 ]; do
  case "$1" in
    --quick) QUICK=1; shift ;;
    --bin-dir) BIN=$2; shift 2 ;;
    --) shift; ARGS=("$@"); break ;;
    -h | --help) sed -n '2,18p' "$0"; exit 0 ;;
    *) echo "usage: $0 [--quick] [--bin-dir DIR] [-- GUEST-BENCH-ARGS...]" >&2; exit 2 ;;
  esac
done

# Where it runs: natively, as root (namespaces, veths, bridges), on a
# kernel without openvswitch. Not a silent skip: a run elsewhere would not
# be the measurement this is.
[ "$(id -u)" = 0 ] || die "needs root (network namespaces, veth pairs, bridges)"
if [ -e /sys/module/openvswitch ]; then
  die "this kernel has the openvswitch module loaded: the native sleeve benchmark is for kernels without it (integration/bench/run.sh measures the fast datapath in the lab)"
fi
if modprobe -n -q openvswitch 2> /dev/null; then
  die "this kernel can load openvswitch: the native sleeve benchmark is for kernels without it (integration/bench/run.sh measures the fast datapath in the lab)"
fi
if command -v genl > /dev/null && genl ctrl get name ovs_datapath > /dev/null 2>&1; then
  die "this kernel has the openvswitch datapath (generic netlink family ovs_datapath): the native sleeve benchmark is for kernels without it"
fi
for c in python3 ip iperf3 ping bridge awk timeout flock; do
  command -v "$c" > /dev/null || die "$c not found (see integration/setup.sh)"
done

mkdir -p "$TARGET"
# One native run at a time: the namespaces (hA, hB, cA1...) have fixed names.
exec 9> "$TARGET/sleeve.lock"
flock -n 9 || die "another sleeve benchmark is running (lock $TARGET/sleeve.lock)"

if [ -z "$BIN" ]; then
  echo "bench: building release binaries in $TARGET"
  cargo build --release --bins --target-dir "$TARGET"
  BIN=$TARGET/release
fi
BIN=$(realpath -e -- "$BIN")
{ [ -x "$BIN/weaver" ] && [ -x "$BIN/weavectl" ]; } || die "no weaver/weavectl in $BIN"

if [ "$QUICK" = 1 ]; then
  ARGS=(--duration 2 --repeat 1 --pairs 3 --flood 1000 --lossless-steps 4 "${ARGS[@]}")
else
  ARGS=(--duration 10 --repeat 3 --pairs 5 --flood 4000 --lossless-steps 6 "${ARGS[@]}")
fi

# Other work on this machine (a build, a lab guest) takes CPU from the
# benchmark and skews every number, the CPU figures most. Wait for it to
# end (at most BENCH_WAIT seconds, default 900; 0: don't wait), then note
# during the run whether any came back: the report says so.
lab_guests() { pgrep -c -f '^qemu-system-x86_64 -name weaver-lab' || true; }
rustcs() { pgrep -c -x rustc || true; }
wait_s=${BENCH_WAIT:-900}
if [ "$(lab_guests)" -gt 0 ] || [ "$(rustcs)" -gt 0 ]; then
  echo "bench: waiting up to ${wait_s}s for lab guests and builds to finish (BENCH_WAIT)" >&2
  end=$((SECONDS + wait_s))
  while { [ "$(lab_guests)" -gt 0 ] || [ "$(rustcs)" -gt 0 ]; } && [ "$SECONDS" -lt "$end" ]; do sleep 5; done
  if [ "$(lab_guests)" -gt 0 ] || [ "$(rustcs)" -gt 0 ]; then
    echo "bench: warning: still busy ($(lab_guests) lab guest(s), $(rustcs) rustc): the numbers will be noisy" >&2
  fi
fi
load=$(cut -d' ' -f1 /proc/loadavg)

rm -rf "$SCRATCH"
mkdir -p "$SCRATCH"
echo "bench: the sleeve benchmark, natively ($(nproc) CPUs, kernel $(uname -r)); console also in $LOG, daemon logs in $SCRATCH"
SAMPLES=$TARGET/sleeve-contention.txt
(while sleep 5; do echo "$(lab_guests) $(rustcs)"; done) > "$SAMPLES" &
sampler=$!
set +e
BENCH_SCRATCH=$SCRATCH BENCH_SOCK_DIR=$SCRATCH \
  integration/bench/guest-bench.sh --bin-dir "$BIN" --layouts "$LAYOUTS" "${ARGS[@]}" 2>&1 | tee "$LOG"
rc=${PIPESTATUS[0]}
set -e
kill "$sampler" 2> /dev/null || true
wait "$sampler" 2> /dev/null || true
busy=$(awk '$1 > 0 || $2 > 0' "$SAMPLES" | wc -l)
nsamples=$(wc -l < "$SAMPLES")
if [ "$rc" != 0 ]; then
  grep -a '^BENCH-FAILED\|^BENCH-BUG' "$LOG" >&2 || true
  die "the benchmark failed (exit status $rc); console log: $LOG, daemon logs: $SCRATCH"
fi
grep -aq '^BENCH-DONE' "$LOG" || die "the benchmark did not finish (no BENCH-DONE); console log: $LOG"

commit=$(git rev-parse --short HEAD 2> /dev/null || echo unknown)
dirty=false
[ -n "$(git status --porcelain --untracked-files=no 2> /dev/null)" ] && dirty=true
echo
echo "==== sleeve benchmark (native, $(nproc) CPUs: sender, receiver, daemons and the kernel share them)"
python3 integration/bench/bench.py report "$LOG" "$OUT" \
  "date=$(date -u +%Y-%m-%dT%H:%M:%SZ)" "quick=$QUICK" "commit=$commit" "dirty=$dirty" \
  "bin_dir=$BIN" "weaver_version=$("$BIN/weaver" --version 2> /dev/null || echo unknown)" "host_load_at_start=$load" "lab=native (network namespaces on this machine)" \
  "host_busy_samples=$busy of $nsamples (5 s samples with a lab guest or rustc running)" \
  || die "could not build the report from $LOG"
echo
if [ "$busy" -gt 0 ]; then
  echo "bench: warning: in $busy of $nsamples samples a lab guest or a build was running: the numbers are noisy" >&2
fi
echo "bench: JSON written to $OUT"
if grep -aq '^BENCH-BUG' "$LOG"; then
  grep -a '^BENCH-BUG' "$LOG" >&2
  die "weaver misbehaved during the benchmark (BENCH-BUG above); console log: $LOG"
fi
