#!/usr/bin/env bash
# Configures and builds banger into ./build (Release with debug info).
set -euo pipefail
cd "$(dirname "$0")/.."
JOBS="${JOBS:-$(nproc)}"
cmake -S . -B build -G Ninja -DCMAKE_BUILD_TYPE=RelWithDebInfo ${BANGER_CMAKE_FLAGS:-} >/dev/null
cmake --build build -j "$JOBS"
