#!/usr/bin/env bash
# Runs inside the lab guest (Debian kernel with openvswitch.ko): every
# single-guest fast-datapath scenario, sharing one boot.
#   usage: guest-fastdp.sh [SCENARIO...]   (default: all)
set -uo pipefail
HERE=$(cd "$(dirname "$0")" && pwd)
. "$HERE/lib.sh"
FAILED=0

# The guest's devtmpfs has no /dev/fd, which process substitution needs.
[ -e /dev/fd ] || ln -s /proc/self/fd /dev/fd
# ovs-dpctl keeps no state, but wants its run directory.
mkdir -p /var/run/openvswitch /run/openvswitch

# ---------------------------------------------------------------------------
scenario_probe() {
  local out
  out=$("$WEAVECTL" probe)
  echo "$out"
  expect_contains "probe verdict" "fastdp: kernel ODP usable" "$out"
  # The scratch datapath is gone again.
  ! ovs-dpctl show weaver-probe 2>/dev/null
}

# ---------------------------------------------------------------------------
# Datapath and vport operations against ovs-dpctl's view of them.
scenario_dp_ports() {
  "$WEAVECTL" dp add orc
  ip link add p1 type veth peer name p1-peer
  ip link add p2 type veth peer name p2-peer
  "$WEAVECTL" port add orc p1 --type netdev
  "$WEAVECTL" port add orc p2 --type netdev
  "$WEAVECTL" port add orc vxlan-6784 --type vxlan --dst-port 6784
  "$WEAVECTL" port add orc int1 --type internal

  local ours theirs
  ours=$("$WEAVECTL" dp show orc --direct)
  theirs=$(ovs-dpctl show system@orc)
  echo "$ours"; echo "$theirs"
  # Same ports, numbers, names and types, as ovs-dpctl prints them.
  # ovs-dpctl shows its own netdev layer's tunnel options, not the kernel's:
  # compare number, name and type, and check the kernel's dst_port separately.
  local typeonly='s/ \(([a-z]+)(:[^)]*)?\)$/ (\1)/'
  expect_eq "port lines" \
    "$(printf '%s\n' "$theirs" | grep -E '^  port ' | sed -E "$typeonly")" \
    "$(printf '%s\n' "$ours" | grep -E '^  port ' | sed -E "$typeonly")"
  expect_contains "vxlan dst_port" "port 3: vxlan-6784 (vxlan: dst_port=6784)" "$ours"
  expect_contains "lookups line" "$(printf '%s\n' "$theirs" | grep lookups)" "$ours"

  # JSON is machine-readable and agrees.
  "$WEAVECTL" dp show orc --direct --json | grep -q '"name": "vxlan-6784"'

  "$WEAVECTL" port del orc int1
  ! ovs-dpctl show system@orc | grep -q int1
  "$WEAVECTL" dp del orc
  ! ovs-dpctl show system@orc 2>/dev/null
  ip link del p1; ip link del p2
}

# ---------------------------------------------------------------------------
# Flows: what weavectl installs, ovs-dpctl lists identically, and vice versa.
ORACLE_FLOWS=(
  # key|actions
  'in_port(1),eth(src=02:00:00:00:00:01,dst=02:00:00:00:00:02),eth_type(0x0800),ipv4(frag=no)|2'
  'in_port(2),eth(src=02:00:00:00:00:02,dst=02:00:00:00:00:01),eth_type(0x0800),ipv4(src=10.1.0.2,dst=10.1.0.1,proto=1,tos=0,ttl=64,frag=no),icmp(type=0,code=0)|1'
  'in_port(1),eth(src=02:00:00:00:00:01,dst=ff:ff:ff:ff:ff:ff),eth_type(0x0806),arp(sip=10.1.0.1,tip=10.1.0.2,op=1,sha=02:00:00:00:00:01,tha=00:00:00:00:00:00)|2,3'
  'in_port(1),eth(src=02:00:00:00:00:01,dst=02:00:00:00:00:03),eth_type(0x0800),ipv4(src=10.1.0.0/255.255.0.0,frag=no)|set(tunnel(tun_id=0x10203,src=192.168.50.1,dst=192.168.50.2,ttl=64,tp_dst=6784,flags(df))),3'
  'tunnel(tun_id=0x30201,src=192.168.50.2,dst=192.168.50.1,ttl=0/0,flags(-df-csum+key)),in_port(3),eth(src=02:00:00:00:00:03,dst=02:00:00:00:00:01),eth_type(0x0800),ipv4(frag=no)|1'
  'in_port(2),eth(src=02:00:00:00:00:02,dst=02:00:00:00:00:09),eth_type(0x0800),ipv4(src=10.1.0.2,dst=10.1.0.9,proto=6,tos=0,ttl=64,frag=no),tcp(src=80,dst=1024/0xfc00),tcp_flags(0/0)|set(eth(src=02:00:00:00:00:aa,dst=02:00:00:00:00:bb)),1'
  'skb_mark(0x5),in_port(2),eth(src=02:00:00:00:00:02,dst=02:00:00:00:00:08),eth_type(0x86dd),ipv6(src=fd00::2,dst=fd00::8,label=0,proto=17,tclass=0,hlimit=64,frag=no),udp(src=53,dst=5353)|push_vlan(vid=10,pcp=0),1'
  'in_port(1),eth(src=02:00:00:00:00:01,dst=02:00:00:00:00:07),eth_type(0x0800),ipv4(frag=no)|userspace(pid=4242),trunc(100),2'
)

setup_oracle_dp() {
  ovs-dpctl add-dp orc
  for p in o1 o2; do ip link add $p type veth peer name $p-peer; ovs-dpctl add-if orc $p; done
  ovs-dpctl add-if orc vxo,type=vxlan,dst_port=6784 2>/dev/null || "$WEAVECTL" port add orc vxo --type vxlan --dst-port 6784
}

teardown_oracle_dp() {
  ovs-dpctl del-dp orc || true
  ip link del o1 2>/dev/null || true
  ip link del o2 2>/dev/null || true
}

scenario_flows_weaver_to_ovs() {
  trap teardown_oracle_dp EXIT
  setup_oracle_dp
  local f
  for f in "${ORACLE_FLOWS[@]}"; do
    echo "add: ${f%%|*} -> ${f##*|}"
    "$WEAVECTL" flows add --dp orc "${f%%|*}" "${f##*|}"
  done
  local ours theirs
  ours=$("$WEAVECTL" flows dump --dp orc --direct | norm_flows)
  theirs=$(ovs-dpctl dump-flows system@orc | norm_flows)
  echo "$ours"
  expect_eq "dump-flows of weaver-installed flows" "$theirs" "$ours"
  [ "$(printf '%s\n' "$ours" | grep -c .)" = "${#ORACLE_FLOWS[@]}" ] || fail "expected ${#ORACLE_FLOWS[@]} flows"
  "$WEAVECTL" flows dump --dp orc --direct --json | grep -q '"text"'

  # delete one, flush the rest
  "$WEAVECTL" flows del --dp orc "${ORACLE_FLOWS[0]%%|*}"
  [ "$(ovs-dpctl dump-flows system@orc | grep -c .)" = "$(( ${#ORACLE_FLOWS[@]} - 1 ))" ] || fail "del did not remove exactly one flow"
  "$WEAVECTL" flows flush --dp orc
  [ -z "$(ovs-dpctl dump-flows system@orc)" ] || fail "flush left flows"
}

scenario_flows_ovs_to_weaver() {
  trap teardown_oracle_dp EXIT
  setup_oracle_dp
  local f
  for f in "${ORACLE_FLOWS[@]}"; do
    echo "add: ${f%%|*} -> ${f##*|}"
    ovs-dpctl add-flow system@orc "${f%%|*}" "${f##*|}"
  done
  local ours theirs
  theirs=$(ovs-dpctl dump-flows system@orc | norm_flows)
  ours=$("$WEAVECTL" flows dump --dp orc --direct | norm_flows)
  echo "$theirs"
  expect_eq "weavectl dump of ovs-dpctl-installed flows" "$theirs" "$ours"
}

# ---------------------------------------------------------------------------
# Traffic: two namespaces' veths as netdev vports, flows by weavectl, ping.
# dp_with_two_containers DP NS VETH MAC_OCTET SUBNET: datapath DP with two
# containers NS1/NS2 (MACs 02:00:00:00:MAC_OCTET:0i, SUBNET.i/24) whose host
# veths VETH1/VETH2 are its ports 1 and 2.
dp_with_two_containers() {
  "$WEAVECTL" dp add "$1"
  local i
  for i in 1 2; do
    container "$2$i" "$3$i" "02:00:00:00:$4:0$i" "$5.$i/24"
    "$WEAVECTL" port add "$1" "$3$i" --type netdev
  done
}

scenario_traffic() {
  dp_with_two_containers trf c v 00 10.1.0
  ip -n c1 neigh add 10.1.0.2 lladdr 02:00:00:00:00:02 dev eth0 nud permanent
  ip -n c2 neigh add 10.1.0.1 lladdr 02:00:00:00:00:01 dev eth0 nud permanent
  local p1 p2
  p1=$("$WEAVECTL" dp show trf --direct --json | grep -B3 '"name": "v1"' | sed -nE 's/.*"port_no": ([0-9]+).*/\1/p')
  p2=$("$WEAVECTL" dp show trf --direct --json | grep -B3 '"name": "v2"' | sed -nE 's/.*"port_no": ([0-9]+).*/\1/p')
  [ -n "$p1" ] && [ -n "$p2" ] || fail "port numbers not found"
  "$WEAVECTL" flows add --dp trf "in_port($p1),eth(src=02:00:00:00:00:01,dst=02:00:00:00:00:02),eth_type(0x0800),ipv4(frag=no)" "$p2"
  "$WEAVECTL" flows add --dp trf "in_port($p2),eth(src=02:00:00:00:00:02,dst=02:00:00:00:00:01),eth_type(0x0800),ipv4(frag=no)" "$p1"
  ip netns exec c1 ping -c 5 -i 0.2 -W 2 10.1.0.2
  local dump
  dump=$("$WEAVECTL" flows dump --dp trf --direct)
  echo "$dump"
  # 5 echo requests one way, 5 replies the other.
  [ "$(printf '%s\n' "$dump" | grep -c 'packets:5, ')" = 2 ] || fail "flow stats do not count 5 packets each way"
  # The oracle agrees on the counts.
  ovs-dpctl dump-flows system@trf | grep -c 'packets:5, ' | grep -qx 2
  # A single flow by key.
  "$WEAVECTL" flows get --dp trf "in_port($p2),eth(src=02:00:00:00:00:02,dst=02:00:00:00:00:01),eth_type(0x0800),ipv4(frag=no)" | grep -q "packets:5, bytes:490, .*actions:$p1"
  ! "$WEAVECTL" flows get --dp trf "in_port($p2),eth(src=02:00:00:00:00:02,dst=02:00:00:00:00:07),eth_type(0x0800),ipv4(frag=no)"
  # Clearing stats through a flow SET.
  "$WEAVECTL" flows mod --dp trf --clear "in_port($p1),eth(src=02:00:00:00:00:01,dst=02:00:00:00:00:02),eth_type(0x0800),ipv4(frag=no)"
  ovs-dpctl dump-flows system@trf | grep "in_port($p1)" | grep -q 'packets:0, bytes:0, used:never'
  "$WEAVECTL" dp del trf
  ip netns del c1; ip netns del c2
}

# ---------------------------------------------------------------------------
# VXLAN: two host namespaces, each with a datapath and a VXLAN vport on UDP
# 6784, joined by a veth underlay; a container namespace on each.
scenario_vxlan() {
  # The namespaces go even when a check fails (later scenarios reuse names).
  trap 'for h in A B; do ip netns exec h$h "$WEAVECTL" dp del dp$h 2>/dev/null; ip netns del c$h 2>/dev/null; ip netns del h$h 2>/dev/null; done; true' EXIT
  ip netns add hA; ip netns add hB
  ip link add uA netns hA type veth peer name uB netns hB
  ip -n hA addr add 192.168.50.1/24 dev uA; ip -n hA link set uA up; ip -n hA link set lo up
  ip -n hB addr add 192.168.50.2/24 dev uB; ip -n hB link set uB up; ip -n hB link set lo up
  local h peer me ctr mac pmac
  for h in A B; do
    if [ $h = A ]; then me=1; peer=2; else me=2; peer=1; fi
    ip netns add c$h
    ip link add v$h netns h$h type veth peer name eth0 netns c$h
    ip -n c$h link set eth0 address 02:00:00:00:00:0$me
    ip -n c$h addr add 10.2.0.$me/24 dev eth0
    ip -n c$h link set eth0 mtu 1400 up
    ip -n c$h neigh add 10.2.0.$peer lladdr 02:00:00:00:00:0$peer dev eth0 nud permanent
    ip -n h$h link set v$h up
    ip netns exec h$h "$WEAVECTL" dp add dp$h
    ip netns exec h$h "$WEAVECTL" port add dp$h v$h --type netdev
    ip netns exec h$h "$WEAVECTL" port add dp$h vx$h --type vxlan --dst-port 6784
    # Port numbers: 1 = container, 2 = vxlan (0 is the datapath's own port).
    ip netns exec h$h "$WEAVECTL" flows add --dp dp$h \
      "in_port(1),eth(src=02:00:00:00:00:0$me,dst=02:00:00:00:00:0$peer),eth_type(0x0800),ipv4(frag=no)" \
      "set(tunnel(tun_id=0x$me$peer,src=192.168.50.$me,dst=192.168.50.$peer,ttl=64,tp_dst=6784,flags(df))),2"
    ip netns exec h$h "$WEAVECTL" flows add --dp dp$h \
      "tunnel(tun_id=0x$peer$me,src=192.168.50.$peer,dst=192.168.50.$me,ttl=0/0,flags(-df-csum+key)),in_port(2),eth(src=02:00:00:00:00:0$peer,dst=02:00:00:00:00:0$me),eth_type(0x0800),ipv4(frag=no)" \
      "1"
  done
  # Immediate mode, packet-buffered: a slow guest must not leave the last
  # frames in the capture ring when tcpdump is stopped.
  ip netns exec hA tcpdump -n --immediate-mode -U -i uA -w /tmp/underlay.pcap udp port 6784 2>/tmp/tcpdump.err &
  local tpid=$!
  sleep 1
  ip netns exec cA ping -c 3 -i 0.3 -W 3 10.2.0.2
  sleep 1
  kill -INT $tpid; wait $tpid || true
  local cap
  # 6784 is also BFD's port: make tcpdump decode VXLAN.
  cap=$(tcpdump -n -T vxlan -r /tmp/underlay.pcap -v 2>/dev/null)
  echo "$cap" | head -20
  # Encapsulated both ways: VXLAN on UDP 6784 with the VNI each side set.
  expect_contains "underlay A->B" "192.168.50.1." "$cap"
  [ "$(echo "$cap" | grep -cE '> 192\.168\.50\.2\.6784: VXLAN, flags \[I\] \(0x08\), vni 18')" -ge 3 ] || fail "no VXLAN vni 18 frames A->B"
  [ "$(echo "$cap" | grep -cE '> 192\.168\.50\.1\.6784: VXLAN, flags \[I\] \(0x08\), vni 33')" -ge 3 ] || fail "no VXLAN vni 33 frames B->A"
  # The inner frames are the containers' pings.
  [ "$(echo "$cap" | grep -cE '10\.2\.0\.1 > 10\.2\.0\.2: ICMP echo request')" -ge 3 ] || fail "inner echo requests not seen"
  # The outer header carries DF, as set(tunnel(...flags(df))) asked.
  echo "$cap" | grep -E '192\.168\.50\.1\.[0-9]+ > 192\.168\.50\.2\.6784' -B1 | grep -q 'flags \[DF\]' || fail "outer DF not set"
  ip netns exec hA "$WEAVECTL" flows dump --dp dpA --direct
  ip netns exec hA ovs-dpctl dump-flows system@dpA
}

# ---------------------------------------------------------------------------
# Misses: a packet with no flow comes up as an upcall with its key; executing
# it with output(2) delivers it to the other namespace.
scenario_upcalls() {
  upcalls_with
}

scenario_upcalls_per_cpu() {
  upcalls_with --per-cpu
}

upcalls_with() {
  dp_with_two_containers upc u w 04 10.4.0
  ip netns exec u2 tcpdump -n -i eth0 -c 1 -w /tmp/u2.pcap arp 2>/dev/null &
  local tpid=$!
  "$WEAVECTL" dp upcalls --dp upc --count 1 --timeout 30 --execute-output 2 "$@" > /tmp/upcalls.txt &
  local upid=$!
  sleep 1
  # c1 does not know 10.4.0.2: its ARP request is the miss.
  ip netns exec u1 ping -c 3 -i 0.5 -W 1 10.4.0.2 >/dev/null 2>&1 || true
  wait $upid || fail "no upcall arrived"
  cat /tmp/upcalls.txt
  local up
  up=$(cat /tmp/upcalls.txt)
  expect_contains "upcall kind" "Miss: " "$up"
  expect_contains "upcall in_port" "in_port(1)" "$up"
  expect_contains "upcall eth" "eth(src=02:00:00:00:04:01,dst=ff:ff:ff:ff:ff:ff)" "$up"
  expect_contains "upcall arp" "arp(sip=10.4.0.1,tip=10.4.0.2,op=1" "$up"
  # The executed packet reached u2.
  for i in $(seq 50); do kill -0 $tpid 2>/dev/null || break; sleep 0.1; done
  kill $tpid 2>/dev/null || true
  tcpdump -n -r /tmp/u2.pcap 2>/dev/null | grep -q 'Request who-has 10.4.0.2 tell 10.4.0.1' || fail "executed packet not delivered"
  "$WEAVECTL" dp show upc --direct | grep -E 'lookups: hit:[0-9]+ missed:[1-9]' || fail "miss not counted"
  if [ "${1:-}" = --per-cpu ]; then
    "$WEAVECTL" dp show upc --direct | grep -q 'features: .*per-cpu-dispatch' || fail "per-CPU dispatch not shown"
  fi
  "$WEAVECTL" dp del upc
  ip netns del u1; ip netns del u2
}

# ---------------------------------------------------------------------------
# Vport notifications from the ovs_vport multicast group.
scenario_vport_events() {
  "$WEAVECTL" dp add evt
  "$WEAVECTL" dp events --count 2 --timeout 30 > /tmp/events.txt &
  local epid=$!
  sleep 0.5
  "$WEAVECTL" port add evt e1 --type internal
  "$WEAVECTL" port del evt e1
  wait $epid || fail "vport events did not arrive"
  local ev
  ev=$(cat /tmp/events.txt)
  echo "$ev"
  expect_eq "vport events" "$(printf 'new port 1: e1 (internal)\ndel port 1: e1 (internal)')" "$ev"
  "$WEAVECTL" dp del evt
}

# ---------------------------------------------------------------------------
# The daemon owns the datapath; weavectl reads through its API.
scenario_daemon() {
  ip netns add d1
  ip netns exec d1 "$WEAVER" --api-socket /run/weave-d1.sock > /tmp/weaver-d1.log 2>&1 &
  local pid=$! i
  for i in $(seq 50); do [ -S /run/weave-d1.sock ] && break; sleep 0.1; done
  [ -S /run/weave-d1.sock ] || { cat /tmp/weaver-d1.log; fail "daemon did not start"; }
  local st
  st=$("$WEAVECTL" --api /run/weave-d1.sock status)
  echo "$st"
  expect_contains "daemon status" "fastdp" "$st"
  expect_contains "upcall handlers" "handlers (per-cpu)" "$st"
  local show
  # Read through the API (weavectl here runs outside d1, where no datapath exists).
  show=$("$WEAVECTL" --api /run/weave-d1.sock dp show)
  echo "$show"
  expect_contains "daemon datapath" "system@weave:" "$show"
  expect_contains "daemon vxlan vport" "vxlan-6784 (vxlan: dst_port=6784)" "$show"
  "$WEAVECTL" --api /run/weave-d1.sock flows dump
  kill -TERM $pid; wait $pid || fail "daemon exited non-zero on SIGTERM"
  cat /tmp/weaver-d1.log
  # Clean shutdown removed the datapath.
  ! ip netns exec d1 ovs-dpctl show system@weave 2>/dev/null
  ip netns del d1
}

# ---------------------------------------------------------------------------
# weaver's own fast datapath: two hosts (namespaces) joined by a veth
# underlay, a daemon on each, two containers attached to each. Every pair
# pings; the flows come from misses handled by the daemons.
scenario_fastdp_two_hosts() {
  ip netns add hA; ip netns add hB
  ip link add uA netns hA type veth peer name uB netns hB
  ip -n hA addr add 192.168.80.1/24 dev uA; ip -n hA link set uA up; ip -n hA link set lo up
  ip -n hB addr add 192.168.80.2/24 dev uB; ip -n hB link set uB up; ip -n hB link set lo up
  local h
  for h in A B; do
    local peer=192.168.80.1; [ $h = A ] && peer=192.168.80.2
    ip netns exec h$h "$WEAVER" --nickname host$h --api-socket /run/w$h.sock --state-dir /tmp/w$h $peer \
      > /tmp/w$h.log 2>&1 &
  done
  trap 'kill $(jobs -p) 2>/dev/null; wait; cat /tmp/wA.log /tmp/wB.log' EXIT
  local i
  for i in $(seq 100); do
    "$WEAVECTL" --api /run/wA.sock status 2>/dev/null | grep -q 'Connections: 1 (1 established' && break
    sleep 0.2
  done
  "$WEAVECTL" --api /run/wA.sock status
  "$WEAVECTL" --api /run/wA.sock status connections
  local n=0 ips=()
  for h in A B; do
    for i in 1 2; do
      n=$((n + 1))
      ip netns add c$h$i
      ip netns exec c$h$i sysctl -qw net.ipv6.conf.all.disable_ipv6=1
      "$WEAVECTL" --api /run/w$h.sock attach 10.40.0.$n/24 c$h$i
      ips+=("c$h$i:10.40.0.$n")
    done
  done
  local src dst
  for src in "${ips[@]}"; do
    for dst in "${ips[@]}"; do
      [ "$src" = "$dst" ] && continue
      ip netns exec "${src%%:*}" ping -c 2 -i 0.2 -W 2 "${dst##*:}" > /dev/null || fail "${src%%:*} cannot ping ${dst##*:}"
    done
  done
  echo "all 12 pairs ping"
  # Steady traffic: no new misses once the flows are in, for longer than the
  # idle-flow timeout (10 s): flows in use are kept.
  local before after
  ip netns exec cA1 ping -c 3 -i 0.2 10.40.0.3 > /dev/null
  before=$(ip netns exec hA "$WEAVECTL" dp show --direct | sed -nE 's/.*missed:([0-9]+).*/\1/p')
  ip netns exec cA1 ping -c 60 -i 0.2 10.40.0.3 > /dev/null
  after=$(ip netns exec hA "$WEAVECTL" dp show --direct | sed -nE 's/.*missed:([0-9]+).*/\1/p')
  echo "misses before $before after $after"
  [ "$before" = "$after" ] || fail "steady traffic still misses ($before -> $after)"
  local flows
  flows=$("$WEAVECTL" --api /run/wA.sock flows dump)
  echo "$flows"
  expect_contains "tunnel flow on A" "actions:set(tunnel(tun_id=" "$flows"
  expect_contains "megaflow wildcarding L3" "eth_type(0/0x0000)" "$flows"
}

# ---------------------------------------------------------------------------
# Three hosts (A, B, C: namespaces tA, tB, tC on one underlay bridge), a
# daemon on each, two containers on each (kA1 kA2 kB1 ...; 10.42.0.1-6).
# mesh3_setup builds it once; the mesh3_* scenarios after it share it, and
# mesh3_teardown (not a scenario) removes it at the end.
M3_HOSTS=(A B C)
m3_ip() { case $1 in A) echo 192.168.90.1 ;; B) echo 192.168.90.2 ;; C) echo 192.168.90.3 ;; esac; }
m3_ctl() { local h=$1; shift; "$WEAVECTL" --api /run/t$h.sock "$@"; }
# m3_start H [FLAGS...]: starts H's daemon, connecting to the other two.
m3_start() {
  local h=$1 peers=() o
  shift
  for o in "${M3_HOSTS[@]}"; do [ "$o" != "$h" ] && peers+=("$(m3_ip $o)"); done
  ip netns exec t$h "$WEAVER" --nickname host$h --api-socket /run/t$h.sock --state-dir /tmp/t$h "$@" "${peers[@]}" \
    >> /tmp/t$h.log 2>&1 &
  echo $! > /tmp/t$h.pid
}
# Container pairs on different hosts: "src dst-ip" lines.
m3_cross_pairs() {
  local s d
  for s in kA1 kA2 kB1 kB2 kC1 kC2; do
    for d in 1 2 3 4 5 6; do
      local dh=$(( (d - 1) / 2 )) sh
      case ${s:1:1} in A) sh=0 ;; B) sh=1 ;; C) sh=2 ;; esac
      [ $dh != $sh ] && echo "$s 10.42.0.$d"
    done
  done
}
# m3_wait SECONDS DESC CMD...: polls CMD once a second (weavectl is slow under TCG).
m3_wait() {
  local t=$1 desc=$2 i; shift 2
  for i in $(seq "$t"); do "$@" > /dev/null 2>&1 && return 0; sleep 1; done
  fail "timed out after ${t}s waiting for: $desc"
}
# m3_conn_state H PEER: the overlay column of H's connection to host PEER:
# "fastdp", "on hold", "sleeve", "sleeve (probing)", "sleeve (down)", ...
m3_conn_state() {
  m3_ctl $1 status connections | awk -v ip="$(m3_ip $2):" 'index($2, ip) == 1 {
    if ($4 == "on") print "on hold"; else if ($5 ~ /^\(/) print $4 " " $5; else print $4 }' | head -n 1
}
m3_conn_is() { [ "$(m3_conn_state $1 $2)" = "$3" ]; }
# No overlay carries it (on hold, the sleeve down too), or gone altogether
# (the control connection timed out).
m3_conn_down() {
  local s; s=$(m3_conn_state $1 $2)
  [ "$s" = "on hold" ] || [ "$s" = "sleeve (down)" ] || [ -z "$s" ]
}
# m3_stop H: stops H's daemon with SIGTERM and waits for it.
m3_stop() {
  local pid i
  pid=$(cat /tmp/t$1.pid)
  kill -TERM "$pid" 2>/dev/null || true
  for i in $(seq 100); do kill -0 "$pid" 2>/dev/null || return 0; sleep 0.2; done
  fail "weaver on $1 did not stop"
}
# m3_sleeve_flow H PEER: H has a flow that hands frames to the sleeve, for PEER.
m3_sleeve_flow() {
  m3_ctl $1 flows dump | grep -q 'actions:.*userspace(pid=[0-9]*,userdata(7765617665722d736c65657665'
}
m3_sees3() { m3_ctl $1 status | grep -q 'Peers: 3'; }
m3_missed() { ip netns exec t$1 "$WEAVECTL" dp show --direct | sed -nE 's/.*missed:([0-9]+).*/\1/p'; }
m3_block() {  # m3_block H1 H2 [iptables match...]: drops H1<->H2 traffic in H1.
  local h=$1 o=$2; shift 2
  ip netns exec t$h iptables -I INPUT -s "$(m3_ip $o)" "$@" -j DROP
  ip netns exec t$h iptables -I OUTPUT -d "$(m3_ip $o)" "$@" -j DROP
}
m3_unblock() { ip netns exec t$1 iptables -F INPUT; ip netns exec t$1 iptables -F OUTPUT; }
m3_ping_all() {
  local s d
  while read -r s d; do
    ip netns exec "$s" ping -c 1 -W 3 "$d" > /dev/null || fail "$s cannot ping $d"
  done < <(m3_cross_pairs)
}

scenario_mesh3_setup() {
  local h n=0 i
  modprobe bridge 2>/dev/null || true
  # iptables (nft) for the blocking scenarios: this kernel does not autoload it.
  modprobe -a nf_tables nft_compat xt_tcpudp 2>/dev/null || true
  ip link add ul3 type bridge; ip link set ul3 up
  for h in "${M3_HOSTS[@]}"; do
    n=$((n + 1))
    ip netns add t$h; ip -n t$h link set lo up
    ip link add u$h type veth peer name eth0 netns t$h
    ip link set u$h master ul3; ip link set u$h up
    ip -n t$h addr add "$(m3_ip $h)/24" dev eth0; ip -n t$h link set eth0 up
  done
  for h in "${M3_HOSTS[@]}"; do m3_start $h; done
  for h in "${M3_HOSTS[@]}"; do
    m3_wait 40 "host $h sees 3 peers" m3_sees3 $h
  done
  n=0
  for h in "${M3_HOSTS[@]}"; do
    for i in 1 2; do
      n=$((n + 1))
      ip netns add k$h$i
      ip netns exec k$h$i sysctl -qw net.ipv6.conf.all.disable_ipv6=1
      ip netns exec k$h$i sysctl -qw net.ipv4.icmp_echo_ignore_broadcasts=0
      m3_ctl $h attach 10.42.0.$n/24 k$h$i > /dev/null
    done
  done
  m3_ctl A status
}

# All twelve cross-host container pairs ping, both ways; every connection is
# on the fast datapath, its heartbeats acknowledged.
scenario_mesh3_pairs() {
  m3_ping_all
  echo "all $(m3_cross_pairs | wc -l) cross-host (ordered) pairs ping"
  local c
  c=$(m3_ctl A status connections)
  echo "$c"
  [ "$(echo "$c" | grep -c ' established fastdp ')" = 2 ] || fail "A's two connections are not both on fastdp"
  # The 1500-byte underlay carries more than the default 1376: offered.
  expect_contains "MTU offer" "underlay carries mtu=1450" "$c"
}

# A's underlay MTU drops to 1400: full-size heartbeats (1390 + 50 bytes,
# don't-fragment) are lost, small ones still arrive, so A's fast datapath
# goes on hold saying the MTU is the problem, and A-B moves to the sleeve,
# whose path-MTU discovery finds the smaller path: full-size pings without
# DF arrive whole (fragmented), with DF they get "fragmentation needed".
# Restored, the connections return to the fast datapath.
scenario_mesh3_mtu() {
  ip -n tA link set eth0 mtu 1400
  m3_wait 15 "A-B on the sleeve" m3_conn_is A B sleeve
  local c
  c=$(m3_ctl A status connections)
  echo "$c"
  echo "$c" | grep "$(m3_ip B):" | grep -q 'fastdp on hold: .*MTU' || fail "the reason does not name the MTU"
  m3_wait 20 "A-B's sleeve path MTU verified" \
    sh -c "'$WEAVECTL' --api /run/tA.sock status connections | grep '$(m3_ip B):' | grep -q 'path MTU 13[0-9][0-9] bytes of UDP payload (verified)'"
  m3_ctl A status connections | grep "$(m3_ip B):"
  ip netns exec kA1 ping -c 2 -W 3 -M dont -s 1300 10.42.0.3 > /dev/null || fail "non-DF 1300-byte pings A->B did not arrive whole"
  local out
  out=$(ip netns exec kA1 ping -c 3 -W 3 -M do -s 1340 10.42.0.3 2>&1 || true)
  echo "$out" | grep -Eq 'mtu ?= ?[0-9]+' || { echo "$out"; fail "DF 1340-byte pings got no 'fragmentation needed'"; }
  echo "$out" | grep -E 'mtu ?= ?[0-9]+' | head -n 1
  m3_sleeve_flow A || fail "A has no flow handing frames to the sleeve"
  ip -n tA link set eth0 mtu 1500
  m3_wait 20 "A-B back on fastdp" m3_conn_is A B fastdp
  m3_wait 20 "B-A back on fastdp" m3_conn_is B A fastdp
  m3_wait 20 "C-A back on fastdp" m3_conn_is C A fastdp
}

# Steady traffic makes no new misses on any host, for longer than the idle-
# flow timeout (10 s); the flows dump shows the flows with their counts.
scenario_mesh3_steady() {
  local s d h pids=()
  declare -A before
  # 25 s of pings between every cross-host pair; the misses are counted
  # after a warm-up (new flows, and ones that idled out since earlier
  # scenarios), over 12 s: longer than the 10 s idle-flow timeout.
  while read -r s d; do
    ip netns exec "$s" ping -q -c 100 -i 0.25 "$d" > /dev/null & pids+=($!)
  done < <(m3_cross_pairs)
  sleep 5
  for h in "${M3_HOSTS[@]}"; do before[$h]=$(m3_missed $h); done
  sleep 12
  for h in "${M3_HOSTS[@]}"; do
    local after
    after=$(m3_missed $h)
    echo "host $h: misses ${before[$h]} -> $after"
    [ "${before[$h]}" = "$after" ] || fail "host $h still misses in steady state (${before[$h]} -> $after)"
  done
  wait "${pids[@]}" || fail "steady pings lost packets"
  local flows
  flows=$(m3_ctl A flows dump)
  echo "$flows"
  # A's container kA1 (port with MAC of 10.42.0.1) sends to C over the tunnel; counts are there.
  echo "$flows" | grep -E 'actions:set\(tunnel\(.*dst=192\.168\.90\.3' | grep -qE 'packets:([1-9][0-9]+)' \
    || fail "no busy tunnel flow to C on A"
  echo "$flows" | grep -E '^tunnel\(.*src=192\.168\.90\.2' | grep -qE 'packets:([1-9][0-9]+)' \
    || fail "no busy ingress flow from B on A"
  echo "$flows" | grep -q 'eth_type(0x88b5).*actions:userspace' || fail "no heartbeat flow on A"
}

# Broadcast and multicast reach every other container exactly once: an ARP
# request (broadcast) and a ping to 224.0.0.1 (multicast), counted by a
# capture in each container.
scenario_mesh3_broadcast() {
  local k caps=()
  for k in kA2 kB1 kB2 kC1 kC2; do
    ip netns exec $k timeout 8 tcpdump -n -U -i ethwe -w /tmp/bc-$k.pcap 'arp or icmp' 2>/dev/null &
    caps+=($!)
  done
  sleep 3
  ip netns exec kA1 ip neigh flush dev ethwe
  ip netns exec kA1 ping -c 1 -W 2 10.42.0.6 > /dev/null || fail "kA1 cannot ping kC2"
  ip netns exec kA1 ping -I ethwe -c 1 -W 2 224.0.0.1 > /dev/null 2>&1 || true
  wait "${caps[@]}" || true
  for k in kA2 kB1 kB2 kC1 kC2; do
    local arp mc
    # Broadcast requests only: the kernel may follow up with a unicast probe to kC2.
    arp=$(tcpdump -e -n -r /tmp/bc-$k.pcap 2>/dev/null | grep 'ff:ff:ff:ff:ff:ff' \
      | grep -c 'Request who-has 10.42.0.6 tell 10.42.0.1' || true)
    mc=$(tcpdump -n -r /tmp/bc-$k.pcap 2>/dev/null | grep -c '10.42.0.1 > 224.0.0.1: ICMP echo request' || true)
    echo "$k: ARP request seen $arp time(s), multicast echo $mc time(s)"
    [ "$arp" = 1 ] || fail "$k saw the ARP broadcast $arp times, not once"
    [ "$mc" = 1 ] || fail "$k saw the multicast ping $mc times, not once"
  done
}

# UDP to the VXLAN port blocked between A and C: within seconds their
# connection falls back to the sleeve (UDP 6783, direct), and traffic
# resumes over it, not through B. Unblocked, it returns to the fast datapath.
scenario_mesh3_udp_blocked() {
  local sent0
  m3_block A C -p udp --dport 6784
  local t0=$SECONDS
  m3_wait 15 "A-C on the sleeve" m3_conn_is A C sleeve
  m3_wait 15 "C-A on the sleeve" m3_conn_is C A sleeve
  echo "A-C on the sleeve after $((SECONDS - t0)) s"
  m3_ctl A status connections
  m3_ctl A status connections | grep "$(m3_ip C):" | grep -q 'blocked' || fail "the reason does not say UDP is blocked"
  sent0=$(m3_ctl A status | sed -nE 's/.*Sleeve: ([0-9]+) frames captured.*/\1/p')
  m3_wait 10 "kA1 reaches kC1 over the sleeve" ip netns exec kA1 ping -c 1 -W 2 10.42.0.5
  ip netns exec kA1 ping -c 20 -i 0.05 -W 2 10.42.0.5 > /dev/null || fail "pings kA1->kC1 lost over the sleeve"
  ip netns exec kC2 ping -c 20 -i 0.05 -W 2 10.42.0.2 > /dev/null || fail "pings kC2->kA2 lost over the sleeve"
  # Fresh traffic first: idle flows expire, and a slow guest spends seconds on the above.
  ip netns exec kA1 ping -c 2 -i 0.3 -W 2 10.42.0.3 > /dev/null || fail "kA1 cannot reach kB1"
  ip netns exec kA1 ping -c 2 -i 0.3 -W 2 10.42.0.5 > /dev/null || fail "kA1 cannot reach kC1"
  m3_sleeve_flow A || { m3_ctl A flows dump; fail "A has no flow handing frames to the sleeve"; }
  if m3_ctl B flows dump | grep -qE '^tunnel\(.*src=192\.168\.90\.1,.*actions:set\(tunnel\(.*dst=192\.168\.90\.3'; then
    fail "A's traffic to C went through B, not over the direct sleeve"
  fi
  local sent1
  sent1=$(m3_ctl A status | sed -nE 's/.*Sleeve: ([0-9]+) frames captured.*/\1/p')
  echo "A handed ${sent0:-?} -> ${sent1:-?} frames to the sleeve"
  [ "${sent1:-0}" -ge $(( ${sent0:-0} + 40 )) ] || fail "A's sleeve did not carry the pings (${sent0:-?} -> ${sent1:-?})"
  m3_unblock A
  m3_wait 15 "A-C back on fastdp" m3_conn_is A C fastdp
  m3_wait 15 "C-A back on fastdp" m3_conn_is C A fastdp
  m3_ctl A status connections
}

# The A-C underlay blocked altogether (VXLAN and the sleeve both): A's
# containers reach C's, relayed by B's datapath. Unblocked: A-C goes direct
# again.
scenario_mesh3_multihop() {
  m3_block A C; m3_block C A
  m3_wait 15 "A-C withdrawn" m3_conn_down A C
  local s d
  for s in kA1 kA2; do
    for d in 10.42.0.5 10.42.0.6; do
      m3_wait 10 "$s reaches $d through B" ip netns exec $s ping -c 1 -W 2 $d
    done
  done
  ip netns exec kC1 ping -c 2 -i 0.3 -W 2 10.42.0.1 > /dev/null || fail "kC1 cannot reach kA1 through B"
  local flows
  flows=$(m3_ctl B flows dump)
  echo "$flows" | grep -E '^tunnel\(.*src=192\.168\.90\.1,.*actions:set\(tunnel\(.*dst=192\.168\.90\.3' \
    || { echo "$flows"; fail "no relay flow A->C on B"; }
  m3_unblock A; m3_unblock C
  m3_wait 60 "A-C back on fastdp" m3_conn_is A C fastdp
  m3_wait 60 "C-A back on fastdp" m3_conn_is C A fastdp
  local direct=0 i
  for i in $(seq 10); do
    ip netns exec kA1 ping -c 1 -W 2 10.42.0.5 > /dev/null || true
    if m3_ctl A flows dump | grep -qE 'actions:set\(tunnel\(.*dst=192\.168\.90\.3'; then direct=1; break; fi
    sleep 1
  done
  [ "$direct" = 1 ] || fail "A's traffic to C did not go direct after the block was lifted"
}

# B cut off from everyone, then healed: no restart needed, and while B is
# gone A keeps no flow that tunnels to B.
scenario_mesh3_partition() {
  ip netns exec tB iptables -I INPUT -i eth0 -j DROP
  ip netns exec tB iptables -I OUTPUT -o eth0 -j DROP
  m3_wait 20 "A-B on hold" m3_conn_down A B
  sleep 1
  local flows
  flows=$(m3_ctl A flows dump)
  if echo "$flows" | grep -qE 'set\(tunnel\(.*dst=192\.168\.90\.2'; then
    echo "$flows"; fail "A kept flows tunnelling to B while B is cut off"
  fi
  ip netns exec kA1 ping -c 1 -W 2 10.42.0.5 > /dev/null || fail "A-C broke while B was cut off"
  m3_unblock B
  # Both ends of both links: each end needs its own heartbeats acknowledged,
  # and acknowledgements ride TCP, which retransmits on its own (backed-off)
  # schedule after a partition.
  local x
  for x in "A B" "B A" "C B" "B C"; do
    m3_wait 60 "$x back on fastdp" m3_conn_is $x fastdp
  done
  m3_ping_all
}

# weaver on B killed with SIGKILL and started again: the containers are taken
# back, the flows rebuilt, and traffic resumes.
scenario_mesh3_restart() {
  local pid
  pid=$(cat /tmp/tB.pid)
  kill -KILL "$pid"; wait "$pid" 2>/dev/null || true
  m3_start B
  m3_wait 40 "B sees 3 peers again" m3_sees3 B
  m3_wait 30 "A-B on fastdp" m3_conn_is A B fastdp
  m3_wait 30 "B-A on fastdp" m3_conn_is B A fastdp
  m3_wait 30 "B-C on fastdp" m3_conn_is B C fastdp
  m3_wait 30 "kA1 reaches kB1" ip netns exec kA1 ping -c 1 -W 2 10.42.0.3
  m3_ping_all
  grep -q 'container re-attached' /tmp/tB.log || fail "B did not take its containers back"
  ip netns exec kB1 ping -c 2 -i 0.3 10.42.0.1 > /dev/null || fail "kB1 cannot reach kA1"
  local flows
  flows=$(m3_ctl B flows dump)
  echo "$flows"
  case "$flows" in *'actions:set(tunnel('*) ;; *) fail "B has no tunnel flows after the restart" ;; esac
}

# Mixed mode: B restarted with --no-fastdp runs the sleeve only (the Linux
# bridge `weave`, pcap), A and C keep the fast datapath. Every container
# reaches every other; A-C stays on fastdp, A-B and C-B use the sleeve.
# B then returns to the fast datapath.
scenario_mesh3_mixed() {
  m3_stop B
  m3_start B --no-fastdp
  m3_wait 40 "B sees 3 peers again" m3_sees3 B
  m3_ctl B status | grep -q 'Overlay: sleeve' || { m3_ctl B status; fail "B does not say it runs the sleeve"; }
  m3_wait 30 "A-B on the sleeve" m3_conn_is A B sleeve
  m3_wait 30 "C-B on the sleeve" m3_conn_is C B sleeve
  m3_wait 30 "B-A on the sleeve" m3_conn_is B A sleeve
  m3_wait 30 "kA1 reaches kB1" ip netns exec kA1 ping -c 1 -W 2 10.42.0.3
  m3_ping_all
  echo "all pairs ping with B on the sleeve"
  m3_conn_is A C fastdp || fail "A-C left the fast datapath"
  m3_conn_is C A fastdp || fail "C-A left the fast datapath"
  m3_ctl A status connections
  m3_ctl B status connections
  # Fresh traffic first: idle flows expire, and a slow guest spends seconds on the above.
  ip netns exec kA1 ping -c 2 -i 0.3 -W 2 10.42.0.3 > /dev/null || fail "kA1 cannot reach kB1"
  ip netns exec kA1 ping -c 2 -i 0.3 -W 2 10.42.0.5 > /dev/null || fail "kA1 cannot reach kC1"
  m3_sleeve_flow A || { m3_ctl A flows dump; fail "A has no flow handing frames to the sleeve"; }
  m3_ctl A flows dump | grep -qE 'actions:set\(tunnel\(.*dst=192\.168\.90\.3' \
    || fail "A's traffic to C does not tunnel over VXLAN"
  m3_stop B
  m3_start B
  m3_wait 40 "B sees 3 peers again" m3_sees3 B
  m3_wait 30 "A-B on fastdp" m3_conn_is A B fastdp
  m3_wait 30 "B-A on fastdp" m3_conn_is B A fastdp
  m3_wait 30 "kA1 reaches kB1" ip netns exec kA1 ping -c 1 -W 2 10.42.0.3
}

# One peer forced to the sleeve: B restarted with --sleeve-peer hostA keeps
# A-B off VXLAN at both ends (B leaves A's heartbeats unacknowledged), while
# B-C stays on fastdp.
scenario_mesh3_sleeve_peer() {
  m3_stop B
  m3_start B --sleeve-peer hostA
  m3_wait 40 "B sees 3 peers again" m3_sees3 B
  m3_wait 30 "B-A on the sleeve" m3_conn_is B A sleeve
  m3_wait 30 "A-B on the sleeve" m3_conn_is A B sleeve
  m3_wait 30 "B-C on fastdp" m3_conn_is B C fastdp
  m3_ctl B status connections
  m3_ctl B status connections | grep "$(m3_ip A):" | grep -q 'forced' || fail "B does not say the sleeve is forced for A"
  m3_wait 30 "kA1 reaches kB1" ip netns exec kA1 ping -c 1 -W 2 10.42.0.3
  m3_ping_all
  m3_sleeve_flow B || { m3_ctl B flows dump; fail "B has no flow handing frames to the sleeve"; }
  m3_stop B
  m3_start B
  m3_wait 40 "B sees 3 peers again" m3_sees3 B
  m3_wait 30 "A-B on fastdp" m3_conn_is A B fastdp
  m3_wait 30 "B-A on fastdp" m3_conn_is B A fastdp
}

# Two sleeve hosts (B and C restarted with --no-fastdp) carry TCP
# super-frames whole, in pieces sent with UDP GSO. Then B's underlay
# interface loses its transmit checksumming: this kernel (6.1) refuses UDP
# GSO on such a route (EIO from udp_send_skb; from 6.11 the kernel checksums
# in software instead), so B sends its pieces one datagram each from then
# on, says so, and its TCP to C still arrives whole. B and C then return to
# the fast datapath.
m3_pieces_to() {  # m3_pieces_to H PEER: H sends PEER super-frames in pieces.
  m3_ctl $1 status connections | grep "$(m3_ip $2):" | grep -q 'super-frames whole in pieces'
}
m3_iperf() {  # m3_iperf SRC-NS DST-NS DST-IP: 4 MB of TCP, all delivered.
  ip netns exec "$2" iperf3 -s -1 > /dev/null 2>&1 &
  local srv=$! out
  sleep 1
  out=$(ip netns exec "$1" timeout 60 iperf3 -c "$3" -n 4M 2>&1) || { kill $srv 2>/dev/null; echo "$out"; return 1; }
  wait $srv 2>/dev/null
  echo "$out" | tail -n 4
}
scenario_mesh3_sleeve_pieces() {
  local h gso
  for h in B C; do m3_stop $h; m3_start $h --no-fastdp; done
  for h in B C; do m3_wait 40 "$h sees 3 peers again" m3_sees3 $h; done
  m3_wait 30 "B-C on the sleeve" m3_conn_is B C sleeve
  m3_wait 30 "C-B on the sleeve" m3_conn_is C B sleeve
  m3_wait 30 "B sends C super-frames in pieces" m3_pieces_to B C
  m3_wait 30 "C sends B super-frames in pieces" m3_pieces_to C B
  m3_iperf kB1 kC1 10.42.0.5 || fail "kB1's TCP to kC1 did not arrive"
  gso=$(m3_ctl B status | grep 'GSO:') || true
  echo "B: $gso"
  case "$gso" in
    *"one datagram each"*) fail "B sent without UDP GSO on a route that takes it" ;;
    *" in pieces,"*) ;;
    *) fail "B sent no super-frames in pieces to C" ;;
  esac
  ip netns exec tB ethtool -K eth0 tx off > /dev/null || fail "ethtool could not turn B's transmit checksumming off"
  m3_iperf kB1 kC1 10.42.0.5 || fail "kB1's TCP to kC1 did not arrive without UDP GSO"
  gso=$(m3_ctl B status | grep 'GSO:') || true
  echo "B: $gso"
  case "$gso" in *"one datagram each (no UDP GSO)"*) ;; *) fail "B does not say its pieces go one datagram each" ;; esac
  grep -q 'UDP GSO send refused' /tmp/tB.log || fail "B did not log why UDP GSO stopped"
  m3_ctl C status | grep 'GSO:' | grep -qv ' 0 received whole' || fail "C received no super-frames whole"
  ip netns exec tB ethtool -K eth0 tx on > /dev/null
  for h in B C; do m3_stop $h; m3_start $h; done
  for h in B C; do m3_wait 40 "$h sees 3 peers again" m3_sees3 $h; done
  m3_wait 30 "A-B on fastdp" m3_conn_is A B fastdp
  m3_wait 30 "B-C on fastdp" m3_conn_is B C fastdp
  m3_wait 30 "C-B on fastdp" m3_conn_is C B fastdp
}

# With a password, fast-datapath hosts carry container traffic over the
# sleeve, sealed: VXLAN would carry it in clear. Every pair pings; the
# underlay shows the pings' UDP 6783 datagrams and never their payload.
# Restarted without a password, the hosts return to the fast datapath.
scenario_mesh3_encrypted() {
  local h x
  for h in "${M3_HOSTS[@]}"; do m3_stop $h; done
  for h in "${M3_HOSTS[@]}"; do WEAVER_PASSWORD=lab-secret m3_start $h; done
  for h in "${M3_HOSTS[@]}"; do m3_wait 40 "host $h sees 3 peers" m3_sees3 $h; done
  for x in "A B" "A C" "B A" "B C" "C A" "C B"; do m3_wait 30 "$x on the sleeve" m3_conn_is $x sleeve; done
  local c
  c=$(m3_ctl A status connections)
  echo "$c"
  [ "$(echo "$c" | grep -c ' established sleeve .*encrypted: the fast datapath does not encrypt, the sleeve seals; sealed;')" = 2 ] \
    || fail "A's connections are not both sealed on the sleeve"
  timeout 90 tcpdump -n -U -i ul3 -w /tmp/enc.pcap udp port 6783 2>/dev/null & local cap=$!
  sleep 2
  local t0=$SECONDS
  m3_ping_all
  echo "all pairs pinged in $((SECONDS - t0)) s"
  ip netns exec kA1 ping -c 5 -i 0.2 -p 5eca1ed0c0ffee5eca1ed0c0ffee -W 2 10.42.0.5 > /dev/null || fail "patterned pings kA1->kC1 lost"
  sleep 1
  # (tcpdump may have stopped already: its timeout is only a backstop.)
  kill -INT $cap 2>/dev/null || true
  wait $cap 2>/dev/null || true
  local n
  # A capture cut short by the timeout ends in a truncated record: tcpdump
  # then prints what it read and fails, which must not end the scenario.
  n=$( (tcpdump -n -r /tmp/enc.pcap 2>/dev/null || true) | wc -l)
  echo "underlay capture: $n UDP 6783 datagrams"
  [ "$n" -ge 20 ] || fail "the pings did not cross the underlay over the sleeve ($n datagrams)"
  if tcpdump -n -x -r /tmp/enc.pcap 2>/dev/null | tr -d ' \n\t' | grep -q '5eca1ed0c0ffee5eca1ed0c0ffee'; then
    fail "the ping payload crossed the underlay in clear"
  fi
  for h in "${M3_HOSTS[@]}"; do m3_stop $h; done
  for h in "${M3_HOSTS[@]}"; do m3_start $h; done
  for h in "${M3_HOSTS[@]}"; do m3_wait 40 "host $h sees 3 peers" m3_sees3 $h; done
  for x in "A B" "A C" "B A" "B C" "C A" "C B"; do m3_wait 30 "$x on fastdp" m3_conn_is $x fastdp; done
  m3_wait 30 "kA1 reaches kC1" ip netns exec kA1 ping -c 1 -W 2 10.42.0.5
}

# weavectl expose on a fast-datapath host: A's internal port `weave` gets an
# overlay address. The host reaches local and remote containers, a remote
# container reaches the host, and a container on B reaches the underlay
# (host C) through A's masquerade: the forwarder handles frames from the
# datapath's local port both ways. Restarted, A exposes itself again (the
# address and the NAT rule); hidden, the host leaves the overlay.
M3_EXPOSED=10.42.0.100
scenario_mesh3_expose() {
  local out n
  # NAT (iptables' nat table, masquerade): this kernel does not autoload it.
  modprobe -a nf_nat nft_chain_nat nft_masq xt_MASQUERADE xt_comment nf_conntrack 2>/dev/null || true
  out=$(m3_ctl A expose $M3_EXPOSED/24)
  expect_eq "weavectl expose prints the address" "$M3_EXPOSED/24" "$out"
  m3_exposed_addr || { ip -n tA addr show dev weave; fail "$M3_EXPOSED is not on A's weave port"; }
  m3_nat_rule A || fail "A has no weaver-expose masquerade rule"
  m3_host_traffic
  # B's container routes the underlay through A; A masquerades it to C.
  ip -n kB1 route add 192.168.90.0/24 via $M3_EXPOSED
  ip netns exec kB1 ping -c 2 -W 3 192.168.90.3 > /dev/null || fail "kB1 cannot reach host C through A's NAT"
  n=$(ip netns exec tA iptables -t nat -L POSTROUTING -v -n -x | awk '/weaver-expose/ { print $1 }')
  echo "A's masquerade rule matched ${n:-0} packets"
  [ "${n:-0}" -ge 1 ] || fail "kB1's traffic to C did not go through A's masquerade"
  ip -n kB1 route del 192.168.90.0/24 via $M3_EXPOSED
  # A restarted: the exposed address and its rule come back.
  m3_stop A
  ip netns exec tA iptables -t nat -D POSTROUTING $(m3_nat_spec) 2> /dev/null || true
  m3_start A
  m3_wait 40 "A sees 3 peers again" m3_sees3 A
  m3_wait 20 "A exposed again" m3_nat_rule A
  m3_exposed_addr || { ip -n tA addr show dev weave; fail "A's restart lost the exposed address"; }
  m3_wait 30 "kC1 reaches host A again" ip netns exec kC1 ping -c 1 -W 2 $M3_EXPOSED
  m3_host_traffic
  expect_eq "weavectl hide prints what it hid" "$M3_EXPOSED/24" "$(m3_ctl A hide)"
  ! m3_exposed_addr || fail "hide left the address on weave"
  ! m3_nat_rule A || fail "hide left the masquerade rule"
  ! ip netns exec kC1 ping -c 1 -W 2 $M3_EXPOSED > /dev/null 2>&1 || fail "the hidden host still answers on the overlay"
  expect_eq "hide again: nothing left" "" "$(m3_ctl A hide)"
}
m3_nat_spec() { echo "-s 10.42.0.0/24 ! -d 10.42.0.0/24 -m comment --comment weaver-expose -j MASQUERADE"; }
# (Output taken whole first: `grep -q` under pipefail fails when it closes the pipe early.)
m3_nat_rule() { [[ "$(ip netns exec t$1 iptables -t nat -S POSTROUTING)" == *"-s 10.42.0.0/24 "*weaver-expose* ]]; }
m3_exposed_addr() { [[ "$(ip -n tA -o addr show dev weave)" == *"inet $M3_EXPOSED/24 "* ]]; }
# Host A <-> its own container, a container on B, and from one on C.
m3_host_traffic() {
  ip netns exec tA ping -c 2 -W 3 10.42.0.1 > /dev/null || fail "host A cannot reach its container kA1"
  ip netns exec tA ping -c 2 -W 3 10.42.0.3 > /dev/null || fail "host A cannot reach kB1 on B"
  ip netns exec kC1 ping -c 2 -W 3 $M3_EXPOSED > /dev/null || fail "kC1 cannot reach host A"
}

# The service where systemd is not (this guest): a fourth host D installed
# the way vagrant/provision.sh installs weaver (binaries in a bin directory,
# packaging/weaver.default as the settings file, its WEAVER_PEERS set), run
# by packaging/supervise.sh, which runs the unit's own ExecStart line with
# its EnvironmentFile and Restart=on-failure. D joins the mesh on the fast
# datapath, its container reaches the others; killed with SIGKILL, the
# daemon is restarted and takes its container back; SIGTERM to the
# supervisor stops the daemon cleanly (its datapath removed). Every wait is
# bounded, and a failure prints the service's log.
scenario_mesh3_service() {
  local root sup pid1 pid2 rc
  root=$(cd "$HERE/../.." && pwd)
  ip netns add tD; ip -n tD link set lo up
  ip link add uD type veth peer name eth0 netns tD
  ip link set uD master ul3; ip link set uD up
  ip -n tD addr add 192.168.90.4/24 dev eth0; ip -n tD link set eth0 up
  rm -rf /tmp/svc /tmp/tD; mkdir -p /tmp/svc/bin
  install -m 0755 "$WEAVER" "$WEAVECTL" /tmp/svc/bin/
  install -m 0644 "$root/packaging/weaver.default" /tmp/svc/weaver.env
  sed -i 's|^WEAVER_PEERS=.*|WEAVER_PEERS="192.168.90.1 192.168.90.2"|' /tmp/svc/weaver.env
  printf 'WEAVER_NICKNAME=hostD\nWEAVER_API_SOCKET=/run/tD.sock\nWEAVER_STATE_DIR=/tmp/tD\n' >> /tmp/svc/weaver.env
  sed -i 's|^#WEAVER_METRICS_ADDRESS=.*|WEAVER_METRICS_ADDRESS=127.0.0.1:6782|' /tmp/svc/weaver.env
  ip netns exec tD setsid bash "$root/packaging/supervise.sh" --unit "$root/packaging/weaver.service" \
    --env /tmp/svc/weaver.env --bin-dir /tmp/svc/bin > /tmp/tD.log 2>&1 < /dev/null &
  sup=$!
  echo "$sup" > /tmp/tD.sup
  sv_ctl() { timeout 20 /tmp/svc/bin/weavectl --api /run/tD.sock "$@"; }
  sv_pid() { sed -nE 's/^supervise: started .* \(pid ([0-9]+)\)$/\1/p' /tmp/tD.log | tail -n 1; }
  sv_fail() { echo "--- /tmp/tD.log"; tail -n 60 /tmp/tD.log; ps -ef | grep -E '[w]eaver|[s]upervise'; fail "$@"; }
  m3_wait 40 "D's service answers" sv_ctl status || sv_fail "the service did not start"
  sv_ctl status | grep -q 'Overlay: fastdp' || sv_fail "D does not run the fast datapath"
  m3_wait 40 "D sees 4 peers" eval "sv_ctl status | grep -q 'Peers: 4'" || sv_fail "D did not join the mesh"
  ip netns add kD1
  ip netns exec kD1 sysctl -qw net.ipv6.conf.all.disable_ipv6=1
  # Attaching announces the container: kC1, on another host, sees its
  # gratuitous ARP (who-has 10.42.0.7 tell 10.42.0.7) over the overlay.
  ip netns exec kC1 timeout 40 tcpdump -n -U --immediate-mode -i ethwe -c 1 -w /tmp/garp.pcap \
    'arp and arp[6:2] = 1 and arp[14:4] = arp[24:4]' 2> /dev/null &
  local gcap=$!
  sleep 2
  sv_ctl attach 10.42.0.7/24 kD1 > /dev/null || sv_fail "attach on D failed"
  m3_wait 20 "kC1 sees kD1's gratuitous ARP" eval '! kill -0 $gcap' || sv_fail "no gratuitous ARP from kD1 at kC1"
  wait $gcap 2> /dev/null || true
  local g
  g=$(tcpdump -n -r /tmp/garp.pcap 2> /dev/null || true)
  echo "at kC1: $g"
  [[ "$g" == *"Request who-has 10.42.0.7 tell 10.42.0.7"* ]] || sv_fail "kC1 did not see kD1's announcement"
  m3_wait 30 "kD1 reaches kA1" ip netns exec kD1 ping -c 1 -W 2 10.42.0.1 || sv_fail "kD1 cannot reach kA1"
  ip netns exec kD1 ping -c 2 -W 3 10.42.0.3 > /dev/null || sv_fail "kD1 cannot reach kB1"
  ip netns exec kC1 ping -c 2 -W 3 10.42.0.7 > /dev/null || sv_fail "kC1 cannot reach kD1"
  m3_wait 30 "D-A on fastdp" eval "sv_ctl status connections | grep -q '192.168.90.1:.* established fastdp'" \
    || sv_fail "D-A is not on the fast datapath"
  # Its Prometheus metrics: connections by overlay, the datapath's flows and lookups.
  local m
  m=$(ip netns exec tD curl -s -m 10 http://127.0.0.1:6782/metrics) || sv_fail "no metrics on 127.0.0.1:6782"
  for needle in 'weaver_connections_by_overlay{state="established",overlay="fastdp"}' 'weaver_datapath_flows ' \
    'weaver_datapath_lookups_total{result="missed"}' 'weaver_datapath_lookups_total{result="lost"}' \
    'weaver_upcalls_kernel_lost_total ' 'weaver_fastdp 1'; do
    [[ "$m" == *"$needle"* ]] || { echo "$m"; sv_fail "D's metrics lack $needle"; }
  done
  echo "$m" | grep -E '^weaver_(connections_by_overlay|datapath_flows|datapath_lookups_total|upcalls_kernel_lost)'
  # Killed: restarted after RestartSec, the container taken back.
  pid1=$(sv_pid)
  [ -n "$pid1" ] || sv_fail "the supervisor did not say what it started"
  kill -KILL "$pid1"
  m3_wait 20 "the supervisor restarts weaver" eval '[ -n "$(sv_pid)" ] && [ "$(sv_pid)" != "$pid1" ]' \
    || sv_fail "weaver was not restarted after SIGKILL"
  pid2=$(sv_pid)
  echo "killed weaver (pid $pid1); the supervisor restarted it (pid $pid2)"
  m3_wait 40 "the restarted service answers" sv_ctl status || sv_fail "the restarted daemon does not answer"
  m3_wait 30 "kD1 reaches kC1 again" ip netns exec kD1 ping -c 1 -W 2 10.42.0.5 || sv_fail "no traffic after the restart"
  grep -q 'container re-attached' /tmp/tD.log || sv_fail "D did not take its container back"
  # SIGTERM: the daemon stops cleanly, then the supervisor.
  kill -TERM "$sup"
  m3_wait 20 "the supervisor exits" eval '! kill -0 $sup' || sv_fail "the supervisor did not exit on SIGTERM"
  rc=0; wait "$sup" || rc=$?
  [ "$rc" = 0 ] || sv_fail "the supervisor exited with status $rc"
  ! kill -0 "$pid2" 2> /dev/null || sv_fail "weaver outlived its supervisor"
  grep -q 'shutting down' /tmp/tD.log || sv_fail "weaver did not shut down cleanly"
  ! ip netns exec tD ovs-dpctl show system@weave > /dev/null 2>&1 || sv_fail "D's datapath is still there"
  tail -n 4 /tmp/tD.log
  ip netns del kD1; ip netns del tD; rm -f /tmp/tD.sup
}

# Attach and detach on the fast datapath: attaching kA2 again with its
# address changes nothing (same veth, same MAC), with another is refused;
# detached, kA2 is unreachable from the other hosts (kA1 still answers);
# attached again, reachable again.
m3_mac() { m3_ctl $1 ps | awk -v t="$2" '$1 == t { print $3 }'; }
scenario_mesh3_detach() {
  local mac err
  m3_wait 30 "kB1 reaches kA2" ip netns exec kB1 ping -c 1 -W 2 10.42.0.2
  mac=$(m3_mac A kA2)
  [ -n "$mac" ] || fail "kA2 is not in A's ps"
  m3_ctl A attach 10.42.0.2/24 kA2 > /dev/null || fail "attaching kA2 again with its address failed"
  [ "$(m3_mac A kA2)" = "$mac" ] || fail "attaching kA2 again made a new veth ($mac -> $(m3_mac A kA2))"
  if err=$(m3_ctl A attach 10.42.0.9/24 kA2 2>&1); then fail "kA2 was attached again with another address"; fi
  [[ "$err" == *"already attached with 10.42.0.2/24"* ]] || fail "the refusal does not say what kA2 has: $err"
  err=$(m3_ctl A detach kA2)
  [ "$err" = "kA2 detached" ] || fail "detach kA2 did not say so: $err"
  ! ip -n kA2 link show ethwe > /dev/null 2>&1 || fail "detach left ethwe in kA2"
  ! ip netns exec kB1 ping -c 3 -W 2 10.42.0.2 > /dev/null || fail "kB1 still reaches kA2 after its detach"
  ! ip netns exec kC2 ping -c 3 -W 2 10.42.0.2 > /dev/null || fail "kC2 still reaches kA2 after its detach"
  ip netns exec kB1 ping -c 1 -W 3 10.42.0.1 > /dev/null || fail "kB1 lost kA1 with kA2's detach"
  m3_ctl A attach 10.42.0.2/24 kA2 > /dev/null || fail "attaching kA2 after its detach failed"
  [ "$(m3_mac A kA2)" != "$mac" ] || fail "attached again after a detach, kA2 kept its old veth"
  m3_wait 30 "kB1 reaches kA2 again" ip netns exec kB1 ping -c 1 -W 2 10.42.0.2
  echo "kA2: attach again a no-op ($mac), refused with another address, unreachable once detached, back after attach"
}

# weavectl stop: the daemon exits and removes its datapath; containers stay
# attached (a restart takes them back). stop --reset also detaches them.
scenario_mesh3_stop() {
  m3_ctl A stop
  m3_gone A
  ! ip netns exec tA ovs-dpctl show system@weave 2>/dev/null || fail "A's datapath is still there"
  ip -n kA1 link show ethwe > /dev/null || fail "stop (without --reset) detached kA1"
  m3_ctl C stop --reset
  m3_gone C
  ! ip netns exec tC ovs-dpctl show system@weave 2>/dev/null || fail "C's datapath is still there"
  ! ip -n kC1 link show ethwe 2>/dev/null || fail "stop --reset left kC1 attached"
  [ -z "$(ip -n tC -o link show | grep vethwe)" ] || fail "stop --reset left veths on C"
  # Started again, C has forgotten its containers.
  m3_start C
  m3_wait 20 "C's API" test -S /run/tC.sock
  [ -z "$(m3_ctl C ps)" ] || fail "stop --reset kept C's attachment list"
  m3_ctl C stop
  m3_gone C
  echo "A and C stopped cleanly"
}
# m3_gone H: H's daemon (started by another scenario's shell, so not our
# child to wait for) has exited, cleanly by its log.
m3_gone() {
  local pid i
  pid=$(cat /tmp/t$1.pid)
  for i in $(seq 50); do kill -0 "$pid" 2>/dev/null || break; sleep 0.2; done
  ! kill -0 "$pid" 2>/dev/null || fail "weaver on $1 still runs"
  grep -q 'shutting down' /tmp/t$1.log || fail "weaver on $1 did not shut down cleanly"
  ! grep -q 'panicked' /tmp/t$1.log || fail "weaver on $1 panicked"
}

mesh3_teardown() {
  local h
  # The service scenario's supervisor, if it failed before stopping it.
  [ -f /tmp/tD.sup ] && kill -TERM "$(cat /tmp/tD.sup)" 2>/dev/null
  for h in "${M3_HOSTS[@]}"; do
    [ -f /tmp/t$h.pid ] && kill "$(cat /tmp/t$h.pid)" 2>/dev/null
  done
  wait 2>/dev/null
  # Whole logs when something failed, else their ends.
  local n=25; [ "$FAILED" = 0 ] || n=400
  for h in "${M3_HOSTS[@]}"; do echo "--- t$h.log (last $n lines)"; tail -n $n /tmp/t$h.log 2>/dev/null; done
  ip link del ul3 2>/dev/null || true
}

ALL=(probe dp_ports flows_weaver_to_ovs flows_ovs_to_weaver traffic vxlan upcalls upcalls_per_cpu vport_events daemon fastdp_two_hosts
  mesh3_setup mesh3_pairs mesh3_steady mesh3_broadcast mesh3_mtu mesh3_udp_blocked mesh3_multihop mesh3_partition mesh3_restart
  mesh3_mixed mesh3_sleeve_peer mesh3_sleeve_pieces mesh3_encrypted mesh3_expose mesh3_service mesh3_detach mesh3_stop)
[ $# -gt 0 ] && ALL=("$@")
for s in "${ALL[@]}"; do run_scenario "$s" "scenario_$s"; done
case " ${ALL[*]} " in *" mesh3_setup "*) mesh3_teardown ;; esac
exit $FAILED
