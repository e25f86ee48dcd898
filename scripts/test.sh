#!/usr/bin/env bash
# The one test command: builds once, then runs the Rust suites (unit, property, integration
# with real broker processes), the Python client suite and the Java client suite (Maven,
# tests/java) in parallel.
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

java_rc=0
java_pid=
if [ -d tests/java ]; then
  echo "== java tests (log: $logdir/java.log)"
  # Reports of an earlier run must not count for this one.
  rm -rf tests/java/target/surefire-reports
  if command -v mvn >/dev/null 2>&1; then
    ( set +e; cd tests/java && mvn -q -B test >"$logdir/java.log" 2>&1; echo $? >"$logdir/java.rc" ) &
    java_pid=$!
  else
    echo "mvn not found: the Java client suite needs Maven and a JDK 17 (.ci/run installs them)" | tee "$logdir/java.log"
    echo 1 >"$logdir/java.rc"
  fi
fi

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

if [ -d tests/java ]; then
  [ -z "$java_pid" ] || wait "$java_pid" || true
  java_rc="$(cat "$logdir/java.rc" 2>/dev/null || echo 1)"
  echo "== java test output (mvn -q: empty when every test passed)"
  # Without the colour codes Debian's Maven prints even in batch mode, and empty lines.
  sed 's/\x1b\[[0-9;]*m//g' "$logdir/java.log" | grep -v '^$' || true
fi

# Surefire's reports (one XML file per test class): the sum of one attribute of every
# <testsuite> element, e.g. `surefire_sum tests`.
surefire_sum() {
  cat tests/java/target/surefire-reports/TEST-*.xml 2>/dev/null \
    | grep -o '<testsuite [^>]*>' \
    | grep -oE " $1=\"[0-9]+\"" \
    | grep -oE '[0-9]+' \
    | awk '{s+=$1} END {print s+0}' || true
}

# One closing line for all runners, so the last line tells the whole story. (`|| true`: a grep
# that finds nothing is an answer here, not an error.)
rust_passed=$(grep -hoE 'test result: [a-zA-Z]+\. [0-9]+ passed' "$logdir/rust.log" | awk '{s+=$4} END {print s+0}' || true)
rust_failed=$(grep -hoE 'test result: [a-zA-Z]+\. [0-9]+ passed; [0-9]+ failed' "$logdir/rust.log" | awk '{s+=$6} END {print s+0}' || true)
py_passed=$(grep -hoE '[0-9]+ passed' "$logdir/python.log" 2>/dev/null | tail -n 1 | awk '{print $1+0}' || true)
py_failed=$(grep -hoE '[0-9]+ (failed|error)' "$logdir/python.log" 2>/dev/null | tail -n 1 | awk '{print $1+0}' || true)
java_tests=$(surefire_sum tests)
java_failed=$(( $(surefire_sum failures) + $(surefire_sum errors) ))
java_skipped=$(surefire_sum skipped)
java_passed=$(( java_tests - java_failed - java_skipped ))
echo "rust exit $rust_rc ($rust_passed passed, $rust_failed failed); python exit $python_rc (${py_passed:-0} passed, ${py_failed:-0} failed); java exit $java_rc ($java_passed passed, $java_failed failed, $java_skipped skipped)"
passed=$((rust_passed + ${py_passed:-0} + java_passed))
if [ "$rust_rc" != 0 ] || [ "$python_rc" != 0 ] || [ "$java_rc" != 0 ]; then
  failed=$((rust_failed + ${py_failed:-0} + java_failed))
  [ "$failed" -gt 0 ] || failed=1
  echo "total: $passed passed, $failed failed"
  exit 1
fi
echo "total: $passed passed, 0 failed"
