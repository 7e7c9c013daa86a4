#!/usr/bin/env bash
# Multi-VM self-test:  integration/lab/boot-multi.sh 2 integration/lab/scenarios/multi-selftest.sh
# (3 works too). Every VM configures its end of each point-to-point link and
# pings every peer; it then stays up, answering, until its peers are done.
#
# Link between VMs i < j: subnet 10.99.L.0/24, L = the link's number in the
# order (0,1), (0,2), (1,2), ...; VM k has address 10.99.L.(k+1). With 2 VMs that
# is 10.99.0.1 (vm 0) and 10.99.0.2 (vm 1) on eth0. The NIC of VM i towards
# VM j has MAC 52:54:00:77:0i:0j (set by boot-multi.sh).
set -euo pipefail

me=${WEAVER_VM:?not inside the lab guest (run it with integration/lab/boot-multi.sh)}
n=${WEAVER_VMS:?}
[ "$n" -ge 2 ] || { echo "multi-selftest: needs at least 2 VMs (boot-multi.sh 2 ...)"; exit 2; }
DEADLINE=$((SECONDS + ${1:-120}))

say() { echo "multi-selftest[vm$me]: $*"; }

link_no() { # i j -> number of the link between i and j
  local a=$1 b=$2 k=0 x y
  if [ "$a" -gt "$b" ]; then x=$a; a=$b; b=$x; fi
  for ((x = 0; x < n; x++)); do for ((y = x + 1; y < n; y++)); do
    if [ "$x" = "$a" ] && [ "$y" = "$b" ]; then echo "$k"; return; fi
    k=$((k + 1))
  done; done
}

iface_to() { # peer -> name of our NIC towards it
  local want f
  want=$(printf '52:54:00:77:%02x:%02x' "$me" "$1")
  for f in /sys/class/net/*/address; do
    if [ "$(cat "$f")" = "$want" ]; then basename "$(dirname "$f")"; return; fi
  done
  return 1
}

in_echos() { awk '/^Icmp:/ { if (!h) { for (i = 1; i <= NF; i++) if ($i == "InEchos") c = i; h = 1 } else { print $c; exit } }' /proc/net/snmp; }

peers=()
for ((j = 0; j < n; j++)); do
  [ "$j" = "$me" ] && continue
  dev=$(iface_to "$j") || { say "FAIL: no NIC towards vm$j"; ip -br link; exit 1; }
  l=$(link_no "$me" "$j")
  ip addr add "10.99.$l.$((me + 1))/24" dev "$dev"
  ip link set "$dev" up
  say "$dev -> vm$j: 10.99.$l.$((me + 1))/24, peer 10.99.$l.$((j + 1))"
  peers+=("10.99.$l.$((j + 1))")
done

# ping every peer: wait until it answers (it may still be booting), then 3 more
for p in "${peers[@]}"; do
  until ping -c 1 -W 1 -q "$p" >/dev/null 2>&1; do
    if [ "$SECONDS" -ge "$DEADLINE" ]; then say "FAIL: $p never answered"; exit 1; fi
    sleep 0.2
  done
  ping -c 3 -i 0.2 -W 2 "$p" || { say "FAIL: ping $p"; exit 1; }
  say "ok: $p answers"
done

# stay up until every peer has pinged us (>= 4 echo requests each) and no echo
# request came for 2 s, so the peers' pings are answered until they are done
want=$((4 * ${#peers[@]}))
last=-1 still=0
while :; do
  c=$(in_echos)
  if [ "$c" = "$last" ]; then still=$((still + 1)); else still=0; last=$c; fi
  if [ "$c" -ge "$want" ] && [ "$still" -ge 10 ]; then break; fi
  if [ "$SECONDS" -ge "$DEADLINE" ]; then say "FAIL: got $c echo requests, expected $want"; exit 1; fi
  sleep 0.2
done
say "ok: answered $c echo requests; all peers reached"
ip -br addr
exit 0
