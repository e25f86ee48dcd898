#!/usr/bin/env bash
# The fault campaign against Strom and then Apache Kafka 4.4, with the same workload, faults
# and checker, and one table of both (scripts/campaign.py does the work; see its header).
#
#   scripts/campaign.sh --faults 1000                 # both systems, 1,000 faults each
#   scripts/campaign.sh --faults 100 --systems strom  # Strom only
#   scripts/campaign.sh --faults 60 --kinds kill-leader,isolate-leader --per-run 5
#
# Results in OUT (default campaign-DATE/): per system its results.jsonl, report.md and the
# histories and node logs of every run with an anomaly (failed/); OUT/report.md holds the
# combined table. Exit status 1 if any run found an anomaly or did not recover.
set -euo pipefail
cd "$(dirname "$0")/.."
systems=strom,kafka
out="campaign-$(date +%Y%m%d-%H%M%S)"
args=()
while [ $# -gt 0 ]; do
  case "$1" in
    --systems) systems="$2"; shift 2 ;;
    --out) out="$2"; shift 2 ;;
    *) args+=("$1"); shift ;;
  esac
done
export NO_COLOR=1
[ -n "${STROM_BIN:-}" ] || { nice cargo build --release --locked -p strom; export STROM_BIN="$PWD/target/release/strom"; }
status=0
dirs=()
for system in ${systems//,/ }; do
  python3 scripts/campaign.py "$system" --out "$out/$system" "${args[@]}" || status=1
  dirs+=("$out/$system")
done
python3 scripts/campaign.py report "${dirs[@]}" | tee "$out/report.md"
exit "$status"
