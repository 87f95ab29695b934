#!/usr/bin/env bash
# Boot benchmark (issue 4), one run, hyperfine:
#   1. `banger apply -f examples/sandboxes/quick.yaml --yes` to Ready (image, kernel and
#      initramfs already cached by an untimed apply+delete first), side by side with a
#      bare qemu-system-x86_64 started with the argv banger used (read from
#      /proc/PID/cmdline of banger's own QEMU: microvm, TCG, same -append incl.
#      tsc_early_khz, same kernel, same per-sandbox initrd, a fresh qcow2 overlay on the
#      same base disk), stopped when the guest agent answers on its channel (the
#      same signal banger waits for before Ready).
#   2. 8 sandboxes in one file applied with --parallel 8, vs the single quick apply.
# Target: banger adds <= 15 % and < 300 ms over the bare boot.
# Every sandbox is deleted at the end and the script fails if a QEMU using its
# state directory is still running.
#
# Usage: bench/boot.sh [RUNS] [PAR_RUNS]   (env: BUILD_DIR, default build-bench; OUT, a
#        directory for hyperfine's JSON exports)
set -euo pipefail

RUNS=${1:-5}
PAR_RUNS=${2:-3}
SRC=$(cd "$(dirname "$0")/.." && pwd)
BUILD_DIR=${BUILD_DIR:-$SRC/build-bench}
BANGER=$BUILD_DIR/cli/banger
QUICK=$SRC/examples/sandboxes/quick.yaml
MARKER="banger-agent: starting"
WORK=$(mktemp -d /tmp/banger-boot-bench.XXXXXX)
STATE=$WORK/state
B="$BANGER --log-level error --state-dir $STATE"

# Kill only QEMUs this script's banger started: their pidfiles live under $WORK
# and their command line names $WORK.
kill_ours() {
  local pf pid
  while IFS= read -r pf; do
    pid=$(cat "$pf" 2>/dev/null || true)
    [[ -n "$pid" ]] || continue
    if tr '\0' ' ' <"/proc/$pid/cmdline" 2>/dev/null | grep -qF "$WORK"; then
      kill "$pid" 2>/dev/null || true
    fi
  done < <(find "$WORK" -name qemu.pid 2>/dev/null)
}
cleanup() {
  set +e
  if [[ -x "$WORK/reset.sh" ]]; then "$WORK/reset.sh"; fi
  kill_ours
  sleep 0.5
  rm -rf "$WORK"
}
trap cleanup EXIT

for f in "$BANGER" "$BUILD_DIR/agent/banger-agent"; do
  [[ -x "$f" ]] || { echo "missing $f (ninja -C $BUILD_DIR banger banger-agent)" >&2; exit 1; }
done
for tool in hyperfine qemu-system-x86_64 qemu-img; do
  command -v "$tool" >/dev/null || { echo "missing $tool" >&2; exit 1; }
done

# 8 copies of the quick spec in one file, named par-0 .. par-7.
for i in 0 1 2 3 4 5 6 7; do
  sed "s/^  name: quick /  name: par-$i /" "$QUICK"
  echo "---"
done >"$WORK/par8.yaml"
grep -c '^  name: par-' "$WORK/par8.yaml" | grep -qx 8

cat >"$WORK/reset.sh" <<RESET
#!/usr/bin/env bash
for n in quick par-0 par-1 par-2 par-3 par-4 par-5 par-6 par-7; do
  $B delete --yes "\$n" >/dev/null 2>&1 || true
done
RESET
chmod +x "$WORK/reset.sh"

# Warm-up: fetch image and kernel, build the initramfs, probe acceleration.
$B apply -f "$QUICK" --yes >/dev/null
$B delete --yes quick >/dev/null

# One untimed apply, verbose, to record banger's own step timings and QEMU's argv.
$BANGER --state-dir "$STATE" apply -f "$QUICK" --yes >"$WORK/apply-steps.txt" 2>&1
RT=$(dirname "$(find "$STATE/sandboxes" -name qemu.pid | head -1)")
QPID=$(cat "$RT/qemu.pid")
read -r UT STT < <(awk '{print $14, $15}' "/proc/$QPID/stat")
CPU_AT_READY=$(echo "scale=2; ($UT + $STT) / $(getconf CLK_TCK)" | bc)
mapfile -d '' ARGV <"/proc/$QPID/cmdline"
BASE=$(qemu-img info -U --output=json "$RT/disk.qcow2" | python3 -c 'import json,sys; print(json.load(sys.stdin)["backing-filename"])')
BARE=$WORK/bare
mkdir -p "$BARE"
cp "$RT/initrd.img" "$BARE/initrd.img"
$B delete --yes quick >/dev/null

# The same argv with the runtime directory swapped for $BARE.
: >"$BARE/argv"
for a in "${ARGV[@]}"; do printf '%s\n' "${a//$RT/$BARE}" >>"$BARE/argv"; done
grep -q -- "tsc_early_khz" "$BARE/argv"
if grep -qF "$RT" "$BARE/argv"; then echo "argv still names $RT" >&2; exit 1; fi

cat >"$BARE/prepare.sh" <<PREP
#!/usr/bin/env bash
set -euo pipefail
rm -f "$BARE/console.log" "$BARE/qemu.pid" "$BARE/qmp.sock" "$BARE/agent.sock" "$BARE/disk.qcow2"
qemu-img create -q -f qcow2 -b "$BASE" -F raw "$BARE/disk.qcow2"
PREP
cat >"$BARE/boot.sh" <<'BOOT'
#!/usr/bin/env bash
# Boot the recorded argv, return when the guest agent answers on its channel, kill QEMU.
set -euo pipefail
dir=$(dirname "$0")
mapfile -t argv <"$dir/argv"
"${argv[@]}" >"$dir/qemu.log" 2>&1 &
pid=$!
trap 'kill "$pid" 2>/dev/null || true; wait "$pid" 2>/dev/null || true' EXIT
until grep -qF "banger-agent: starting" "$dir/console.log" 2>/dev/null; do
  kill -0 "$pid" 2>/dev/null || { echo "qemu exited before the marker" >&2; cat "$dir/qemu.log" >&2; exit 1; }
  sleep 0.01
done
# The same ready signal banger waits for: the guest agent answering on its
# channel (HELLO, or PONG to a PING; frames are u32 len, u8 type, u32 channel).
python3 - "$dir/agent.sock" <<'PY'
import socket, struct, sys, time
deadline = time.time() + 60
while True:
    try:
        s = socket.socket(socket.AF_UNIX); s.connect(sys.argv[1]); break
    except OSError:
        if time.time() > deadline: sys.exit("agent socket never appeared")
        time.sleep(0.01)
s.settimeout(0.05)
nonce = 0
while time.time() < deadline:
    nonce += 1
    s.sendall(struct.pack(">IBIQ", 13, 2, 0, nonce))
    try:
        head = s.recv(9)
    except socket.timeout:
        continue
    if len(head) == 9 and head[4] in (1, 3):
        sys.exit(0)
sys.exit("agent did not answer")
PY
BOOT
chmod +x "$BARE/prepare.sh" "$BARE/boot.sh"
grep -qF "$MARKER" "$BARE/boot.sh"

exp() { if [[ -n "${OUT:-}" ]]; then mkdir -p "$OUT"; echo "--export-json=$OUT/boot_$1.json"; else echo "--style=full"; fi; }
echo "banger's steps (untimed verbose apply):"; grep -E 'done|Ready' "$WORK/apply-steps.txt" | sed 's/^/  /'
echo "qemu CPU time at Ready (one boot): ${CPU_AT_READY}s; argv: $(tr '\n' ' ' <"$BARE/argv")"
echo "load before: $(cat /proc/loadavg)"

hyperfine --runs "$RUNS" "$(exp single)" \
  --prepare "$WORK/reset.sh; $BARE/prepare.sh" \
  -n "banger apply quick (to Ready)" "$B apply -f $QUICK --yes" \
  -n "bare qemu, same argv (to agent hello)" "$BARE/boot.sh"
echo "load between: $(cat /proc/loadavg)"

hyperfine --runs "$PAR_RUNS" "$(exp parallel)" \
  --prepare "$WORK/reset.sh" \
  -n "banger apply 1 sandbox" "$B apply -f $QUICK --yes" \
  -n "banger apply 8 sandboxes --parallel 8" "$B apply -f $WORK/par8.yaml --yes --parallel 8"
echo "load after: $(cat /proc/loadavg)"
# The last run's 8 QEMUs are still up: their CPU time so far is what 8 boots to
# Ready cost; spread over 2 CPUs that is the floor for the parallel wall time.
cpu8=0
while IFS= read -r pf; do
  pid=$(cat "$pf")
  read -r ut st < <(awk '{print $14, $15}' "/proc/$pid/stat")
  cpu8=$((cpu8 + ut + st))
done < <(find "$STATE/sandboxes" -name qemu.pid)
echo "CPU time of the 8 QEMUs at the end of the last parallel run: $(echo "scale=2; $cpu8 / $(getconf CLK_TCK)" | bc)s (nproc $(nproc))"

"$WORK/reset.sh"
sleep 0.5
if pgrep -f "$WORK" >/dev/null; then
  echo "FAIL: processes using $WORK are still running:" >&2; pgrep -af "$WORK" >&2; exit 1
fi
echo "all sandboxes deleted; no QEMU of this run remains"
