#!/usr/bin/env bash
# The demo: weaver on the kernel's fast datapath, three hosts, six
# containers, on a fresh machine after integration/setup.sh:
#
#   integration/setup.sh && integration/demo.sh
#
# This machine's kernel has no openvswitch module, so the demo runs in one
# lab guest (Debian's kernel under qemu, see integration/lab/README.md):
# three network namespaces play the hosts, each running weaver, in a full
# mesh; two containers are attached to each; every container pings every
# container on the other hosts; host A's status and flows are shown. The
# guest's part is integration/demo-guest.sh.
#
#   integration/demo.sh [--bin-dir DIR]   use built binaries (in the checkout)
#
# Exits non-zero if anything fails, a single ping included.
set -euo pipefail

ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
cd "$ROOT"

die() { echo "demo: error: $*" >&2; exit 1; }

BIN=""
case "${1:-}" in
  --bin-dir) BIN=${2:?--bin-dir needs a directory} ;;
  "") ;;
  *) echo "usage: $0 [--bin-dir DIR]" >&2; exit 2 ;;
esac

command -v qemu-system-x86_64 > /dev/null || die "qemu is missing: run integration/setup.sh first"
command -v cargo > /dev/null || die "cargo is missing (install Rust, then run integration/setup.sh)"

if [ -z "$BIN" ]; then
  # Release binaries in target/bench, shared with the benchmark
  # (integration/bench/run.sh): one release build serves both, and it stays
  # apart from the debug builds in target/ that development and tests use.
  echo "demo: building weaver (release, target/bench)"
  cargo build --release --bins --target-dir target/bench
  BIN=target/bench/release
fi
BIN=$(realpath -e -- "$BIN")
# The guest sees the host's files over 9p, except under /tmp and /run.
case "$BIN/" in /tmp/* | /run/* | /var/tmp/*) die "--bin-dir $BIN is invisible in the guest; use a directory in the checkout" ;; esac

echo "demo: booting the lab guest (qemu, software emulation: expect about a minute)"
LAB_TIMEOUT=${LAB_TIMEOUT:-600} LAB_CPUS=${LAB_CPUS:-2} LAB_MEM=${LAB_MEM:-1024} \
  exec integration/lab/boot.sh integration/demo-guest.sh --bin-dir "$BIN"
