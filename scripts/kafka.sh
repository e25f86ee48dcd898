#!/usr/bin/env bash
# Runs Apache Kafka 4.4 itself as a reference broker on loopback, for differential tests and
# benchmarks, and runs Kafka's command-line tools against any broker (Kafka or Strom).
#
#   scripts/kafka.sh fetch                      # jars from Maven Central into the cache (once)
#   scripts/kafka.sh start [--nodes 1|3] [--port P] [--controller-port C] [--data-dir D]
#                          [--set key=value]... # prints the bootstrap servers on stdout
#   scripts/kafka.sh stop [--data-dir D]
#   scripts/kafka.sh status [--data-dir D]      # prints the bootstrap servers if running
#   scripts/kafka.sh tool NAME ARGS...          # e.g. tool kafka-topics --bootstrap-server B --list
#   scripts/kafka.sh tools                      # the tool names and their Java main classes
#
# Needs Java 17+ (java) and, for fetch only, Maven (mvn). See docs/kafka-reference.md.
# Environment: KAFKA_REF_HOME (cache, default ~/.cache/strom/kafka-4.4.0), KAFKA_REF_HEAP_OPTS,
# KAFKA_REF_JVM_OPTS, KAFKA_REF_TOOL_OPTS, KAFKA_REF_START_TIMEOUT (s, default 120),
# KAFKA_REF_STOP_TIMEOUT (s, default 30), KAFKA_REF_FETCH_TIMEOUT (s, default 900).
set -euo pipefail

script_dir="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
pom="$script_dir/kafka/pom.xml"
home="${KAFKA_REF_HOME:-$HOME/.cache/strom/kafka-4.4.0}"
libs="$home/libs"
tools_log4j="$home/config/tools-log4j2.properties"
default_data="$home/data"
marker_name=".strom-kafka-ref"   # marks a data dir as ours, so start may wipe it
start_timeout="${KAFKA_REF_START_TIMEOUT:-120}"
stop_timeout="${KAFKA_REF_STOP_TIMEOUT:-30}"
fetch_timeout="${KAFKA_REF_FETCH_TIMEOUT:-900}"
heap_opts="${KAFKA_REF_HEAP_OPTS:--Xms512m -Xmx512m}"
tool_opts="${KAFKA_REF_TOOL_OPTS:--Xmx512m}"

log() { echo "kafka.sh: $*" >&2; }
die() { echo "kafka.sh: error: $*" >&2; exit 1; }

# ---------------------------------------------------------------------------------------------
# Tool names (as in Kafka's bin/ directory, without .sh) -> Java main classes in Kafka 4.4.
tool_class() {
  case "${1%.sh}" in
    kafka-topics)                    echo org.apache.kafka.tools.TopicCommand ;;
    kafka-configs)                   echo org.apache.kafka.tools.ConfigCommand ;;
    kafka-console-producer)          echo org.apache.kafka.tools.ConsoleProducer ;;
    kafka-console-consumer)          echo org.apache.kafka.tools.consumer.ConsoleConsumer ;;
    kafka-console-share-consumer)    echo org.apache.kafka.tools.consumer.ConsoleShareConsumer ;;
    kafka-consumer-groups)           echo org.apache.kafka.tools.consumer.group.ConsumerGroupCommand ;;
    kafka-share-groups)              echo org.apache.kafka.tools.consumer.group.ShareGroupCommand ;;
    kafka-streams-groups)            echo org.apache.kafka.tools.streams.StreamsGroupCommand ;;
    kafka-groups)                    echo org.apache.kafka.tools.GroupsCommand ;;
    kafka-get-offsets)               echo org.apache.kafka.tools.GetOffsetShell ;;
    kafka-delete-records)            echo org.apache.kafka.tools.DeleteRecordsCommand ;;
    kafka-transactions)              echo org.apache.kafka.tools.TransactionsCommand ;;
    kafka-producer-perf-test)        echo org.apache.kafka.tools.ProducerPerformance ;;
    kafka-consumer-perf-test)        echo org.apache.kafka.tools.ConsumerPerformance ;;
    kafka-share-consumer-perf-test)  echo org.apache.kafka.tools.ShareConsumerPerformance ;;
    kafka-verifiable-producer)       echo org.apache.kafka.tools.VerifiableProducer ;;
    kafka-verifiable-consumer)       echo org.apache.kafka.tools.VerifiableConsumer ;;
    kafka-verifiable-share-consumer) echo org.apache.kafka.tools.VerifiableShareConsumer ;;
    kafka-features)                  echo org.apache.kafka.tools.FeatureCommand ;;
    kafka-metadata-quorum)           echo org.apache.kafka.tools.MetadataQuorumCommand ;;
    kafka-leader-election)           echo org.apache.kafka.tools.LeaderElectionCommand ;;
    kafka-reassign-partitions)       echo org.apache.kafka.tools.reassign.ReassignPartitionsCommand ;;
    kafka-broker-api-versions)       echo org.apache.kafka.tools.BrokerApiVersionsCommand ;;
    kafka-acls)                      echo org.apache.kafka.tools.AclCommand ;;
    kafka-log-dirs)                  echo org.apache.kafka.tools.LogDirsCommand ;;
    kafka-dump-log)                  echo org.apache.kafka.tools.DumpLogSegments ;;
    kafka-e2e-latency)               echo org.apache.kafka.tools.EndToEndLatency ;;
    kafka-client-metrics)            echo org.apache.kafka.tools.ClientMetricsCommand ;;
    kafka-delegation-tokens)         echo org.apache.kafka.tools.DelegationTokenCommand ;;
    kafka-cluster)                   echo org.apache.kafka.tools.ClusterTool ;;
    kafka-replica-verification)      echo org.apache.kafka.tools.ReplicaVerificationTool ;;
    kafka-jmx)                       echo org.apache.kafka.tools.JmxTool ;;
    kafka-storage)                   echo kafka.tools.StorageTool ;;
    kafka-server-start)              echo kafka.Kafka ;;
    *.*)                             echo "$1" ;;   # a fully qualified class name as it is
    *)                               return 1 ;;
  esac
}
tool_names="kafka-topics kafka-configs kafka-console-producer kafka-console-consumer
kafka-console-share-consumer kafka-consumer-groups kafka-share-groups kafka-streams-groups
kafka-groups kafka-get-offsets kafka-delete-records kafka-transactions kafka-producer-perf-test
kafka-consumer-perf-test kafka-share-consumer-perf-test kafka-verifiable-producer
kafka-verifiable-consumer kafka-verifiable-share-consumer kafka-features kafka-metadata-quorum
kafka-leader-election kafka-reassign-partitions kafka-broker-api-versions kafka-acls
kafka-log-dirs kafka-dump-log kafka-e2e-latency kafka-client-metrics kafka-delegation-tokens
kafka-cluster kafka-replica-verification kafka-jmx kafka-storage kafka-server-start"

# ---------------------------------------------------------------------------------------------
need_java() {
  command -v java >/dev/null 2>&1 || die "java not found (Kafka 4.4 needs Java 17 or newer)"
  local v
  v="$(java -XshowSettings:properties -version 2>&1 | awk -F' = ' '/java.specification.version/ {print $2}')"
  [ "${v%%.*}" -ge 17 ] 2>/dev/null || die "java $v found; Kafka 4.4 needs Java 17 or newer"
}

# log4j2 config for the tools: warnings and errors on stderr, so stdout holds only their output.
write_tools_log4j() {
  mkdir -p "$(dirname "$tools_log4j")"
  local tmp="$tools_log4j.$$"
  cat >"$tmp" <<'EOF'
status = warn
appender.stderr.type = Console
appender.stderr.name = STDERR
appender.stderr.target = SYSTEM_ERR
appender.stderr.layout.type = PatternLayout
appender.stderr.layout.pattern = [%d] %p %m (%c)%n
rootLogger.level = warn
rootLogger.appenderRef.stderr.ref = STDERR
EOF
  mv -f "$tmp" "$tools_log4j"
}

pom_sum() { sha256sum "$pom" | cut -d' ' -f1; }

# Copies Kafka's jars and their dependencies into $libs, unless a complete copy made from the
# same pom.xml is already there. Safe to run concurrently (a lock file serializes fetches).
ensure_fetched() {
  need_java
  [ -f "$libs/.complete" ] && [ "$(cat "$libs/.complete")" = "$(pom_sum)" ] && {
    [ -f "$tools_log4j" ] || write_tools_log4j
    return 0
  }
  mkdir -p "$home"
  exec 9>"$home/.fetch.lock"
  flock -w "$fetch_timeout" 9 || die "timed out after ${fetch_timeout}s waiting for another fetch ($home/.fetch.lock)"
  if [ -f "$libs/.complete" ] && [ "$(cat "$libs/.complete")" = "$(pom_sum)" ]; then
    exec 9>&-; write_tools_log4j; return 0
  fi
  command -v mvn >/dev/null 2>&1 || die "mvn not found (Maven is needed once, to fetch Kafka's jars)"
  local tmp="$home/libs.tmp.$$" mlog="$home/fetch.log"
  rm -rf "$tmp"
  log "fetching Kafka 4.4.0 jars into $libs (log: $mlog)"
  if ! timeout "$fetch_timeout" mvn -q -B -f "$pom" dependency:copy-dependencies \
      -DincludeScope=runtime -DoutputDirectory="$tmp" >"$mlog" 2>&1; then
    rm -rf "$tmp"
    tail -n 30 "$mlog" >&2 || true
    die "mvn could not fetch Kafka's jars (see $mlog)"
  fi
  ls "$tmp"/kafka_2.13-*.jar "$tmp"/kafka-tools-*.jar >/dev/null 2>&1 \
    || { rm -rf "$tmp"; die "mvn finished but the Kafka jars are missing from its output"; }
  pom_sum >"$tmp/.complete"
  rm -rf "$libs"
  mv "$tmp" "$libs"
  write_tools_log4j
  exec 9>&-
  log "fetched $(find "$libs" -name '*.jar' | wc -l) jars ($(du -sh "$libs" | cut -f1))"
}

# ---------------------------------------------------------------------------------------------
port_in_use() { (exec 3<>"/dev/tcp/127.0.0.1/$1") 2>/dev/null; }

# Prints the first of 20 random tries at a block of $1 consecutive free ports, avoiding the
# ports listed in $2 (space separated). Picks from 20000-31999, below Linux's ephemeral range.
free_block() {
  local n="$1" avoid=" ${2:-} " base i ok
  for _ in $(seq 1 20); do
    base=$((20000 + RANDOM % 12000))
    ok=1
    for ((i = 0; i < n; i++)); do
      if [[ "$avoid" == *" $((base + i)) "* ]] || port_in_use $((base + i)); then ok=0; break; fi
    done
    [ "$ok" = 1 ] && { echo "$base"; return 0; }
  done
  return 1
}

# A Kafka Uuid as text: 16 random bytes in URL-safe base64 without padding, not starting with '-'.
random_uuid() {
  local u
  while :; do
    u="$(head -c 16 /dev/urandom | base64 | tr '+/' '-_' | cut -c1-22)"
    [[ "$u" == -* || "$u" == AAAAAAAAAAAAAAAAAAAAA* ]] || { echo "$u"; return; }
  done
}

abs_path() { mkdir -p "$1" && (cd "$1" && pwd); }

# The pids in the data dir's pid file that are still our Kafka processes for that data dir.
live_pids() {
  local dir="$1" pid
  [ -f "$dir/kafka.pid" ] || return 0
  while read -r pid; do
    if [ -z "$pid" ] || [ ! -r "/proc/$pid/cmdline" ]; then continue; fi
    tr '\0' ' ' <"/proc/$pid/cmdline" | grep -q "kafka.Kafka $dir/" && echo "$pid"
  done <"$dir/kafka.pid"
  return 0
}

node_logs_tail() {
  local dir="$1" f
  for f in "$dir"/node-*/server.log; do
    [ -f "$f" ] || continue
    echo "---- last lines of $f" >&2
    tail -n 25 "$f" >&2
  done
}

# SIGTERM, then SIGKILL after $stop_timeout seconds; waits until they are gone.
# shellcheck disable=SC2086  # the pid lists are meant to split into words
kill_pids() {
  local pids="$*" deadline p alive
  [ -n "$pids" ] || return 0
  kill -TERM $pids 2>/dev/null || true
  deadline=$((SECONDS + stop_timeout))
  while :; do
    alive=""
    for p in $pids; do kill -0 "$p" 2>/dev/null && alive="$alive $p"; done
    [ -z "$alive" ] && return 0
    if [ "$SECONDS" -ge "$deadline" ]; then
      log "still running after ${stop_timeout}s:$alive; sending SIGKILL"
      kill -KILL $alive 2>/dev/null || true
      deadline=$((SECONDS + 10)); stop_timeout=0
      while [ "$SECONDS" -lt "$deadline" ]; do
        alive=""
        for p in $pids; do kill -0 "$p" 2>/dev/null && alive="$alive $p"; done
        [ -z "$alive" ] && return 0
        sleep 0.1
      done
      die "processes$alive did not exit after SIGKILL"
    fi
    sleep 0.1
  done
}

# ---------------------------------------------------------------------------------------------
# While start runs: on a failure, show the nodes' logs and stop whatever it had launched.
starting_data=""
on_start_exit() {
  local rc=$?
  [ "$rc" != 0 ] && [ -n "$starting_data" ] || return 0
  node_logs_tail "$starting_data"
  # shellcheck disable=SC2046
  stop_timeout=5 kill_pids $(live_pids "$starting_data") || true
  rm -f "$starting_data/kafka.pid"
}

cmd_start() {
  local nodes=1 port="" cport="" data="" sets=()
  while [ $# -gt 0 ]; do
    case "$1" in
      --nodes) nodes="${2:?--nodes needs a value}"; shift 2 ;;
      --port) port="${2:?--port needs a value}"; shift 2 ;;
      --controller-port) cport="${2:?--controller-port needs a value}"; shift 2 ;;
      --data-dir) data="${2:?--data-dir needs a value}"; shift 2 ;;
      --set) sets+=("${2:?--set needs key=value}"); shift 2 ;;
      *) die "start: unknown argument '$1'" ;;
    esac
  done
  [[ "$nodes" =~ ^[1-9]$ ]] || die "--nodes must be between 1 and 9 (got '$nodes')"
  ensure_fetched
  data="$(abs_path "${data:-$default_data}")"

  if [ -n "$(live_pids "$data")" ]; then
    die "a Kafka started by this script is already running in $data (run: $0 stop --data-dir $data)"
  fi
  if [ -n "$(ls -A "$data")" ] && [ ! -f "$data/$marker_name" ]; then
    die "$data is not empty and was not made by this script; refusing to wipe it"
  fi
  find "$data" -mindepth 1 -delete
  touch "$data/$marker_name"

  # Ports: clients on port..port+nodes-1, controllers on cport..cport+nodes-1.
  local i p
  if [ -n "$port" ]; then
    [[ "$port" =~ ^[0-9]+$ ]] || die "--port must be a number"
    for ((i = 0; i < nodes; i++)); do
      port_in_use $((port + i)) && die "port $((port + i)) on 127.0.0.1 is in use"
    done
  else
    port="$(free_block "$nodes")" || die "found no $nodes free consecutive ports"
  fi
  local client_ports=""
  for ((i = 0; i < nodes; i++)); do client_ports="$client_ports $((port + i))"; done
  if [ -n "$cport" ]; then
    [[ "$cport" =~ ^[0-9]+$ ]] || die "--controller-port must be a number"
    for ((i = 0; i < nodes; i++)); do
      [[ " $client_ports " == *" $((cport + i)) "* ]] && die "controller port $((cport + i)) clashes with a client port"
      port_in_use $((cport + i)) && die "port $((cport + i)) on 127.0.0.1 is in use"
    done
  else
    cport="$(free_block "$nodes" "$client_ports")" || die "found no $nodes free consecutive ports"
  fi

  local cluster_id bootstrap="" quorum="" initial=""
  cluster_id="$(random_uuid)"
  local rf=$((nodes < 3 ? nodes : 3)) min_isr=$((nodes < 3 ? 1 : 2))
  for ((i = 1; i <= nodes; i++)); do
    bootstrap="${bootstrap:+$bootstrap,}127.0.0.1:$((port + i - 1))"
    quorum="${quorum:+$quorum,}127.0.0.1:$((cport + i - 1))"
    initial="${initial:+$initial,}$i@127.0.0.1:$((cport + i - 1)):$(random_uuid)"
  done

  # log4j2 config for the nodes: everything at INFO and up to stdout, which goes to server.log.
  cat >"$data/log4j2.properties" <<'EOF'
status = warn
appender.out.type = Console
appender.out.name = STDOUT
appender.out.layout.type = PatternLayout
appender.out.layout.pattern = [%d] %p %m (%c)%n
rootLogger.level = info
rootLogger.appenderRef.out.ref = STDOUT
logger.requests.name = kafka.request.logger
logger.requests.level = warn
EOF

  local dir
  for ((i = 1; i <= nodes; i++)); do
    dir="$data/node-$i"
    mkdir -p "$dir/logs"
    {
      echo "# Written by scripts/kafka.sh: node $i of $nodes, combined KRaft broker and controller."
      echo "process.roles=broker,controller"
      echo "node.id=$i"
      echo "listeners=PLAINTEXT://127.0.0.1:$((port + i - 1)),CONTROLLER://127.0.0.1:$((cport + i - 1))"
      echo "advertised.listeners=PLAINTEXT://127.0.0.1:$((port + i - 1)),CONTROLLER://127.0.0.1:$((cport + i - 1))"
      echo "listener.security.protocol.map=PLAINTEXT:PLAINTEXT,CONTROLLER:PLAINTEXT"
      echo "inter.broker.listener.name=PLAINTEXT"
      echo "controller.listener.names=CONTROLLER"
      echo "controller.quorum.bootstrap.servers=$quorum"
      echo "log.dirs=$dir/logs"
      echo "offsets.topic.replication.factor=$rf"
      echo "transaction.state.log.replication.factor=$rf"
      echo "transaction.state.log.min.isr=$min_isr"
      echo "share.coordinator.state.topic.replication.factor=$rf"
      echo "share.coordinator.state.topic.min.isr=$min_isr"
      for p in ${sets[@]+"${sets[@]}"}; do
        [[ "$p" == *=* ]] || die "--set needs key=value (got '$p')"
        echo "$p"
      done
    } >"$dir/server.properties"
  done

  # Format every node's storage (in parallel: one JVM each).
  local fpids=() quorum_flag
  if [ "$nodes" = 1 ]; then quorum_flag=(--standalone); else quorum_flag=(--initial-controllers "$initial"); fi
  for ((i = 1; i <= nodes; i++)); do
    dir="$data/node-$i"
    timeout 120 java -Xmx256m -XX:TieredStopAtLevel=1 -XX:+UseSerialGC -Dlog4j2.configurationFile="$tools_log4j" -cp "$libs/*" \
      kafka.tools.StorageTool format --config "$dir/server.properties" --cluster-id "$cluster_id" \
      "${quorum_flag[@]}" >"$dir/format.log" 2>&1 &
    fpids+=($!)
  done
  for ((i = 1; i <= nodes; i++)); do
    if ! wait "${fpids[$((i - 1))]}"; then
      cat "$data/node-$i/format.log" >&2
      die "formatting node $i's storage failed (log: $data/node-$i/format.log)"
    fi
  done

  # Launch. Each node gets its own session (setsid) so the caller's terminal signals don't reach
  # it; stop uses the pid file. If anything below fails, the nodes started so far are killed.
  local pids=""
  starting_data="$data"
  trap on_start_exit EXIT
  : >"$data/kafka.pid"
  for ((i = 1; i <= nodes; i++)); do
    dir="$data/node-$i"
    # shellcheck disable=SC2086
    setsid java $heap_opts -XX:+UseG1GC -XX:MaxGCPauseMillis=20 -XX:+ExitOnOutOfMemoryError \
      -Djava.awt.headless=true -Dlog4j2.configurationFile="$data/log4j2.properties" \
      ${KAFKA_REF_JVM_OPTS:-} -cp "$libs/*" kafka.Kafka "$dir/server.properties" \
      </dev/null >"$dir/server.log" 2>&1 &
    echo "$!" >>"$data/kafka.pid"
    pids="$pids $!"
    disown "$!"   # no job notices from this shell; the pid file tracks the node
  done
  echo "$bootstrap" >"$data/bootstrap"

  # Ready when every node's client port accepts connections and the cluster metadata lists all
  # nodes as brokers. Each check is bounded; the whole wait has a deadline.
  local deadline=$((SECONDS + start_timeout)) up out n
  while :; do
    for p in $pids; do kill -0 "$p" 2>/dev/null || die "a Kafka node (pid $p) exited during start-up"; done
    [ "$SECONDS" -lt "$deadline" ] || die "Kafka did not become ready within ${start_timeout}s"
    up=0
    for ((i = 0; i < nodes; i++)); do port_in_use $((port + i)) && up=$((up + 1)); done
    if [ "$up" = "$nodes" ]; then
      out="$(timeout 30 java -Xmx256m -XX:TieredStopAtLevel=1 -Dlog4j2.configurationFile="$tools_log4j" \
        -cp "$libs/*" "$(tool_class kafka-broker-api-versions)" --bootstrap-server "$bootstrap" 2>/dev/null || true)"
      n="$(grep -cE '^127\.0\.0\.1:[0-9]+ \(id: [0-9]+' <<<"$out" || true)"
      [ "$n" = "$nodes" ] && break
      sleep 0.5
    else
      sleep 0.2
    fi
  done
  trap - EXIT
  log "Kafka 4.4.0 ready: $nodes node(s), cluster $cluster_id, controllers $quorum, data $data"
  echo "$bootstrap"
}

cmd_stop() {
  local data=""
  while [ $# -gt 0 ]; do
    case "$1" in
      --data-dir) data="${2:?--data-dir needs a value}"; shift 2 ;;
      *) die "stop: unknown argument '$1'" ;;
    esac
  done
  data="${data:-$default_data}"
  [ -d "$data" ] || { log "nothing to stop: $data does not exist"; return 0; }
  data="$(cd "$data" && pwd)"
  local pids
  pids="$(live_pids "$data" | xargs)"
  if [ -z "${pids// /}" ]; then
    log "nothing running in $data"
  else
    # shellcheck disable=SC2086
    kill_pids $pids
    log "stopped ($pids)"
  fi
  rm -f "$data/kafka.pid"
}

cmd_status() {
  local data=""
  while [ $# -gt 0 ]; do
    case "$1" in
      --data-dir) data="${2:?--data-dir needs a value}"; shift 2 ;;
      *) die "status: unknown argument '$1'" ;;
    esac
  done
  data="${data:-$default_data}"
  [ -d "$data" ] || { log "not running: $data does not exist"; return 1; }
  data="$(cd "$data" && pwd)"
  local pids
  pids="$(live_pids "$data" | xargs)"
  [ -n "${pids// /}" ] || { log "not running in $data"; return 1; }
  log "running in $data: pids $pids"
  cat "$data/bootstrap"
}

cmd_tool() {
  [ $# -ge 1 ] || die "tool: name a tool (see: $0 tools)"
  local name="$1" class
  shift
  class="$(tool_class "$name")" || die "unknown tool '$name' (see: $0 tools)"
  ensure_fetched
  # shellcheck disable=SC2086
  exec java $tool_opts -Dlog4j2.configurationFile="$tools_log4j" -cp "$libs/*" "$class" "$@"
}

cmd_tools() {
  local t
  for t in $tool_names; do printf '%-32s %s\n' "$t" "$(tool_class "$t")"; done
}

case "${1:-}" in
  fetch) shift; ensure_fetched; echo "$libs" ;;
  start) shift; cmd_start "$@" ;;
  stop) shift; cmd_stop "$@" ;;
  status) shift; cmd_status "$@" ;;
  tool) shift; cmd_tool "$@" ;;
  tools) cmd_tools ;;
  -h|--help|help) sed -n '2,16p' "$0" | sed 's/^# \{0,1\}//' ;;
  *) die "usage: $0 fetch|start|stop|status|tool NAME ARGS...|tools (see --help)" ;;
esac
