#!/usr/bin/env bash
# redis.sh — Debian's redis-server on 127.0.0.1 for local runs and tests.
#
#   redis.sh install   make sure redis-server is installed: apt-get as root, otherwise fail
#                      with the exact command to run
#   redis.sh start     (installs if needed) start on a free port, wait for PING -> PONG
#   redis.sh stop      SHUTDOWN NOSAVE, then SIGTERM/SIGKILL by PID if needed
#   redis.sh status    "running pid N 127.0.0.1:PORT" (exit 0) or "stopped" (exit 1)
#   redis.sh addr      print 127.0.0.1:PORT (REDIS_ADDR)
#   redis.sh logs [N]  last N lines of the log (default 100)
#   redis.sh clean     stop and delete the run dir
#
# Environment (all optional):
#   REDIS_RUN_DIR       default deploy/local/.run/redis (gitignored)
#   REDIS_PORT          default: a free port picked at first start, then reused
#   REDIS_APPENDONLY    yes|no, default yes: the services commit Kafka offsets after the Redis
#                       write, so state must survive a restart (RDB snapshots are off)
#   REDIS_APPENDFSYNC   everysec|always, default everysec: at most ~1 s of acknowledged writes
#                       lost on a machine crash; always fsyncs every write (far slower)
#   REDIS_AOF_REWRITE_PERCENTAGE  default 400: rewrite the AOF once it has grown by this share
#                       of its size after the last rewrite (Redis's own default is 100). Each
#                       rewrite forks and serializes the whole dataset, so its CPU per byte
#                       written falls as this rises, for up to 1+N/100 times the dataset on disk
#   REDIS_AOF_REWRITE_MIN_SIZE    default 256mb: no rewrite below this AOF size
#   REDIS_MAXMEMORY     e.g. 512mb; default unset (no limit)
#   REDIS_START_TIMEOUT seconds, default 20
set -euo pipefail

HERE=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
REDIS_RUN_DIR=${REDIS_RUN_DIR:-$HERE/.run/redis}
REDIS_APPENDONLY=${REDIS_APPENDONLY:-yes}
REDIS_APPENDFSYNC=${REDIS_APPENDFSYNC:-everysec}
REDIS_AOF_REWRITE_PERCENTAGE=${REDIS_AOF_REWRITE_PERCENTAGE:-400}
REDIS_AOF_REWRITE_MIN_SIZE=${REDIS_AOF_REWRITE_MIN_SIZE:-256mb}
REDIS_START_TIMEOUT=${REDIS_START_TIMEOUT:-20}
PIDFILE=$REDIS_RUN_DIR/redis.pid
PORTFILE=$REDIS_RUN_DIR/port
LOGFILE=$REDIS_RUN_DIR/redis.log
DATADIR=$REDIS_RUN_DIR/data

die() { echo "redis.sh: $*" >&2; exit 1; }
say() { echo "redis.sh: $*" >&2; }

port_in_use() { (exec 3<>"/dev/tcp/127.0.0.1/$1") 2>/dev/null; }

# free_port: a random port below the kernel's ephemeral range that nothing listens on. A port
# from the ephemeral range (what binding port 0 returns) can be taken as the local port of any
# outgoing connection, or of a client's connect to it while the server is down (a TCP
# self-connect), before the server binds it or between a stop and a restart on it.
free_port() {
  local lo=20000 hi p
  hi=$(awk '{ print $1 }' /proc/sys/net/ipv4/ip_local_port_range 2>/dev/null || echo 32768)
  [ "$hi" -gt $((lo + 1000)) ] 2>/dev/null || hi=32768
  for _ in $(seq 1 200); do
    p=$(( (RANDOM << 15 | RANDOM) % (hi - lo) + lo ))
    port_in_use "$p" || { echo "$p"; return; }
  done
  die "no free port found"
}

# wait_for_apt: another apt-get/dpkg (e.g. a provisioning step) holds the locks; wait, don't race it
wait_for_apt() {
  local i
  for i in $(seq 1 600); do
    if ! pgrep -x apt-get >/dev/null 2>&1 && ! pgrep -x dpkg >/dev/null 2>&1 && ! pgrep -x apt >/dev/null 2>&1; then
      return 0
    fi
    [ "$i" = 1 ] && say "waiting for a running apt-get/dpkg to finish"
    sleep 1
  done
  die "apt-get/dpkg still busy after 10 minutes"
}

cmd_install() {
  command -v redis-server >/dev/null 2>&1 && return 0
  wait_for_apt
  command -v redis-server >/dev/null 2>&1 && return 0   # the other apt-get may have installed it
  local cmd="apt-get update && apt-get install -y redis-server"
  if [ "$(id -u)" != 0 ]; then
    if command -v sudo >/dev/null 2>&1 && sudo -n true 2>/dev/null; then
      cmd="sudo apt-get update && sudo DEBIAN_FRONTEND=noninteractive apt-get install -y redis-server"
    else
      die "redis-server is not installed. Install it with: sudo apt-get update && sudo apt-get install -y redis-server"
    fi
  fi
  command -v apt-get >/dev/null 2>&1 || die "redis-server is not installed and this is no Debian/Ubuntu system: install redis-server 6+ with your package manager"
  say "installing redis-server: $cmd"
  # -o DPkg::Lock::Timeout: should another apt start meanwhile, wait for its lock
  export DEBIAN_FRONTEND=noninteractive
  if [ "$(id -u)" = 0 ]; then
    apt-get -o DPkg::Lock::Timeout=600 update -qq
    apt-get -o DPkg::Lock::Timeout=600 install -y -qq --no-install-recommends redis-server >/dev/null
  else
    sudo apt-get -o DPkg::Lock::Timeout=600 update -qq
    sudo DEBIAN_FRONTEND=noninteractive apt-get -o DPkg::Lock::Timeout=600 install -y -qq --no-install-recommends redis-server >/dev/null
  fi
  command -v redis-server >/dev/null 2>&1 || die "redis-server still missing after apt-get install"
  say "installed $(redis-server --version | cut -d' ' -f1-3)"
}

# ping PORT: PONG over redis-cli, or over a raw socket when redis-cli is missing
ping_redis() {
  if command -v redis-cli >/dev/null 2>&1; then
    [ "$(timeout 2 redis-cli -h 127.0.0.1 -p "$1" ping 2>/dev/null)" = PONG ]
    return
  fi
  (
    exec 3<>"/dev/tcp/127.0.0.1/$1" || exit 1
    printf 'PING\r\n' >&3
    IFS= read -r -t 2 line <&3 && [ "${line%$'\r'}" = "+PONG" ]
  ) 2>/dev/null
}

server_pid() {
  [ -f "$PIDFILE" ] || return 1
  local pid; pid=$(cat "$PIDFILE")
  [ -n "$pid" ] && kill -0 "$pid" 2>/dev/null || return 1
  # guard against a recycled pid: it must be a redis-server
  grep -q redis-server "/proc/$pid/cmdline" 2>/dev/null || grep -q redis "/proc/$pid/comm" 2>/dev/null || return 1
  echo "$pid"
}

cmd_addr() {
  [ -f "$PORTFILE" ] || die "not configured yet; run: $0 start"
  echo "127.0.0.1:$(cat "$PORTFILE")"
}

cmd_start() {
  mkdir -p "$REDIS_RUN_DIR" "$DATADIR"
  exec 9>"$REDIS_RUN_DIR/.lock"
  flock -w 60 9 || die "another redis.sh holds $REDIS_RUN_DIR/.lock"
  local pid port
  if pid=$(server_pid); then
    echo "redis already running (pid $pid) at $(cmd_addr)"
    return 0
  fi
  rm -f "$PIDFILE"
  cmd_install
  port=${REDIS_PORT:-}
  [ -n "$port" ] || { [ -f "$PORTFILE" ] && port=$(cat "$PORTFILE"); } || true
  if [ -z "$port" ] || { [ -z "${REDIS_PORT:-}" ] && port_in_use "$port"; }; then
    port=$(free_port)   # no data to keep, so a remembered port that got taken is simply replaced
  fi
  port_in_use "$port" && die "port $port on 127.0.0.1 is taken by another process; set REDIS_PORT"
  echo "$port" > "$PORTFILE"

  case "$REDIS_APPENDONLY" in yes|no) ;; *) die "REDIS_APPENDONLY=$REDIS_APPENDONLY: want yes or no" ;; esac
  case "$REDIS_APPENDFSYNC" in
    everysec|always) ;;
    *) die "REDIS_APPENDFSYNC=$REDIS_APPENDFSYNC: want everysec or always (no leaves the flush to the OS, ~30 s at risk)" ;;
  esac
  local t0; t0=$(date +%s%3N)
  local args=(--bind 127.0.0.1 --port "$port" --daemonize yes --pidfile "$PIDFILE"
    --logfile "$LOGFILE" --dir "$DATADIR" --save "" --appendonly "$REDIS_APPENDONLY"
    --appendfsync "$REDIS_APPENDFSYNC" --maxmemory-policy noeviction
    --auto-aof-rewrite-percentage "$REDIS_AOF_REWRITE_PERCENTAGE" --auto-aof-rewrite-min-size "$REDIS_AOF_REWRITE_MIN_SIZE"
    --protected-mode yes --databases 16 --supervised no)
  [ -n "${REDIS_MAXMEMORY:-}" ] && args+=(--maxmemory "$REDIS_MAXMEMORY")
  redis-server "${args[@]}" </dev/null 9>&- || { tail -n 20 "$LOGFILE" >&2 2>/dev/null; die "redis-server failed to start"; }

  local deadline=$(( $(date +%s) + REDIS_START_TIMEOUT ))
  until [ -s "$PIDFILE" ] && ping_redis "$port"; do
    if [ "$(date +%s)" -ge "$deadline" ]; then
      tail -n 20 "$LOGFILE" >&2 2>/dev/null || true
      cmd_stop >&2
      die "redis not answering PING after ${REDIS_START_TIMEOUT}s"
    fi
    sleep 0.1
  done
  local ms=$(( $(date +%s%3N) - t0 ))
  echo "redis $(redis-server --version | sed -n 's/.*v=\([^ ]*\).*/\1/p') ready in ${ms}ms: pid $(cat "$PIDFILE"), addr 127.0.0.1:$port, appendonly $REDIS_APPENDONLY (fsync $REDIS_APPENDFSYNC), run dir $REDIS_RUN_DIR"
}

cmd_stop() {
  local pid
  if ! pid=$(server_pid); then
    rm -f "$PIDFILE"
    echo "redis not running"
    return 0
  fi
  local port; port=$(cat "$PORTFILE" 2>/dev/null || true)
  if [ -n "$port" ] && command -v redis-cli >/dev/null 2>&1; then
    timeout 5 redis-cli -h 127.0.0.1 -p "$port" shutdown nosave >/dev/null 2>&1 || true
  else
    kill -TERM "$pid" 2>/dev/null || true
  fi
  local i
  for i in $(seq 1 50); do kill -0 "$pid" 2>/dev/null || break; sleep 0.1; done
  if kill -0 "$pid" 2>/dev/null; then
    kill -TERM "$pid" 2>/dev/null || true
    for i in $(seq 1 50); do kill -0 "$pid" 2>/dev/null || break; sleep 0.1; done
    kill -0 "$pid" 2>/dev/null && { kill -KILL "$pid" 2>/dev/null || true; echo "redis pid $pid killed"; }
  fi
  rm -f "$PIDFILE"
  echo "redis stopped (pid $pid)"
}

cmd_status() {
  local pid
  if pid=$(server_pid); then
    echo "redis running pid $pid $(cmd_addr)"
  else
    echo "redis stopped"
    return 1
  fi
}

case "${1:-}" in
  install) cmd_install ;;
  start) cmd_start ;;
  stop) cmd_stop ;;
  status) cmd_status ;;
  addr) cmd_addr ;;
  logs) [ -f "$LOGFILE" ] || die "no log yet at $LOGFILE"; tail -n "${2:-100}" "$LOGFILE" ;;
  clean) cmd_stop; rm -rf "$REDIS_RUN_DIR"; echo "removed $REDIS_RUN_DIR" ;;
  *) sed -n '2,19p' "$0" | sed 's/^# \{0,1\}//'; exit 2 ;;
esac
