#!/usr/bin/env bash
# The one test command: builds once, then runs the Rust suites (unit, property, integration
# with real broker processes) in the background while the client suites run one after another
# in the foreground: Python, Kafka's Java client (Maven, tests/java), franz-go (tests/go) and
# KafkaJS (tests/js). One client suite at a time keeps two cores from being swamped by brokers.
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

# Java client suite: mvn -q prints nothing when every test passes; the counts come from
# Surefire's XML reports (one file per test class).
java_rc=0
if [ -d tests/java ]; then
  echo "== java tests (log: $logdir/java.log)"
  # Reports of an earlier run must not count for this one.
  rm -rf tests/java/target/surefire-reports
  if command -v mvn >/dev/null 2>&1; then
    ( set +e; cd tests/java && mvn -q -B test >"$logdir/java.log" 2>&1; echo $? >"$logdir/java.rc" )
  else
    echo "mvn not found: the Java client suite needs Maven and a JDK 17 (.ci/run installs them)" | tee "$logdir/java.log"
    echo 1 >"$logdir/java.rc"
  fi
  java_rc="$(cat "$logdir/java.rc" 2>/dev/null || echo 1)"
  # Without the colour codes Debian's Maven prints even in batch mode, and empty lines.
  sed 's/\x1b\[[0-9;]*m//g' "$logdir/java.log" | grep -v '^$' || true
fi
# The sum of one attribute of every <testsuite> element, e.g. `surefire_sum tests`.
surefire_sum() {
  cat tests/java/target/surefire-reports/TEST-*.xml 2>/dev/null \
    | grep -o '<testsuite [^>]*>' \
    | grep -oE " $1=\"[0-9]+\"" \
    | grep -oE '[0-9]+' \
    | awk '{s+=$1} END {print s+0}' || true
}

# franz-go client suite (its own Go module); subtests count, as `go test -v` lists them.
go_rc=0
if [ -d tests/go ]; then
  echo "== go tests (log: $logdir/go.log)"
  ( set +e; cd tests/go && go test -count=1 -timeout 300s -v ./... >"$logdir/go.log" 2>&1; echo $? >"$logdir/go.rc" )
  go_rc="$(cat "$logdir/go.rc" 2>/dev/null || echo 1)"
  grep -E '^(ok|FAIL|--- FAIL|panic)' "$logdir/go.log" || true
fi
go_passed=$(grep -cE '^ *--- PASS' "$logdir/go.log" 2>/dev/null || true)
go_failed=$(grep -cE '^ *--- FAIL' "$logdir/go.log" 2>/dev/null || true)

# KafkaJS client suite (`npm ci` first): node's test runner, bounded per test and as a whole.
js_rc=0
if [ -d tests/js ]; then
  echo "== js tests (log: $logdir/js.log)"
  ( set +e; cd tests/js && timeout 600 npm test --silent >"$logdir/js.log" 2>&1; echo $? >"$logdir/js.rc" )
  js_rc="$(cat "$logdir/js.rc" 2>/dev/null || echo 1)"
  grep -E '^# (pass|fail) |^not ok' "$logdir/js.log" || true
fi
js_passed=$(awk '/^# pass /{p=$3} END {print p+0}' "$logdir/js.log" 2>/dev/null || true)
js_failed=$(awk '/^# fail /{f=$3} END {print f+0}' "$logdir/js.log" 2>/dev/null || true)

wait "$rust_pid" || true
rust_rc="$(cat "$logdir/rust.rc" 2>/dev/null || echo 1)"
echo "== rust test output"
cat "$logdir/rust.log"
if [ "$go_rc" != 0 ]; then echo "== go test output"; cat "$logdir/go.log"; fi
if [ "$js_rc" != 0 ]; then echo "== js test output"; cat "$logdir/js.log"; fi

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
go_passed=${go_passed:-0} go_failed=${go_failed:-0} js_passed=${js_passed:-0} js_failed=${js_failed:-0}
echo "rust exit $rust_rc ($rust_passed passed, $rust_failed failed); python exit $python_rc (${py_passed:-0} passed, ${py_failed:-0} failed); java exit $java_rc ($java_passed passed, $java_failed failed, $java_skipped skipped); go exit $go_rc ($go_passed passed, $go_failed failed); js exit $js_rc ($js_passed passed, $js_failed failed)"
passed=$((rust_passed + ${py_passed:-0} + java_passed + go_passed + js_passed))
if [ "$rust_rc" != 0 ] || [ "$python_rc" != 0 ] || [ "$java_rc" != 0 ] || [ "$go_rc" != 0 ] || [ "$js_rc" != 0 ]; then
  failed=$((rust_failed + ${py_failed:-0} + java_failed + go_failed + js_failed))
  [ "$failed" -gt 0 ] || failed=1
  echo "total: $passed passed, $failed failed"
  exit 1
fi
echo "total: $passed passed, 0 failed"
