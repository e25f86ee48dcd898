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
  set +e
  python3 -m pytest tests/python -q -p no:cacheprovider 2>&1 | tee "$logdir/python.log"
  python_rc=${PIPESTATUS[0]}
  set -e
fi

wait "$rust_pid" || true
rust_rc="$(cat "$logdir/rust.rc" 2>/dev/null || echo 1)"
echo "== rust test output"
cat "$logdir/rust.log"

# One closing line for both runners, so the last line tells the whole story. (`|| true`: a grep
# that finds nothing is an answer here, not an error.)
rust_passed=$(grep -hoE 'test result: [a-zA-Z]+\. [0-9]+ passed' "$logdir/rust.log" | awk '{s+=$4} END {print s+0}' || true)
rust_failed=$(grep -hoE 'test result: [a-zA-Z]+\. [0-9]+ passed; [0-9]+ failed' "$logdir/rust.log" | awk '{s+=$6} END {print s+0}' || true)
py_passed=$(grep -hoE '[0-9]+ passed' "$logdir/python.log" 2>/dev/null | tail -n 1 | awk '{print $1+0}' || true)
py_failed=$(grep -hoE '[0-9]+ (failed|error)' "$logdir/python.log" 2>/dev/null | tail -n 1 | awk '{print $1+0}' || true)
echo "rust exit $rust_rc ($rust_passed passed, $rust_failed failed); python exit $python_rc (${py_passed:-0} passed, ${py_failed:-0} failed)"
if [ "$rust_rc" != 0 ] || [ "$python_rc" != 0 ]; then
  failed=$((rust_failed + ${py_failed:-0}))
  [ "$failed" -gt 0 ] || failed=1
  echo "total: $((rust_passed + ${py_passed:-0})) passed, $failed failed"
  exit 1
fi
echo "total: $((rust_passed + ${py_passed:-0})) passed, 0 failed"
