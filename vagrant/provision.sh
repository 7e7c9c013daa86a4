#!/usr/bin/env bash
# Provisions one Vagrant VM: build dependencies, Rust, weaver built from
# /weaver, installed as the systemd service, connected to the peers given.
#   provision.sh "PEER_IP PEER_IP ..."
set -euo pipefail
PEERS=${1:?usage: provision.sh "PEER_IP ..."}
export DEBIAN_FRONTEND=noninteractive
apt-get update -qq
apt-get install -y -qq --no-install-recommends \
  build-essential curl ca-certificates pkg-config libclang-dev protobuf-compiler libpcap-dev \
  iproute2 iputils-ping iperf3 tcpdump kmod openvswitch-switch
# The kernel's datapath (fast datapath); without it weaver runs the sleeve.
modprobe openvswitch || true
if ! command -v cargo > /dev/null; then
  curl -sSf https://sh.rustup.rs | sh -s -- -y --profile minimal
fi
# shellcheck disable=SC1091
. "$HOME/.cargo/env"
cd /weaver
cargo build --release --bins
install -m 0755 target/release/weaver target/release/weavectl /usr/local/bin/
install -m 0644 packaging/weaver.service /etc/systemd/system/weaver.service
install -m 0644 packaging/weaver.default /etc/default/weaver
sed -i "s|^WEAVER_PEERS=.*|WEAVER_PEERS=\"$PEERS\"|" /etc/default/weaver
systemctl daemon-reload
systemctl enable --now weaver
systemctl restart weaver
systemctl --no-pager status weaver | head -n 5
