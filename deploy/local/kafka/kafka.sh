#!/usr/bin/env bash
# kafka.sh — a single-node Apache Kafka 4.x (KRaft, combined broker+controller) on 127.0.0.1,
# run from Maven Central jars (no release tarball, no Docker). Owned by the project; used by
# deploy/local/infra.sh, `make infra-up` and .ci/run.
#
#   kafka.sh fetch        download the broker's runtime classpath into $KAFKA_LIB (mvn; idempotent)
#   kafka.sh start        write config, format storage (first start only), start, wait until ready
#   kafka.sh stop         SIGTERM (controlled shutdown), SIGKILL after $KAFKA_STOP_TIMEOUT s
#   kafka.sh status       "running pid N 127.0.0.1:PORT" (exit 0) or "stopped" (exit 1)
#   kafka.sh bootstrap    print 127.0.0.1:PORT for clients (KAFKA_BROKERS)
#   kafka.sh logs [N|-f]  last N lines (default 100) of the broker log, or follow it
#   kafka.sh clean        stop and delete the run dir (data, config, logs); the jars stay
#
# Data survives stop/start (same ports, same cluster); `clean` starts over.
#
# Environment (all optional):
#   KAFKA_VERSION         default 4.4.0 (any 4.x on Maven Central; needs Java 17+)
#   KAFKA_LIB             jar dir, default deploy/local/kafka/lib-$KAFKA_VERSION (gitignored)
#   KAFKA_RUN_DIR         config/data/logs/pid, default deploy/local/.run/kafka (gitignored)
#   KAFKA_PORT            client port; default: a free port picked at first start, then reused
#   KAFKA_CONTROLLER_PORT controller port; same rule
#   KAFKA_NUM_PARTITIONS  partitions of auto-created topics, default 3
#   KAFKA_HEAP_OPTS       default "-Xms256m -Xmx1g"
#   KAFKA_START_TIMEOUT   seconds to wait for readiness, default 120
#   KAFKA_STOP_TIMEOUT    seconds to wait for a controlled shutdown, default 30
#   KAFKA_EXTRA_CONFIG    a properties file appended to server.properties (later keys win), e.g.
#                         an extra SASL_SSL listener with its keystore and JAAS settings; default none
#   KAFKA_FORMAT_ARGS     extra arguments of the first start's storage format, split on spaces, e.g.
#                         --add-scram SCRAM-SHA-512=[name=loyalty,password=secret]; default none
#   MAVEN_REPO_LOCAL      passed to mvn as -Dmaven.repo.local (a CI cache)
#   JAVA_HOME             java to use; default: java on PATH
set -euo pipefail

HERE=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
KAFKA_VERSION=${KAFKA_VERSION:-4.4.0}
KAFKA_LIB=${KAFKA_LIB:-$HERE/lib-$KAFKA_VERSION}
KAFKA_RUN_DIR=${KAFKA_RUN_DIR:-$(dirname "$HERE")/.run/kafka}
KAFKA_NUM_PARTITIONS=${KAFKA_NUM_PARTITIONS:-3}
KAFKA_HEAP_OPTS=${KAFKA_HEAP_OPTS:--Xms256m -Xmx1g}
KAFKA_START_TIMEOUT=${KAFKA_START_TIMEOUT:-120}
KAFKA_STOP_TIMEOUT=${KAFKA_STOP_TIMEOUT:-30}
JAVA=${JAVA_HOME:+$JAVA_HOME/bin/}java
DEP_PLUGIN=org.apache.maven.plugins:maven-dependency-plugin:3.8.1

PIDFILE=$KAFKA_RUN_DIR/kafka.pid
PORTFILE=$KAFKA_RUN_DIR/ports
CONFIG=$KAFKA_RUN_DIR/server.properties
LOGDIR=$KAFKA_RUN_DIR/logs
DATADIR=$KAFKA_RUN_DIR/data
LOGFILE=$LOGDIR/server.log

die() { echo "kafka.sh: $*" >&2; exit 1; }
say() { echo "kafka.sh: $*" >&2; }

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

java_major() { # prints the major version of $JAVA, e.g. 17
  "$JAVA" -version 2>&1 | awk -F'"' '/version/ { split($2, v, "."); print (v[1] == "1" ? v[2] : v[1]); exit }'
}

check_java() {
  command -v "$JAVA" >/dev/null 2>&1 || die "java not found; Kafka 4.x needs Java 17+ (Debian: apt-get install -y default-jre-headless)"
  local m; m=$(java_major)
  [ "${m:-0}" -ge 17 ] 2>/dev/null || die "java $m found at $(command -v "$JAVA"); Kafka 4.x needs Java 17+"
}

have_jars() { [ -f "$KAFKA_LIB/.complete" ] && [ -f "$KAFKA_LIB/kafka_2.13-$KAFKA_VERSION.jar" ]; }

cmd_fetch() {
  if have_jars; then
    echo "kafka $KAFKA_VERSION jars already in $KAFKA_LIB ($(ls "$KAFKA_LIB"/*.jar | wc -l) jars)"
    return 0
  fi
  command -v mvn >/dev/null 2>&1 || die "mvn not found (Debian: apt-get install -y maven)"
  local tmp args=(-B -q -Dstyle.color=never -f "$HERE/pom.xml" "-Dkafka.version=$KAFKA_VERSION")
  [ -n "${MAVEN_REPO_LOCAL:-}" ] && args+=("-Dmaven.repo.local=$MAVEN_REPO_LOCAL")
  tmp="$KAFKA_LIB.tmp.$$"
  rm -rf "$tmp"
  # Full plugin coordinates: no plugin-prefix lookup, same plugin version everywhere.
  # (the sed drops the colour escapes that Maven 3.8 prints even in batch mode)
  if ! mvn "${args[@]}" "$DEP_PLUGIN:copy-dependencies" -DoutputDirectory="$tmp" -DincludeScope=runtime 2>&1 |
      sed 's/\x1b\[[0-9;]*m//g'; then
    rm -rf "$tmp"
    die "mvn could not fetch Kafka $KAFKA_VERSION (is it on Maven Central? override KAFKA_VERSION)"
  fi
  [ -f "$tmp/kafka_2.13-$KAFKA_VERSION.jar" ] || { rm -rf "$tmp"; die "kafka_2.13-$KAFKA_VERSION.jar missing after fetch"; }
  touch "$tmp/.complete"
  rm -rf "$KAFKA_LIB"
  mv "$tmp" "$KAFKA_LIB"
  echo "fetched $(ls "$KAFKA_LIB"/*.jar | wc -l) jars ($(du -sh "$KAFKA_LIB" | cut -f1)) into $KAFKA_LIB"
}

# pid of our broker if it runs (the pid file's process, and it is a java running our config)
broker_pid() {
  [ -f "$PIDFILE" ] || return 1
  local pid; pid=$(cat "$PIDFILE")
  [ -n "$pid" ] && kill -0 "$pid" 2>/dev/null || return 1
  tr '\0' ' ' < "/proc/$pid/cmdline" 2>/dev/null | grep -qF "$CONFIG" || return 1
  echo "$pid"
}

load_ports() {
  # explicit env wins over the remembered ports
  local want_port=${KAFKA_PORT:-} want_cport=${KAFKA_CONTROLLER_PORT:-}
  if [ -f "$PORTFILE" ]; then
    # shellcheck disable=SC1090
    . "$PORTFILE"
  fi
  KAFKA_PORT=${want_port:-${KAFKA_PORT:-}}
  KAFKA_CONTROLLER_PORT=${want_cport:-${KAFKA_CONTROLLER_PORT:-}}
}

write_config() {
  mkdir -p "$KAFKA_RUN_DIR" "$LOGDIR" "$DATADIR"
  load_ports
  if [ -z "$KAFKA_PORT" ]; then KAFKA_PORT=$(free_port); fi
  if [ -z "$KAFKA_CONTROLLER_PORT" ]; then KAFKA_CONTROLLER_PORT=$(free_port); fi
  while [ "$KAFKA_CONTROLLER_PORT" = "$KAFKA_PORT" ]; do KAFKA_CONTROLLER_PORT=$(free_port); done
  local p
  for p in "$KAFKA_PORT" "$KAFKA_CONTROLLER_PORT"; do
    port_in_use "$p" && die "port $p on 127.0.0.1 is taken by another process; set KAFKA_PORT/KAFKA_CONTROLLER_PORT or run: $0 clean"
  done
  printf 'KAFKA_PORT=%s\nKAFKA_CONTROLLER_PORT=%s\n' "$KAFKA_PORT" "$KAFKA_CONTROLLER_PORT" > "$PORTFILE"

  # Combined broker+controller, dynamic KRaft quorum (formatted with --standalone) like the
  # 4.x config/server.properties, bound to loopback, tuned for tests on a small machine.
  cat > "$CONFIG" <<EOF
# written by deploy/local/kafka/kafka.sh — edits are overwritten at the next start
process.roles=broker,controller
node.id=1
controller.quorum.bootstrap.servers=127.0.0.1:$KAFKA_CONTROLLER_PORT
listeners=PLAINTEXT://127.0.0.1:$KAFKA_PORT,CONTROLLER://127.0.0.1:$KAFKA_CONTROLLER_PORT
advertised.listeners=PLAINTEXT://127.0.0.1:$KAFKA_PORT,CONTROLLER://127.0.0.1:$KAFKA_CONTROLLER_PORT
inter.broker.listener.name=PLAINTEXT
controller.listener.names=CONTROLLER
listener.security.protocol.map=CONTROLLER:PLAINTEXT,PLAINTEXT:PLAINTEXT
log.dirs=$DATADIR

# topics: our code creates its topics explicitly; auto-creation stays on for convenience
auto.create.topics.enable=true
delete.topic.enable=true
num.partitions=$KAFKA_NUM_PARTITIONS
default.replication.factor=1
min.insync.replicas=1

# single node: every internal topic needs RF 1 / min ISR 1; few partitions = fast creation
offsets.topic.replication.factor=1
offsets.topic.num.partitions=1
transaction.state.log.replication.factor=1
transaction.state.log.min.isr=1
transaction.state.log.num.partitions=1
share.coordinator.state.topic.replication.factor=1
share.coordinator.state.topic.min.isr=1
share.coordinator.state.topic.num.partitions=1

# test speed: no delay before the first rebalance; allow short session timeouts in tests
group.initial.rebalance.delay.ms=0
group.min.session.timeout.ms=1000

# 2-core machine
num.network.threads=2
num.io.threads=4
num.recovery.threads.per.data.dir=1
log.retention.hours=24
log.segment.bytes=67108864
EOF
  if [ -n "${KAFKA_EXTRA_CONFIG:-}" ]; then
    [ -r "$KAFKA_EXTRA_CONFIG" ] || die "KAFKA_EXTRA_CONFIG=$KAFKA_EXTRA_CONFIG is not a readable file"
    { echo; echo "# appended from KAFKA_EXTRA_CONFIG=$KAFKA_EXTRA_CONFIG"; cat "$KAFKA_EXTRA_CONFIG"; } >> "$CONFIG"
  fi

  # log4j2 .properties: parsed by log4j-core alone (no YAML jar needed)
  cat > "$KAFKA_RUN_DIR/log4j2.properties" <<EOF
status = warn
name = kafka-local
appender.file.type = RollingFile
appender.file.name = FILE
appender.file.fileName = $LOGFILE
appender.file.filePattern = $LOGFILE.%i
appender.file.layout.type = PatternLayout
appender.file.layout.pattern = [%d] %p %m (%c)%n
appender.file.policies.type = Policies
appender.file.policies.size.type = SizeBasedTriggeringPolicy
appender.file.policies.size.size = 50MB
appender.file.strategy.type = DefaultRolloverStrategy
appender.file.strategy.max = 3
rootLogger.level = info
rootLogger.appenderRef.file.ref = FILE
logger.request.name = kafka.request.logger
logger.request.level = warn
logger.statechange.name = state.change.logger
logger.statechange.level = warn
logger.controller.name = org.apache.kafka.controller
logger.controller.level = info
EOF
}

# JCMD=(java ... main args...) with Kafka's JVM flags (KAFKA_JVM_PERFORMANCE_OPTS of kafka-run-class.sh)
jvm_cmd() { # heap-opts main-class args...
  local heap=$1; shift
  # shellcheck disable=SC2206 # heap options are meant to split
  JCMD=("$JAVA" $heap -server -XX:+UseG1GC -XX:MaxGCPauseMillis=20 -XX:InitiatingHeapOccupancyPercent=35
    -XX:+ExplicitGCInvokesConcurrent -Djava.awt.headless=true
    "-Dkafka.logs.dir=$LOGDIR" "-Dlog4j2.configurationFile=$KAFKA_RUN_DIR/log4j2.properties"
    -cp "$KAFKA_LIB/*" "$@")
}

# a Kafka cluster id: 16 random bytes, base64url without padding (what `kafka-storage.sh random-uuid`
# prints); Kafka rejects ids starting with '-'
new_cluster_id() {
  local id
  while :; do
    id=$(head -c 16 /dev/urandom | base64 | tr '+/' '-_' | tr -d '=\n')
    case $id in -*) ;; *) echo "$id"; return ;; esac
  done
}

format_storage() {
  [ -f "$DATADIR/meta.properties" ] && return 0
  local cid; cid=$(new_cluster_id)
  echo "$cid" > "$KAFKA_RUN_DIR/cluster.id"
  # kafka.tools.StorageTool = bin/kafka-storage.sh. --standalone: this node is the single
  # initial voter of the dynamic (KIP-853) controller quorum.
  # shellcheck disable=SC2086 # KAFKA_FORMAT_ARGS is a list of arguments by design
  jvm_cmd "-Xmx256m -XX:TieredStopAtLevel=1" kafka.tools.StorageTool format --standalone \
    -t "$cid" -c "$CONFIG" ${KAFKA_FORMAT_ARGS:-}
  "${JCMD[@]}" > "$KAFKA_RUN_DIR/format.out" 2>&1 || { cat "$KAFKA_RUN_DIR/format.out" >&2; die "storage format failed"; }
}

# ---- group-coordinator warm-up -------------------------------------------------------------
# A client's first consumer-group join after a fresh start otherwise meets "coordinator not
# available / loading" while __consumer_offsets is created or loaded, and kafka-go then backs
# off JoinGroupBackoff (5 s). Two raw Kafka requests over bash's /dev/tcp make the broker do
# that work now: FindCoordinator v1 (auto-creates __consumer_offsets) and OffsetFetch v2 for an
# unknown group (answers COORDINATOR_LOAD_IN_PROGRESS until the partition is loaded).
hx16() { printf '\\x%02x\\x%02x' $(( ($1 >> 8) & 255 )) $(( $1 & 255 )); }
hx32() { hx16 $(( ($1 >> 16) & 65535 )); hx16 $(( $1 & 65535 )); }
hxstr() { hx16 ${#1}; printf '%s' "$1"; }
# kafka_error API_KEY VERSION BODY: send one request, print the int16 error code found at byte
# 12 of the response (after size, correlation id and one int32 field) — true for both requests
kafka_error() {
  local hdr msg len
  hdr="$(hx16 "$1")$(hx16 "$2")$(hx32 1)$(hxstr kafka.sh)"
  msg="$hdr$3"
  len=$(printf "$msg" | wc -c)
  (
    exec 3<>"/dev/tcp/127.0.0.1/$KAFKA_PORT" || exit 1
    # shellcheck disable=SC2059 # the message is a printf format of \x escapes by design
    printf "$(hx32 "$len")$msg" >&3
    timeout 5 head -c 14 <&3 | od -An -tu1 | awk '{ n = split($0, a); for (i = 1; i <= n; i++) b[c++] = a[i] } END { if (c >= 14) print b[12] * 256 + b[13]; else print -1 }'
  ) 2>/dev/null || echo -1
}
warm_up_groups() {
  local g=kafka-sh-warmup deadline=$(( $(date +%s) + 30 )) e1=-1 e2=-1
  while [ "$(date +%s)" -lt "$deadline" ]; do
    e1=$(kafka_error 10 1 "$(hxstr $g)\\x00")        # FindCoordinator v1: key, key_type=GROUP
    if [ "$e1" = 0 ]; then
      e2=$(kafka_error 9 2 "$(hxstr $g)$(hx32 -1)")   # OffsetFetch v2: group, topics=null
      [ "$e2" = 0 ] && return 0
    fi
    sleep 0.2
  done
  say "warning: group coordinator not ready after 30s (FindCoordinator error $e1, OffsetFetch error $e2); first group joins may be slow"
}

cmd_start() {
  mkdir -p "$KAFKA_RUN_DIR"
  exec 9>"$KAFKA_RUN_DIR/.lock"
  flock -w "$KAFKA_START_TIMEOUT" 9 || die "another kafka.sh holds $KAFKA_RUN_DIR/.lock"
  local pid
  if pid=$(broker_pid); then
    echo "kafka already running (pid $pid) at $(cmd_bootstrap)"
    return 0
  fi
  rm -f "$PIDFILE"
  have_jars || die "no Kafka $KAFKA_VERSION jars in $KAFKA_LIB; run: $0 fetch"
  check_java
  local t0; t0=$(date +%s%3N)
  write_config
  format_storage
  touch "$LOGFILE"
  local from; from=$(( $(stat -c %s "$LOGFILE") + 1 ))   # only look at what this start logs
  jvm_cmd "$KAFKA_HEAP_OPTS" kafka.Kafka "$CONFIG"
  # setsid: own session, so a Ctrl-C in the starting shell does not reach the broker;
  # exec'd in place, so $! is the JVM itself.
  setsid "${JCMD[@]}" > "$KAFKA_RUN_DIR/kafka.out" 2>&1 < /dev/null 9>&- &
  pid=$!
  echo "$pid" > "$PIDFILE"

  # Ready = "Kafka Server started" (KafkaRaftServer.startup) logged by this start, and the
  # client port accepting connections.
  local deadline=$(( $(date +%s) + KAFKA_START_TIMEOUT ))
  until tail -c "+$from" "$LOGFILE" 2>/dev/null | grep -q "Kafka Server started" && port_in_use "$KAFKA_PORT"; do
    if ! kill -0 "$pid" 2>/dev/null; then
      tail -n 40 "$KAFKA_RUN_DIR/kafka.out" "$LOGFILE" >&2 || true
      rm -f "$PIDFILE"
      die "broker exited during start-up (logs above; full: $LOGFILE)"
    fi
    if [ "$(date +%s)" -ge "$deadline" ]; then
      tail -n 40 "$LOGFILE" >&2 || true
      cmd_stop >&2
      die "broker not ready after ${KAFKA_START_TIMEOUT}s"
    fi
    sleep 0.2
  done
  warm_up_groups
  local ms=$(( $(date +%s%3N) - t0 ))
  echo "kafka $KAFKA_VERSION ready in $((ms / 1000)).$(( (ms % 1000) / 100 ))s: pid $pid, bootstrap 127.0.0.1:$KAFKA_PORT, run dir $KAFKA_RUN_DIR"
}

cmd_bootstrap() {
  [ -f "$PORTFILE" ] || die "not configured yet; run: $0 start"
  load_ports
  echo "127.0.0.1:$KAFKA_PORT"
}

cmd_stop() {
  local pid
  if ! pid=$(broker_pid); then
    rm -f "$PIDFILE"
    echo "kafka not running"
    return 0
  fi
  kill -TERM "$pid" 2>/dev/null || true   # controlled shutdown
  local deadline=$(( $(date +%s) + KAFKA_STOP_TIMEOUT ))
  while kill -0 "$pid" 2>/dev/null && [ "$(date +%s)" -lt "$deadline" ]; do sleep 0.2; done
  if kill -0 "$pid" 2>/dev/null; then
    kill -KILL "$pid" 2>/dev/null || true
    echo "kafka pid $pid did not stop within ${KAFKA_STOP_TIMEOUT}s: killed"
  else
    echo "kafka stopped (pid $pid)"
  fi
  rm -f "$PIDFILE"
}

cmd_status() {
  local pid
  if pid=$(broker_pid); then
    echo "kafka $KAFKA_VERSION running pid $pid $(cmd_bootstrap)"
  else
    echo "kafka stopped"
    return 1
  fi
}

cmd_logs() {
  [ -f "$LOGFILE" ] || die "no log yet at $LOGFILE"
  if [ "${1:-}" = "-f" ]; then exec tail -F "$LOGFILE"; fi
  tail -n "${1:-100}" "$LOGFILE"
}

cmd_clean() {
  cmd_stop
  rm -rf "$KAFKA_RUN_DIR"
  echo "removed $KAFKA_RUN_DIR (jars kept in $KAFKA_LIB)"
}

case "${1:-}" in
  fetch) cmd_fetch ;;
  start) cmd_start ;;
  stop) cmd_stop ;;
  status) cmd_status ;;
  bootstrap) cmd_bootstrap ;;
  logs) shift; cmd_logs "$@" ;;
  clean) cmd_clean ;;
  *) sed -n '2,31p' "$0" | sed 's/^# \{0,1\}//'; exit 2 ;;
esac
