# Helpers shared by the lab scenarios. Sourced, not run.
# Each scenario prints "SCENARIO <name> PASS" or "SCENARIO <name> FAIL: <why>".

ROOT=${ROOT:-$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)}
BIN=${WEAVER_BIN_DIR:-$ROOT/target/debug}
# Scenario scripts accept `--bin-dir DIR` first: where weaver and weavectl are.
if [ "${1:-}" = --bin-dir ]; then BIN=$2; shift 2; fi
WEAVECTL="$BIN/weavectl"
WEAVER="$BIN/weaver"

fail() {
  echo "FAIL: $*" >&2
  return 1
}

# expect_eq WHAT EXPECTED ACTUAL
expect_eq() {
  if [ "$2" != "$3" ]; then
    echo "--- expected ($1):" >&2; printf '%s\n' "$2" >&2
    echo "--- actual ($1):" >&2; printf '%s\n' "$3" >&2
    fail "$1 differs"
    return 1
  fi
}

# expect_contains WHAT NEEDLE HAYSTACK
expect_contains() {
  case "$3" in
    *"$2"*) ;;
    *) printf '%s\n' "$3" >&2; fail "$1: missing '$2'"; return 1 ;;
  esac
}

# Dumps normalised for comparison: sorted, with the time-dependent `used:` value masked.
norm_flows() {
  sed -E 's/used:[0-9.]+s/used:X/' | sort
}

# run_scenario NAME FUNCTION: runs FUNCTION in a subshell with -e, reports the verdict.
run_scenario() {
  local name=$1 fn=$2
  echo "=== scenario $name"
  # Not in an `if`: bash ignores -e inside a condition, even in a subshell.
  # Nor on the left of || or &&. The outer script runs without -e.
  local rc
  ( set -euo pipefail; "$fn" ) 2>&1
  rc=$?
  if [ "$rc" = 0 ]; then
    echo "SCENARIO $name PASS"
  else
    echo "--- kernel log tail:"; dmesg 2>/dev/null | tail -15
    echo "SCENARIO $name FAIL: exit $rc"
    FAILED=1
  fi
}

# container NS HOST_VETH MAC CIDR: a namespace NS whose eth0 (MAC, CIDR) is
# the peer of HOST_VETH in the current namespace. IPv6 is off in NS, so the
# only frames it sends are the ones a test provokes.
container() {
  local ns=$1 veth=$2 mac=$3 cidr=$4
  ip netns add "$ns"
  ip link add "$veth" type veth peer name eth0 netns "$ns"
  ip netns exec "$ns" sysctl -qw net.ipv6.conf.all.disable_ipv6=1
  ip netns exec "$ns" sysctl -qw net.ipv6.conf.default.disable_ipv6=1
  ip -n "$ns" link set eth0 address "$mac"
  ip -n "$ns" addr add "$cidr" dev eth0
  ip -n "$ns" link set eth0 up
  ip -n "$ns" link set lo up
  ip link set "$veth" up
}
