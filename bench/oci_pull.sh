#!/usr/bin/env bash
# Reproducible image-pull benchmark (issue 3), all in one run against a
# ~105 MiB, 4-layer gzip image (deterministic content) served by a local
# docker-registry on 127.0.0.1:
#   cold     banger image pull REF into a fresh state dir (pull + ext4 root disk written
#            straight from the layer streams), and the same with BANGER_DISK_WRITER=tree
#            (flatten into a tree, mkfs.ext4 -d, ownership fixup: the path before issue 11)
#   vs       skopeo copy docker://REF oci:DIR + umoci raw unpack + mkfs.ext4 -d (what a user
#            would script instead), also from nothing
#   warm     banger image pull REF again after `banger image rm` (blobs and the built
#            root disk cached: no layer download, no flatten, no mkfs; issue 11)
#   alias    banger image pull REF under another name while the first is installed (same
#            digest: links the cached disk)
#   present  banger image pull REF when the image is already installed
#   lib      oci_pull_bench: banger's PullAndFlatten alone (no ext4), for reference
#   phases   where a cold pull's time goes: PullAndFlatten (parallel layers) vs the same with
#            one connection, and mkfs.ext4 -d of the flattened tree alone
# Targets: banger cold <= 0.5 x the alternative (issue 11); cached re-pull < 50 ms.
# "Cold" means empty blob cache and no image; the registry's files are in the
# host page cache in every case (no cache dropping on a shared machine).
#
# Usage: bench/oci_pull.sh [RUNS]   (env: BUILD_DIR, default build-bench; OUT, a directory
#        for hyperfine's JSON exports, default: none kept)
# Needs: ninja -C BUILD_DIR banger oci_pull_bench; docker-registry, skopeo, umoci,
#        mkfs.ext4, hyperfine, openssl, python3, curl.
set -euo pipefail

RUNS=${1:-3}
SRC=$(cd "$(dirname "$0")/.." && pwd)
BUILD_DIR=${BUILD_DIR:-$SRC/build-bench}
BANGER=$BUILD_DIR/cli/banger
DRIVER=$BUILD_DIR/bench/oci_pull_bench
WORK=$(mktemp -d /tmp/banger-oci-bench.XXXXXX)
REG_PID=""

cleanup() {
  if [[ -n "$REG_PID" ]]; then kill "$REG_PID" 2>/dev/null || true; wait "$REG_PID" 2>/dev/null || true; fi
  rm -rf "$WORK"
}
trap cleanup EXIT

for tool in docker-registry skopeo umoci mkfs.ext4 hyperfine openssl python3 curl; do
  command -v "$tool" >/dev/null || { echo "missing $tool" >&2; exit 1; }
done
for f in "$BANGER" "$DRIVER"; do
  [[ -x "$f" ]] || { echo "missing $f (ninja -C $BUILD_DIR banger oci_pull_bench)" >&2; exit 1; }
done

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
  for f in $(seq 1 260); do prng $((l * 1000 + f)) 102400 >"$d/data/l$l/f$f.bin"; done
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
# The alternative, as one script hyperfine can run: copy, unpack, build a disk
# of the same size banger chose (read from banger's disk below).
cat >"$WORK/alt.sh" <<'ALT'
#!/usr/bin/env bash
set -euo pipefail
ref=$1 work=$2 size=$3
skopeo copy -q --src-tls-verify=false "docker://$ref" "oci:$work/sk:img"
umoci raw unpack --image "$work/sk:img" "$work/alt-root" >/dev/null 2>&1
truncate -s "$size" "$work/alt.ext4"
mkfs.ext4 -q -F -d "$work/alt-root" -L rootfs -E root_owner=0:0,nodiscard "$work/alt.ext4"
ALT
chmod +x "$WORK/alt.sh"

B="$BANGER --log-level error --state-dir $WORK/state"
# One untimed pull to learn the disk size banger picks and to check the tree.
$B image pull --name bench "$REF" >/dev/null
DISK=$(find "$WORK/state" -name '*.ext4' -size +1M | head -1)
[[ -n "$DISK" ]] || { echo "no root disk found under $WORK/state" >&2; find "$WORK/state" >&2; exit 1; }
SIZE=$(stat -c %s "$DISK")
mkdir -p "$WORK/lib-root"
"$DRIVER" "$REF" "$WORK/lib-root" "$WORK/lib-cache" >"$WORK/lib.json"
"$WORK/alt.sh" "$REF" "$WORK" "$SIZE"
if ! diff -r --no-dereference "$WORK/lib-root" "$WORK/alt-root" >/dev/null; then
  echo "trees differ between banger and umoci" >&2; exit 1
fi
# banger's disk (written from the layer streams) holds what umoci unpacked.
mkdir -p "$WORK/banger-root"
debugfs -R "rdump / $WORK/banger-root" "$DISK" >/dev/null 2>&1
if ! diff -r -x lost+found --no-dereference "$WORK/banger-root" "$WORK/alt-root" >/dev/null; then
  echo "banger's root disk and umoci's tree differ" >&2
  diff -rq -x lost+found --no-dereference "$WORK/banger-root" "$WORK/alt-root" | head >&2; exit 1
fi
rm -rf "$WORK/banger-root"
TREE_BYTES=$(du -sb "$WORK/alt-root" | cut -f1)
rm -rf "$WORK/state" "$WORK/lib-root" "$WORK/lib-cache" "$WORK/sk" "$WORK/alt-root" "$WORK/alt.ext4"

exp() { if [[ -n "${OUT:-}" ]]; then mkdir -p "$OUT"; echo "--export-json=$OUT/oci_pull_$1.json"; else echo "--style=full"; fi; }
echo "image: 4 gzip layers, $((IMAGE_BYTES / 1048576)) MiB compressed, tree $((TREE_BYTES / 1048576)) MiB, root disk $((SIZE / 1048576)) MiB"
echo "load before: $(cat /proc/loadavg)"

# Cold: banger vs the alternative, side by side.
hyperfine --runs "$RUNS" "$(exp cold)" \
  --prepare "rm -rf $WORK/state $WORK/sk $WORK/alt-root $WORK/alt.ext4; sync" \
  -n "banger image pull (cold)" "$B image pull --name bench $REF" \
  -n "banger image pull (cold, BANGER_DISK_WRITER=tree)" "BANGER_DISK_WRITER=tree $B image pull --name bench $REF" \
  -n "skopeo+umoci+mkfs.ext4 (cold)" "$WORK/alt.sh $REF $WORK $SIZE"

# Warm re-pull: the last cold run left the image installed with its blobs cached.
rm -rf "$WORK/state"; $B image pull --name bench "$REF" >/dev/null
blobs_before=$(find "$WORK/state" -type f | wc -l)
hyperfine --runs "$RUNS" "$(exp warm)" \
  --prepare "$B image rm bench >/dev/null; sync" \
  -n "banger image pull after image rm (blobs cached)" "$B image pull --name bench $REF"
# banger refuses a pull of an installed image (exit 1, "already installed"), so
# hyperfine must ignore the exit code; the check below makes sure that is all it does.
if $B image pull --name bench "$REF" >"$WORK/present.out" 2>&1; then
  echo "note: pull of an installed image exited 0: $(cat "$WORK/present.out")"
else
  echo "pull of an installed image exits non-zero, saying: $(cat "$WORK/present.out")"
fi
hyperfine -N -i --warmup 2 --runs 20 "$(exp present)" \
  -n "banger image pull (already installed)" "$B image pull --name bench $REF"
[[ $(find "$WORK/state" -type f | wc -l) -eq $blobs_before ]] || echo "note: state file count changed across warm pulls" >&2

# The same digest under another name: a link to the cached disk.
hyperfine --runs "$RUNS" "$(exp alias)" \
  --prepare "$B image rm bench2 >/dev/null 2>&1 || true; sync" \
  -n "banger image pull --name bench2 (same digest installed as bench)" "$B image pull --name bench2 $REF"
[[ $(stat -c %i "$(find "$WORK/state/images" -name rootfs.ext4 | head -1)") == \
   $(stat -c %i "$(find "$WORK/state/images" -name rootfs.ext4 | tail -1)") ]] || echo "note: bench and bench2 do not share one disk" >&2

# Library only, cold (blob cache removed each run), for reference, and the
# phases of a cold pull: layers over 4 connections vs 1, then mkfs.ext4 -d of
# the flattened tree alone (the rest of a cold pull is FixupExt4 and publishing).
hyperfine --runs "$RUNS" "$(exp lib)" \
  --prepare "rm -rf $WORK/lib-root $WORK/lib-cache; mkdir -p $WORK/lib-root" \
  -n "oci_pull_bench PullAndFlatten (cold, no ext4)" "$DRIVER $REF $WORK/lib-root $WORK/lib-cache" \
  -n "oci_pull_bench PullAndFlatten (cold, no ext4, 1 connection)" "BANGER_BENCH_PARALLEL_LAYERS=1 $DRIVER $REF $WORK/lib-root $WORK/lib-cache"
hyperfine --runs "$RUNS" "$(exp mkfs)" \
  --prepare "rm -f $WORK/phase.ext4; truncate -s $SIZE $WORK/phase.ext4" \
  -n "mkfs.ext4 -d of the flattened tree alone" \
  "mkfs.ext4 -q -F -d $WORK/lib-root -L rootfs -E root_owner=0:0,nodiscard -b 4096 $WORK/phase.ext4"
echo "load after: $(cat /proc/loadavg)"
