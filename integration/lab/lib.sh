# weaver lab: shared code of boot.sh and boot-multi.sh (sourced, not run).
# shellcheck shell=bash

LAB_HERE=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
LAB_REPO=$(cd "$LAB_HERE/../.." && pwd)
LAB_DIR=${LAB_DIR:-$LAB_REPO/target/lab}
export LAB_DIR

lab_die() { echo "lab: error: $*" >&2; exit 2; }
lab_say() { echo "lab: $*" >&2; }

# Runs prepare.sh when the cache is missing or older than init/prepare.sh; then
# loads $LAB_DIR/current.env (LAB_KERNEL, LAB_INITRD, LAB_MODDIR, ...).
lab_ensure_prepared() {
  local env="$LAB_DIR/current.env"
  if [ ! -e "$env" ] || [ "$LAB_HERE/init" -nt "$env" ] || [ "$LAB_HERE/prepare.sh" -nt "$env" ]; then
    "$LAB_HERE/prepare.sh" >&2 || lab_die "prepare.sh failed"
  fi
  # shellcheck source=/dev/null
  . "$env"
  if [ ! -f "${LAB_KERNEL:-}" ] || [ ! -f "${LAB_INITRD:-}" ]; then
    "$LAB_HERE/prepare.sh" >&2 || lab_die "prepare.sh failed"
    # shellcheck source=/dev/null
    . "$env"
  fi
  command -v qemu-system-x86_64 >/dev/null || lab_die "qemu-system-x86_64 not found; install qemu-system-x86 (integration/setup.sh)"
}

# Characters that can travel in a kernel command line value unquoted.
lab_plain() { case "$1" in *[!A-Za-z0-9._/+@%:=,~-]*|'') return 1 ;; esac; }

lab_hidden_path() { # is this host path invisible in the guest?
  case "$1/" in /tmp/*|/run/*|/var/run/*|/var/tmp/*|/dev/*|/proc/*|/sys/*) return 0 ;; esac
  return 1
}

# Sets LAB_SCRIPT to the absolute, resolved path of $1, or dies.
lab_resolve_script() {
  local s=$1
  [ -e "$s" ] || lab_die "script not found: $s (give a path absolute or relative to $(pwd))"
  LAB_SCRIPT=$(realpath -e -- "$s")
  [ -f "$LAB_SCRIPT" ] || lab_die "not a regular file: $s"
  if lab_hidden_path "$LAB_SCRIPT"; then
    lab_die "$s is $LAB_SCRIPT: under /tmp, /run or another directory that the guest replaces with its own; it cannot see the file there. Keep lab scripts in the checkout, e.g. integration/lab/scenarios/."
  fi
  lab_plain "$LAB_SCRIPT" || lab_die "script path has characters the kernel command line cannot carry (spaces, quotes, ...): $LAB_SCRIPT"
}

lab_is_uint() { case "$1" in ''|*[!0-9]*) return 1 ;; esac; }

# Picks LAB_PORT_BASE: n*n free UDP ports on 127.0.0.1 for the links between VMs.
lab_pick_ports() {
  local n=$1 count=$(( $1 * $1 )) base used p ok
  if [ -n "${LAB_PORT_BASE:-}" ]; then
    lab_is_uint "$LAB_PORT_BASE" || lab_die "LAB_PORT_BASE must be a number"
    return
  fi
  used=$(ss -Hanu 2>/dev/null | awk '{ n = split($4, a, ":"); print a[n] }' | sort -u || true)
  for _ in $(seq 1 50); do
    base=$(( 20000 + (RANDOM * 32768 + RANDOM) % 40000 ))
    ok=1
    for ((p = base; p < base + count; p++)); do
      if grep -qx "$p" <<<"$used"; then ok=0; break; fi
    done
    if [ "$ok" = 1 ]; then LAB_PORT_BASE=$base; return; fi
  done
  lab_die "could not find $count free UDP ports on 127.0.0.1"
}

lab_now() { echo "${EPOCHREALTIME/,/.}"; }
lab_elapsed() { awk -v a="$1" -v b="$(lab_now)" 'BEGIN { printf "%.1f", b - a }'; }

# Stops the qemu of VM $1 if it still runs (by the pid qemu wrote, checked).
lab_stop_vm() {
  local i=$1 pid
  [ -e "$LAB_RUNDIR/vm$i.status" ] && return 0
  pid=$(cat "$LAB_RUNDIR/vm$i.pid" 2>/dev/null) || return 0
  lab_is_uint "$pid" || return 0
  case "$(cat "/proc/$pid/comm" 2>/dev/null)" in
    qemu-system-x86*) kill -TERM "$pid" 2>/dev/null || true ;;
  esac
}

lab_cleanup() {
  local i
  [ -n "${LAB_RUNDIR:-}" ] && [ -d "$LAB_RUNDIR" ] || return 0
  for ((i = 0; i < ${LAB_NVMS:-0}; i++)); do lab_stop_vm "$i"; done
  # let the per-VM subshells finish writing
  wait 2>/dev/null || true
  rm -rf "$LAB_RUNDIR"
}

# lab_verdict i -> sets V_RC and V_MSG from the log and qemu's exit status.
lab_verdict() {
  local i=$1 log=${LAB_LOGS[$1]} st marker
  st=$(cat "$LAB_RUNDIR/vm$i.status" 2>/dev/null || echo 255)
  marker=$(grep -a -o '^WEAVER-LAB-EXIT=[0-9]\+' "$log" 2>/dev/null | tail -1 | cut -d= -f2 || true)
  if [ "$st" = 124 ] || [ "$st" = 137 ]; then
    V_RC=124; V_MSG="TIMED OUT after ${LAB_TIMEOUT}s (LAB_TIMEOUT), killed"
  elif [ -n "${LAB_STOPPED[$i]:-}" ] && [ -z "$marker" ]; then
    V_RC=125; V_MSG="stopped because another VM failed"
  elif grep -a -q '^WEAVER-LAB-INIT-FAILED' "$log"; then
    V_RC=125; V_MSG="guest init failed:$(grep -a '^WEAVER-LAB-INIT-FAILED' "$log" | head -1 | cut -d: -f2-)"
  elif [ -n "$marker" ]; then
    V_RC=$marker
    if [ "$marker" = 0 ]; then V_MSG="script passed"; else V_MSG="script FAILED with exit status $marker"; fi
    [ "$st" = 0 ] || V_MSG="$V_MSG (qemu exit status $st)"
  elif grep -a -q 'Kernel panic' "$log"; then
    V_RC=125; V_MSG="guest KERNEL PANIC: $(grep -a -m1 'Kernel panic' "$log" | sed 's/^\[[^]]*\] *//')"
  else
    V_RC=125; V_MSG="no WEAVER-LAB-EXIT marker in the console output (qemu exit status $st)"
  fi
}

# lab_run N PREFIX_LOGS SCRIPT [ARGS...]: boots N guests (linked pairwise when
# N > 1), runs SCRIPT in each, returns the exit status (see README.md).
lab_run() {
  local n=$1 multi=$2 s=$3
  shift 3
  if ! { lab_is_uint "$n" && [ "$n" -ge 1 ] && [ "$n" -le 4 ]; }; then lab_die "the number of VMs must be 1 to 4, not '$n'"; fi
  lab_resolve_script "$s"
  LAB_TIMEOUT=${LAB_TIMEOUT:-1200}
  if ! { lab_is_uint "$LAB_TIMEOUT" && [ "$LAB_TIMEOUT" -gt 0 ]; }; then lab_die "LAB_TIMEOUT must be a positive number of seconds"; fi
  local mem=${LAB_MEM:-1024} cpus=${LAB_CPUS:-2} grace=${LAB_GRACE:-5}
  if ! { lab_is_uint "$mem" && lab_is_uint "$cpus" && lab_is_uint "$grace"; }; then lab_die "LAB_MEM, LAB_CPUS and LAB_GRACE must be numbers"; fi
  lab_ensure_prepared

  # arguments: each base64-encoded, comma-separated ("-" for an empty one)
  local enc="" a e
  for a in "$@"; do
    if [ -z "$a" ]; then e=-; else e=$(printf '%s' "$a" | base64 -w0); fi
    enc+="${enc:+,}$e"
  done
  # environment entries named by LAB_PASS_ENV, the same way
  local envenc="" v
  for v in ${LAB_PASS_ENV:-}; do
    case "$v" in [A-Za-z_]*) ;; *) lab_die "LAB_PASS_ENV: bad variable name '$v'" ;; esac
    case "$v" in *[!A-Za-z0-9_]*) lab_die "LAB_PASS_ENV: bad variable name '$v'" ;; esac
    [ -n "${!v+set}" ] || continue
    envenc+="${envenc:+,}$(printf '%s=%s' "$v" "${!v}" | base64 -w0)"
  done
  local cwd
  cwd=$(pwd -P)
  if lab_hidden_path "$cwd" || ! lab_plain "$cwd"; then cwd=/; fi

  [ "$n" -gt 1 ] && lab_pick_ports "$n"

  local runid name
  runid=$(date +%Y%m%d-%H%M%S)-$$
  name=$(basename "$LAB_SCRIPT"); name=${name%.sh}
  mkdir -p "$LAB_DIR/logs" "$LAB_DIR/run"
  LAB_RUNDIR="$LAB_DIR/run/$runid"
  mkdir -p "$LAB_RUNDIR"
  LAB_NVMS=$n
  LAB_LOGS=()
  LAB_STOPPED=()
  trap lab_cleanup EXIT
  trap 'lab_say "interrupted"; exit 130' INT
  trap 'lab_say "terminated"; exit 143' TERM

  local t0 i j cmdline host res
  t0=$(lab_now)
  lab_say "booting $n VM(s) for $LAB_SCRIPT${*:+ $(printf "%q " "$@")} (timeout ${LAB_TIMEOUT}s, ${mem} MiB, $cpus vCPU each)"
  for ((i = 0; i < n; i++)); do
    if [ "$multi" = 1 ]; then LAB_LOGS[i]="$LAB_DIR/logs/$runid-$name-vm$i.log"; else LAB_LOGS[i]="$LAB_DIR/logs/$runid-$name.log"; fi
    host=${LAB_HOSTNAME:-lab}
    [ "$multi" = 1 ] && host="$host$i"
    lab_plain "$host" || lab_die "bad LAB_HOSTNAME: $host"
    cmdline="console=ttyS0 panic=-1 oops=panic mitigations=off loglevel=${LAB_LOGLEVEL:-5}"
    cmdline+=" weaver.script=$LAB_SCRIPT weaver.cwd=$cwd weaver.vm=$i weaver.vms=$n"
    cmdline+=" weaver.hostname=$host weaver.moddir=$LAB_MODDIR weaver.repo=$LAB_REPO"
    [ -n "$enc" ] && cmdline+=" weaver.args=$enc"
    [ -n "$envenc" ] && cmdline+=" weaver.env=$envenc"
    local qargs=(
      qemu-system-x86_64 -name "weaver-lab-vm$i" -accel tcg -cpu max -m "$mem" -smp "$cpus"
      -nodefaults -no-user-config -display none -serial stdio -monitor none -no-reboot
      -kernel "$LAB_KERNEL" -initrd "$LAB_INITRD"
      -virtfs "local,path=/,mount_tag=hostroot,security_model=none,readonly=on,multidevs=remap"
      -pidfile "$LAB_RUNDIR/vm$i.pid"
    )
    if [ -n "${LAB_RESULTS:-}" ]; then
      res=$LAB_RESULTS
      [ "$multi" = 1 ] && res="$res/vm$i"
      mkdir -p "$res"
      res=$(cd "$res" && pwd -P)
      case "$res" in *,*) lab_die "LAB_RESULTS must not contain a comma" ;; esac
      qargs+=(-virtfs "local,path=$res,mount_tag=results,security_model=none,multidevs=remap")
      cmdline+=" weaver.results=1"
    fi
    # Point-to-point links over 127.0.0.1 UDP, one per pair of VMs. The NIC of VM i
    # towards VM j has MAC 52:54:00:77:0i:0j and PCI slot 0x10+j, so the guest
    # names them eth0, eth1, ... in the order of the peer's index.
    for ((j = 0; j < n; j++)); do
      [ "$j" = "$i" ] && continue
      local lport=$((LAB_PORT_BASE + i * n + j)) rport=$((LAB_PORT_BASE + j * n + i))
      qargs+=(
        -netdev "dgram,id=to$j,local.type=inet,local.host=127.0.0.1,local.port=$lport,remote.type=inet,remote.host=127.0.0.1,remote.port=$rport"
        -device "virtio-net-pci,netdev=to$j,mac=52:54:00:77:0$i:0$j,addr=$(printf '0x%x' $((16 + j))),romfile="
      )
    done
    [ -n "${LAB_APPEND:-}" ] && cmdline+=" $LAB_APPEND"
    [ "${#cmdline}" -lt 2048 ] || lab_die "kernel command line too long (${#cmdline} > 2047 bytes); pass fewer or shorter arguments"
    qargs+=(-append "$cmdline")
    # shellcheck disable=SC2206
    [ -n "${LAB_QEMU_ARGS:-}" ] && qargs+=($LAB_QEMU_ARGS)

    local prefix=""
    [ "$multi" = 1 ] && prefix="[vm$i] "
    (
      set +e +o pipefail
      trap - EXIT INT TERM
      timeout -k 5 "$LAB_TIMEOUT" "${qargs[@]}" </dev/null 2>&1 \
        | sed -u -e 's/\r$//' -e "w ${LAB_LOGS[i]}" -e "s/^/$prefix/"
      echo "${PIPESTATUS[0]}" >"$LAB_RUNDIR/vm$i.status"
    ) &
  done

  # Wait; when one VM fails, stop the others after LAB_GRACE seconds.
  local -a done_=() rcs=()
  local ndone=0 deadline="" first_fail="" rc=0
  while [ "$ndone" -lt "$n" ]; do
    for ((i = 0; i < n; i++)); do
      [ -n "${done_[i]:-}" ] && continue
      [ -e "$LAB_RUNDIR/vm$i.status" ] || continue
      done_[i]=1; ndone=$((ndone + 1))
      lab_verdict "$i"
      rcs[i]=$V_RC
      if [ "$V_RC" = 0 ]; then
        lab_say "vm$i: $V_MSG after $(lab_elapsed "$t0") s"
      else
        {
          echo "lab: ================================================================"
          echo "lab: vm$i: $V_MSG (after $(lab_elapsed "$t0") s)"
          echo "lab: vm$i: console log: ${LAB_LOGS[i]}"
          echo "lab: ================================================================"
        } >&2
        if [ -z "$first_fail" ]; then
          first_fail=$i
          deadline=$((SECONDS + grace))
          [ "$ndone" -lt "$n" ] && lab_say "stopping the other VMs in ${grace}s unless they finish (LAB_GRACE)"
        fi
      fi
    done
    [ "$ndone" -lt "$n" ] || break
    if [ -n "$deadline" ] && [ "$SECONDS" -ge "$deadline" ]; then
      for ((i = 0; i < n; i++)); do
        if [ -z "${done_[i]:-}" ] && [ -z "${LAB_STOPPED[i]:-}" ]; then LAB_STOPPED[i]=1; lab_stop_vm "$i"; fi
      done
    fi
    sleep 0.1
  done
  wait 2>/dev/null || true
  [ -n "$first_fail" ] && rc=${rcs[first_fail]}

  local summary="" logs=""
  for ((i = 0; i < n; i++)); do summary+="${summary:+, }vm$i=${rcs[i]}"; logs+=" ${LAB_LOGS[i]}"; done
  # keep the newest 200 console logs
  # shellcheck disable=SC2012
  ls -1t "$LAB_DIR"/logs/*.log 2>/dev/null | tail -n +201 | xargs -r rm -f --
  if [ "$rc" = 0 ]; then
    lab_say "PASS ($summary) in $(lab_elapsed "$t0") s; log:$logs"
  else
    lab_say "FAIL ($summary) in $(lab_elapsed "$t0") s, exit status $rc; log:$logs"
  fi
  return "$rc"
}
