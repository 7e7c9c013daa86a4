#!/usr/bin/env bash
# Runs in each of two lab guests (boot-multi.sh 2), joined by a virtio NIC
# over loopback. Each guest is a host: a datapath, a VXLAN vport on UDP 6784,
# one container namespace. vm0 pings vm1's container through the tunnel.
set -uo pipefail
HERE=$(cd "$(dirname "$0")" && pwd)
. "$HERE/lib.sh"
FAILED=0
VM=${WEAVER_VM:?WEAVER_VM not set: run through integration/lab/boot-multi.sh}

# How many tunnel ingress flows have counted at least 3 packets (the dump is
# captured first: grep -q closing a pipe early fails under pipefail).
ingress_hits() {
  local f
  f=$("$WEAVECTL" flows dump --dp weave --direct) || { echo 0; return; }
  printf '%s\n' "$f" | grep "in_port(2)" | grep -cE 'packets:([3-9]|[1-9][0-9]+)' || true
}

multi_vm_vxlan() {
  local me=$((VM + 1)) peer=$((2 - VM)) nic
  nic=$(ls /sys/class/net | grep -E '^(eth|ens|enp)' | head -1)
  [ -n "$nic" ] || fail "no virtio NIC in the guest"
  ip addr add 192.168.60.$me/24 dev "$nic"
  ip link set "$nic" up
  ip netns add c
  ip link add vc type veth peer name eth0 netns c
  ip -n c link set eth0 address 02:00:00:00:01:0$me
  ip -n c addr add 10.3.0.$me/24 dev eth0
  ip -n c link set eth0 mtu 1400 up
  ip -n c neigh add 10.3.0.$peer lladdr 02:00:00:00:01:0$peer dev eth0 nud permanent
  ip link set vc up
  "$WEAVECTL" dp add weave
  "$WEAVECTL" port add weave vc --type netdev
  "$WEAVECTL" port add weave vxlan-6784 --type vxlan --dst-port 6784
  "$WEAVECTL" flows add --dp weave \
    "in_port(1),eth(src=02:00:00:00:01:0$me,dst=02:00:00:00:01:0$peer),eth_type(0x0800),ipv4(frag=no)" \
    "set(tunnel(tun_id=0x$me$peer,src=192.168.60.$me,dst=192.168.60.$peer,ttl=64,tp_dst=6784,flags(df))),2"
  "$WEAVECTL" flows add --dp weave \
    "tunnel(tun_id=0x$peer$me,src=192.168.60.$peer,dst=192.168.60.$me,ttl=0/0,flags(-df-csum+key)),in_port(2),eth(src=02:00:00:00:01:0$peer,dst=02:00:00:00:01:0$me),eth_type(0x0800),ipv4(frag=no)" \
    "1"
  # Wait (bounded) for the underlay to carry traffic both ways.
  local i
  for i in $(seq 60); do ping -c 1 -W 1 192.168.60.$peer >/dev/null 2>&1 && break; sleep 0.5; done
  ping -c 1 -W 2 192.168.60.$peer >/dev/null || fail "underlay to 192.168.60.$peer does not work"
  if [ "$VM" = 0 ]; then
    # vm1 may still be installing its flows: wait (bounded) for a first reply.
    for i in $(seq 60); do ip netns exec c ping -c 1 -W 1 10.3.0.$peer > /dev/null 2>&1 && break; sleep 0.5; done
    ip netns exec c ping -c 3 -i 0.3 -W 3 10.3.0.$peer
  else
    # vm1 answers until its ingress flow has seen vm0's three echo requests.
    for i in $(seq 120); do
      [ "$(ingress_hits)" -gt 0 ] && break
      sleep 0.5
    done
    # Give the last reply time to leave.
    sleep 1
  fi
  "$WEAVECTL" flows dump --dp weave --direct
  [ "$(ingress_hits)" -gt 0 ] || fail "tunnel ingress flow did not count 3 packets"
  "$WEAVECTL" dp del weave
}

run_scenario multi_vm_vxlan multi_vm_vxlan
exit $FAILED
