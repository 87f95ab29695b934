#!/usr/bin/env bash
# Installs dependencies, builds with warnings as errors, and runs every test:
# unit tests, unit tests again under AddressSanitizer+UBSan, the libFuzzer
# targets for a short fixed budget (scripts/fuzz.sh), then integration tests
# (real SQLite, real registry on loopback, real QEMU boots under TCG).
set -euo pipefail
cd "$(dirname "$0")/.."
scripts/setup.sh
JOBS="${JOBS:-$(nproc)}"

echo "== build (warnings are errors)"
# Line tables only (-g1: backtraces keep files and lines) and test code at -O1
# cut the build's CPU time by about 40% against -O2 -g everywhere; the code
# under test is still built -O2, as users get it.
cmake -S . -B build -G Ninja -DCMAKE_BUILD_TYPE=RelWithDebInfo -DCMAKE_COMPILE_WARNING_AS_ERROR=ON \
  -DCMAKE_CXX_FLAGS_RELWITHDEBINFO="-O2 -g1 -DNDEBUG" -DCMAKE_C_FLAGS_RELWITHDEBINFO="-O2 -g1 -DNDEBUG" \
  -DBANGER_TEST_COMPILE_OPTIONS=-O1 >/dev/null
cmake --build build -j "$JOBS"

echo "== unit tests"
ctest --test-dir build -L unit --output-on-failure -j "$JOBS" --timeout 300

echo "== unit tests under AddressSanitizer + UBSan"
cmake -S . -B build-asan -G Ninja -DCMAKE_BUILD_TYPE=Debug -DBANGER_SANITIZE=address,undefined \
  -DCMAKE_CXX_FLAGS_DEBUG=-g1 -DCMAKE_C_FLAGS_DEBUG=-g1 \
  -DBANGER_BUILD_BENCH=OFF -DCMAKE_COMPILE_WARNING_AS_ERROR=ON >/dev/null
# Only the unit test binaries: the sanitizers check banger's logic; the
# integration suites run against the regular build.
mapfile -t unit_targets < <(ninja -C build-asan -t targets all | grep -oE '^banger_[a-z]+_tests(:| )' | tr -d ': ' | sort -u)
cmake --build build-asan -j "$JOBS" --target "${unit_targets[@]}"
ASAN_OPTIONS=detect_leaks=1:abort_on_error=1 UBSAN_OPTIONS=halt_on_error=1:print_stacktrace=1 \
  LSAN_OPTIONS=suppressions="$PWD/tests/lsan.supp":print_suppressions=0 \
  ctest --test-dir build-asan -L unit --output-on-failure -j "$JOBS" --timeout 600

echo "== fuzzers (libFuzzer + ASan/UBSan, ${FUZZ_SECONDS:-10}s each on the seed corpora)"
FUZZ_SECONDS="${FUZZ_SECONDS:-10}" scripts/fuzz.sh

echo "== integration tests"
# Independent suites run side by side: each test has its own state directory,
# network namespaces and loopback ports, and a TCG guest keeps one core busy,
# so two at once take about half the time of one after the other.
ctest --test-dir build -L integration --output-on-failure --timeout 1200 -j "$JOBS"
