#!/usr/bin/env bash
# Network benchmark (issue 8), side by side, inside a private network namespace:
#   1. TCP throughput: one HTTP download of 64 MiB (from tmpfs) served by busybox httpd
#      in a guest, to the host side of the namespace (curl) and to another guest (busybox
#      wget), bridged vs user mode; the byte count is checked. User mode has no
#      guest-to-guest path except through a port QEMU forwards on the host, so that is
#      what the user-mode guest -> guest row measures.
#   2. Request round trip: 50 HTTP GETs of a 2-byte file from busybox httpd in the
#      guest (curl, new connection each): from the host side of the namespace and
#      from another guest (busybox wget), bridged vs user mode; plus ICMP ping for
#      bridged (user mode does not forward ping to a guest).
#   3. Apply to Ready of one sandbox: network.mode bridged vs none (the cost of
#      setting up the tap, lease and rules), hyperfine, deleting between runs.
# Every sandbox, the namespace and the state directory are removed at the end.
#
# Usage: sudo bench/network.sh [RUNS]    (env: BUILD_DIR, default build)
set -euo pipefail

RUNS=${1:-5}
SRC=$(cd "$(dirname "$0")/.." && pwd)
BUILD_DIR=${BUILD_DIR:-$SRC/build}
BANGER=$BUILD_DIR/cli/banger
WORK=$(mktemp -d /tmp/banger-net-bench.XXXXXX)
NS=banger-bench-$$
export BANGER_NETNS=$NS
B="$BANGER --log-level error --state-dir $WORK/state"
MIB=64

for tool in hyperfine curl ip nft bc busybox; do
  command -v "$tool" >/dev/null || { echo "missing $tool" >&2; exit 1; }
done
[[ -x "$BANGER" ]] || { echo "missing $BANGER (ninja -C $BUILD_DIR banger banger-agent)" >&2; exit 1; }
[[ $(id -u) -eq 0 ]] || { echo "needs root (bridges, taps, nftables in a private namespace)" >&2; exit 1; }

cleanup() {
  set +e
  for n in a b u v solo; do $B delete --yes "$n" >/dev/null 2>&1; done
  while IFS= read -r pf; do
    pid=$(cat "$pf" 2>/dev/null)
    [[ -n "$pid" ]] && tr '\0' ' ' <"/proc/$pid/cmdline" 2>/dev/null | grep -qF "$WORK" && kill "$pid"
  done < <(find "$WORK" -name qemu.pid 2>/dev/null)
  ip netns del "$NS" 2>/dev/null
  rm -rf "$WORK"
}
trap cleanup EXIT
ip netns add "$NS"
in_ns() { ip netns exec "$NS" "$@"; }

sandbox() {  # name mode [port-lines]
  cat <<SPEC
apiVersion: banger.dev/v1
kind: Sandbox
metadata: {name: $1}
spec:
  image: busybox
  memory: 256MiB
  network:
    mode: $2
$3
  readiness: {command: ["true"], timeout: 120s}
---
SPEC
}
{
  sandbox a bridged ""
  sandbox b bridged ""
  sandbox u user "    ports: [{host: 18080, guest: 80}]"
  sandbox v user ""
} >"$WORK/specs.yaml"
$B apply -f "$WORK/specs.yaml" --yes >/dev/null 2>&1
A=$($B get a -o json | python3 -c 'import json,sys; print(json.load(sys.stdin)["status"]["address"])')
echo "a is $A (bridged); u is user mode with 127.0.0.1:18080 forwarded in $NS"

# Web roots (tmpfs, so the disk is not measured) and servers in a and u: a tiny
# file for round trips and a $MIB MiB one for throughput.
for g in a u; do
  $B exec "$g" -- sh -c "mkdir -p /www && mount -t tmpfs -o size=100m tmpfs /www && printf ok >/www/x &&
    dd if=/dev/zero of=/www/big bs=1M count=$MIB 2>/dev/null && httpd -p 80 -h /www" >/dev/null
done

now() { date +%s.%N; }

# MiB/s of one download of /big; fails unless all of it arrived.
tp_host() {  # url
  local out
  out=$(in_ns curl -s -o /dev/null -w '%{size_download} %{time_total}' "$1")
  [[ "${out%% *}" == "$((MIB * 1048576))" ]] || { echo "downloaded ${out%% *} bytes of $1, not $MIB MiB" >&2; exit 1; }
  echo "scale=1; $MIB / ${out##* }" | bc
}
tp_guest() {  # guest url
  local t0 t1 got
  t0=$(now)
  got=$($B exec "$1" -- sh -c "wget -q -O - $2 | wc -c" | tr -dc '0-9')
  t1=$(now)
  [[ "$got" == "$((MIB * 1048576))" ]] || { echo "$1 downloaded ${got:-nothing} bytes of $2, not $MIB MiB" >&2; exit 1; }
  echo "scale=1; $MIB / ($t1 - $t0)" | bc
}

echo
echo "== TCP throughput: one HTTP download of $MIB MiB from busybox httpd in a guest (MiB/s, higher is better)"
echo "bridged  guest -> host   $(tp_host "http://$A/big")"
echo "user     guest -> host   $(tp_host "http://127.0.0.1:18080/big")   (QEMU's forward of 127.0.0.1:18080)"
echo "bridged  guest -> guest  $(tp_guest b "http://a/big")   (wget in b; includes one banger exec, ~0.1 s)"
echo "user     guest -> guest  $(tp_guest v "http://10.0.2.2:18080/big")   (v -> host forward -> u; includes one banger exec)"

echo
echo "== Round trip, 50 HTTP GETs (ms per request, lower is better)"
rt_host() {  # url
  in_ns bash -c "for i in \$(seq 50); do curl -s -o /dev/null -w '%{time_total}\n' $1; done" |
    awk '{s+=$1} END {printf "%.2f", s/NR*1000}'
}
rt_guest() {  # guest url
  local t0 t1
  t0=$(now); $B exec "$1" -- sh -c "for i in \$(seq 50); do wget -q -O /dev/null $2; done"; t1=$(now)
  echo "scale=2; ($t1 - $t0) * 1000 / 50" | bc
}
echo "bridged  host -> guest   $(rt_host "http://$A/x")"
echo "user     host -> guest   $(rt_host "http://127.0.0.1:18080/x")"
echo "bridged  guest -> guest  $(rt_guest b "http://a/x")   (wget in b, per request incl. 1/50 of an exec)"
echo "user     guest -> guest  $(rt_guest v "http://10.0.2.2:18080/x")"
echo "bridged  ping host -> guest (avg ms): $(in_ns busybox ping -q -c 20 "$A" | awk -F/ '/round-trip/ {print $4}')"
echo "bridged  ping guest -> guest (avg ms): $($B exec b -- ping -q -c 20 a | awk -F/ '/round-trip/ {print $4}')"

echo
echo "== Apply to Ready of one sandbox: bridged vs none (hyperfine, $RUNS runs)"
for mode in bridged none; do sandbox solo "$mode" "" | sed '$d' >"$WORK/solo-$mode.yaml"; done
# Keep a and b, so the bridge and table exist as on a host already running sandboxes.
$B delete --yes u >/dev/null; $B delete --yes v >/dev/null
hyperfine --runs "$RUNS" --export-json "$WORK/apply.json" \
  --prepare "$B delete --yes solo >/dev/null 2>&1 || true" \
  -n bridged "$B apply -f $WORK/solo-bridged.yaml --yes" \
  -n none "$B apply -f $WORK/solo-none.yaml --yes"
