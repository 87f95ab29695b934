#!/usr/bin/env bash
# Builds banger's libFuzzer targets (fuzz/, clang with ASan+UBSan) in
# build-fuzz/ and runs each for a fixed budget on its seed corpus
# (docs/testing.md#fuzzing). Fails on any crash, leak, sanitizer report or
# timeout; the input that broke a target is left as build-fuzz/artifacts/*.
#
#   scripts/fuzz.sh                    every target, FUZZ_SECONDS (default 20) each
#   scripts/fuzz.sh flatten vmlinux    only these targets
#   FUZZ_SECONDS=600 FUZZ_KEEP=1 scripts/fuzz.sh spec   a long run that keeps
#                                      what it finds in build-fuzz/corpus/spec
set -euo pipefail
cd "$(dirname "$0")/.."
BUILD="${FUZZ_BUILD_DIR:-build-fuzz}"
SECONDS_EACH="${FUZZ_SECONDS:-20}"
SEED="${FUZZ_SEED:-1}"
JOBS="${JOBS:-$(nproc)}"
ALL=(spec oci_reference oci_manifest image_config flatten ext4_writer vmlinux agent_host agent_guest agent_json dns)
# Targets that read another target's seeds (and dictionary).
declare -A SEEDS_OF=([ext4_writer]=flatten)
TARGETS=("$@")
[ "${#TARGETS[@]}" -gt 0 ] || TARGETS=("${ALL[@]}")

launcher=()
if command -v ccache >/dev/null 2>&1; then
  launcher=(-DCMAKE_C_COMPILER_LAUNCHER=ccache -DCMAKE_CXX_COMPILER_LAUNCHER=ccache)
fi
# -O1 builds faster than -O2 and is what libFuzzer recommends with ASan.
cmake -S . -B "$BUILD" -G Ninja -DCMAKE_BUILD_TYPE=Debug -DCMAKE_CXX_FLAGS_DEBUG="-g1 -O1" -DCMAKE_C_FLAGS_DEBUG="-g1 -O1" \
  -DCMAKE_C_COMPILER=clang -DCMAKE_CXX_COMPILER=clang++ -DBANGER_FUZZ=ON "${launcher[@]}" >/dev/null
cmake --build "$BUILD" -j "$JOBS" --target "${TARGETS[@]/#/banger_fuzz_}"

mkdir -p "$BUILD/artifacts"
# The targets' scratch trees (fuzz/fuzz_util.h ScratchDir): libFuzzer ends a
# run with _Exit, so they are removed here rather than at the targets' exit.
export TMPDIR="$BUILD/scratch"
rm -rf "$TMPDIR"
mkdir -p "$TMPDIR"
trap 'rm -rf "$TMPDIR"' EXIT
export ASAN_OPTIONS="detect_leaks=1:abort_on_error=1:allocator_may_return_null=1"
export UBSAN_OPTIONS="halt_on_error=1:print_stacktrace=1"

# run_one T: fuzzes target T for SECONDS_EACH; its exit status is libFuzzer's.
run_one() {
  local t="$1" dict=() work="$BUILD/corpus/$1" seeds="${SEEDS_OF[$1]:-$1}"
  [ -f "fuzz/dict/$seeds.dict" ] && dict=(-dict="fuzz/dict/$seeds.dict")
  # New inputs go to a scratch corpus (kept with FUZZ_KEEP=1); the seeds in
  # the repository (fuzz/corpus/T, listed second) are only read.
  [ "${FUZZ_KEEP:-0}" = 1 ] || rm -rf "$work"
  mkdir -p "$work"
  "$BUILD/fuzz/banger_fuzz_$t" -seed="$SEED" -max_total_time="$SECONDS_EACH" \
    -max_len=65536 -timeout=25 -rss_limit_mb=2048 -print_final_stats=1 \
    -artifact_prefix="$BUILD/artifacts/$t-" "${dict[@]}" "$work" "fuzz/corpus/$seeds" \
    >"$BUILD/artifacts/$t.log" 2>&1
}

# As many targets at a time as there are jobs (each fuzzer uses one core).
declare -A pids=()
for t in "${TARGETS[@]}"; do
  while [ "$(jobs -rp | wc -l)" -ge "$JOBS" ]; do wait -n || true; done
  echo "== fuzz $t (${SECONDS_EACH}s, seed $SEED)"
  run_one "$t" &
  pids[$t]=$!
done
failed=()
for t in "${TARGETS[@]}"; do
  if ! wait "${pids[$t]}"; then
    tail -n 60 "$BUILD/artifacts/$t.log"
    failed+=("$t")
  fi
  echo "$t: $(grep -E '^#[0-9]+[[:space:]]+DONE' "$BUILD/artifacts/$t.log" | sed 's/ *lim:.*//')"
done
if [ "${#failed[@]}" -gt 0 ]; then
  echo "fuzz: FAILED: ${failed[*]} (reproducers in $BUILD/artifacts/)"
  exit 1
fi
echo "fuzz: ${#TARGETS[@]} targets ran ${SECONDS_EACH}s each without a finding"
