#!/usr/bin/env bash
# Command 2: install what is missing, build, and run every test:
#   1. a warnings-as-errors build: unit tests (cmocka) and end-to-end tests (real arcad, loopback);
#   2. an ASan+UBSan build: unit tests and the end-to-end tests not labelled "slow"
#      (the 1 GiB memory test and the crash loop measure the plain build).
#   3. the libFuzzer targets (scripts/fuzz.sh), FUZZ_SECONDS (default 60) each.
set -euo pipefail
cd "$(dirname "$0")/.."
scripts/deps.sh
jobs=$(nproc)
echo "== build (RelWithDebInfo, -Werror)"
cmake -S . -B build-test -DCMAKE_BUILD_TYPE=RelWithDebInfo -DARCA_WERROR=ON >/dev/null
cmake --build build-test -j"$jobs"
echo "== tests"
(cd build-test && ctest --output-on-failure -j"$jobs")
echo "== build (ASan + UBSan)"
cmake -S . -B build-asan -DCMAKE_BUILD_TYPE=Debug -DARCA_WERROR=ON -DARCA_SANITIZE=ON >/dev/null
cmake --build build-asan -j"$jobs"
echo "== tests under ASan + UBSan"
export ASAN_OPTIONS=detect_leaks=1:abort_on_error=1 UBSAN_OPTIONS=print_stacktrace=1:halt_on_error=1
# ARCA_SANITIZED: e2e tests skip RSS bounds here (the plain pass above measured them).
(cd build-asan && ARCA_SANITIZED=1 ctest --output-on-failure -j"$jobs" -LE slow)
echo "== fuzz (libFuzzer, ${FUZZ_SECONDS:-60}s per target)"
FUZZ_SECONDS=${FUZZ_SECONDS:-60} scripts/fuzz.sh
