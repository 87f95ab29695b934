#!/usr/bin/env bash
# Times the real `banger plan` (no-op: every spec already applied and Ready)
# over 1,000 and 10,000 specs with hyperfine. Fixtures come from
# `plan_bench --make-fixture DIR N` (100 specs per file, converged SQLite state).
#
# Usage: bench/plan_cli.sh [RUNS]   (env: BUILD_DIR, default build-bench; OUT, a
#        directory for hyperfine's JSON/markdown exports, default: none kept)
# Target (issue 2): 10,000 specs < 1 s wall, linear growth.
set -euo pipefail

RUNS=${1:-5}
SRC=$(cd "$(dirname "$0")/.." && pwd)
BUILD_DIR=${BUILD_DIR:-$SRC/build-bench}
BANGER=$BUILD_DIR/cli/banger
PLAN_BENCH=$BUILD_DIR/bench/plan_bench
WORK=$(mktemp -d /tmp/banger-plan-cli.XXXXXX)
cleanup() { rm -rf "$WORK"; }
trap cleanup EXIT

for f in "$BANGER" "$PLAN_BENCH"; do
  [[ -x "$f" ]] || { echo "missing $f (ninja -C $BUILD_DIR banger plan_bench)" >&2; exit 1; }
done
command -v hyperfine >/dev/null || { echo "missing hyperfine" >&2; exit 1; }

for n in 1000 10000; do
  "$PLAN_BENCH" --make-fixture "$WORK/f$n" "$n" >/dev/null 2>&1
  # A no-op plan must say so (and exit 0); anything else would time the wrong thing.
  out=$("$BANGER" --log-level error --state-dir "$WORK/f$n/state" plan -f "$WORK/f$n/specs")
  if ! grep -qi "no changes" <<<"$out"; then
    echo "plan over $n specs is not a no-op:" >&2; head -20 <<<"$out" >&2; exit 1
  fi
done

echo "load before: $(cat /proc/loadavg)"
export_args=()
if [[ -n "${OUT:-}" ]]; then
  mkdir -p "$OUT"
  export_args=(--export-json "$OUT/plan_cli.json" --export-markdown "$OUT/plan_cli.md")
fi
hyperfine -N --warmup 1 --runs "$RUNS" "${export_args[@]}" \
  -n "plan 1000" "$BANGER --log-level error --state-dir $WORK/f1000/state plan -f $WORK/f1000/specs" \
  -n "plan 10000" "$BANGER --log-level error --state-dir $WORK/f10000/state plan -f $WORK/f10000/specs"
echo "load after: $(cat /proc/loadavg)"
