#!/usr/bin/env bash
# boot-multi.sh N SCRIPT [ARGS...]: boots N lab guests (2 or 3; 4 works too) at
# once, each pair joined by a point-to-point link over 127.0.0.1 UDP, and runs
# SCRIPT in every one with WEAVER_VM=0..N-1 and WEAVER_VMS=N. Exits 0 only if
# the script passed in every guest. See README.md.
set -euo pipefail
# shellcheck source=lib.sh
. "$(dirname "${BASH_SOURCE[0]}")/lib.sh"

if [ $# -lt 2 ] || [ "$1" = -h ] || [ "$1" = --help ]; then
  echo "usage: $0 N SCRIPT [ARGS...]" >&2
  echo "  runs SCRIPT in N VMs (2..4) joined pairwise over loopback; console lines are prefixed [vmI]" >&2
  echo "  env: LAB_TIMEOUT LAB_MEM LAB_CPUS LAB_HOSTNAME LAB_RESULTS LAB_GRACE LAB_PORT_BASE LAB_LOGLEVEL LAB_QEMU_ARGS" >&2
  exit 2
fi
n=$1; shift
case "$n" in 2|3|4) ;; *) lab_die "N must be 2, 3 or 4, not '$n'" ;; esac
lab_run "$n" 1 "$@"
