#!/usr/bin/env bash
# Runs weaver the way packaging/weaver.service does, where systemd is not
# available (the lab guest, minimal containers): the unit's own ExecStart
# line, its EnvironmentFile, Restart=on-failure with RestartSec.
#
#   packaging/supervise.sh [--unit FILE] [--env FILE] [--bin-dir DIR]
#
#   --unit FILE    the unit (default: packaging/weaver.service beside this script)
#   --env FILE     the environment file (default: the unit's EnvironmentFile)
#   --bin-dir DIR  where weaver is, instead of the unit's /usr/local/bin
#
# SIGTERM or SIGINT stops the daemon (SIGTERM) and the supervisor. A daemon
# that exits 0 is not restarted; one that fails is, after RestartSec.
set -uo pipefail
HERE=$(cd "$(dirname "$0")" && pwd)
UNIT=$HERE/weaver.service ENVFILE="" BIN=""
while [ $# -gt 0 ]; do
  case "$1" in
    --unit) UNIT=$2; shift 2 ;;
    --env) ENVFILE=$2; shift 2 ;;
    --bin-dir) BIN=$2; shift 2 ;;
    *) echo "usage: $0 [--unit FILE] [--env FILE] [--bin-dir DIR]" >&2; exit 2 ;;
  esac
done
[ -r "$UNIT" ] || { echo "supervise: cannot read the unit $UNIT" >&2; exit 2; }

# key FILE KEY: the value of the unit's first KEY= line.
key() { sed -nE "s/^$2=(.*)$/\1/p" "$1" | head -n 1; }
exec_start=$(key "$UNIT" ExecStart)
[ -n "$exec_start" ] || { echo "supervise: $UNIT has no ExecStart" >&2; exit 2; }
restart=$(key "$UNIT" Restart)
restart_sec=$(key "$UNIT" RestartSec); restart_sec=${restart_sec:-1}
if [ -z "$ENVFILE" ]; then
  ENVFILE=$(key "$UNIT" EnvironmentFile)
fi
# "-FILE": optional, as systemd reads it.
optional=0
case "$ENVFILE" in -*) optional=1; ENVFILE=${ENVFILE#-} ;; esac
if [ -n "$ENVFILE" ]; then
  if [ -r "$ENVFILE" ]; then
    set -a
    # shellcheck disable=SC1090
    . "$ENVFILE"
    set +a
  elif [ "$optional" = 0 ]; then
    echo "supervise: cannot read $ENVFILE" >&2; exit 2
  fi
fi
[ -z "$BIN" ] || exec_start=${exec_start//\/usr\/local\/bin/$BIN}
# $VAR words expand and split as systemd's do for ExecStart.
read -r -a cmd <<< "$(eval "echo $exec_start")"

child=0 stopping=0
stop() {
  stopping=1
  [ "$child" = 0 ] || kill -TERM "$child" 2> /dev/null
}
trap stop TERM INT
while :; do
  "${cmd[@]}" &
  child=$!
  echo "supervise: started ${cmd[0]} (pid $child)" >&2
  wait "$child"; rc=$?
  # A signal to us interrupts wait (status > 128): wait again for the
  # daemon's own status. bash keeps it even when the daemon has exited and
  # been reaped meanwhile; 127 says it was collected already.
  while [ "$stopping" = 1 ] && [ "$rc" -gt 128 ]; do
    wait "$child" 2> /dev/null; r=$?
    [ "$r" = 127 ] && break
    rc=$r
  done
  echo "supervise: ${cmd[0]} exited with status $rc" >&2
  [ "$stopping" = 0 ] || exit "$rc"
  if [ "$rc" = 0 ] || [ "$restart" != on-failure ]; then exit "$rc"; fi
  sleep "$restart_sec"
done
