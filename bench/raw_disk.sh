#!/usr/bin/env bash
# Raw disk copies for the Firecracker provider (issue 12; docs/benchmarks.md,
# "Raw disk copies for Firecracker"): the cost of one sandbox's root disk made
# by providers/raw_disk.h's CopyRawDisk, as the provider makes it.
#   1. Sparse copy per GiB of data: a dense file of random data (1 and 2 GiB).
#   2. Sparse copy per image: an ext4 image of a ~230 MiB tree (mkfs.ext4 -d,
#      like a Debian minbase image) in a 2 GiB file, grown to 4 GiB as the
#      provider does with disk_bytes.
#   3. Reflink per image and per GiB on XFS (a loop file this script creates,
#      mounts and always removes), when mkfs.xfs exists; else it says so.
# Page cache warm (the base was just written or copied); each number is the
# median of RUNS copies. Needs root for the loop mount.
#
# Usage: bench/raw_disk.sh [RUNS]   (env: BUILD_DIR, default build; WORK_PARENT, default /var/tmp)
set -euo pipefail

RUNS=${1:-5}
SRC=$(cd "$(dirname "$0")/.." && pwd)
BUILD_DIR=${BUILD_DIR:-$SRC/build}
COPY=$BUILD_DIR/bench/raw_disk_copy_bench
WORK=$(mktemp -d "${WORK_PARENT:-/var/tmp}/banger-rawdisk.XXXXXX")
MNT=$WORK/xfs
LOOP=""
cleanup() {
  if mountpoint -q "$MNT" 2>/dev/null; then umount "$MNT"; fi
  if [[ -n "$LOOP" ]]; then losetup -d "$LOOP" 2>/dev/null || true; fi
  rm -rf "$WORK"
}
trap cleanup EXIT

[[ -x "$COPY" ]] || { echo "build the driver first: cmake --build $BUILD_DIR --target raw_disk_copy_bench" >&2; exit 1; }

# median of RUNS copies of $1 to $2; extra args to the driver
median_copy() {
  local src=$1 dst=$2; shift 2
  local times=() out method
  for _ in $(seq "$RUNS"); do
    rm -f "$dst"
    out=$("$COPY" "$src" "$dst" "$@")
    method=${out%% *}
    times+=("$(echo "$out" | cut -d' ' -f2)")
  done
  rm -f "$dst"
  printf '%s %s\n' "$method" "$(printf '%s\n' "${times[@]}" | sort -g | sed -n "$(( (RUNS + 1) / 2 ))p")"
}

echo "machine: $(nproc) cores, $(awk '/MemTotal/ {printf "%.0f GiB", $2/1048576}' /proc/meminfo), $(findmnt -no FSTYPE -T "$WORK") at $WORK, kernel $(uname -r)"

# 1. per GiB, sparse copy of dense data
for gib in 1 2; do
  head -c $((gib << 30)) /dev/urandom >"$WORK/dense-$gib.raw"
  read -r m t < <(median_copy "$WORK/dense-$gib.raw" "$WORK/copy.raw" --no-reflink)
  echo "sparse copy, dense ${gib} GiB: ${t} s ($(awk -v t="$t" -v g="$gib" 'BEGIN {printf "%.2f", t/g}') s/GiB)"
  rm -f "$WORK/dense-$gib.raw"
done

# 2. per image
TREE=$WORK/tree
mkdir -p "$TREE"
cp -a /usr/lib/python3 /usr/share/locale /usr/share/doc /usr/share/perl* "$TREE/" 2>/dev/null || true
used=$(du -sm "$TREE" | cut -f1)
truncate -s 2G "$WORK/image.ext4"
mkfs.ext4 -q -F -d "$TREE" "$WORK/image.ext4"
rm -rf "$TREE"
alloc=$(du -m "$WORK/image.ext4" | cut -f1)
read -r m t < <(median_copy "$WORK/image.ext4" "$WORK/copy.raw" $((4 << 30)) --no-reflink)
echo "sparse copy, image (${used} MiB tree, ${alloc} MiB allocated of 2 GiB, grown to 4 GiB): ${t} s"

# 3. reflink on XFS
if command -v mkfs.xfs >/dev/null; then
  truncate -s 8G "$WORK/xfs.img"
  mkfs.xfs -q -m reflink=1 "$WORK/xfs.img"
  mkdir -p "$MNT"
  LOOP=$(losetup -f --show "$WORK/xfs.img")
  mount "$LOOP" "$MNT"
  cp --sparse=always "$WORK/image.ext4" "$MNT/image.ext4"
  read -r m t < <(median_copy "$MNT/image.ext4" "$MNT/copy.raw" $((4 << 30)))
  echo "$m on XFS, image: ${t} s"
  head -c $((2 << 30)) /dev/urandom >"$MNT/dense.raw"
  read -r m t < <(median_copy "$MNT/dense.raw" "$MNT/copy.raw")
  echo "$m on XFS, dense 2 GiB: ${t} s"
else
  echo "reflink: mkfs.xfs not installed (apt-get install xfsprogs); not measured"
fi
