# shellcheck shell=bash
# Sourced by the guest scripts (demo, benchmark): stop_daemons stops the
# weaver daemons this shell started, and never waits forever.
#
#   stop_daemons SECONDS LOG_DIR PID...
#
# Sends SIGTERM to each PID and waits up to SECONDS for all of them. A daemon
# still running then is a bug (weaver bounds its own shutdown, see
# src/bin/weaver.rs): its threads' kernel stacks and its log's tail are
# printed, it is killed, and stop_daemons returns 1. LOG_DIR holds the
# daemons' logs (*.log), printed in that case.

# True while PID runs (a zombie, exited but not yet reaped, does not).
daemon_running() {
  local state
  state=$(awk '{ print $3 }' "/proc/$1/stat" 2> /dev/null) || return 1
  [ -n "$state" ] && [ "$state" != Z ]
}

stop_daemons() {
  local limit=$1 logs=$2 p t left stuck=()
  shift 2
  for p in "$@"; do kill -TERM "$p" 2> /dev/null || true; done
  for ((t = 0; t < limit * 5; t++)); do
    left=0
    for p in "$@"; do daemon_running "$p" && left=1; done
    [ "$left" = 0 ] && break
    sleep 0.2
  done
  for p in "$@"; do
    daemon_running "$p" && stuck+=("$p")
  done
  if [ ${#stuck[@]} -gt 0 ]; then
    echo "STOP FAILED: ${#stuck[@]} daemon(s) still running ${limit} s after SIGTERM: ${stuck[*]}" >&2
    for p in "${stuck[@]}"; do
      echo "--- pid $p: $(tr '\0' ' ' < "/proc/$p/cmdline" 2> /dev/null)" >&2
      for t in /proc/"$p"/task/*; do
        echo "thread $(cat "$t/comm" 2> /dev/null) ($(basename "$t")): wchan $(cat "$t/wchan" 2> /dev/null)" >&2
        sed 's/^/    /' "$t/stack" 2> /dev/null >&2 || true
      done
    done
    for t in "$logs"/*.log; do
      [ -e "$t" ] && { echo "--- $t (tail)" >&2; tail -n 30 "$t" >&2; }
    done
    for p in "${stuck[@]}"; do kill -KILL "$p" 2> /dev/null || true; done
  fi
  for p in "$@"; do wait "$p" 2> /dev/null || true; done
  [ ${#stuck[@]} = 0 ]
}
