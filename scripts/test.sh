#!/usr/bin/env bash
# The one test command: builds once, then runs the Rust suites (unit, property, integration
# with real broker processes) and the client suites (Python, franz-go, KafkaJS) in parallel.
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

# franz-go client suite (tests/go, its own Go module). `run_go` writes go.log and go.rc;
# `counts_go` prints "passed failed" (subtests count, as `go test -v` lists them).
run_go() {
  ( set +e; cd tests/go && go test -count=1 -timeout 300s -v ./... >"$logdir/go.log" 2>&1; echo $? >"$logdir/go.rc" )
}
counts_go() {
  echo "$(grep -cE '^ *--- PASS' "$logdir/go.log" 2>/dev/null || true) $(grep -cE '^ *--- FAIL' "$logdir/go.log" 2>/dev/null || true)"
}
# KafkaJS client suite (tests/js, `npm ci` first): node's test runner, bounded per test and as
# a whole. `run_js` writes js.log and js.rc; `counts_js` prints "passed failed".
run_js() {
  ( set +e; cd tests/js && timeout 600 npm test --silent >"$logdir/js.log" 2>&1; echo $? >"$logdir/js.rc" )
}
counts_js() {
  echo "$(awk '/^# pass /{p=$3} END {print p+0}' "$logdir/js.log" 2>/dev/null) $(awk '/^# fail /{f=$3} END {print f+0}' "$logdir/js.log" 2>/dev/null)"
}
echo "== go and js client tests (logs: $logdir/go.log, $logdir/js.log)"
run_go &
go_pid=$!
run_js &
js_pid=$!

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
wait "$go_pid" "$js_pid" || true
go_rc="$(cat "$logdir/go.rc" 2>/dev/null || echo 1)"
js_rc="$(cat "$logdir/js.rc" 2>/dev/null || echo 1)"
read -r go_passed go_failed < <(counts_go) || true
read -r js_passed js_failed < <(counts_js) || true
go_passed=${go_passed:-0} go_failed=${go_failed:-0} js_passed=${js_passed:-0} js_failed=${js_failed:-0}
echo "== go test output"
cat "$logdir/go.log"
echo "== js test output"
cat "$logdir/js.log"

# One closing line for all runners, so the last line tells the whole story. (`|| true`: a grep
# that finds nothing is an answer here, not an error.)
rust_passed=$(grep -hoE 'test result: [a-zA-Z]+\. [0-9]+ passed' "$logdir/rust.log" | awk '{s+=$4} END {print s+0}' || true)
rust_failed=$(grep -hoE 'test result: [a-zA-Z]+\. [0-9]+ passed; [0-9]+ failed' "$logdir/rust.log" | awk '{s+=$6} END {print s+0}' || true)
py_passed=$(grep -hoE '[0-9]+ passed' "$logdir/python.log" 2>/dev/null | tail -n 1 | awk '{print $1+0}' || true)
py_failed=$(grep -hoE '[0-9]+ (failed|error)' "$logdir/python.log" 2>/dev/null | tail -n 1 | awk '{print $1+0}' || true)
echo "rust exit $rust_rc ($rust_passed passed, $rust_failed failed); python exit $python_rc (${py_passed:-0} passed, ${py_failed:-0} failed); go exit $go_rc ($go_passed passed, $go_failed failed); js exit $js_rc ($js_passed passed, $js_failed failed)"
passed=$((rust_passed + ${py_passed:-0} + go_passed + js_passed))
if [ "$rust_rc" != 0 ] || [ "$python_rc" != 0 ] || [ "$go_rc" != 0 ] || [ "$js_rc" != 0 ]; then
  failed=$((rust_failed + ${py_failed:-0} + go_failed + js_failed))
  [ "$failed" -gt 0 ] || failed=1
  echo "total: $passed passed, $failed failed"
  exit 1
fi
echo "total: $passed passed, 0 failed"
