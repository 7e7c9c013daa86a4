#!/usr/bin/env bash
# Runs inside the lab guest (Debian kernel with openvswitch.ko): the demo
# that integration/demo.sh boots. Three "hosts" (network namespaces tA, tB,
# tC on one underlay bridge) each run weaver on the kernel's fast datapath,
# in a full mesh; two containers are attached to each; every container pings
# every container on the other hosts.
#
#   demo-guest.sh [--bin-dir DIR]
#
# Exits non-zero if anything fails, a single ping included.
set -Eeuo pipefail

ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
BIN=$ROOT/target/bench/release
if [ "${1:-}" = --bin-dir ]; then BIN=$2; shift 2; fi
[ $# = 0 ] || { echo "usage: $0 [--bin-dir DIR]" >&2; exit 2; }
WEAVER=$BIN/weaver
WEAVECTL=$BIN/weavectl
W=/tmp/demo # the guest's own fresh tmpfs
mkdir -p "$W"
# shellcheck source=stop-daemons.sh
. "$ROOT/integration/stop-daemons.sh"

step() { printf '\n==== %s\n' "$*"; }
die() { echo "DEMO FAILED: $*" >&2; exit 1; }

{ [ -x "$WEAVER" ] && [ -x "$WEAVECTL" ]; } || die "no weaver/weavectl in $BIN"

PIDS=()
trap 'echo "DEMO FAILED: line $LINENO: $BASH_COMMAND (exit $?)" >&2' ERR
on_exit() {
  local rc=$? p
  # weaver bounds each step of its stop (5 s, src/bin/weaver.rs): one that
  # still runs 40 s after SIGTERM fails the demo, with its threads' stacks.
  stop_daemons 40 "$W" "${PIDS[@]}" || rc=1
  # A step that needed its bound is a bug worth seeing, even when all stopped.
  grep -h "shutdown step did not finish" "$W"/t?.log >&2 || true
  if [ "$rc" != 0 ]; then
    for p in A B C; do
      [ -e "$W/t$p.log" ] && { echo "--- weaver on host $p (log tail)"; tail -n 20 "$W/t$p.log"; }
    done
  fi
  exit "$rc"
}
trap on_exit EXIT

# weaver logs in colour by default; the demo's output is a plain console.
export NO_COLOR=1

step "underlay: hosts tA, tB, tC (192.168.90.1-3) on one bridge"
modprobe bridge 2> /dev/null || true
ip link add ul type bridge
ip link set ul up
n=0
for h in A B C; do
  n=$((n + 1))
  ip netns add t$h
  ip -n t$h link set lo up
  ip link add u$h type veth peer name eth0 netns t$h
  ip link set u$h master ul
  ip link set u$h up
  ip -n t$h addr add 192.168.90.$n/24 dev eth0
  ip -n t$h link set eth0 up
done

step "weaver on each host, each told about the other two"
ip netns exec tA "$WEAVER" --nickname hostA --api-socket /run/tA.sock --state-dir "$W/sA" 192.168.90.2 192.168.90.3 > "$W/tA.log" 2>&1 &
PIDS+=($!)
ip netns exec tB "$WEAVER" --nickname hostB --api-socket /run/tB.sock --state-dir "$W/sB" 192.168.90.1 192.168.90.3 > "$W/tB.log" 2>&1 &
PIDS+=($!)
ip netns exec tC "$WEAVER" --nickname hostC --api-socket /run/tC.sock --state-dir "$W/sC" 192.168.90.1 192.168.90.2 > "$W/tC.log" 2>&1 &
PIDS+=($!)
# Full mesh: every host has two established connections. weavectl costs
# about a second per call under emulation, so poll sparingly (bounded 60 s).
for h in A B C; do
  ok=0
  for _ in $(seq 30); do
    if "$WEAVECTL" --api /run/t$h.sock status 2> /dev/null | grep -q 'Connections: 2 (2 established'; then ok=1; break; fi
    sleep 1
  done
  [ "$ok" = 1 ] || { "$WEAVECTL" --api /run/t$h.sock status || true; die "host $h did not connect to both others"; }
  echo "host $h: 2 connections established"
done

step "two containers on each host: weavectl attach CIDR NETNS"
declare -A IP HOST
CTRS=()
n=0
for h in A B C; do
  for i in 1 2; do
    n=$((n + 1))
    c=k$h$i
    ip netns add $c
    # No IPv6: the containers send nothing before the demo's own pings.
    ip netns exec $c sysctl -qw net.ipv6.conf.all.disable_ipv6=1
    ip netns exec $c sysctl -qw net.ipv6.conf.default.disable_ipv6=1
    "$WEAVECTL" --api /run/t$h.sock attach 10.42.0.$n/24 $c > /dev/null
    IP[$c]=10.42.0.$n
    HOST[$c]=$h
    CTRS+=("$c")
    echo "$c on host $h: $(ip -n $c -br addr show ethwe | awk '{ print $1, $3 }'), mtu $(ip -n $c link show ethwe | sed -nE 's/.* mtu ([0-9]+).*/\1/p')"
  done
done

step "weavectl status (host A)"
"$WEAVECTL" --api /run/tA.sock status
step "weavectl status connections (host A)"
"$WEAVECTL" --api /run/tA.sock status connections

step "ping: every container -> every container on another host, once (RTT of that first ping, ms)"
# The first packet of each pair is a miss: its RTT includes the daemons'
# decisions and flow installs along the path.
printf '%-6s' "from\\to"
for d in "${CTRS[@]}"; do printf '%9s' "$d"; done
echo
fails=0 oks=0
for s in "${CTRS[@]}"; do
  printf '%-6s' "$s"
  for d in "${CTRS[@]}"; do
    if [ "${HOST[$s]}" = "${HOST[$d]}" ]; then printf '%9s' "."; continue; fi
    if out=$(ip netns exec "$s" ping -c 1 -W 3 "${IP[$d]}" 2>&1); then
      printf '%9s' "$(sed -nE 's/.* time=([0-9.]+) ms.*/\1/p' <<< "$out")"
      oks=$((oks + 1))
    else
      printf '%9s' "FAIL"
      fails=$((fails + 1))
    fi
  done
  echo
done
echo "$oks of $((oks + fails)) cross-host pairs answered"
[ "$fails" = 0 ] || die "$fails cross-host ping(s) failed"

step "weavectl flows dump (host A): the megaflows the misses installed"
"$WEAVECTL" --api /run/tA.sock flows dump

step "demo passed: 3 hosts, 6 containers, $oks cross-host pings through weaver's fast datapath"
