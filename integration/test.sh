#!/usr/bin/env bash
# The one test command: sets up a fresh Debian 12 machine (packages, the lab
# kernel and initramfs) and runs every test: unit and property tests, native
# no-ODP tests, the VM lab (fast datapath on a real kernel datapath, oracle
# tests against ovs-dpctl), the demo, a short benchmark run, and bounded
# fuzzing.
#
#   integration/test.sh            everything
#   FUZZ_SECONDS=0 integration/test.sh   skip fuzzing (local iteration only;
#                                        CI always fuzzes)
set -euo pipefail
cd "$(dirname "$0")/.."

FUZZ_SECONDS=${FUZZ_SECONDS:-30}
if [ "${CI:-}" = true ] && [ "$FUZZ_SECONDS" -lt 1 ]; then FUZZ_SECONDS=30; fi

# Each step's heading shows the free disk: a CI machine's disk may be small
# (one run ran out while building the fuzz targets).
step() { echo; echo "==== $* ($(date +%T), $(df -h --output=avail . | tail -1 | tr -d ' ') free)"; }

# Every cargo test's output is also kept here, for the summary line at the end.
RESULTS=$(mktemp)
trap 'rm -f "$RESULTS"' EXIT
ctest() { cargo test "$@" 2>&1 | tee -a "$RESULTS"; }

step "setup"
integration/setup.sh

# Binaries must live inside the checkout: the lab guest sees the host's files
# over 9p, except /tmp and /run.
export CARGO_TARGET_DIR="$PWD/target"
# No incremental caches: each CI build is built once (saves about 1 GB).
export CARGO_INCREMENTAL=0

step "format"
cargo fmt --all -- --check

step "build"
cargo build --all-targets --workspace

step "unit and property tests"
ctest --workspace --lib --bins

step "native tests (this kernel: no openvswitch module)"
ctest --test native

step "mesh: five daemons in five network namespaces"
ctest --test mesh_netns

step "sleeve: three hosts, six containers, in network namespaces (this kernel: no ODP)"
ctest --test sleeve_netns

step "IPAM: three daemons allocate container addresses in network namespaces"
ctest --test ipam_netns

step "VM lab (Debian kernel with openvswitch.ko under qemu)"
# --nocapture: the guest's console goes into the log. One test thread: the
# single-guest scenarios share one boot; the multi-VM test boots its own pair.
ctest --test lab -- --nocapture --test-threads=2

# The debug build is done with (the benchmarks use a release build of their
# own): give its space back before the release and fuzz builds.
rm -rf target/debug

step "demo and fast-datapath benchmark, smoke run (release build)"
# The README's run command, and the benchmark in its short form: both must
# work; the benchmark reports its goals and never fails on performance.
cargo build --release --bins --target-dir target/bench
integration/demo.sh --bin-dir target/bench/release
echo "test result: ok. 1 passed; 0 failed (demo)" >> "$RESULTS"
BENCH_WAIT=0 integration/bench/run.sh --quick --bin-dir target/bench/release
echo "test result: ok. 1 passed; 0 failed (benchmark smoke run)" >> "$RESULTS"

step "sleeve benchmark, smoke run (natively: sleeve, encrypted sleeve, kernel vxlan, veth)"
integration/bench/sleeve.sh --quick --bin-dir target/bench/release
echo "test result: ok. 1 passed; 0 failed (sleeve benchmark smoke run)" >> "$RESULTS"

step "DNS and IPAM benchmark, smoke run (weaveDNS against dnsmasq on one core; allocation latency)"
BENCH_WAIT=0 integration/bench/dns.sh --quick
echo "test result: ok. 1 passed; 0 failed (dns benchmark smoke run)" >> "$RESULTS"

# The benchmarks' builds are done with; their reports (target/bench/*.json)
# stay.
rm -rf target/bench/release

if [ "$FUZZ_SECONDS" -gt 0 ]; then
  step "fuzzing, ${FUZZ_SECONDS}s per target"
  command -v cargo-fuzz >/dev/null || cargo install cargo-fuzz --locked
  for t in upcall dump_reply flow_text conn_frame mesh_message heartbeat sleeve_datagram dns_query ipam_message; do
    # cargo-fuzz wants nightly flags (sanitizers); the machine has only stable.
    # libFuzzer is chatty: its log goes to a file, shown whole on failure.
    log="target/fuzz-$t.log"
    if RUSTC_BOOTSTRAP=1 cargo fuzz run --fuzz-dir fuzz "$t" -- \
        -max_total_time="$FUZZ_SECONDS" -rss_limit_mb=2048 >"$log" 2>&1; then
      echo "fuzz $t: $(grep -E '^Done [0-9]+ runs' "$log" || echo 'done')"
    else
      cat "$log"
      echo "fuzz $t: FAILED (crash input saved under fuzz/artifacts/$t/)"
      exit 1
    fi
  done
fi

step "all tests passed"
awk '/^test result:/ { p += $4; f += $6 } END { printf "%d passed, %d failed\n", p, f }' "$RESULTS"
