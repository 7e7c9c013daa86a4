#!/usr/bin/env bash
# Prepares weaver's VM lab: Debian's kernel (which has openvswitch.ko) and a tiny
# busybox initramfs that boots it with the host's / shared read-only over 9p.
#
# Idempotent and fast when already done: it only asks apt-cache which kernel is
# current; the download, unpack, depmod and initramfs build happen only when
# something changed (new kernel, changed init or module list).
#
# Cache: $LAB_DIR (default <checkout>/target/lab). It must not be under /tmp or
# /run: the guest sees the host's / over 9p, but gets its own /tmp and /run.
#
#   LAB_DIR=...        cache directory (default <checkout>/target/lab)
#   LAB_KERNEL_PKG=... use this kernel package instead of resolving linux-image-amd64
#   LAB_FORCE=1        rebuild the initramfs even if it looks current
set -euo pipefail

HERE=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
REPO=$(cd "$HERE/../.." && pwd)
LAB_DIR=${LAB_DIR:-$REPO/target/lab}

die() { echo "prepare.sh: error: $*" >&2; exit 1; }
log() { echo "prepare.sh: $*" >&2; }

# Modules the guest needs; --show-depends adds their dependencies in load order.
MODULES=(
  # filesystem sharing with the host: virtio PCI transport, 9p, overlayfs
  virtio_pci 9pnet_virtio 9p overlay
  # networking between guests
  virtio_net
  # the OVS kernel datapath and its vxlan vport, plus what tests use
  openvswitch vport-vxlan vxlan veth tun
)

case "$LAB_DIR/" in
  /tmp/*|/run/*|/var/run/*) die "LAB_DIR=$LAB_DIR is under /tmp or /run, which the guest cannot see" ;;
esac

need() { command -v "$1" >/dev/null 2>&1 || die "'$1' not found; install $2 (or run integration/setup.sh)"; }
need apt-get apt
need apt-cache apt
need dpkg-deb dpkg
need depmod kmod
need modprobe kmod
need cpio cpio
need gzip gzip
need sha256sum coreutils
need flock util-linux
BUSYBOX=/bin/busybox
[ -x "$BUSYBOX" ] || die "$BUSYBOX not found; install busybox-static"
# the initramfs has no libc: busybox must be the static build
"$BUSYBOX" true 2>/dev/null || die "$BUSYBOX does not run"
if command -v ldd >/dev/null && ldd "$BUSYBOX" 2>&1 | grep -q '=>'; then
  die "$BUSYBOX is dynamically linked; install busybox-static (not busybox)"
fi

mkdir -p "$LAB_DIR"
LAB_DIR=$(cd "$LAB_DIR" && pwd)
# one prepare at a time (boot.sh runs it on demand, maybe several at once)
exec 9>"$LAB_DIR/.prepare.lock"
flock 9

# ---------------------------------------------------------------- kernel package
resolve_pkg() {
  apt-cache depends linux-image-amd64 2>/dev/null \
    | awk '$1 == "Depends:" && $2 ~ /^linux-image-[0-9]/ { print $2; exit }'
}

have_unpacked() { [ -e "$LAB_DIR/kernel/$1/.unpacked" ]; }

download_and_unpack() { # pkg -> 0 on success
  local pkg=$1 dir="$LAB_DIR/kernel/$1" dl="$LAB_DIR/download"
  rm -rf "$dl" "$dir"
  mkdir -p "$dl"
  log "downloading $pkg (about 70 MB)"
  # apt-get download writes into the cwd; running as root it warns that the _apt
  # sandbox user cannot write there, which is harmless.
  if ! (cd "$dl" && apt-get download -q "$pkg" 2>&1 | grep -v -e 'unsandboxed' >&2; exit "${PIPESTATUS[0]}"); then
    rm -rf "$dl"
    return 1
  fi
  local deb
  deb=$(find "$dl" -maxdepth 1 -name '*.deb' | head -1)
  [ -n "$deb" ] || { rm -rf "$dl"; return 1; }
  log "unpacking $(basename "$deb")"
  mkdir -p "$dir.tmp"
  dpkg-deb -x "$deb" "$dir.tmp/root"
  rm -rf "$dl"
  touch "$dir.tmp/.unpacked"
  mv "$dir.tmp" "$dir"
}

PKG=${LAB_KERNEL_PKG:-}
if [ -z "$PKG" ]; then
  PKG=$(resolve_pkg || true)
  if [ -z "$PKG" ]; then
    log "apt-cache cannot resolve linux-image-amd64; running apt-get update"
    apt-get update -qq || log "apt-get update failed"
    PKG=$(resolve_pkg || true)
  fi
fi
if [ -z "$PKG" ]; then
  # offline and no package lists: fall back to what is cached, if anything
  if [ -e "$LAB_DIR/current.env" ]; then
    # shellcheck source=/dev/null
    PKG=$(. "$LAB_DIR/current.env"; echo "$LAB_KERNEL_PKG")
    log "warning: could not resolve linux-image-amd64; using cached $PKG"
  else
    die "cannot resolve linux-image-amd64 with apt-cache (even after apt-get update)"
  fi
fi

if ! have_unpacked "$PKG"; then
  if ! download_and_unpack "$PKG"; then
    # stale package lists can name a kernel the mirror no longer has
    log "download of $PKG failed; running apt-get update and resolving again"
    apt-get update -qq || true
    if [ -z "${LAB_KERNEL_PKG:-}" ]; then PKG=$(resolve_pkg || true); fi
    [ -n "$PKG" ] || die "cannot resolve linux-image-amd64 after apt-get update"
    have_unpacked "$PKG" || download_and_unpack "$PKG" || die "cannot download $PKG"
  fi
fi

KROOT="$LAB_DIR/kernel/$PKG/root"
KVER=$(find "$KROOT/lib/modules" -mindepth 1 -maxdepth 1 -type d -printf '%f\n' 2>/dev/null | head -1)
[ -n "$KVER" ] || die "no lib/modules/<version> in $KROOT"
VMLINUZ="$KROOT/boot/vmlinuz-$KVER"
[ -f "$VMLINUZ" ] || die "no kernel image $VMLINUZ"
MODDIR="$KROOT/lib/modules/$KVER"

if [ ! -e "$MODDIR/modules.dep" ] || [ "$MODDIR/modules.order" -nt "$MODDIR/modules.dep" ]; then
  log "depmod -b $KROOT $KVER"
  depmod -b "$KROOT" "$KVER"
fi

# The bzImage is xz-compressed; decompressing it under TCG costs about 2.5 s a
# boot. The kernel has CONFIG_PVH, so qemu can boot the plain ELF vmlinux directly.
VMLINUX="$LAB_DIR/kernel/$PKG/vmlinux"
extract_vmlinux() { # bzimage out
  local img=$1 out=$2 fmt magic off
  for fmt in xz zstd gzip; do
    case $fmt in
      xz)   magic='\xfd7zXZ\x00' ;;
      zstd) magic='\x28\xb5\x2f\xfd' ;;
      gzip) magic='\x1f\x8b\x08' ;;
    esac
    command -v "$fmt" >/dev/null || continue
    for off in $(LC_ALL=C grep -obUaP "$magic" "$img" 2>/dev/null | cut -d: -f1 | head -5); do
      case $fmt in
        xz)   tail -c +$((off + 1)) "$img" | xz -dc --single-stream >"$out.tmp" 2>/dev/null || true ;;
        zstd) tail -c +$((off + 1)) "$img" | zstd -qdc >"$out.tmp" 2>/dev/null || true ;;
        gzip) tail -c +$((off + 1)) "$img" | gzip -dc >"$out.tmp" 2>/dev/null || true ;;
      esac
      if [ "$(head -c 4 "$out.tmp" 2>/dev/null | od -An -c | tr -d ' ')" = '177ELF' ]; then
        mv "$out.tmp" "$out"
        return 0
      fi
    done
  done
  rm -f "$out.tmp"
  return 1
}
if [ ! -s "$VMLINUX" ] && [ ! -e "$VMLINUX.none" ]; then
  if grep -q '^CONFIG_PVH=y' "$KROOT/boot/config-$KVER" 2>/dev/null && extract_vmlinux "$VMLINUZ" "$VMLINUX"; then
    log "extracted $VMLINUX (PVH boot, no decompression in the guest)"
  else
    log "note: cannot boot this kernel as a plain ELF (no PVH or unknown compression); using the bzImage"
    touch "$VMLINUX.none"
  fi
fi
KERNEL_IMAGE=$VMLINUZ
[ -s "$VMLINUX" ] && KERNEL_IMAGE=$VMLINUX

# ------------------------------------------------------------- module list
# Lines look like "insmod /path/to/mod.ko[.xz|.zst] [options]" or "builtin name".
declare -a KOS=()
declare -A SEEN=()
for m in "${MODULES[@]}"; do
  out=$(modprobe -d "$KROOT" -S "$KVER" --show-depends "$m" 2>&1) \
    || die "modprobe --show-depends $m failed: $out"
  while read -r kind path _; do
    case "$kind" in
      insmod)
        if [ -z "${SEEN[$path]:-}" ]; then SEEN[$path]=1; KOS+=("$path"); fi ;;
      builtin) ;;
      *) die "unexpected modprobe output for $m: $kind $path" ;;
    esac
  done <<<"$out"
done
[ "${#KOS[@]}" -gt 0 ] || die "no modules resolved"

# ---------------------------------------------------------------- initramfs
INITRD="$LAB_DIR/initramfs-$KVER.cpio.gz"
STAMP_IN=$( {
  echo "kver=$KVER pkg=$PKG"
  printf '%s\n' "${KOS[@]}"
  cat "$HERE/init" "$HERE/prepare.sh" "$BUSYBOX" | sha256sum
} | sha256sum | cut -d' ' -f1)
STAMP_FILE="$INITRD.stamp"

if [ "${LAB_FORCE:-0}" != 1 ] && [ -f "$INITRD" ] && [ "$(cat "$STAMP_FILE" 2>/dev/null)" = "$STAMP_IN" ]; then
  log "initramfs is current"
else
  log "building initramfs with ${#KOS[@]} modules"
  STAGE="$LAB_DIR/initramfs.stage"
  rm -rf "$STAGE"
  mkdir -p "$STAGE"/{bin,sbin,dev,proc,sys,mnt,newroot,modules,etc}
  cp "$BUSYBOX" "$STAGE/bin/busybox"
  for applet in $("$BUSYBOX" --list); do
    [ "$applet" = busybox ] || ln -s busybox "$STAGE/bin/$applet"
  done
  install -m 0755 "$HERE/init" "$STAGE/init"
  # Modules are stored decompressed (busybox insmod may lack xz/zstd support),
  # numbered so that the guest loads them in dependency order.
  i=0
  : >"$STAGE/modules/order"
  for ko in "${KOS[@]}"; do
    base=$(basename "$ko")
    name=${base%%.ko*}
    dst=$(printf '%02d-%s.ko' "$i" "$name")
    case "$ko" in
      *.ko)     cp "$ko" "$STAGE/modules/$dst" ;;
      *.ko.xz)  need xz xz-utils;   xz -dc "$ko" >"$STAGE/modules/$dst" ;;
      *.ko.zst) need zstd zstd;     zstd -qdc "$ko" >"$STAGE/modules/$dst" ;;
      *.ko.gz)  gzip -dc "$ko" >"$STAGE/modules/$dst" ;;
      *) die "unknown module file type: $ko" ;;
    esac
    echo "$dst" >>"$STAGE/modules/order"
    i=$((i + 1))
  done
  echo "$KVER" >"$STAGE/etc/lab-kernel"
  (cd "$STAGE" && find . -mindepth 1 | LC_ALL=C sort | cpio -o -H newc -R 0:0 --quiet | gzip -1) >"$INITRD.tmp"
  mv "$INITRD.tmp" "$INITRD"
  echo "$STAMP_IN" >"$STAMP_FILE"
  rm -rf "$STAGE"
fi

# ------------------------------------------------------------ record + prune
cat >"$LAB_DIR/current.env.tmp" <<EOF
# written by integration/lab/prepare.sh; read by boot.sh and boot-multi.sh
LAB_KERNEL_PKG=$PKG
LAB_KVER=$KVER
LAB_VMLINUZ=$VMLINUZ
LAB_KERNEL=$KERNEL_IMAGE
LAB_INITRD=$INITRD
LAB_MODDIR=$MODDIR
EOF
mv "$LAB_DIR/current.env.tmp" "$LAB_DIR/current.env"

# drop kernels and initramfs images other than the current one
for d in "$LAB_DIR"/kernel/*/; do
  [ -d "$d" ] || continue
  [ "$(basename "$d")" = "$PKG" ] || { log "removing old $(basename "$d")"; rm -rf "$d"; }
done
for f in "$LAB_DIR"/initramfs-*.cpio.gz; do
  [ -e "$f" ] || continue
  [ "$f" = "$INITRD" ] || rm -f "$f" "$f.stamp"
done

echo "lab kernel:    $KERNEL_IMAGE"
echo "lab initramfs: $INITRD ($(du -h "$INITRD" | cut -f1), ${#KOS[@]} modules)"
echo "lab modules:   $MODDIR"
echo "lab config:    $LAB_DIR/current.env"
