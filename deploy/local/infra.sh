#!/usr/bin/env bash
# infra.sh — the project's real local infrastructure: Apache Kafka 4.x (KRaft, from Maven
# Central jars) and Debian's redis-server, both on 127.0.0.1 with free ports.
#
#   infra.sh up       fetch Kafka jars if needed, start Kafka and Redis, write deploy/local/.run/env
#                     and print the export lines
#   infra.sh down     stop both (data is kept; see kafka.sh clean / redis.sh clean)
#   infra.sh env      print  export KAFKA_BROKERS=127.0.0.1:PORT / export REDIS_ADDR=127.0.0.1:PORT
#                     usage: eval "$(deploy/local/infra.sh env)"
#   infra.sh status   status of both; exit 1 unless both run
#
# Settings: see kafka/kafka.sh and redis.sh (KAFKA_VERSION, KAFKA_RUN_DIR, REDIS_APPENDONLY, ...).
set -euo pipefail

HERE=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
KAFKA_SH=$HERE/kafka/kafka.sh
REDIS_SH=$HERE/redis.sh
ENV_FILE=$HERE/.run/env

env_lines() {
  echo "export KAFKA_BROKERS=$("$KAFKA_SH" bootstrap)"
  echo "export REDIS_ADDR=$("$REDIS_SH" addr)"
}

cmd_up() {
  "$KAFKA_SH" fetch >&2
  "$REDIS_SH" start >&2
  "$KAFKA_SH" start >&2
  mkdir -p "$(dirname "$ENV_FILE")"
  env_lines > "$ENV_FILE"
  cat "$ENV_FILE"
  echo "# written to $ENV_FILE; load with: eval \"\$($0 env)\"" >&2
}

cmd_down() {
  local rc=0
  "$KAFKA_SH" stop || rc=1
  "$REDIS_SH" stop || rc=1
  rm -f "$ENV_FILE"
  return $rc
}

cmd_env() {
  "$KAFKA_SH" status >/dev/null 2>&1 || { echo "infra.sh: kafka is not running; run: $0 up" >&2; exit 1; }
  "$REDIS_SH" status >/dev/null 2>&1 || { echo "infra.sh: redis is not running; run: $0 up" >&2; exit 1; }
  env_lines
}

cmd_status() {
  local rc=0
  "$KAFKA_SH" status || rc=1
  "$REDIS_SH" status || rc=1
  return $rc
}

case "${1:-}" in
  up) cmd_up ;;
  down) cmd_down ;;
  env) cmd_env ;;
  status) cmd_status ;;
  *) sed -n '2,13p' "$0" | sed 's/^# \{0,1\}//'; exit 2 ;;
esac
