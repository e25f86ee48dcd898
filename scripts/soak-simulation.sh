#!/usr/bin/env bash
# Soaks the deterministic simulations with many seeds (release build). A failing seed prints
# how to reproduce it: STROM_SIM_SEED=<n> cargo test -p strom-replication --test simulation
#
#   scripts/soak-simulation.sh [SEEDS [FIRST_SEED]]     default 100000 seeds from 1
set -euo pipefail
cd "$(dirname "$0")/.."
seeds="${1:-100000}"
first="${2:-1}"
chunk=5000
echo "replication simulation: $seeds seeds from $first, in chunks of $chunk"
start=$first
end=$((first + seeds))
while [ "$start" -lt "$end" ]; do
  n=$(( end - start < chunk ? end - start : chunk ))
  if ! STROM_SIM_SEEDS=$n STROM_SIM_FIRST_SEED=$start \
    cargo test -q -p strom-replication --release --test simulation -- --nocapture >/tmp/strom-soak.log 2>&1; then
    grep -E "panicked|reproduce" /tmp/strom-soak.log
    exit 1
  fi
  grep -E "^simulation:" /tmp/strom-soak.log
  start=$((start + n))
done
echo "controller safety model: 100000 cases"
STROM_SAFETY_CASES=100000 cargo test -q -p strom-metadata --release --test safety
