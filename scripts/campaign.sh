#!/usr/bin/env bash
# The fault campaign against Strom and Apache Kafka 4.4, with the same workload, faults and
# checker: each run against Strom, then the same run against Kafka (scripts/campaign.py does
# the work; see its header), and one table of both.
#
#   scripts/campaign.sh --faults 1000                        # both systems, 1,000 faults each
#   scripts/campaign.sh --faults 1000 --kafka-faults 300     # Kafka's runs stop at 300
#   scripts/campaign.sh --faults 100 --systems strom         # Strom only
#   scripts/campaign.sh --faults 60 --kinds kill-leader,isolate-leader --per-run 5
#   scripts/campaign.sh --faults 1000 --out DIR --resume     # goes on where DIR stopped
#
# Results in OUT (default campaign-DATE/): results.jsonl, report.md (the table) and the
# histories and node logs of every run with an anomaly (failed/). `touch OUT/STOP` ends the
# campaign after its current run. Exit status 1 if any run found an anomaly or did not recover.
set -euo pipefail
cd "$(dirname "$0")/.."
systems=both
out="campaign-$(date +%Y%m%d-%H%M%S)"
args=()
while [ $# -gt 0 ]; do
  case "$1" in
    --systems) systems="$2"; shift 2 ;;
    --out) out="$2"; shift 2 ;;
    *) args+=("$1"); shift ;;
  esac
done
[ "$systems" = "strom,kafka" ] && systems=both
[ -n "${STROM_BIN:-}" ] || { nice cargo build --release --locked -p strom; export STROM_BIN="$PWD/target/release/strom"; }
exec python3 scripts/campaign.py "$systems" --out "$out" "${args[@]}"
