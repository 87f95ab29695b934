#!/usr/bin/env bash
# Reproducible pull+flatten benchmark: banger's oci module versus
# `skopeo copy docker://… oci:DIR` + `umoci raw unpack`, on a ~100 MiB,
# 4-layer image (deterministic content) served by a local docker-registry on
# 127.0.0.1. Cold = empty blob cache; warm = cache kept, new destination.
#
# Usage: bench/oci_pull.sh [RUNS]      (env: BUILD_DIR, default build-oci; WORK, default mktemp)
# Needs: docker-registry, skopeo, umoci, openssl, python3, ninja, c++.
set -euo pipefail

RUNS=${1:-3}
SRC=$(cd "$(dirname "$0")/.." && pwd)
BUILD_DIR=${BUILD_DIR:-$SRC/build-oci}
WORK=${WORK:-$(mktemp -d /tmp/banger-oci-bench.XXXXXX)}
REG_PID=""

cleanup() {
  if [[ -n "$REG_PID" ]]; then kill "$REG_PID" 2>/dev/null || true; wait "$REG_PID" 2>/dev/null || true; fi
  rm -rf "$WORK"
}
trap cleanup EXIT

for tool in docker-registry skopeo umoci openssl python3 ninja c++; do
  command -v "$tool" >/dev/null || { echo "missing $tool" >&2; exit 1; }
done

# --- build the driver against banger_oci ----------------------------------
if [[ ! -f "$BUILD_DIR/build.ninja" ]]; then
  cmake -S "$SRC" -B "$BUILD_DIR" -G Ninja >/dev/null
fi
ninja -C "$BUILD_DIR" -j2 banger_oci banger_base >/dev/null
DRIVER="$WORK/oci_pull"
c++ -std=c++20 -O2 -I"$SRC" "$SRC/bench/oci_pull_main.cc" \
  "$BUILD_DIR/oci/libbanger_oci.a" "$BUILD_DIR/base/libbanger_base.a" \
  -lcurl -larchive -lzstd -lcrypto -lspdlog -lfmt -pthread -o "$DRIVER"

# --- deterministic image content -------------------------------------------
prng() {  # prng SEED BYTES: reproducible incompressible bytes
  { openssl enc -aes-128-ctr -nosalt -K "$(printf '%032x' "$1")" -iv 0 </dev/zero 2>/dev/null || true; } | head -c "$2"
}
LAYOUT="$WORK/layout"
mkdir -p "$LAYOUT/blobs/sha256"
echo '{"imageLayoutVersion":"1.0.0"}' >"$LAYOUT/oci-layout"
layers_json=""
diff_ids=""
for l in 1 2 3 4; do
  d="$WORK/layer$l"
  mkdir -p "$d/data/l$l" "$d/text"
  for f in $(seq 1 200); do prng $((l * 1000 + f)) 102400 >"$d/data/l$l/f$f.bin"; done
  { yes "banger layer $l text line for compressible content" || true; } | head -c $((5 * 1024 * 1024)) >"$d/text/l$l.txt"
  if [[ $l -gt 1 ]]; then  # whiteouts of a few files of the layer below
    mkdir -p "$d/data/l$((l - 1))"
    for f in 1 2 3; do : >"$d/data/l$((l - 1))/.wh.f$f.bin"; done
  fi
  tar --sort=name --mtime=@1700000000 --owner=0 --group=0 --numeric-owner -C "$d" -cf "$WORK/l$l.tar" .
  diff_ids+="\"sha256:$(sha256sum "$WORK/l$l.tar" | cut -d' ' -f1)\","
  gzip -n -1 <"$WORK/l$l.tar" >"$WORK/l$l.tar.gz"
  dg=$(sha256sum "$WORK/l$l.tar.gz" | cut -d' ' -f1)
  mv "$WORK/l$l.tar.gz" "$LAYOUT/blobs/sha256/$dg"
  rm -rf "$d" "$WORK/l$l.tar"
  layers_json+="{\"mediaType\":\"application/vnd.oci.image.layer.v1.tar+gzip\",\"digest\":\"sha256:$dg\",\"size\":$(stat -c %s "$LAYOUT/blobs/sha256/$dg")},"
done
config="{\"architecture\":\"amd64\",\"os\":\"linux\",\"config\":{},\"rootfs\":{\"type\":\"layers\",\"diff_ids\":[${diff_ids%,}]}}"
printf '%s' "$config" >"$WORK/config"
cdg=$(sha256sum "$WORK/config" | cut -d' ' -f1); mv "$WORK/config" "$LAYOUT/blobs/sha256/$cdg"
manifest="{\"schemaVersion\":2,\"mediaType\":\"application/vnd.oci.image.manifest.v1+json\",\"config\":{\"mediaType\":\"application/vnd.oci.image.config.v1+json\",\"digest\":\"sha256:$cdg\",\"size\":${#config}},\"layers\":[${layers_json%,}]}"
printf '%s' "$manifest" >"$WORK/manifest"
mdg=$(sha256sum "$WORK/manifest" | cut -d' ' -f1); msize=$(stat -c %s "$WORK/manifest")
mv "$WORK/manifest" "$LAYOUT/blobs/sha256/$mdg"
echo "{\"schemaVersion\":2,\"manifests\":[{\"mediaType\":\"application/vnd.oci.image.manifest.v1+json\",\"digest\":\"sha256:$mdg\",\"size\":$msize,\"annotations\":{\"org.opencontainers.image.ref.name\":\"bench\"}}]}" >"$LAYOUT/index.json"
IMAGE_BYTES=$(du -sb "$LAYOUT/blobs" | cut -f1)

# --- local registry ---------------------------------------------------------
PORT=$(python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])')
cat >"$WORK/registry.yml" <<YAML
version: 0.1
log:
  level: error
storage:
  filesystem:
    rootdirectory: $WORK/registry
http:
  addr: 127.0.0.1:$PORT
YAML
docker-registry serve "$WORK/registry.yml" >"$WORK/registry.log" 2>&1 &
REG_PID=$!
for _ in $(seq 1 100); do
  curl -fs "http://127.0.0.1:$PORT/v2/" >/dev/null 2>&1 && break
  sleep 0.05
done
REF="127.0.0.1:$PORT/bench/img:1"
skopeo copy -q --dest-tls-verify=false "oci:$LAYOUT:bench" "docker://$REF"

# --- runs ---------------------------------------------------------------------
now() { date +%s.%N; }
declare -a bc bw sc sw
for i in $(seq 1 "$RUNS"); do
  rm -rf "$WORK/cache" "$WORK/dest"; mkdir -p "$WORK/dest"; sync
  t=$(now); "$DRIVER" "$REF" "$WORK/dest" "$WORK/cache" >"$WORK/cold.json"; bc+=("$(echo "$(now) - $t" | bc)")
  rm -rf "$WORK/dest"; mkdir -p "$WORK/dest"
  t=$(now); "$DRIVER" "$REF" "$WORK/dest" "$WORK/cache" >"$WORK/warm.json"; bw+=("$(echo "$(now) - $t" | bc)")
  grep -q '"bytes_downloaded": 0,' "$WORK/warm.json" || { echo "warm pull downloaded bytes" >&2; exit 1; }

  rm -rf "$WORK/sk" "$WORK/umoci-root"; sync
  t=$(now)
  skopeo copy -q --src-tls-verify=false "docker://$REF" "oci:$WORK/sk:img"
  umoci raw unpack --image "$WORK/sk:img" "$WORK/umoci-root" >/dev/null 2>&1
  sc+=("$(echo "$(now) - $t" | bc)")
  rm -rf "$WORK/umoci-root"
  t=$(now)
  skopeo copy -q --src-tls-verify=false "docker://$REF" "oci:$WORK/sk:img"
  umoci raw unpack --image "$WORK/sk:img" "$WORK/umoci-root" >/dev/null 2>&1
  sw+=("$(echo "$(now) - $t" | bc)")
  # Same tree? (file list and contents; umoci and banger must agree)
  if ! diff -r --no-dereference "$WORK/dest" "$WORK/umoci-root" >/dev/null; then
    echo "trees differ between banger and umoci" >&2; exit 1
  fi
done

median() { printf '%s\n' "$@" | sort -g | awk '{a[NR]=$1} END {print a[int((NR+1)/2)]}'; }
echo "image: 4 gzip layers, $((IMAGE_BYTES / 1048576)) MiB compressed; tree $(du -sb "$WORK/dest" | cut -f1) bytes; runs: $RUNS (median seconds)"
printf '%-34s %8s %8s\n' "tool" "cold" "warm"
printf '%-34s %8.2f %8.2f\n' "banger PullAndFlatten" "$(median "${bc[@]}")" "$(median "${bw[@]}")"
printf '%-34s %8.2f %8.2f\n' "skopeo copy + umoci raw unpack" "$(median "${sc[@]}")" "$(median "${sw[@]}")"
