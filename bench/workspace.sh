#!/usr/bin/env bash
# Workspace shipping benchmark (issue 9): a git repository of 10,000 files /
# 200 MiB (100 directories x 100 files of 20 KiB of random data, committed),
# shipped into a busybox sandbox under QEMU, against what a user would do by
# hand over the same agent channel:
#   1. `banger workspace sync NAME`  (libgit2 listing + tar stream into @banger/untar)
#   2. `tar -C REPO -cf - . | banger exec -i NAME -- tar -x -C DIR`  (busybox tar in the guest)
#   3. `banger workspace export NAME` with nothing changed (the tree read back and diffed)
#   4. `banger cp REPO NAME:/root/cp-copy`
# Each is run RUNS times; the script prints seconds per run and the median.
# The sandbox is deleted at the end and the script fails if a QEMU using its
# state directory is still running.
#
# Usage: bench/workspace.sh [RUNS]   (env: BUILD_DIR, default build)
set -euo pipefail

RUNS=${1:-3}
SRC=$(cd "$(dirname "$0")/.." && pwd)
BUILD_DIR=${BUILD_DIR:-$SRC/build}
BANGER=$BUILD_DIR/cli/banger
WORK=$(mktemp -d /tmp/banger-ws-bench.XXXXXX)
STATE=$WORK/state
B=("$BANGER" --log-level error --state-dir "$STATE")
NAME=wsbench

cleanup() {
  set +e
  "${B[@]}" delete "$NAME" --yes >/dev/null 2>&1
  local pf pid
  while IFS= read -r pf; do
    pid=$(cat "$pf" 2>/dev/null || true)
    [[ -n "$pid" ]] || continue
    if tr '\0' ' ' <"/proc/$pid/cmdline" 2>/dev/null | grep -qF "$WORK"; then kill "$pid" 2>/dev/null; fi
  done < <(find "$WORK" -name qemu.pid 2>/dev/null)
  rm -rf "$WORK"
}
trap cleanup EXIT

[[ -x "$BANGER" ]] || { echo "missing $BANGER (cmake --build $BUILD_DIR --target banger banger-agent)" >&2; exit 1; }

echo "# making the repository (10,000 files, 200 MiB)" >&2
REPO=$WORK/repo
mkdir -p "$REPO"
git init -q -b main "$REPO"
for d in $(seq -w 0 99); do
  mkdir -p "$REPO/d$d"
  head -c $((100 * 20480)) /dev/urandom | split -b 20480 -a 2 -d - "$REPO/d$d/f"
done
git -C "$REPO" add -A
git -C "$REPO" -c user.name=bench -c user.email=bench@banger.invalid commit -q -m "10k files"
echo "# $(git -C "$REPO" ls-files | wc -l) files, $(du -sm --exclude=.git "$REPO" | cut -f1) MiB" >&2

mkdir -p "$WORK/specs"
cat >"$WORK/specs/$NAME.yaml" <<YAML
apiVersion: banger.dev/v1
kind: Sandbox
metadata:
  name: $NAME
spec:
  image: busybox
  memory: 1GiB
  disk: 2GiB
  network:
    mode: none
  restartPolicy: Never
  workspace:
    source: ../repo
YAML

t0=$(date +%s.%N)
"${B[@]}" apply -f "$WORK/specs/$NAME.yaml" --yes >/dev/null
t1=$(date +%s.%N)
echo "apply with workspace (boot + ship): $(echo "$t1 - $t0" | bc) s" 

median() { sort -n | awk '{a[NR]=$1} END {print a[int((NR+1)/2)]}'; }
run() {
  local label=$1; shift
  local times=()
  for i in $(seq 1 "$RUNS"); do
    "${B[@]}" exec "$NAME" -- rm -rf /root/alt /root/cp-copy >/dev/null
    local s e
    s=$(date +%s.%N)
    "$@" >/dev/null
    e=$(date +%s.%N)
    times+=("$(echo "$e - $s" | bc)")
  done
  printf '%-40s %s  median %s s\n' "$label" "${times[*]}" "$(printf '%s\n' "${times[@]}" | median)"
}
run "workspace sync" "${B[@]}" workspace sync "$NAME"
run "tar | banger exec -i -- tar x" bash -c "tar -C '$REPO' --exclude=.git -cf - . | ${B[*]} exec -i $NAME -- sh -c 'mkdir -p /root/alt && tar -x -C /root/alt'"
run "workspace export (no changes)" "${B[@]}" workspace export "$NAME"
run "cp REPO NAME:/root/cp-copy" "${B[@]}" cp "$REPO" "$NAME:/root/cp-copy"
"${B[@]}" exec "$NAME" -- sh -c 'find /root/work -type f | wc -l; du -sm /root/work' >&2
