#!/usr/bin/env bash
# Three-node cluster benchmarks, Strom and Apache Kafka 4.4 in one run, on loopback with the
# client on the same machine: the cluster issue's performance lines.
#
#   scripts/bench-cluster.sh            # Strom (target/release/strom), then Kafka 4.4
#   scripts/bench-cluster.sh strom      # Strom only
#   scripts/bench-cluster.sh kafka      # Kafka only (scripts/kafka.sh fetches it once)
#
# Workloads, each on a fresh topic (the same `strom bench` client for both brokers):
#   - produce 1 KiB records, acks=all, replication factor 3, min.insync.replicas 2, 6 partitions
#   - the same with replication factor 1 (Strom's own RF=1 rate, for the 40% line)
#   - end to end 1 KiB at 20,000 msgs/s, RF 3, acks=all: latency percentiles
# and each node's peak RSS, after an unmeasured warm-up produce. Prints one markdown row per
# workload and broker.
# Environment: BENCH_SCALE (multiplies message counts; 0.2 for a quick look), BENCH_BASE_PORT,
# STROM_BIN, BENCH_E2E_S (end-to-end duration, default 20).
set -euo pipefail
cd "$(dirname "$0")/.."

which="${1:-both}"
strom="${STROM_BIN:-$PWD/target/release/strom}"
base_port="${BENCH_BASE_PORT:-24092}"
scale="${BENCH_SCALE:-1}"
e2e_s="${BENCH_E2E_S:-20}"
work="$(mktemp -d)"
count() { awk -v n="$1" -v s="$scale" 'BEGIN { printf "%d", n * s }'; }

cluster_pid=""
cleanup() {
  if [ -n "$cluster_pid" ]; then kill -INT "$cluster_pid" 2>/dev/null || true; wait "$cluster_pid" 2>/dev/null || true; fi
  scripts/kafka.sh stop --data-dir "$work/kafka" >/dev/null 2>&1 || true
  rm -rf "$work"
}
trap cleanup EXIT

# Peak RSS (VmHWM) of the processes whose command line matches, summed and as a maximum.
peak_rss() {
  local pattern="$1" max=0 pid kib
  for pid in $(pgrep -f "$pattern" || true); do
    kib=$(awk '/VmHWM/ { print $2 }' "/proc/$pid/status" 2>/dev/null || echo 0)
    [ "${kib:-0}" -gt "$max" ] && max=$kib
  done
  echo $((max / 1024))
}

row() { # broker workload json
  python3 - "$1" "$2" "$3" <<'PY'
import json, sys
broker, workload, raw = sys.argv[1:]
try:
    r = json.loads(raw)
except ValueError:
    print(f"| {workload} | {broker} | failed |")
    sys.exit()
lat = r.get("latency_ms") or {}
lat_text = f"p50 {lat['p50']:.2f} / p99 {lat['p99']:.2f} / p99.9 {lat['p99_9']:.2f} ms" if lat else ""
errors = f", {r['errors']} errors" if r["errors"] else ""
print(f"| {workload} | {broker} | {r['msgs_per_s']:,.0f} msgs/s, {r['mb_per_s']:.1f} MB/s, {lat_text}{errors} |")
PY
}

run_workloads() { # broker bootstrap
  local broker="$1" bootstrap="$2" json
  "$strom" topic create rf3 --partitions 6 --replication-factor 3 --config min.insync.replicas=2 \
    -b "$bootstrap" >/dev/null
  "$strom" topic create rf1 --partitions 6 --replication-factor 1 -b "$bootstrap" >/dev/null
  "$strom" topic create e2e3 --partitions 6 --replication-factor 3 --config min.insync.replicas=2 \
    -b "$bootstrap" >/dev/null
  # Warm-up (a JVM compiles its hot paths in the first seconds), not measured.
  "$strom" topic create warmup --partitions 6 --replication-factor 3 -b "$bootstrap" >/dev/null
  "$strom" bench produce warmup -b "$bootstrap" --messages "$(count 200000)" --record-size 1024 \
    --acks all >/dev/null 2>>"$work/bench.log" || true
  json=$("$strom" bench produce rf3 -b "$bootstrap" --messages "$(count 500000)" --record-size 1024 \
    --acks all --json 2>>"$work/bench.log" | tail -n 1) || json=""
  row "$broker" "produce 1 KiB, acks=all, RF 3, 6 partitions" "$json"
  json=$("$strom" bench produce rf1 -b "$bootstrap" --messages "$(count 500000)" --record-size 1024 \
    --acks all --json 2>>"$work/bench.log" | tail -n 1) || json=""
  row "$broker" "produce 1 KiB, acks=all, RF 1, 6 partitions" "$json"
  json=$("$strom" bench e2e e2e3 -b "$bootstrap" --duration-s "$e2e_s" --rate 20000 --record-size 1024 \
    --acks all --json 2>>"$work/bench.log" | tail -n 1) || json=""
  row "$broker" "end to end 1 KiB at 20,000 msgs/s, RF 3, acks=all" "$json"
}

echo "| workload | broker | result |"
echo "| --- | --- | --- |"
if [ "$which" = both ] || [ "$which" = strom ]; then
  "$strom" dev-cluster --nodes 3 --base-port "$base_port" --data-dir "$work/strom" \
    >"$work/strom.out" 2>"$work/strom.err" &
  cluster_pid=$!
  for _ in $(seq 1 200); do [ -s "$work/strom.out" ] && break; sleep 0.1; done
  bootstrap="$(head -n 1 "$work/strom.out")"
  [ -n "$bootstrap" ] || { echo "strom dev-cluster did not start: $(tail -n 3 "$work/strom.err")" >&2; exit 1; }
  # Until every broker is registered (the topic needs three).
  for _ in $(seq 1 300); do
    "$strom" topic create probe --partitions 1 --replication-factor 3 -b "$bootstrap" >/dev/null 2>&1 && break
    sleep 0.1
  done
  run_workloads "Strom" "$bootstrap"
  echo "| peak RSS per node | Strom | $(peak_rss "strom server.*$work/strom") MiB |"
  kill -INT "$cluster_pid"; wait "$cluster_pid" 2>/dev/null || true; cluster_pid=""
fi
if [ "$which" = both ] || [ "$which" = kafka ]; then
  bootstrap="$(scripts/kafka.sh start --nodes 3 --data-dir "$work/kafka" 2>>"$work/kafka.log")"
  run_workloads "Kafka 4.4" "$bootstrap"
  echo "| peak RSS per node | Kafka 4.4 | $(peak_rss "$work/kafka") MiB |"
  scripts/kafka.sh stop --data-dir "$work/kafka" >/dev/null 2>&1 || true
fi
