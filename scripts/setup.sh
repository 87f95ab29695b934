#!/usr/bin/env bash
# Installs everything banger needs to build, run and test on Debian 12.
# Idempotent: running it again installs nothing new.
set -euo pipefail

PACKAGES=(
  # toolchain
  build-essential cmake ninja-build pkg-config git
  # fuzzing (scripts/fuzz.sh): clang and its libFuzzer/sanitizer runtimes
  clang libclang-rt-14-dev
  # libraries
  libyaml-cpp-dev libsqlite3-dev libcurl4-openssl-dev libzstd-dev libarchive-dev libext2fs-dev
  libspdlog-dev libfmt-dev libcli11-dev nlohmann-json3-dev libssl-dev
  libgtest-dev libgmock-dev libbenchmark-dev libgit2-dev
  # runtime: VMs, disks, kernels, images
  qemu-system-x86 qemu-utils e2fsprogs busybox-static linux-image-amd64 debootstrap
  iproute2 nftables procps xz-utils zstd lz4 bzip2 cpio kmod openssh-client
  # tests and benchmarks: a real OCI registry, a real sshd, a real DNS client
  # (dig, for the responder's tests), reference tools
  docker-registry openssh-server bind9-dnsutils skopeo umoci hyperfine sqlite3 bc
)

if [ "$(id -u)" -ne 0 ]; then
  SUDO=sudo
else
  SUDO=
fi

missing=()
for p in "${PACKAGES[@]}"; do
  if ! dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed"; then
    missing+=("$p")
  fi
done

if [ "${#missing[@]}" -gt 0 ]; then
  echo "banger setup: installing ${missing[*]}"
  export DEBIAN_FRONTEND=noninteractive
  $SUDO apt-get update -qq
  $SUDO apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null
fi

# The Debian registry package starts a service on :5000 on install; banger's
# tests start their own registries on loopback and do not need it.
if command -v systemctl >/dev/null 2>&1 && systemctl is-active --quiet docker-registry 2>/dev/null; then
  $SUDO systemctl stop docker-registry || true
fi
# openssh-server likewise enables and starts the system sshd on :22; banger's
# tests start their own sshd on a loopback port and do not need it.
if command -v systemctl >/dev/null 2>&1 && systemctl is-active --quiet ssh 2>/dev/null; then
  $SUDO systemctl stop ssh || true
  $SUDO systemctl disable --quiet ssh || true
fi
echo "banger setup: dependencies present"
