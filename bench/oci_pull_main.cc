// Driver for bench/oci_pull.sh: pulls and flattens one image with banger's
// oci module and prints one JSON line. Built as target oci_pull_bench
// (bench/CMakeLists.txt).
#include <chrono>
#include <cstdio>
#include <cstdlib>
#include <filesystem>
#include <string>

#include "oci/puller.h"

int main(int argc, char** argv) {
  if (argc != 4) {
    std::fprintf(stderr, "usage: %s REFERENCE DEST_DIR BLOB_DIR\n", argv[0]);
    return 2;
  }
  banger::oci::PullOptions opts;
  opts.blob_dir = argv[3];
  // For the phase breakdown in bench/oci_pull.sh: layers over N connections.
  if (const char* p = std::getenv("BANGER_BENCH_PARALLEL_LAYERS"); p && *p) opts.parallel_layers = std::atoi(p);
  auto start = std::chrono::steady_clock::now();
  auto r = banger::oci::PullAndFlatten(argv[1], argv[2], opts);
  double secs = std::chrono::duration<double>(std::chrono::steady_clock::now() - start).count();
  if (!r.ok()) {
    std::fprintf(stderr, "pull failed: %s\n", r.error().ToString().c_str());
    return 1;
  }
  std::printf("{\"seconds\": %.3f, \"bytes_downloaded\": %llu, \"tree_bytes\": %llu}\n", secs,
              static_cast<unsigned long long>(r->bytes_downloaded),
              static_cast<unsigned long long>(r->tree_bytes));
  return 0;
}
