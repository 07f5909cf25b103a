#!/usr/bin/env bash
# services.sh — run every pipeline service as a background process against the local
# infrastructure of infra.sh (real Kafka + Redis), without Docker.
#
#   services.sh up       build ./bin/<service>, start each one under a small supervisor with its
#                        own HTTP_ADDR, and wait until every /readyz answers 200 (services
#                        already running are kept). The supervisor restarts a service that exits
#                        with code 3 (it stopped because `loyaltyctl promote` switched the active
#                        namespace) and lets any other exit stand (see the log).
#   services.sh down     stop the services this script started: SIGTERM, SIGKILL after
#                        SERVICES_STOP_TIMEOUT; only the PIDs in its PID files, never by name
#   services.sh status   one line per service: pid, running or not, /readyz status; exit 1
#                        unless every service is running and ready
#   services.sh logs S   last 100 lines of service S's log
#
# Services: purchases logins feedback relay sweeper, and notifier once services/notifier
# exists. HTTP ports: 9101 purchases, 9102 logins, 9103 feedback, 9104 relay, 9105 sweeper,
# 9106 notifier (SERVICES_PORT_BASE moves them all).
#
# Environment (all optional; everything else, e.g. LOYALTY_NAMESPACE, BATCH_SIZE, LOG_LEVEL,
# is passed through to the services):
#   SERVICES_RUN_DIR       default deploy/local/.run/services (logs, PID files, addresses)
#   SERVICES_ENV_FILE      default deploy/local/.run/env (written by `infra.sh up`); its
#                          KAFKA_BROKERS and REDIS_ADDR win over the caller's
#   SERVICES_PORT_BASE     default 9100 (service ports are base+1 .. base+6)
#   SERVICES_READY_TIMEOUT seconds to wait for /readyz, default 90
#   SERVICES_STOP_TIMEOUT  seconds between SIGTERM and SIGKILL, default 40 (a consumer may
#                          take up to its 30 s drain timeout to finish its in-flight batch)
#   NOTIFIER_CHANNEL_CARE, NOTIFIER_CHANNEL_WIN_BACK, NOTIFIER_CHANNEL_VIP_WELCOME,
#   NOTIFIER_CHANNEL_DOWNGRADE_WARNING
#                          the notifier's webhook URLs; "log" (the default here) logs actions
set -euo pipefail

HERE=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
ROOT=$(cd "$HERE/../.." && pwd)
RUN_DIR=${SERVICES_RUN_DIR:-$HERE/.run/services}
ENV_FILE=${SERVICES_ENV_FILE:-$HERE/.run/env}
PORT_BASE=${SERVICES_PORT_BASE:-9100}
READY_TIMEOUT=${SERVICES_READY_TIMEOUT:-90}
STOP_TIMEOUT=${SERVICES_STOP_TIMEOUT:-40}
BIN_DIR=$ROOT/bin
GO=${GO:-go}

die() { echo "services.sh: $*" >&2; exit 1; }
say() { echo "services.sh: $*" >&2; }

# services prints "name port" for every service whose directory exists, in start order
# (consumers first, so the relay and sweeper find topics and state in place).
services() {
  local i=0 name
  for name in purchases logins feedback relay sweeper notifier; do
    i=$((i + 1))
    [ -d "$ROOT/services/$name" ] && echo "$name $((PORT_BASE + i))"
  done
  return 0
}

pidfile() { echo "$RUN_DIR/$1.pid"; }
suppidfile() { echo "$RUN_DIR/$1.supervisor.pid"; }

# Exit code of a service that stopped because the active namespace changed
# (pipeline.ExitPromoted); it is restarted at once on the new namespace.
EXIT_PROMOTED=3

# supervise runs service $1 in the foreground, writes its PID file on every start, and starts
# it again whenever it exits with EXIT_PROMOTED. SIGTERM/SIGINT are forwarded to the service,
# and the supervisor exits with the service's code.
supervise() {
  local name=$1 child="" rc
  trap 'if [ -n "$child" ]; then kill -TERM "$child" 2>/dev/null || true; fi; stopping=1' TERM INT
  stopping=0
  while :; do
    "$BIN_DIR/$name" &
    child=$!
    echo "$child" > "$(pidfile "$name")"
    # wait returns early (>128) when a trapped signal arrives: wait again for the real exit.
    while :; do
      wait "$child" && rc=0 || rc=$?
      kill -0 "$child" 2>/dev/null || break
    done
    if [ "$rc" -eq "$EXIT_PROMOTED" ] && [ "$stopping" = 0 ]; then
      echo "services.sh: $name exited with code $EXIT_PROMOTED (active namespace changed): restarting it" >&2
      continue
    fi
    echo "services.sh: $name exited with code $rc; not restarting" >&2
    rm -f "$(suppidfile "$name")"
    exit "$rc"
  done
}

# running_pid prints the PID of service $1 if the process in its PID file is alive and is
# still our binary (a PID file left by a crash may name a recycled PID).
running_pid() {
  local f pid exe
  f=$(pidfile "$1")
  [ -f "$f" ] || return 1
  pid=$(cat "$f")
  [ -n "$pid" ] && kill -0 "$pid" 2>/dev/null || return 1
  exe=$(readlink "/proc/$pid/exe" 2>/dev/null || true)
  case "$exe" in
    "$BIN_DIR/$1" | "$BIN_DIR/$1 (deleted)") echo "$pid" ;;
    *) return 1 ;;
  esac
}

readyz() { curl -s -o /dev/null -m 2 -w '%{http_code}' "http://$1/readyz" 2>/dev/null || true; }

port_in_use() { (exec 3<>"/dev/tcp/127.0.0.1/$1") 2>/dev/null; }

cmd_up() {
  [ -f "$ENV_FILE" ] || die "no $ENV_FILE: start Kafka and Redis first with: make infra-up"
  # shellcheck disable=SC1090
  source "$ENV_FILE"
  [ -n "${KAFKA_BROKERS:-}" ] && [ -n "${REDIS_ADDR:-}" ] || die "$ENV_FILE does not set KAFKA_BROKERS and REDIS_ADDR"
  mkdir -p "$RUN_DIR" "$BIN_DIR"
  local ch
  for ch in CARE WIN_BACK VIP_WELCOME DOWNGRADE_WARNING; do
    export "NOTIFIER_CHANNEL_$ch=$(printenv "NOTIFIER_CHANNEL_$ch" || echo log)"
  done

  local name port pid started=()
  while read -r name port; do
    say "building bin/$name"
    (cd "$ROOT" && "$GO" build -o "$BIN_DIR/$name" "./services/$name")
  done < <(services)

  while read -r name port; do
    if pid=$(running_pid "$name"); then
      say "$name already running (pid $pid, $(cat "$RUN_DIR/$name.addr"))"
      continue
    fi
    port_in_use "$port" && die "port $port for $name is in use (set SERVICES_PORT_BASE to move the services)"
    echo "127.0.0.1:$port" > "$RUN_DIR/$name.addr"
    # setsid: the service gets its own session, so a ^C in the caller's terminal does not
    # reach it; `down` stops it.
    rm -f "$(pidfile "$name")"
    HTTP_ADDR=127.0.0.1:$port KAFKA_BROKERS=$KAFKA_BROKERS REDIS_ADDR=$REDIS_ADDR \
      setsid "$HERE/services.sh" _supervise "$name" >> "$RUN_DIR/$name.log" 2>&1 < /dev/null &
    echo $! > "$(suppidfile "$name")"
    for ((i = 0; i < 50; i++)); do [ -s "$(pidfile "$name")" ] && break; sleep 0.1; done
    started+=("$name")
    say "started $name (pid $(cat "$(pidfile "$name")" 2>/dev/null), supervisor $!, http 127.0.0.1:$port, log $RUN_DIR/$name.log)"
  done < <(services)

  local deadline=$((SECONDS + READY_TIMEOUT)) addr code
  while read -r name port; do
    addr=$(cat "$RUN_DIR/$name.addr")
    while :; do
      if ! running_pid "$name" >/dev/null; then
        tail -n 20 "$RUN_DIR/$name.log" >&2 || true
        die "$name exited during start-up (log above: $RUN_DIR/$name.log); stop the others with: make services-down"
      fi
      code=$(readyz "$addr")
      [ "$code" = 200 ] && break
      [ $SECONDS -ge $deadline ] && die "$name not ready after ${READY_TIMEOUT}s (/readyz: ${code:-no answer}); see $RUN_DIR/$name.log"
      sleep 0.5
    done
  done < <(services)
  say "all services ready (${#started[@]} started); stop them with: make services-down"
  cmd_status
}

# supervisor_pid prints the PID of service $1's supervisor if it is alive and is this script.
supervisor_pid() {
  local f pid
  f=$(suppidfile "$1")
  [ -f "$f" ] || return 1
  pid=$(cat "$f")
  [ -n "$pid" ] && kill -0 "$pid" 2>/dev/null || return 1
  tr '\0' ' ' < "/proc/$pid/cmdline" 2>/dev/null | grep -q "_supervise $1" || return 1
  echo "$pid"
}

# stop_one sends SIGTERM to service $1's supervisor (which forwards it and does not restart)
# and to the service, waits up to STOP_TIMEOUT, then SIGKILLs the service.
stop_one() {
  local name=$1 pid sup i
  if sup=$(supervisor_pid "$name"); then
    kill -TERM "$sup" 2>/dev/null || true
  fi
  rm -f "$(suppidfile "$name")"
  if ! pid=$(running_pid "$name"); then
    rm -f "$(pidfile "$name")"
    return 0
  fi
  kill -TERM "$pid" 2>/dev/null || true
  for ((i = 0; i < STOP_TIMEOUT * 10; i++)); do
    kill -0 "$pid" 2>/dev/null || break
    sleep 0.1
  done
  if kill -0 "$pid" 2>/dev/null; then
    say "$name (pid $pid) still running after ${STOP_TIMEOUT}s; sending SIGKILL"
    kill -KILL "$pid" 2>/dev/null || true
  fi
  rm -f "$(pidfile "$name")"
  say "stopped $name (pid $pid)"
}

cmd_down() {
  [ -d "$RUN_DIR" ] || { say "nothing to stop"; return 0; }
  local name port pids=()
  # Stop in parallel: each consumer drains its in-flight batch on SIGTERM.
  while read -r name port; do
    stop_one "$name" &
    pids+=($!)
  done < <(services)
  # A notifier directory removed since `up` would leave its PID file behind: stop it too.
  local f
  for f in "$RUN_DIR"/*.pid; do
    [ -e "$f" ] || continue
    name=$(basename "$f" .pid)
    services | grep -q "^$name " || { stop_one "$name" & pids+=($!); }
  done
  local rc=0
  for p in "${pids[@]}"; do wait "$p" || rc=1; done
  return $rc
}

cmd_status() {
  local name port pid addr rc=0
  while read -r name port; do
    addr=$(cat "$RUN_DIR/$name.addr" 2>/dev/null || echo "127.0.0.1:$port")
    if pid=$(running_pid "$name"); then
      printf '%-10s running  pid %-7s http %-16s readyz %s\n' "$name" "$pid" "$addr" "$(readyz "$addr")"
      [ "$(readyz "$addr")" = 200 ] || rc=1
    else
      printf '%-10s stopped\n' "$name"
      rc=1
    fi
  done < <(services)
  return $rc
}

cmd_logs() {
  [ -n "${1:-}" ] || die "usage: services.sh logs SERVICE"
  tail -n 100 "$RUN_DIR/$1.log"
}

case "${1:-}" in
  up) cmd_up ;;
  down) cmd_down ;;
  status) cmd_status ;;
  logs) shift; cmd_logs "$@" ;;
  _supervise) shift; supervise "$1" ;;
  *) sed -n '2,32p' "$0" | sed 's/^# \{0,1\}//'; exit 2 ;;
esac
