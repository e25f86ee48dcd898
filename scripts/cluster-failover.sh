#!/usr/bin/env bash
# Controller failover on loopback: three combined nodes, then TRIALS times SIGKILL the active
# controller and time until a topic can be created through another node (a restart between
# trials). BIN defaults to the release build; DIR holds the nodes' data and logs.
#   scripts/cluster-failover.sh            TRIALS=8 BIN=./target/debug/strom scripts/cluster-failover.sh
cd "$(dirname "$0")/.."
DIR=${DIR:-/tmp/strom-failover}
BIN=${BIN:-./target/release/strom}
pkill -9 -f "data-dir $DIR/"; while pgrep -f "data-dir $DIR/" >/dev/null; do sleep 0.1; done
rm -rf "$DIR"; mkdir -p "$DIR"
V=1@127.0.0.1:9093,2@127.0.0.1:19093,3@127.0.0.1:29093
port() { echo $(( ($1 - 1) * 10000 + 9092 )); }
start() { p=$(port $1); $BIN server --node-id $1 --process-roles broker,controller --listeners 127.0.0.1:$p --controller-listener 127.0.0.1:$((p+1)) --controller-quorum-voters $V --data-dir $DIR/n$1 >> $DIR/n$1.log 2>&1 & }
for i in 1 2 3; do start $i; done; sleep 4
until $BIN topic create warmup -b 127.0.0.1:9092 --timeout-ms 1000 2>&1 | grep -qE "created|already exists"; do :; done
for trial in $(seq 1 ${TRIALS:-5}); do
  L=$(grep -h "active controller" $DIR/n*.log | sort | tail -1 | grep -o "node_id=[0-9]" | cut -d= -f2)
  other=$(( L % 3 + 1 )); t0=$(date +%s%N); pkill -9 -f "data-dir $DIR/n$L\$"
  n=0; until $BIN topic create "t$trial" --partitions 1 -b 127.0.0.1:$(port $other) --timeout-ms 1000 2>&1 | grep -qE "created|already exists"; do n=$((n+1)); [ $n -gt 60 ] && break; done
  t1=$(date +%s%N)
  echo "trial $trial: controller $L SIGKILLed; a topic created through node $other $(( (t1-t0)/1000000 )) ms later"
  while pgrep -f "data-dir $DIR/n$L\$" >/dev/null; do sleep 0.1; done
  start $L; sleep 5
done
pkill -f "data-dir $DIR/"
