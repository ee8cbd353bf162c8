#!/usr/bin/env bash
# Builds the libFuzzer targets (tests/fuzz) with clang in build-fuzz and runs each for
# FUZZ_SECONDS (default 60).  Exits non-zero if any target crashes, leaks, hangs or fails
# a property; the input that did it is kept in build-fuzz/fuzz-crashes/.
#   FUZZ_SECONDS=300 scripts/fuzz.sh            # longer runs
#   FUZZ_TARGETS="fuzz_coord" scripts/fuzz.sh   # some targets only
# The corpus each run grows is kept in build-fuzz/fuzz-corpus/<target> and reused next time;
# the seeds in tests/fuzz/corpus/<target> are read, never written.
set -euo pipefail
cd "$(dirname "$0")/.."
secs=${FUZZ_SECONDS:-60}
read -r -a targets <<<"${FUZZ_TARGETS:-fuzz_httputil fuzz_coord fuzz_http_request fuzz_audit_checkpoint}"
build=build-fuzz
jobs=$(nproc)

echo "== build (clang, libFuzzer + ASan + UBSan) in $build"
cmake -S . -B "$build" -DCMAKE_C_COMPILER=clang -DCMAKE_BUILD_TYPE=RelWithDebInfo \
      -DARCA_WERROR=ON -DARCA_FUZZ=ON >/dev/null
cmake --build "$build" -j"$jobs" --target "${targets[@]}"

export ASAN_OPTIONS=detect_leaks=1:abort_on_error=1:symbolize=1
export UBSAN_OPTIONS=print_stacktrace=1:halt_on_error=1
mkdir -p "$build/fuzz-crashes" "$build/fuzz-logs"
passed=0 failed=0 summary=()
for t in "${targets[@]}"; do
  echo "== $t: ${secs}s"
  corpus="$build/fuzz-corpus/$t" log="$build/fuzz-logs/$t.log"
  mkdir -p "$corpus"
  args=(-max_total_time="$secs" -timeout=10 -rss_limit_mb=2048 -print_final_stats=1
        -artifact_prefix="$build/fuzz-crashes/$t-")
  dict="tests/fuzz/${t#fuzz_}.dict"
  [ -f "$dict" ] && args+=(-dict="$dict")
  rc=0
  "$build/tests/fuzz/$t" "${args[@]}" "$corpus" "tests/fuzz/corpus/$t" >"$log" 2>&1 || rc=$?
  # The last status line: "#123 DONE cov: 211 ft: 254 corp: 12/315b lim: 72 exec/s: 900 rss: 34Mb"
  last=$(grep -E '^#[0-9]+' "$log" | tail -n 1 || true)
  execs=$(sed -n 's/^stat::number_of_executed_units: *//p' "$log")
  rate=$(sed -n 's/^stat::average_exec_per_sec: *//p' "$log")
  cov=$(sed -n 's/.* cov: \([0-9]*\).*/\1/p' <<<"$last")
  ft=$(sed -n 's/.* ft: \([0-9]*\).*/\1/p' <<<"$last")
  corp=$(sed -n 's/.* corp: \([0-9]*\)\/.*/\1/p' <<<"$last")
  stats="${execs:-?} execs, ${rate:-?}/s, cov ${cov:-?}, ft ${ft:-?}, corpus ${corp:-?}"
  if [ "$rc" -eq 0 ]; then
    passed=$((passed + 1))
    summary+=("PASS $t: $stats")
  else
    failed=$((failed + 1))
    crash=$(sed -n 's/.*Test unit written to \(.*\)$/\1/p' "$log" | tail -n 1)
    summary+=("FAIL $t: exit $rc, ${crash:-no input saved}, log $log")
    grep -aE 'ERROR|SUMMARY|fuzz property failed|runtime error' "$log" | head -n 5 | sed 's/^/    /' || true
  fi
done
echo "== fuzz summary (${secs}s per target)"
printf '%s\n' "${summary[@]}"
echo "$passed passed, $failed failed"
[ "$failed" -eq 0 ]
