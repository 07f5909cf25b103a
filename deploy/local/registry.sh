#!/usr/bin/env bash
# registry.sh — a real Confluent-compatible Schema Registry on 127.0.0.1, without Docker:
# Apicurio Registry (in-memory H2 storage) from its Quarkus distribution on Maven Central
# (io.apicurio:apicurio-registry-app:<version>:tar.gz:all). Its Confluent API is served at
# /apis/ccompat/v7.
#
#   deploy/local/registry.sh fetch    # download (mvn, cached in ~/.m2) and unpack the distribution
#   deploy/local/registry.sh start    # fetch if needed, start on a free port, wait until ready
#   deploy/local/registry.sh url      # print the Confluent-compatible base URL (SCHEMA_REGISTRY_URL)
#   deploy/local/registry.sh stop     # SIGTERM by PID file, SIGKILL after REGISTRY_STOP_TIMEOUT s
#   deploy/local/registry.sh status | logs
#
#   export SCHEMA_REGISTRY_URL=$(deploy/local/registry.sh start >/dev/null && deploy/local/registry.sh url)
#
# Environment (all optional):
#   APICURIO_VERSION        default 2.6.13.Final (needs Java 11+; this was tested on Java 17)
#   REGISTRY_WORK           dist, pid, port and log dir; default ${XDG_CACHE_HOME:-~/.cache}/loyalty/registry
#   REGISTRY_PORT           HTTP port; default: a free port chosen at start
#   REGISTRY_JAVA_OPTS      default "-Xms64m -Xmx384m -XX:+UseSerialGC -XX:TieredStopAtLevel=1"
#   REGISTRY_START_TIMEOUT  seconds to wait for readiness, default 120
#   REGISTRY_STOP_TIMEOUT   seconds to wait after SIGTERM, default 20
#   MAVEN_REPO_LOCAL        optional -Dmaven.repo.local for fetch
#
# Storage is in memory: every start is an empty registry. Apicurio's default compatibility
# level is NONE (Confluent's is BACKWARD): set it per subject (PUT /config/{subject}).
set -euo pipefail

APICURIO_VERSION=${APICURIO_VERSION:-2.6.13.Final}
REGISTRY_WORK=${REGISTRY_WORK:-${XDG_CACHE_HOME:-$HOME/.cache}/loyalty/registry}
REGISTRY_JAVA_OPTS=${REGISTRY_JAVA_OPTS:--Xms64m -Xmx384m -XX:+UseSerialGC -XX:TieredStopAtLevel=1}
REGISTRY_START_TIMEOUT=${REGISTRY_START_TIMEOUT:-120}
REGISTRY_STOP_TIMEOUT=${REGISTRY_STOP_TIMEOUT:-20}
JAVA=${JAVA_HOME:+$JAVA_HOME/bin/}java

ARTIFACT=io.apicurio:apicurio-registry-app:$APICURIO_VERSION:tar.gz:all
DIST=$REGISTRY_WORK/apicurio-registry-app-$APICURIO_VERSION
RUNNER=$DIST/apicurio-registry-app-$APICURIO_VERSION-runner.jar
PIDFILE=$REGISTRY_WORK/registry.pid
PORTFILE=$REGISTRY_WORK/registry.port
LOGFILE=$REGISTRY_WORK/registry.log
CCOMPAT_PATH=/apis/ccompat/v7

die() { echo "registry.sh: $*" >&2; exit 1; }
log() { echo "registry.sh: $*" >&2; }

# port_in_use PORT: something accepts connections on 127.0.0.1:PORT
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

# pid of our registry if it is running (and really is our java process), else nothing.
running_pid() {
  [ -f "$PIDFILE" ] || return 1
  local pid; pid=$(cat "$PIDFILE")
  [ -n "$pid" ] && kill -0 "$pid" 2>/dev/null || return 1
  tr '\0' ' ' < "/proc/$pid/cmdline" 2>/dev/null | grep -q -- "apicurio-registry-app-" || return 1
  echo "$pid"
}

base_url() {
  [ -f "$PORTFILE" ] || die "not started (no $PORTFILE)"
  echo "http://127.0.0.1:$(cat "$PORTFILE")$CCOMPAT_PATH"
}

http_ok() { # url
  if command -v curl >/dev/null; then
    curl -sf -o /dev/null --max-time 2 "$1"
  else
    python3 -c 'import sys,urllib.request;urllib.request.urlopen(sys.argv[1],timeout=2)' "$1" 2>/dev/null
  fi
}

cmd_fetch() {
  if [ -f "$RUNNER" ]; then
    log "Apicurio Registry $APICURIO_VERSION already in $DIST"
    return
  fi
  command -v mvn >/dev/null || die "mvn not found (Debian/Ubuntu: apt-get install -y maven)"
  mkdir -p "$REGISTRY_WORK"
  local tmp; tmp=$(mktemp -d "$REGISTRY_WORK/fetch.XXXXXX")
  local args=(-B -q -Dstyle.color=never)
  [ -n "${MAVEN_REPO_LOCAL:-}" ] && args+=("-Dmaven.repo.local=$MAVEN_REPO_LOCAL")
  log "fetching $ARTIFACT (~140 MB) from Maven Central"
  # Full plugin coordinates: the default dependency plugin (2.x) cannot run copy without a pom.
  if ! mvn "${args[@]}" org.apache.maven.plugins:maven-dependency-plugin:3.8.1:copy \
      "-Dartifact=$ARTIFACT" "-DoutputDirectory=$tmp" >&2; then
    rm -rf "$tmp"
    die "mvn could not fetch $ARTIFACT"
  fi
  mkdir -p "$tmp/dist"
  tar -xzf "$tmp"/apicurio-registry-app-*-all.tar.gz -C "$tmp/dist"
  [ -f "$tmp/dist/apicurio-registry-app-$APICURIO_VERSION-runner.jar" ] \
    || { rm -rf "$tmp"; die "unexpected layout: no runner jar in the distribution"; }
  rm -rf "$DIST"
  mv "$tmp/dist" "$DIST"
  rm -rf "$tmp"
  log "unpacked into $DIST ($(du -sh "$DIST" | cut -f1))"
}

cmd_start() {
  local pid
  if pid=$(running_pid); then
    log "already running (pid $pid) at $(base_url)"
    return
  fi
  command -v "$JAVA" >/dev/null || die "java not found (Debian/Ubuntu: apt-get install -y openjdk-17-jre-headless)"
  cmd_fetch
  mkdir -p "$REGISTRY_WORK"
  local port=${REGISTRY_PORT:-$(free_port)}
  # Readiness is probed over HTTP, so another server already on the port must not pass for ours.
  if (exec 3<>"/dev/tcp/127.0.0.1/$port") 2>/dev/null; then
    die "port $port on 127.0.0.1 is already in use"
  fi
  echo "$port" > "$PORTFILE"
  local started; started=$(date +%s%N)
  # shellcheck disable=SC2086 # REGISTRY_JAVA_OPTS is a list of options
  nohup "$JAVA" $REGISTRY_JAVA_OPTS \
    -Dquarkus.http.host=127.0.0.1 -Dquarkus.http.port="$port" \
    -Dquarkus.log.console.color=false \
    -jar "$RUNNER" > "$LOGFILE" 2>&1 < /dev/null &
  pid=$!
  echo "$pid" > "$PIDFILE"
  local url="http://127.0.0.1:$port" deadline=$(( $(date +%s) + REGISTRY_START_TIMEOUT ))
  until http_ok "$url$CCOMPAT_PATH/subjects"; do
    if ! kill -0 "$pid" 2>/dev/null; then
      rm -f "$PIDFILE"
      tail -n 40 "$LOGFILE" >&2 || true
      die "registry exited during start-up; log: $LOGFILE"
    fi
    if [ "$(date +%s)" -ge "$deadline" ]; then
      tail -n 40 "$LOGFILE" >&2 || true
      cmd_stop
      die "not ready after ${REGISTRY_START_TIMEOUT}s; log: $LOGFILE"
    fi
    sleep 0.3
  done
  local ms=$(( ($(date +%s%N) - started) / 1000000 ))
  log "Apicurio Registry $APICURIO_VERSION ready in ${ms} ms (pid $pid, log $LOGFILE)"
  log "SCHEMA_REGISTRY_URL=$url$CCOMPAT_PATH"
}

cmd_stop() {
  local pid
  if ! pid=$(running_pid); then
    rm -f "$PIDFILE"
    log "not running"
    return
  fi
  kill -TERM "$pid"
  local deadline=$(( $(date +%s) + REGISTRY_STOP_TIMEOUT ))
  while kill -0 "$pid" 2>/dev/null; do
    if [ "$(date +%s)" -ge "$deadline" ]; then
      log "pid $pid still alive after ${REGISTRY_STOP_TIMEOUT}s, sending SIGKILL"
      kill -KILL "$pid" 2>/dev/null || true
      break
    fi
    sleep 0.2
  done
  rm -f "$PIDFILE"
  log "stopped (pid $pid)"
}

cmd_status() {
  local pid
  if pid=$(running_pid); then
    echo "running pid=$pid url=$(base_url) rss_kb=$(ps -o rss= -p "$pid" | tr -d ' ')"
  else
    echo "stopped"
    return 1
  fi
}

case "${1:-}" in
  fetch) cmd_fetch ;;
  start) cmd_start ;;
  stop) cmd_stop ;;
  url) running_pid >/dev/null || die "not running (run: $0 start)"; base_url ;;
  status) cmd_status ;;
  logs) cat "$LOGFILE" ;;
  *) echo "usage: $0 fetch|start|stop|url|status|logs" >&2; exit 2 ;;
esac
