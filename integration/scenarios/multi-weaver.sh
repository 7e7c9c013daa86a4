#!/usr/bin/env bash
# Runs in each of two lab guests (boot-multi.sh 2): weaver on each VM, the
# VMs' virtio NICs as the underlay, one container per VM; the containers
# ping each other through weaver's fast datapath.
set -uo pipefail
HERE=$(cd "$(dirname "$0")" && pwd)
. "$HERE/lib.sh"
FAILED=0
VM=${WEAVER_VM:?WEAVER_VM not set: run through integration/lab/boot-multi.sh}

# The flows that match tunnelled packets (captured first: `grep -q` closing
# the pipe early would fail weavectl's write under pipefail).
tunnel_flows() {
  local f
  f=$("$WEAVECTL" flows dump) || return 1
  printf '%s\n' "$f" | grep 'tunnel(' || true
}

multi_vm_weaver() {
  local me=$((VM + 1)) peer=$((2 - VM)) nic i
  nic=$(ls /sys/class/net | grep -E '^(eth|ens|enp)' | head -1)
  [ -n "$nic" ] || fail "no virtio NIC in the guest"
  ip addr add 192.168.61.$me/24 dev "$nic"
  ip link set "$nic" up
  "$WEAVER" --nickname vm$VM --state-dir /tmp/weaver 192.168.61.$peer > /tmp/weaver.log 2>&1 &
  trap 'kill $(jobs -p) 2>/dev/null; wait; cat /tmp/weaver.log' EXIT
  for i in $(seq 150); do
    "$WEAVECTL" status 2>/dev/null | grep -q '(1 established' && break
    sleep 0.2
  done
  "$WEAVECTL" status
  ip netns add c
  "$WEAVECTL" attach 10.41.0.$me/24 c
  if [ "$VM" = 0 ]; then
    for i in $(seq 50); do ip netns exec c ping -c 1 -W 1 10.41.0.$peer > /dev/null 2>&1 && break; sleep 0.2; done
    ip netns exec c ping -c 5 -i 0.2 -W 2 10.41.0.$peer || fail "container ping across VMs"
    echo "pinged across VMs"
  else
    # vm1 serves until vm0's pings went through its tunnel flows.
    local seen=0
    for i in $(seq 150); do
      seen=$(tunnel_flows | grep -cE 'packets:[5-9]' || true)
      [ "$seen" -gt 0 ] && break
      sleep 0.2
    done
  fi
  "$WEAVECTL" status connections
  tunnel_flows
  # Counted on vm1 before vm0's daemon goes (then its flows go too).
  [ "$VM" = 0 ] || [ "$seen" -gt 0 ] || fail "no traffic through the tunnel flows"
}

run_scenario multi_vm_weaver multi_vm_weaver
exit $FAILED
