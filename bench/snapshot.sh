#!/usr/bin/env bash
# Template benchmark (issue 11, docs/snapshots.md), one run, side by side:
#   1. apply-to-Ready of examples/sandboxes/quick.yaml with `start: boot` (cold boot) vs
#      `start: auto` restoring its template (built by an untimed `start: snapshot` apply
#      first), hyperfine,
#      each run deleting the sandbox in --prepare.
#   2. restore apply-to-Ready against template size: the quick sandbox with 256, 512
#      and 1024 MiB of memory (one template each), with the template's state and disk
#      layer sizes (banger snapshot ls -o json).
#   3. 8 sandboxes restored from one template, applied at once (--parallel 8).
# Every sandbox and template is removed at the end; the script fails if a QEMU
# using its state directory is still running.
#
# Usage: bench/snapshot.sh [RUNS]   (env: BUILD_DIR, default build; OUT, a directory
#        for hyperfine's JSON exports)
set -euo pipefail

RUNS=${1:-5}
SRC=$(cd "$(dirname "$0")/.." && pwd)
BUILD_DIR=${BUILD_DIR:-$SRC/build}
BANGER=$BUILD_DIR/cli/banger
QUICK=$SRC/examples/sandboxes/quick.yaml
WORK=$(mktemp -d /tmp/banger-snap-bench.XXXXXX)
chmod 711 "$WORK"   # confined QEMUs search the path to the state dir
STATE=$WORK/state
B="$BANGER --log-level error --state-dir $STATE"
OUT=${OUT:-$WORK/out}
mkdir -p "$OUT"

kill_ours() {
  local pf pid
  while IFS= read -r pf; do
    pid=$(cat "$pf" 2>/dev/null || true)
    [[ -n "$pid" ]] || continue
    if tr '\0' ' ' <"/proc/$pid/cmdline" 2>/dev/null | grep -qF "$WORK"; then kill "$pid" 2>/dev/null || true; fi
  done < <(find "$WORK" -name qemu.pid 2>/dev/null)
}
cleanup() {
  set +e
  for n in cold warm m256 m512 m1024 par-0 par-1 par-2 par-3 par-4 par-5 par-6 par-7; do
    $B delete --yes "$n" >/dev/null 2>&1
  done
  $B snapshot prune >/dev/null 2>&1
  kill_ours
  sleep 0.5
  rm -rf "$WORK"
}
trap cleanup EXIT

[[ -x "$BANGER" ]] || { echo "missing $BANGER (ninja -C $BUILD_DIR banger banger-agent)" >&2; exit 1; }
for tool in hyperfine jq qemu-system-x86_64 qemu-img; do
  command -v "$tool" >/dev/null || { echo "missing $tool" >&2; exit 1; }
done

# spec NAME MEMORY START
spec() {
  sed -e "s/^  name: quick .*/  name: $1/" -e "s/^  memory: 256MiB .*/  memory: $2/" "$QUICK"
  echo "  start: $3"
}
spec cold 256MiB boot >"$WORK/cold.yaml"
spec warm 256MiB auto >"$WORK/warm.yaml"
spec warm 256MiB snapshot >"$WORK/warm-build.yaml"   # saves the template when there is none
for m in 256 512 1024; do
  spec "m$m" "${m}MiB" auto >"$WORK/m$m.yaml"
  spec "m$m" "${m}MiB" snapshot >"$WORK/m$m-build.yaml"
done
for i in 0 1 2 3 4 5 6 7; do spec "par-$i" 256MiB auto; echo "---"; done >"$WORK/par8.yaml"

# Warm-up: image, kernel, initramfs, accelerator probe; and the template of `warm`.
$B apply -f "$WORK/cold.yaml" --yes >/dev/null && $B delete --yes cold >/dev/null
t0=$(date +%s.%N)
$B apply -f "$WORK/warm-build.yaml" --yes >/dev/null
t1=$(date +%s.%N)
$B delete --yes warm >/dev/null
echo "first start of warm (cold boot + template save + restore): $(echo "$t1 - $t0" | bc) s"

echo "== 1. apply to Ready: cold boot vs restore from template =="
hyperfine --runs "$RUNS" --export-json "$OUT/cold-vs-template.json" \
  --prepare "$B delete --yes cold >/dev/null 2>&1 || true; $B delete --yes warm >/dev/null 2>&1 || true" \
  -n "cold boot (start: boot)" "$B apply -f $WORK/cold.yaml --yes" \
  -n "from template (start: auto)" "$B apply -f $WORK/warm.yaml --yes"
$B delete --yes cold >/dev/null 2>&1 || true
# banger's own share of one restore: its step log (info level).
$BANGER --state-dir "$STATE" apply -f "$WORK/warm.yaml" --yes >"$WORK/restore-steps.txt" 2>&1
{ grep -E "restor|Ready|template" "$WORK/restore-steps.txt" || true; } | sed "s/^/  /" | head -20
$B delete --yes warm >/dev/null

echo "== 2. restore time against template size =="
for m in 256 512 1024; do
  $B apply -f "$WORK/m$m-build.yaml" --yes >/dev/null && $B delete --yes "m$m" >/dev/null   # builds the template
done
hyperfine --runs "$RUNS" --export-json "$OUT/restore-vs-size.json" \
  --prepare "for n in m256 m512 m1024; do $B delete --yes \$n >/dev/null 2>&1 || true; done" \
  -n "256 MiB" "$B apply -f $WORK/m256.yaml --yes" \
  -n "512 MiB" "$B apply -f $WORK/m512.yaml --yes" \
  -n "1024 MiB" "$B apply -f $WORK/m1024.yaml --yes"
for n in m256 m512 m1024; do $B delete --yes $n >/dev/null 2>&1 || true; done
echo "templates (memory, state file, disk layer, build time):"
$B snapshot ls -o json | jq -r '.[] | "  \(.identity.memoryBytes/1048576) MiB: state \(.stateBytes/1048576*10|floor/10) MiB, disk layer \(.diskLayerBytes/1048576*10|floor/10) MiB, built in \(.buildMs) ms"'

echo "== 3. 8 sandboxes from one template at once =="
hyperfine --runs "$(( RUNS < 3 ? RUNS : 3 ))" --export-json "$OUT/par8.json" \
  --prepare "for i in 0 1 2 3 4 5 6 7; do $B delete --yes par-\$i >/dev/null 2>&1 || true; done" \
  -n "8 from one template, --parallel 8" "$B apply -f $WORK/par8.yaml --yes --parallel 8"
# One template per memory size (warm and m256 share one): 8 restores built nothing.
[[ $($B snapshot ls -o json | jq length) == 3 ]] || { echo "expected 3 templates" >&2; exit 1; }

for n in par-0 par-1 par-2 par-3 par-4 par-5 par-6 par-7; do $B delete --yes $n >/dev/null; done
$B snapshot prune
if pgrep -f "$WORK" >/dev/null; then echo "QEMU left running for $WORK" >&2; exit 1; fi
echo "results in $OUT"
