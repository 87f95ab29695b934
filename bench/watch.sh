#!/usr/bin/env bash
# Watcher benchmarks (issue 7), real QEMU under TCG:
#   1. commit-to-Ready: a commit adding examples/sandboxes/quick.yaml is pushed to a bare
#      repository that `banger watch --git file://... --interval 1s` follows; timed from the
#      push until `banger get` shows the sandbox Ready. Side by side with a plain
#      `banger apply -f quick.yaml --yes` of the same spec on the same (warm) state.
#   2. idle CPU: the watcher with nothing to do (the sandbox converged, default 60 s
#      interval), its utime+stime over IDLE_SECONDS, as a share of one core.
# Image, kernel and initramfs are cached first by an untimed apply+delete.
# Every process and VM it starts is stopped at the end (by pid), and the script fails
# if a QEMU naming its state directory is left.
#
# Usage: bench/watch.sh [RUNS=3] [IDLE_SECONDS=60]  (env: BUILD_DIR, default build)
set -euo pipefail

RUNS=${1:-3}
IDLE=${2:-60}
SRC=$(cd "$(dirname "$0")/.." && pwd)
BUILD_DIR=${BUILD_DIR:-$SRC/build}
BANGER=$BUILD_DIR/cli/banger
QUICK=$SRC/examples/sandboxes/quick.yaml
WORK=$(mktemp -d /tmp/banger-watch-bench.XXXXXX)
STATE=$WORK/state
B="$BANGER --log-level error --state-dir $STATE"
WATCHER=""
export GIT_AUTHOR_NAME=bench GIT_AUTHOR_EMAIL=bench@localhost GIT_COMMITTER_NAME=bench GIT_COMMITTER_EMAIL=bench@localhost

cleanup() {
  if [[ -n "$WATCHER" ]] && kill -0 "$WATCHER" 2>/dev/null; then kill -TERM "$WATCHER"; wait "$WATCHER" || true; fi
  $B delete quick --yes >/dev/null 2>&1 || true
  local left
  left=$(pgrep -f "qemu-system.*$WORK" || true)
  rm -rf "$WORK"
  if [[ -n "$left" ]]; then echo "QEMU left running: $left" >&2; exit 1; fi
}
trap cleanup EXIT

now() { date +%s.%N; }
wait_ready() {  # prints the time at which quick was first seen Ready
  for _ in $(seq 1 3000); do
    if $B get quick -o json 2>/dev/null | grep -q '"phase": "Ready"'; then now; return 0; fi
    sleep 0.05
  done
  echo "quick never became Ready" >&2; return 1
}

# Warm caches: image, kernel, initramfs.
$B apply -f "$QUICK" --yes >/dev/null 2>&1
$B delete quick --yes >/dev/null 2>&1

echo "== plain apply to Ready ($RUNS runs)"
for i in $(seq 1 "$RUNS"); do
  t0=$(now); $B apply -f "$QUICK" --yes >/dev/null 2>&1; t1=$(now)
  printf "apply run %d: %.2f s\n" "$i" "$(echo "$t1 - $t0" | bc)"
  $B delete quick --yes >/dev/null 2>&1
done

echo "== commit to Ready through banger watch --git ($RUNS runs)"
git init -q --bare -b main "$WORK/specs.git"
git clone -q "$WORK/specs.git" "$WORK/clone" 2>/dev/null
# specs/.keep: git keeps no empty directories, and a missing --path is an error, not a prune.
mkdir -p "$WORK/clone/specs" && touch "$WORK/clone/specs/.keep"
(cd "$WORK/clone" && git add specs && git commit -q -m init && git push -q origin main)
$BANGER --log-level info --state-dir "$STATE" watch --git "file://$WORK/specs.git" --path specs --prune \
  --interval 1s 2>"$WORK/watch.log" &
WATCHER=$!
sleep 2
for i in $(seq 1 "$RUNS"); do
  cp "$QUICK" "$WORK/clone/specs/quick.yaml"
  (cd "$WORK/clone" && git add specs && git commit -q -m "add quick $i")
  t0=$(now); (cd "$WORK/clone" && git push -q origin main); t1=$(wait_ready)
  printf "commit-to-Ready run %d: %.2f s\n" "$i" "$(echo "$t1 - $t0" | bc)"
  if [[ "$i" -lt "$RUNS" ]]; then
    (cd "$WORK/clone" && git rm -q specs/quick.yaml && git commit -q -m "remove quick" && git push -q origin main)
    for _ in $(seq 1 600); do $B get quick >/dev/null 2>&1 || break; sleep 0.1; done
  fi
done
kill -TERM "$WATCHER"; wait "$WATCHER" || true

echo "== idle CPU of a watcher with nothing to do (${IDLE}s, default interval)"
$BANGER --log-level info --state-dir "$STATE" watch --git "file://$WORK/specs.git" --path specs \
  2>>"$WORK/watch.log" &
WATCHER=$!
sleep 5
ticks() { awk '{print $14 + $15}' "/proc/$WATCHER/stat"; }
c0=$(ticks); sleep "$IDLE"; c1=$(ticks)
hz=$(getconf CLK_TCK)
printf "watcher CPU over %ds: %.3f s = %.2f %% of one core; RSS %s\n" "$IDLE" \
  "$(echo "($c1 - $c0) / $hz" | bc -l)" "$(echo "100 * ($c1 - $c0) / $hz / $IDLE" | bc -l)" \
  "$(grep VmRSS "/proc/$WATCHER/status" | awk '{print $2 " " $3}')"
