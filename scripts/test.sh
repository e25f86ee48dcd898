#!/usr/bin/env bash
# The one test command: builds once, then runs the Rust suites (unit, property, integration
# with real broker processes) and the Python client suite in parallel.
set -euo pipefail
cd "$(dirname "$0")/.."

jobs="${STROM_TEST_JOBS:-2}"
echo "== build"
cargo build --workspace --all-targets --locked
export STROM_BIN="$PWD/target/debug/strom"

logdir="$(mktemp -d)"
echo "== rust tests (log: $logdir/rust.log)"
# set +e inside: the exit status is the result to record, not a reason to stop early.
( set +e; cargo test --workspace --locked --no-fail-fast -- --test-threads="$jobs" >"$logdir/rust.log" 2>&1; echo $? >"$logdir/rust.rc" ) &
rust_pid=$!

python_rc=0
if [ -d tests/python ]; then
  echo "== python tests"
  python3 -m pytest tests/python -q -p no:cacheprovider || python_rc=$?
fi

wait "$rust_pid" || true
rust_rc="$(cat "$logdir/rust.rc")"
echo "== rust test output"
cat "$logdir/rust.log"

# Summarise across both runners so the last line tells the whole story.
passed=$(grep -hoE 'test result: [a-zA-Z]+\. [0-9]+ passed' "$logdir/rust.log" | awk '{s+=$4} END {print s+0}')
failed=$(grep -hoE '[0-9]+ failed' "$logdir/rust.log" | awk '{s+=$1} END {print s+0}')
echo "rust: exit $rust_rc ($passed passed, $failed failed); python: exit $python_rc"
if [ "$rust_rc" != 0 ] || [ "$python_rc" != 0 ]; then
  exit 1
fi
