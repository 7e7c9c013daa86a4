#!/usr/bin/env bash
# boot.sh SCRIPT [ARGS...]: boots one lab guest (Debian kernel with openvswitch.ko,
# under qemu TCG), runs SCRIPT inside it as root with ARGS, and exits with the
# script's exit status. See README.md for the environment variables.
set -euo pipefail
# shellcheck source=lib.sh
. "$(dirname "${BASH_SOURCE[0]}")/lib.sh"

if [ $# -lt 1 ] || [ "$1" = -h ] || [ "$1" = --help ]; then
  echo "usage: $0 SCRIPT [ARGS...]" >&2
  echo "  runs SCRIPT (absolute or relative to the current directory, not under /tmp or /run)" >&2
  echo "  in one VM; env: LAB_TIMEOUT LAB_MEM LAB_CPUS LAB_HOSTNAME LAB_RESULTS LAB_LOGLEVEL LAB_QEMU_ARGS" >&2
  exit 2
fi
lab_run 1 0 "$@"
