#!/usr/bin/env bash
# Where a restore's time goes (issue 11, docs/benchmarks.md section 9): builds
# the template of the quick sandbox once, then applies it N times with
# `start: auto` and prints, per run, the phases read off banger's debug log:
#   pre       process start, state, plan, overlay and initrd (until QEMU starts)
#   qmp       QEMU start until QMP answers
#   load      QEMU loading the template's state
#   identity  IDENTITY until the guest agent answers
#   after     readiness command, record, exit
# PAUSE seconds between runs (default 0) shows what a host that hands freed
# memory back to its hypervisor costs (docs/benchmarks.md).
# Usage: bench/restore_phases.sh [RUNS] [PAUSE]   (env: BUILD_DIR, default build)
set -euo pipefail

RUNS=${1:-8}
PAUSE=${2:-0}
SRC=$(cd "$(dirname "$0")/.." && pwd)
BUILD_DIR=${BUILD_DIR:-$SRC/build}
BANGER=$BUILD_DIR/cli/banger
WORK=$(mktemp -d /tmp/banger-restore-phases.XXXXXX)
chmod 711 "$WORK"   # confined QEMUs search the path to the state dir
B="$BANGER --state-dir $WORK/state"

cleanup() {
  set +e
  $B delete --yes phases >/dev/null 2>&1
  $B snapshot prune >/dev/null 2>&1
  if pgrep -f "$WORK" >/dev/null; then echo "QEMU left running for $WORK" >&2; fi
  rm -rf "$WORK"
}
trap cleanup EXIT

[[ -x "$BANGER" ]] || { echo "missing $BANGER (ninja -C $BUILD_DIR banger banger-agent)" >&2; exit 1; }
spec() {
  sed -e "s/^  name: quick .*/  name: phases/" "$SRC/examples/sandboxes/quick.yaml"
  echo "  start: $1"
}
spec snapshot >"$WORK/build.yaml"
spec auto >"$WORK/auto.yaml"
$B --log-level error apply -f "$WORK/build.yaml" --yes >/dev/null 2>&1   # image, kernel, template
$B --log-level error delete --yes phases >/dev/null 2>&1

ms() { date -d "$1" +%s%3N; }
at() { grep -m1 -- "$1" "$2" | cut -c1-12; }
for i in $(seq 1 "$RUNS"); do
  sleep "$PAUSE"
  log=$WORK/run.$i
  t0=$(date +%s%3N)
  $B --log-level debug apply -f "$WORK/auto.yaml" --yes >"$log" 2>&1
  t9=$(date +%s%3N)
  grep -q "restored from template" "$log" || { echo "run $i did not restore:" >&2; tail -5 "$log" >&2; exit 1; }
  a=$(ms "$(at 'restoring QEMU' "$log")"); b=$(ms "$(at 'restore: QMP up' "$log")")
  c=$(ms "$(at 'restore: state loaded$' "$log")"); d=$(ms "$(at 'restored from template' "$log")")
  echo "run $i: total $((t9 - t0)) ms | pre $((a - t0)) | qmp $((b - a)) | load $((c - b)) | identity $((d - c)) | after $((t9 - d))"
  $B --log-level error delete --yes phases >/dev/null 2>&1
done
