#!/usr/bin/env bash
# The fast-datapath benchmark: weaver vs the kernel's own vxlan vs plain
# routed veth, measured in one lab guest in one run (see README.md here).
#
#   integration/bench/run.sh [--quick] [--bin-dir DIR] [-- GUEST-ARGS...]
#
#   --quick        2 s per iperf3 run and a smaller flood: a smoke run
#   --bin-dir DIR  use weaver/weavectl from DIR (inside the checkout) instead
#                  of building them
#
# Prints the guest's console, then a table and the JSON; writes the JSON to
# target/bench/fastdp.json. Exits non-zero if any measurement failed;
# performance goals are reported (met / NOT MET), never asserted on.
set -euo pipefail

ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)
cd "$ROOT"
# Its own target dir, so that it neither waits for nor invalidates the debug
# builds in target/ that development and tests use.
TARGET=$ROOT/target/bench
OUT=$TARGET/fastdp.json
LOG=$TARGET/fastdp-console.log

die() {
  echo "bench: ==================================================" >&2
  echo "bench: FAILED: $*" >&2
  echo "bench: ==================================================" >&2
  exit 1
}

QUICK=0 BIN="" GUEST_ARGS=()
while [ $# -gt 0 ]; do
  case "$1" in
    --quick) QUICK=1; shift ;;
    --bin-dir) BIN=$2; shift 2 ;;
    --) shift; GUEST_ARGS=("$@"); break ;;
    -h | --help) sed -n '2,13p' "$0"; exit 0 ;;
    *) echo "usage: $0 [--quick] [--bin-dir DIR] [-- GUEST-ARGS...]" >&2; exit 2 ;;
  esac
done

command -v python3 > /dev/null || die "python3 is needed (iperf3 JSON, raw frames, the report)"

if [ -z "$BIN" ]; then
  echo "bench: building release binaries in $TARGET"
  cargo build --release --bins --target-dir "$TARGET"
  BIN=$TARGET/release
fi
BIN=$(realpath -e -- "$BIN")
# The guest sees the host's files, except under /tmp and /run (its own tmpfs).
case "$BIN/" in /tmp/* | /run/* | /var/tmp/*) die "--bin-dir $BIN is invisible in the guest; use a directory in the checkout" ;; esac
{ [ -x "$BIN/weaver" ] && [ -x "$BIN/weavectl" ]; } || die "no weaver/weavectl in $BIN"

if [ "$QUICK" = 1 ]; then
  GUEST_ARGS=(--duration 2 --repeat 1 --pairs 3 --flood 1000 "${GUEST_ARGS[@]}")
  export LAB_TIMEOUT=${LAB_TIMEOUT:-900}
else
  GUEST_ARGS=(--duration 10 --repeat 3 --pairs 5 --flood 4000 "${GUEST_ARGS[@]}")
  export LAB_TIMEOUT=${LAB_TIMEOUT:-2400}
fi
# Two vCPUs: sender and receiver each get one, as on the 2-core host; the
# memory is for 4,000 flows, iperf3 buffers and three layouts' namespaces.
export LAB_CPUS=${LAB_CPUS:-2} LAB_MEM=${LAB_MEM:-2048}

# Other work on this machine (a build, another lab guest) takes CPU from
# the guest and skews the numbers, the absolute ones most. Wait for it to
# end (at most BENCH_WAIT seconds, default 900; 0: don't wait), then note
# during the run whether any came back: the report says so.
lab_guests() { pgrep -c -f '^qemu-system-x86_64 -name weaver-lab' || true; }
rustcs() { pgrep -c -x rustc || true; }
wait_s=${BENCH_WAIT:-900}
if [ "$(lab_guests)" -gt 0 ] || [ "$(rustcs)" -gt 0 ]; then
  echo "bench: waiting up to ${wait_s}s for other lab guests and builds to finish (BENCH_WAIT)" >&2
  end=$((SECONDS + wait_s))
  while { [ "$(lab_guests)" -gt 0 ] || [ "$(rustcs)" -gt 0 ]; } && [ "$SECONDS" -lt "$end" ]; do sleep 5; done
  if [ "$(lab_guests)" -gt 0 ] || [ "$(rustcs)" -gt 0 ]; then
    echo "bench: warning: still busy ($(lab_guests) other lab guest(s), $(rustcs) rustc): the numbers will be noisy" >&2
  fi
fi
load=$(cut -d' ' -f1 /proc/loadavg)

mkdir -p "$TARGET"
echo "bench: booting the lab guest (${LAB_CPUS} vCPUs, ${LAB_MEM} MiB, timeout ${LAB_TIMEOUT}s); console also in $LOG"
# Every 5 s: other lab guests (ours is one) and rustc processes.
SAMPLES=$TARGET/contention.txt
(while sleep 5; do echo "$(($(lab_guests) - 1)) $(rustcs)"; done) > "$SAMPLES" &
sampler=$!
set +e
integration/lab/boot.sh integration/bench/guest-bench.sh --bin-dir "$BIN" "${GUEST_ARGS[@]}" | tee "$LOG"
rc=${PIPESTATUS[0]}
set -e
kill "$sampler" 2> /dev/null || true
wait "$sampler" 2> /dev/null || true
busy=$(awk '$1 > 0 || $2 > 0' "$SAMPLES" | wc -l)
nsamples=$(wc -l < "$SAMPLES")
if [ "$rc" != 0 ]; then
  grep -a '^BENCH-FAILED' "$LOG" >&2 || true
  die "the guest failed (exit status $rc); console log: $LOG"
fi
grep -aq '^BENCH-DONE' "$LOG" || die "the guest did not finish (no BENCH-DONE); console log: $LOG"

commit=$(git rev-parse --short HEAD 2> /dev/null || echo unknown)
dirty=false
[ -n "$(git status --porcelain --untracked-files=no 2> /dev/null)" ] && dirty=true
echo
echo "==== fast-datapath benchmark (qemu TCG: compare ratios, not absolute numbers)"
python3 integration/bench/bench.py report "$LOG" "$OUT" \
  "date=$(date -u +%Y-%m-%dT%H:%M:%SZ)" "quick=$QUICK" "commit=$commit" "dirty=$dirty" \
  "bin_dir=$BIN" "host_load_at_start=$load" "lab=qemu TCG (no KVM)" \
  "host_busy_samples=$busy of $nsamples (5 s samples with another lab guest or rustc running)" \
  || die "could not build the report from $LOG"
echo
if [ "$busy" -gt 0 ]; then
  echo "bench: warning: in $busy of $nsamples samples another lab guest or a build was running: the numbers are noisy" >&2
fi
echo "bench: JSON written to $OUT"
# Performance goals only report; a daemon that stopped working is a failure.
if grep -aq '^BENCH-BUG' "$LOG"; then
  grep -a '^BENCH-BUG' "$LOG" >&2
  die "weaver misbehaved during the benchmark (BENCH-BUG above); console log: $LOG"
fi
