#!/usr/bin/env bash
# Lab self-test, run inside one guest:  integration/lab/boot.sh integration/lab/scenarios/selftest.sh
# Proves the guest has what weaver's tests need: the lab kernel with the OVS
# datapath, modprobe, network namespaces and veth, a writable root, and the
# host's userspace (iproute2, ovs-dpctl) through the 9p root.
set -euo pipefail

fails=0
ok()   { echo "selftest: ok   $*"; }
bad()  { echo "selftest: FAIL $*"; fails=$((fails + 1)); }
check() { local what=$1; shift; if "$@" >/tmp/selftest.out 2>&1; then ok "$what"; else bad "$what"; sed 's/^/    /' /tmp/selftest.out; fi; }

[ "${WEAVER_LAB:-}" = 1 ] || { echo "selftest: not inside the lab guest (run it with integration/lab/boot.sh)"; exit 2; }
echo "selftest: kernel $(uname -r), hostname $(hostname), vm ${WEAVER_VM}/${WEAVER_VMS}, args: $*"

# the environment the init promised
check "lo is up"                 sh -c 'ip -o link show lo | grep -q "UP"'
check "root is writable (overlay)" sh -c 'echo x >/etc/weaver-lab-selftest && rm /etc/weaver-lab-selftest'
check "/tmp is a fresh tmpfs"    sh -c '[ "$(stat -f -c %T /tmp)" = tmpfs ]'
check "/run is a fresh tmpfs"    sh -c '[ "$(stat -f -c %T /run)" = tmpfs ]'
check "checkout visible"         test -f "$WEAVER_REPO/integration/lab/boot.sh"

# modules: openvswitch came from the initramfs; modprobe works for the rest
check "/sys/module/openvswitch"  test -d /sys/module/openvswitch
check "/sys/module/vport_vxlan"  test -d /sys/module/vport_vxlan
check "modprobe openvswitch"     modprobe openvswitch
check "modprobe vport-geneve (from the bound module tree)" modprobe vport-geneve
check "genl family ovs_datapath" sh -c 'genl ctrl list | grep -q "Name: ovs_datapath"'
check "genl family ovs_packet"   sh -c 'genl ctrl list | grep -q "Name: ovs_packet"'

# Open vSwitch's own tool as the oracle: create, show and delete a datapath
check "ovs-dpctl add-dp selftest" ovs-dpctl add-dp selftest
check "ovs-dpctl show"           sh -c 'ovs-dpctl show | tee /dev/stderr | grep -q "system@selftest"'
check "ovs-dpctl del-dp selftest" ovs-dpctl del-dp selftest

# network namespaces joined by veth; addresses exist only inside this guest
cleanup() { ip netns del st-a 2>/dev/null || true; ip netns del st-b 2>/dev/null || true; }
trap cleanup EXIT
check "ip netns add"             sh -c 'ip netns add st-a && ip netns add st-b'
check "veth between namespaces"  sh -c '
  ip link add st-va netns st-a type veth peer name st-vb netns st-b &&
  ip -n st-a addr add 10.98.0.1/24 dev st-va && ip -n st-a link set st-va up && ip -n st-a link set lo up &&
  ip -n st-b addr add 10.98.0.2/24 dev st-vb && ip -n st-b link set st-vb up && ip -n st-b link set lo up'
check "ping across the veth"     ip netns exec st-a ping -c 2 -W 2 -i 0.2 10.98.0.2

# a datapath inside a namespace (datapaths are per network namespace)
check "datapath inside a netns"  sh -c 'ip netns exec st-a ovs-dpctl add-dp nsdp && ip netns exec st-a ovs-dpctl show | grep -q system@nsdp && ip netns exec st-a ovs-dpctl del-dp nsdp'

if [ "$fails" -eq 0 ]; then
  echo "selftest: all checks passed"
else
  echo "selftest: $fails check(s) failed"
  exit 1
fi
