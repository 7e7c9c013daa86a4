#!/usr/bin/env bash
# Installs everything weaver's build and tests need on a fresh Debian 12 machine.
# Idempotent: packages already present are left alone.
set -euo pipefail

PKGS=(
  # build
  libclang-dev protobuf-compiler libpcap-dev pkg-config
  # netns tests and lab userspace
  iproute2 iperf3 tcpdump iputils-ping kmod curl iptables python3 ethtool
  # dig, for the weaveDNS tests; dnsmasq, the DNS benchmark's reference server
  bind9-dnsutils dnsmasq-base
  # the VM lab: qemu (TCG), busybox for the initramfs, cpio to pack it
  qemu-system-x86 busybox-static cpio
  # the oracle: Open vSwitch's own ovs-dpctl
  openvswitch-switch
  # systemd-analyze, to verify the service unit; vagrant, to validate the
  # Vagrantfile (no hypervisor needed)
  systemd vagrant
)

missing=()
for p in "${PKGS[@]}"; do
  dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed" || missing+=("$p")
done
if ((${#missing[@]})); then
  echo "setup: installing ${missing[*]}"
  export DEBIAN_FRONTEND=noninteractive
  apt-get update -qq
  # openvswitch-switch must not start its services on this machine: the host kernel
  # has no openvswitch module, and the lab guest runs ovs-dpctl by itself.
  if [ ! -e /usr/sbin/policy-rc.d ]; then
    printf '#!/bin/sh\nexit 101\n' > /usr/sbin/policy-rc.d; chmod +x /usr/sbin/policy-rc.d
    trap 'rm -f /usr/sbin/policy-rc.d' EXIT
  fi
  apt-get install -y -qq --no-install-recommends "${missing[@]}"
fi

# The lab kernel (Debian's linux-image with openvswitch.ko) and the initramfs.
"$(dirname "$0")/lab/prepare.sh"
