#!/usr/bin/env bash
# The benchmark's measurements, in network namespaces on one machine. Runs
# inside the lab guest (Debian kernel with openvswitch.ko, qemu TCG) for the
# fast-datapath benchmark (integration/bench/run.sh through
# integration/lab/boot.sh), and natively, as root, for the sleeve benchmark
# (integration/bench/sleeve.sh); see integration/bench/README.md.
#
#   guest-bench.sh [--bin-dir DIR] [--duration SECONDS] [--flood N] [--pairs N] [--repeat N] [--layouts LIST]
#
# The layouts, one after another, each torn down before the next, all on the
# same underlay (two "host" namespaces hA and hB joined by a veth pair, MTU
# 1500) with the same MTU inside the containers (1376):
#   weaver      weaver daemons in hA and hB, containers attached with weavectl
#               (the fast datapath: needs the openvswitch module)
#   sleeve      the same with `--no-fastdp`: weaver's userspace overlay
#   sleeve_enc  the sleeve with WEAVER_PASSWORD set for both daemons (encrypted)
#   sleeve_pcap the sleeve capturing and injecting with libpcap
#               (--sleeve-capture pcap) instead of packet sockets
#   sleeve_nogso the sleeve without GSO super-frames (--sleeve-gso=false):
#               MTU-sized frames end to end
#   vxlan       per host a Linux bridge and a Linux vxlan device (flannel-style)
#   veth        routed, no encapsulation: container veth to the host namespace,
#               which routes to the other host's containers over the underlay
# Default: "weaver vxlan veth" (the lab's fast-datapath benchmark).
#
# Environment: BENCH_SCRATCH (default /tmp/bench: logs, iperf3 JSON, weaver's
# state) and BENCH_SOCK_DIR (default /run: the daemons' API sockets), so that
# a native run need not share them with anything else. The namespaces (hA,
# hB, cA1, ...) have fixed names: runs on one machine take turns on a lock
# (BENCH_LOCK, default /run/weaver-bench.lock; BENCH_LOCK_WAIT seconds,
# default 1800).
#
# Every result is a console line `BENCH <layout> <metric> <value...>`, which
# run.sh collects. Any measurement that fails ends the script non-zero: a
# benchmark with a hole in it must not look like a result. Timing is only
# reported, never asserted on.
set -Eeuo pipefail

HERE=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
ROOT=$(cd "$HERE/../.." && pwd)
# shellcheck source=../stop-daemons.sh
. "$ROOT/integration/stop-daemons.sh"
BIN=$ROOT/target/bench/release
DUR=10     # seconds per iperf3 run
FLOOD=4000 # distinct source MACs in the flow-setup test
PAIRS=3    # fresh container pairs whose first ping is measured
REPEAT=1   # rounds of each iperf3 run (the median is reported)
LOSSLESS=0 # runs of the search for the 64-byte rate delivered with < 1 % loss (0: none)
LAYOUTS="weaver vxlan veth"
while [ $# -gt 0 ]; do
  case "$1" in
    --bin-dir) BIN=$2; shift 2 ;;
    --duration) DUR=$2; shift 2 ;;
    --flood) FLOOD=$2; shift 2 ;;
    --pairs) PAIRS=$2; shift 2 ;;
    --repeat) REPEAT=$2; shift 2 ;;
    --layouts) LAYOUTS=$2; shift 2 ;; # a subset or the sleeve's layouts
    --lossless-steps) LOSSLESS=$2; shift 2 ;;
    *) echo "usage: $0 [--bin-dir DIR] [--duration SECONDS] [--flood N] [--pairs N] [--repeat N] [--layouts LIST] [--lossless-steps N]" >&2; exit 2 ;;
  esac
done
WEAVER=$BIN/weaver
WEAVECTL=$BIN/weavectl
PY=(python3 "$HERE/bench.py")
W=${BENCH_SCRATCH:-/tmp/bench}  # scratch: in the lab, the guest's own fresh tmpfs
SOCKS=${BENCH_SOCK_DIR:-/run}   # the daemons' API sockets: $SOCKS/wA.sock, $SOCKS/wB.sock
mkdir -p "$W" "$SOCKS"
# The layouts define the daemons' encryption themselves.
unset WEAVER_PASSWORD WEAVER_PASSWORD_FILE
BENCH_PASSWORD=weaver-bench-sleeve-password
for l in $LAYOUTS; do
  case "$l" in weaver | sleeve | sleeve_enc | sleeve_pcap | sleeve_nogso | vxlan | veth) ;; *) echo "unknown layout $l" >&2; exit 2 ;; esac
done
# Only the fast datapath's layout reads the datapath with ovs-dpctl.
FASTDP=0
case " $LAYOUTS " in *" weaver "*) FASTDP=1 ;; esac
# The lab's init loads openvswitch, vxlan and veth; the Linux bridge (the
# reference layout) is loaded on demand.
modprobe bridge 2> /dev/null || true
# ovs-dpctl keeps no state but wants its run directory.
[ "$FASTDP" = 0 ] || mkdir -p /var/run/openvswitch /run/openvswitch

# Timestamps in UTC with milliseconds, as weaver logs them: to line up the
# phases with the daemons' logs.
say() { echo "bench: $(date -u +%T.%3N) $*"; }
die() { echo "BENCH-FAILED: $*" >&2; exit 1; }
result() { echo "BENCH $*"; }

tools=(ip iperf3 ping python3 bridge awk timeout flock)
[ "$FASTDP" = 0 ] || tools+=(ovs-dpctl)
for c in "${tools[@]}"; do
  command -v "$c" > /dev/null || die "$c not found (in the lab guest: the host's userspace; see integration/setup.sh)"
done
{ [ -x "$WEAVER" ] && [ -x "$WEAVECTL" ]; } || die "no weaver/weavectl in $BIN"

# One run at a time on this machine: the namespaces have fixed names.
exec 8> "${BENCH_LOCK:-/run/weaver-bench.lock}"
if ! flock -n 8; then
  say "another guest-bench.sh is running here; waiting up to ${BENCH_LOCK_WAIT:-1800} s for it (BENCH_LOCK_WAIT)"
  flock -w "${BENCH_LOCK_WAIT:-1800}" 8 || die "another guest-bench.sh still holds ${BENCH_LOCK:-/run/weaver-bench.lock}"
fi

# Whatever fails, say where, and show what the daemons said.
trap 'echo "BENCH-FAILED: line $LINENO: $BASH_COMMAND (exit $?)" >&2' ERR
on_exit() {
  local rc=$?
  if [ "$rc" != 0 ]; then
    local f
    for f in "$W"/w?.log; do
      [ -e "$f" ] && { echo "--- $f (tail)"; tail -n 30 "$f"; }
    done
    echo "--- kernel log (tail)"; dmesg | tail -n 20
  fi
  teardown 2> /dev/null || true
}
trap on_exit EXIT

# ---------------------------------------------------------------------------
# Plumbing shared by the layouts.

DAEMONS=() # pids of weaver daemons and iperf3 servers of the current layout
WEAVERS=() # pids of the current layout's weaver daemons (hA's, then hB's)
NSES=()    # the network namespaces this script made: teardown deletes these only

netns_add() { ip netns add "$1"; NSES+=("$1"); }

# The underlay: hA (192.168.80.1) and hB (192.168.80.2), a veth pair, MTU 1500.
underlay_up() {
  netns_add hA
  netns_add hB
  ip link add uA netns hA mtu 1500 type veth peer name uB netns hB mtu 1500
  ip -n hA addr add 192.168.80.1/24 dev uA
  ip -n hB addr add 192.168.80.2/24 dev uB
  local h
  for h in A B; do
    ip -n h$h link set lo up
    ip -n h$h link set u$h up
    ip netns exec h$h sysctl -qw net.ipv6.conf.all.disable_ipv6=1
  done
  # Resolve the underlay's ARP now, so that no layout's first ping pays for
  # it (weaver's control connection would already have done it for weaver).
  ip netns exec hA ping -c 1 -W 5 192.168.80.2 > /dev/null
}

# A container: a namespace with IPv6 off, so that it sends nothing (no DAD,
# no router solicitations) before the test's own traffic.
container() {
  netns_add "$1"
  ip netns exec "$1" sysctl -qw net.ipv6.conf.all.disable_ipv6=1
  ip netns exec "$1" sysctl -qw net.ipv6.conf.default.disable_ipv6=1
  ip -n "$1" link set lo up
}

# A container's veth for the kernel layouts: eth0 in the container (MTU
# 1376, like weaver's ethwe), the host end HOSTIF in host namespace HOSTNS.
container_veth() {
  local ns=$1 hostns=$2 hostif=$3 cidr=$4
  container "$ns"
  ip link add "$hostif" netns "$hostns" mtu 1376 type veth peer name eth0 netns "$ns" mtu 1376
  ip -n "$ns" addr add "$cidr" dev eth0
  ip -n "$ns" link set eth0 up
  ip -n "$hostns" link set "$hostif" up
}

# Fails (after cleaning up) if a daemon did not stop within 40 s (weaver
# bounds each step of its stop to 5 s).
teardown() {
  local ns rc=0
  stop_daemons 40 "$W" "${DAEMONS[@]}" || rc=1
  DAEMONS=()
  WEAVERS=()
  for ns in "${NSES[@]}"; do ip netns del "$ns" 2> /dev/null || true; done
  NSES=()
  return "$rc"
}

# ---------------------------------------------------------------------------
# The layouts. Each leaves PAIRS pairs of containers cA<i> (on hA) and cB<i>
# (on hB), addresses in IP_A[i] and IP_B[i], DEV = the containers' interface.

declare -A IP_A IP_B
DEV=eth0

# weaver daemons in hA and hB, each given the other's address, and PAIRS
# pairs of containers attached. MODE: fastdp (the kernel's datapath: on this
# kernel weaver chooses it itself), sleeve (`--no-fastdp`, so that the layout
# means the same on any kernel) or sleeve_enc (the sleeve, both daemons with
# WEAVER_PASSWORD: ChaCha20-Poly1305 on the data path).
weaver_hosts() {
  local mode=$1 h peer pw=() args=()
  [ "$mode" = fastdp ] || args=(--no-fastdp)
  [ "$mode" != sleeve_enc ] || pw=("WEAVER_PASSWORD=$BENCH_PASSWORD")
  [ "$mode" != sleeve_pcap ] || args+=(--sleeve-capture pcap)
  [ "$mode" != sleeve_nogso ] || args+=(--sleeve-gso=false)
  underlay_up
  for h in A B; do
    peer=192.168.80.1; [ $h = A ] && peer=192.168.80.2
    # A fresh state dir: no peer name or attachment of an earlier layout.
    rm -rf "$W/state$h"
    # env and `ip netns exec` exec: $! is the daemon's own pid.
    env "${pw[@]}" ip netns exec h$h "$WEAVER" --nickname host$h --api-socket "$SOCKS/w$h.sock" --state-dir "$W/state$h" \
      "${args[@]}" $peer > "$W/w$h.log" 2>&1 &
    DAEMONS+=($!)
    WEAVERS+=($!)
  done
  # weavectl costs about a second under emulation: few, spaced polls. The
  # sleeve: until both ends' connection runs over the sleeve (its UDP path
  # acknowledged), not only its TCP control connection.
  local i up=0 conn
  for i in $(seq 60); do
    if [ "$mode" = fastdp ]; then
      if "$WEAVECTL" --api "$SOCKS/wA.sock" status 2> /dev/null | grep -q 'Connections: 1 (1 established'; then up=1; break; fi
    else
      conn=$(sleeve_conn A)/$(sleeve_conn B)
      if [[ "$conn" == "established sleeve "*"/established sleeve "* ]]; then up=1; break; fi
    fi
    sleep 1
  done
  if [ "$up" != 1 ]; then
    "$WEAVECTL" --api "$SOCKS/wA.sock" status || true
    "$WEAVECTL" --api "$SOCKS/wA.sock" status connections || true
    die "weaver hA and hB did not connect${args[*]:+ over the sleeve}"
  fi
  for ((i = 1; i <= PAIRS; i++)); do
    IP_A[$i]=10.40.0.$i
    IP_B[$i]=10.40.0.$((100 + i))
    container cA$i
    container cB$i
    "$WEAVECTL" --api "$SOCKS/wA.sock" attach "${IP_A[$i]}/24" cA$i > /dev/null
    "$WEAVECTL" --api "$SOCKS/wB.sock" attach "${IP_B[$i]}/24" cB$i > /dev/null
  done
  DEV=ethwe
  ip -n cA1 link show ethwe | grep -q 'mtu 1376' || die "weaver's ethwe does not have MTU 1376"
}

# sleeve_conn A|B: "<state> <overlay> <sleeve payload limit>" of that host's
# established connection, from `weavectl status connections --json`; empty
# when there is none yet.
sleeve_conn() {
  "$WEAVECTL" --api "$SOCKS/w$1.sock" status connections --json 2> /dev/null | "${PY[@]}" conn || true
}

layout_weaver() { weaver_hosts fastdp; }
layout_sleeve() { weaver_hosts sleeve; }
layout_sleeve_enc() { weaver_hosts sleeve_enc; }
layout_sleeve_pcap() { weaver_hosts sleeve_pcap; }
layout_sleeve_nogso() { weaver_hosts sleeve_nogso; }

layout_vxlan() {
  underlay_up
  local h peer i
  for h in A B; do
    peer=192.168.80.1; [ $h = A ] && peer=192.168.80.2
    ip -n h$h link add br0 type bridge
    # Linux vxlan with learning (the default) and the peer as the default
    # remote, as flannel's vxlan backend builds it; UDP 4789, no checksum
    # (the kernel's default for IPv4, as weaver's tunnels).
    ip -n h$h link add vx0 type vxlan id 42 remote $peer dstport 4789 dev u$h
    ip -n h$h link set vx0 master br0
    ip -n h$h link set vx0 up
    ip -n h$h link set br0 up
  done
  for ((i = 1; i <= PAIRS; i++)); do
    IP_A[$i]=10.40.0.$i
    IP_B[$i]=10.40.0.$((100 + i))
    container_veth cA$i hA vA$i "${IP_A[$i]}/24"
    container_veth cB$i hB vB$i "${IP_B[$i]}/24"
    ip -n hA link set vA$i master br0
    ip -n hB link set vB$i master br0
  done
  DEV=eth0
}

layout_veth() {
  underlay_up
  local h i
  for h in A B; do ip netns exec h$h sysctl -qw net.ipv4.ip_forward=1; done
  # Each container its own /24, the host end its gateway; each host routes
  # the other's containers over the underlay.
  for ((i = 1; i <= PAIRS; i++)); do
    IP_A[$i]=10.41.$i.2
    IP_B[$i]=10.42.$i.2
    container_veth cA$i hA vA$i "${IP_A[$i]}/24"
    container_veth cB$i hB vB$i "${IP_B[$i]}/24"
    ip -n hA addr add 10.41.$i.1/24 dev vA$i
    ip -n hB addr add 10.42.$i.1/24 dev vB$i
    ip -n cA$i route add default via 10.41.$i.1
    ip -n cB$i route add default via 10.42.$i.1
  done
  ip -n hA route add 10.42.0.0/16 via 192.168.80.2
  ip -n hB route add 10.41.0.0/16 via 192.168.80.1
  DEV=eth0
}

# ---------------------------------------------------------------------------
# Measurements.

# rtt_of: the RTTs (ms) in ping's output, one per line.
rtt_of() { sed -nE 's/.* time=([0-9.]+) ms.*/\1/p'; }
median() { sort -g | awk '{ v[NR] = $1 } END { if (NR == 0) exit 1; if (NR % 2) print v[(NR + 1) / 2]; else printf "%.3f\n", (v[NR / 2] + v[NR / 2 + 1]) / 2 }'; }

# First ping of each fresh pair (no traffic between them yet, empty ARP
# caches, no flows), then the steady RTT of pair 1: the median of 20.
measure_pings() {
  local l=$1 i out rtt firsts=()
  for ((i = 1; i <= PAIRS; i++)); do
    out=$(ip netns exec cA$i ping -c 1 -W 5 "${IP_B[$i]}") || { echo "$out"; die "$l: cA$i cannot ping ${IP_B[$i]}"; }
    rtt=$(rtt_of <<< "$out")
    [ -n "$rtt" ] || { echo "$out"; die "$l: no RTT in ping's output"; }
    firsts+=("$rtt")
  done
  result "$l" first_ping_ms "$(printf '%s\n' "${firsts[@]}" | median)"
  result "$l" first_ping_ms_samples "${firsts[@]}"
  out=$(ip netns exec cA1 ping -c 20 -i 0.2 -W 2 "${IP_B[1]}") || { echo "$out"; die "$l: steady ping lost packets"; }
  [ "$(rtt_of <<< "$out" | wc -l)" = 20 ] || { echo "$out"; die "$l: steady ping: not 20 replies"; }
  result "$l" steady_ping_ms "$(rtt_of <<< "$out" | median)"
}

iperf_server() {
  ip netns exec cB1 iperf3 -s > "$W/iperf-server.log" 2>&1 &
  DAEMONS+=($!)
  local i
  for i in $(seq 50); do
    ip netns exec cB1 ss -Hltn 'sport = :5201' | grep -q 5201 && return 0
    sleep 0.2
  done
  cat "$W/iperf-server.log"
  die "iperf3 server did not start"
}

# iperf LAYOUT NAME ARGS...: one iperf3 run cA1 -> cB1, its JSON kept.
# -O 1: the first second (slow start) is not counted.
iperf() {
  local l=$1 name=$2 f
  shift 2
  f=$W/$l-$name.json
  # The timeout is only for an overlay that wedges: iperf3 would wait forever.
  if ! timeout $((3 * DUR + 60)) ip netns exec cA1 iperf3 -c "${IP_B[1]}" -t "$DUR" -O 1 --json "$@" > "$f" 2> "$W/iperf.err"; then
    cat "$f" "$W/iperf.err"
    die "$l: iperf3 $name failed"
  fi
}

# cpu_snap FILE: the machine's CPU times (the `cpu` line of /proc/stat, all
# CPUs) and the current weaver daemons' (/proc/PID/stat), with the time.
# Shell builtins only: taking the snapshot costs no process.
cpu_snap() {
  local p line
  {
    echo "time $EPOCHREALTIME"
    read -r line < /proc/stat
    echo "$line"
    for p in "${WEAVERS[@]}"; do
      read -r line < "/proc/$p/stat" || die "weaver daemon $p is gone"
      echo "pid $line"
    done
  } > "$1"
}

# mem_of PID: "VmRSS VmHWM RssAnon RssFile RssShmem" of a process, in KiB,
# and its thread count.
mem_of() {
  awk '$1 ~ /^(VmRSS|VmHWM|RssAnon|RssFile|RssShmem|Threads):$/ { v[$1] = $2 }
       END { if (!("VmRSS:" in v) || !("VmHWM:" in v)) exit 1
             print v["VmRSS:"], v["VmHWM:"], v["RssAnon:"] + 0, v["RssFile:"] + 0, v["RssShmem:"] + 0, v["Threads:"] + 0 }' "/proc/$1/status"
}

# smaps_of PID: the resident set by what is mapped, in KiB: "socket exe
# libs other": packet sockets' mmapped rings (`socket:[...]`), the daemon's
# executable, other files (shared libraries), and the rest (heap, stacks,
# anonymous mappings).
smaps_of() {
  awk -v exe="$(readlink "/proc/$1/exe")" '
    /^[0-9a-f]+-[0-9a-f]+ / { n = $6; k = (n ~ /^socket:/) ? "socket" : (n == exe) ? "exe" : (n ~ /^\//) ? "libs" : "other" }
    /^Rss:/ { v[k] += $2 }
    END { print v["socket"] + 0, v["exe"] + 0, v["libs"] + 0, v["other"] + 0 }' "/proc/$1/smaps"
}

# measure_mem LAYOUT WHEN: the daemons' resident memory: `<WHEN>_rss_kib`
# and `<WHEN>_hwm_kib` (peak) are the larger of the two daemons', and
# `..._hosts` both (hA's, then hB's); the resident set's parts (anonymous,
# file-backed, shared memory) and the threads, per daemon.
measure_mem() {
  local l=$1 when=$2 p m rss hwm anon file shmem thr rs=() hs=() as=() fs=() ss=() ts=() maps=()
  for p in "${WEAVERS[@]}"; do
    m=$(mem_of "$p") || die "$l: no memory figures for weaver daemon $p"
    read -r rss hwm anon file shmem thr <<< "$m"
    rs+=("$rss"); hs+=("$hwm"); as+=("$anon"); fs+=("$file"); ss+=("$shmem"); ts+=("$thr")
    m=$(smaps_of "$p") || die "$l: no smaps for weaver daemon $p"
    maps+=("$(tr ' ' / <<< "$m")")
  done
  result "$l" "${when}_rss_kib" "$(printf '%s\n' "${rs[@]}" | sort -n | tail -1)"
  result "$l" "${when}_rss_kib_hosts" "${rs[@]}"
  result "$l" "${when}_hwm_kib" "$(printf '%s\n' "${hs[@]}" | sort -n | tail -1)"
  result "$l" "${when}_hwm_kib_hosts" "${hs[@]}"
  result "$l" "${when}_rss_anon_kib_hosts" "${as[@]}"
  result "$l" "${when}_rss_file_kib_hosts" "${fs[@]}"
  result "$l" "${when}_rss_shmem_kib_hosts" "${ss[@]}"
  result "$l" "${when}_threads_hosts" "${ts[@]}"
  # socket/exe/libs/other, per daemon (see smaps_of)
  result "$l" "${when}_rss_by_mapping_kib_hosts" "${maps[@]}"
}

# measure_lossless LAYOUT "SENT..." "LOST..." "RECEIVED...": the highest
# 64-byte rate delivered with under 1 % loss (RFC 2544's throughput, at 1 %
# instead of 0), `udp64_lossless_pps`: a flood run that lost under 1 %
# counts as it is; otherwise up to LOSSLESS runs bisect the offered rate (iperf3
# -b: 64 bytes of payload, 512 bits, per datagram) between 0 and what the
# floods sent. The runs are logged (`udp64_paced_samples`: offered, got, lost).
measure_lossless() {
  local l=$1 sent=($2) lost=($3) got=($4) lo=0 hi=0 best=0 i mid udp v s loss rest tried=()
  for i in "${!sent[@]}"; do
    hi=$(awk -v a="$hi" -v b="${sent[$i]}" 'BEGIN { printf "%d", (b > a ? b : a) }')
    if awk -v x="${lost[$i]}" 'BEGIN { exit !(x < 1) }'; then
      best=$(awk -v a="$best" -v b="${got[$i]}" 'BEGIN { printf "%d", (b > a ? b : a) }')
      lo=$(awk -v a="$lo" -v b="${sent[$i]}" 'BEGIN { printf "%d", (b > a ? b : a) }')
    fi
  done
  for ((i = 1; i <= LOSSLESS && hi - lo > hi / 50; i++)); do
    mid=$(((lo + hi) / 2))
    ip netns exec cB1 cat /proc/net/snmp > "$W/snmp-before"
    iperf "$l" udp64-paced-$i -u -l 64 -b $((mid * 512))
    sleep 0.5 # stragglers
    ip netns exec cB1 cat /proc/net/snmp > "$W/snmp-after"
    udp=$("${PY[@]}" udp "$W/$l-udp64-paced-$i.json" "$W/snmp-before" "$W/snmp-after")
    read -r v s loss rest <<< "$udp"
    tried+=("$mid/$v/$loss")
    if awk -v x="$loss" 'BEGIN { exit !(x < 1) }'; then
      lo=$mid
      best=$(awk -v a="$best" -v b="$v" 'BEGIN { printf "%d", (b > a ? b : a) }')
    else
      hi=$mid
    fi
  done
  result "$l" udp64_lossless_pps "$best"
  result "$l" udp64_paced_samples "${tried[@]:-none}"
}

# The daemons must still run (a panic or a crash under load is a bug, not
# a number).
daemons_alive() {
  local l=$1 p
  for p in "${WEAVERS[@]}"; do
    if ! kill -0 "$p" 2> /dev/null; then
      echo "BENCH-BUG: $l: weaver daemon $p exited during the benchmark" >&2
      return 1
    fi
  done
}

# The iperf3 runs, REPEAT rounds of each, reported as the median (and the
# samples): under TCG one run can be off by a third. Rounds alternate the
# kinds, so that slow drift on the machine touches them alike. weaver's
# datapath `missed` counter is read before and after the TCP rounds and
# after the UDP ones: with the flows installed, steady traffic should not
# come up to userspace at all. The CPU time of each TCP 1-stream run: the
# machine's (all CPUs, busy) and the weaver daemons', per Gbit received.
measure_iperf() {
  local l=$1 r v sent loss iloss rcvbuf late udp m0=0 m1=0 m2=0 cpu cg cores dg dp steal
  local t1=() t4=() u=() us=() ul=() uil=() urb=() ulate=() c1=() k1=() d1=() p1=() s1=()
  iperf_server
  [ "$l" != weaver ] || m0=$(dp_stat missed)
  for ((r = 1; r <= REPEAT; r++)); do
    cpu_snap "$W/cpu-before"
    iperf "$l" tcp1-$r
    cpu_snap "$W/cpu-after"
    t1+=("$("${PY[@]}" tcp "$W/$l-tcp1-$r.json")")
    cpu=$("${PY[@]}" cpu "$W/cpu-before" "$W/cpu-after" "$W/$l-tcp1-$r.json")
    read -r cg cores dg dp steal <<< "$cpu"
    c1+=("$cg"); k1+=("$cores"); d1+=("$dg"); p1+=("$dp"); s1+=("$steal")
    iperf "$l" tcp4-$r -P 4
    t4+=("$("${PY[@]}" tcp "$W/$l-tcp4-$r.json")")
  done
  [ "$l" != weaver ] || m1=$(dp_stat missed)
  # 64-byte payloads as fast as the sender can: a packet-rate test. What
  # counts is what the receiver got.
  for ((r = 1; r <= REPEAT; r++)); do
    # The receiving container's UDP counters around the run: what its
    # kernel delivered, and dropped (full socket buffer, or late).
    ip netns exec cB1 cat /proc/net/snmp > "$W/snmp-before"
    iperf "$l" udp64-$r -u -l 64 -b 0
    sleep 0.5 # stragglers
    ip netns exec cB1 cat /proc/net/snmp > "$W/snmp-after"
    # (No process substitution: the guest has no /dev/fd.)
    udp=$("${PY[@]}" udp "$W/$l-udp64-$r.json" "$W/snmp-before" "$W/snmp-after")
    read -r v sent loss iloss rcvbuf late <<< "$udp"
    u+=("$v"); us+=("$sent"); ul+=("$loss"); uil+=("$iloss"); urb+=("$rcvbuf"); ulate+=("$late")
  done
  measure_lossless "$l" "${us[*]}" "${ul[*]}" "${u[*]}"
  result "$l" tcp1_gbps "$(printf '%s\n' "${t1[@]}" | median)"
  result "$l" tcp1_gbps_samples "${t1[@]}"
  result "$l" tcp4_gbps "$(printf '%s\n' "${t4[@]}" | median)"
  result "$l" tcp4_gbps_samples "${t4[@]}"
  result "$l" udp64_pps "$(printf '%s\n' "${u[@]}" | median)"
  result "$l" udp64_pps_samples "${u[@]}"
  result "$l" udp64_sent_pps_samples "${us[@]}"
  result "$l" udp64_lost_percent "$(printf '%s\n' "${ul[@]}" | median)"
  result "$l" udp64_lost_percent_samples "${ul[@]}"
  result "$l" udp64_rcvbuf_dropped_percent "$(printf '%s\n' "${urb[@]}" | median)"
  result "$l" udp64_rcvbuf_dropped_percent_samples "${urb[@]}"
  result "$l" udp64_late_percent_samples "${ulate[@]}"
  result "$l" udp64_iperf_lost_percent_samples "${uil[@]}"
  result "$l" cpu_s_per_gbit "$(printf '%s\n' "${c1[@]}" | median)"
  result "$l" cpu_s_per_gbit_samples "${c1[@]}"
  result "$l" cpu_busy_cores "$(printf '%s\n' "${k1[@]}" | median)"
  result "$l" cpu_busy_cores_samples "${k1[@]}"
  result "$l" cpu_steal_cores_samples "${s1[@]}"
  if [ "${#WEAVERS[@]}" -gt 0 ]; then
    result "$l" daemon_cpu_s_per_gbit "$(printf '%s\n' "${d1[@]}" | median)"
    result "$l" daemon_cpu_s_per_gbit_samples "${d1[@]}"
    result "$l" daemon_cpu_percent "$(printf '%s\n' "${p1[@]}" | median)"
    result "$l" daemon_cpu_percent_samples "${p1[@]}"
  fi
  if [ "$l" = weaver ]; then
    m2=$(dp_stat missed)
    result weaver missed_before_tcp "$m0"
    result weaver missed_after_tcp "$m1"
    result weaver missed_after_udp "$m2"
    result weaver steady_upcalls $((m1 - m0))
    result weaver steady_upcalls_udp $((m2 - m1))
    if [ "$m2" != "$m0" ]; then
      say "weaver: $((m1 - m0)) misses during the TCP runs, $((m2 - m1)) during the UDP runs; flows on hA now:"
      ip netns exec hA ovs-dpctl dump-flows system@weave 2> /dev/null || true
    fi
  fi
}

# dp_stat missed|lost|flows: weaver's datapath counters on hA, from
# `weavectl dp show --direct` (the kernel's own numbers, not the daemon's).
dp_stat() {
  local out
  out=$(ip netns exec hA "$WEAVECTL" dp show --direct)
  case "$1" in
    missed | lost) sed -nE "s/.*lookups: .*$1:([0-9]+).*/\1/p" <<< "$out" | head -1 ;;
    flows) sed -nE 's/^ *flows: ([0-9]+).*/\1/p' <<< "$out" | head -1 ;;
  esac
}

# Flow setup: FLOOD frames from cA1, each from a new source MAC, to cB1's
# MAC. For weaver each is a miss that the daemon turns into a megaflow (and
# executes); the count is the datapath's flows on hA. For the Linux bridge
# the equivalent of a new flow is a learned source MAC on hA's br0 (learnt
# in the forwarding path, so that rate is bounded by the sender and the
# polling). bench.py sends and polls (every 10 ms) in one process: the
# tools (ovs-dpctl, weavectl) take about a second per call under TCG.
measure_flow_setup() {
  local l=$1 counter=$2 dst out
  dst=$(ip -n cB1 -br link show "$DEV" | awk '{ print $3 }')
  # cB1's MAC must be known at hA (learned from the pings and iperf runs).
  ip netns exec cA1 ping -c 1 -W 2 "${IP_B[1]}" > /dev/null
  out=$(ip netns exec hA "${PY[@]}" flowrate "$l" "$counter" cA1 "$DEV" "$dst" "$FLOOD") \
    || { echo "$out"; [ "$l" = weaver ] && ip netns exec hA ovs-dpctl dump-flows system@weave | head -n 20; die "$l: flow setup failed"; }
  echo "$out"
  if [ "$l" = weaver ]; then
    local new
    new=$(sed -nE 's/^BENCH weaver flood_new_entries ([0-9]+)$/\1/p' <<< "$out")
    if [ "$new" -lt "$FLOOD" ]; then
      say "weaver: only $new of $FLOOD new source MACs got a flow; a sample of hA's flows:"
      ip netns exec hA ovs-dpctl dump-flows system@weave 2> /dev/null | head -n 10
    fi
    # The miss path must survive the burst (the kernel may drop upcalls
    # under load, the daemon must not stop reading them): a new MAC on a
    # container means misses that only the daemon can answer.
    local c=cA$PAIRS
    ip -n "$c" link set ethwe address 02:cc:00:00:00:01
    if ip netns exec "$c" ping -c 1 -W 5 "${IP_B[$PAIRS]}" > /dev/null; then
      result weaver miss_path_after_flood ok
    else
      result weaver miss_path_after_flood dead
      echo "BENCH-BUG: weaver no longer handles misses after the flood: $c with a new MAC cannot ping ${IP_B[$PAIRS]}" >&2
    fi
  fi
}

# weaver's view of its connection on hA (state and overlay, e.g.
# "established fastdp"): heartbeats lost under load put it on hold.
conn_state() {
  "$WEAVECTL" --api "$SOCKS/wA.sock" status connections | awk 'NR == 1 { print $3, $4 }'
}

# The sleeve's counters on both hosts after the runs, and what the daemons
# logged above INFO: the evidence next to the numbers.
sleeve_report() {
  local l=$1 h
  for h in A B; do
    "$WEAVECTL" --api "$SOCKS/w$h.sock" status --json | "${PY[@]}" sleevestat "$l" "h$h"
    say "$l: status on h$h after the runs:"
    "$WEAVECTL" --api "$SOCKS/w$h.sock" status
    "$WEAVECTL" --api "$SOCKS/w$h.sock" status connections
  done
  say "$l: the daemons' warnings (hA, hB):"
  sed -e 's/\x1b\[[0-9;]*m//g' "$W"/w?.log | grep -E ' (WARN|ERROR) ' | tail -n 20 || true
}

run_layout() {
  local l=$1 t0=$SECONDS sleeve=0
  case "$l" in sleeve | sleeve_enc | sleeve_pcap | sleeve_nogso) sleeve=1 ;; esac
  echo "=== layout $l"
  say "$l: setting up"
  "layout_$l"
  if [ "$sleeve" = 1 ]; then
    local c
    c=$(sleeve_conn A)
    result "$l" payload_limit "${c##* }"
    # Idle memory: both daemons connected, the containers attached, no
    # traffic yet (a moment for the attachments to settle).
    sleep 2
    measure_mem "$l" idle
  fi
  say "$l: first pings"
  measure_pings "$l"
  say "$l: iperf3"
  measure_iperf "$l"
  if [ "${#WEAVERS[@]}" -gt 0 ]; then
    daemons_alive "$l" || die "$l: a weaver daemon died"
  fi
  [ "$l" != weaver ] || result weaver conn_after_iperf "$(conn_state | tr ' ' /)"
  if [ "$sleeve" = 1 ]; then
    # The established connection (status connections also lists the
    # duplicate that lost the race at the start, as failed).
    c=$(sleeve_conn A)
    result "$l" conn_after_iperf "$(awk '{ print $1 "/" $2 }' <<< "${c:-none -}")"
    measure_mem "$l" after_iperf
    sleeve_report "$l"
    # Quiet again: a sleeve thread hands its buffers' pages back after 2 s
    # with next to no traffic (src/sleeve/busy.rs, Quiet).
    sleep 5
    measure_mem "$l" quiet
  fi
  say "$l: flow setup"
  case "$l" in
    weaver) measure_flow_setup weaver ovs:weave ;;
    vxlan) measure_flow_setup vxlan bridge:hA:br0 ;;
  esac
  if [ "$l" = weaver ]; then
    result weaver conn_after_flood "$(conn_state | tr ' ' /)"
    say "weaver: status on hA after the flood:"
    "$WEAVECTL" --api "$SOCKS/wA.sock" status
    # What the daemons logged above INFO (a miss storm, heartbeats lost,
    # a connection on hold) belongs next to the numbers.
    say "weaver: the daemons' warnings (hA, hB):"
    sed -e 's/\x1b\[[0-9;]*m//g' "$W"/w?.log | grep -E ' (WARN|ERROR) ' | tail -n 20 || true
  fi
  say "$l: tearing down"
  teardown
  # Each daemon layout's logs stay in the scratch dir.
  local h
  for h in A B; do [ ! -e "$W/w$h.log" ] || mv "$W/w$h.log" "$W/$l-w$h.log"; done
  say "$l done in $((SECONDS - t0)) s"
}

result meta kernel "$(uname -r)"
result meta vcpus "$(nproc)"
result meta mem_mib "$(awk '/MemTotal/ { printf "%d", $2 / 1024 }' /proc/meminfo)"
result meta iperf_seconds "$DUR"
result meta flood_frames "$FLOOD"
result meta pairs "$PAIRS"
result meta iperf_repeat "$REPEAT"
result meta layouts "$LAYOUTS"
# How busy the machine is before the layouts (other work skews the CPU figures).
cpu_snap "$W/cpu-before"; sleep 2; cpu_snap "$W/cpu-after"
result meta busy_cores_before "$("${PY[@]}" cpu "$W/cpu-before" "$W/cpu-after" | awk '{ print $2 }')"
for l in $LAYOUTS; do run_layout "$l"; done
echo "BENCH-DONE"
