// Driver for bench/raw_disk.sh: one per-sandbox raw disk copy exactly as the
// Firecracker provider makes it (providers/raw_disk.h), timed.
//   raw_disk_copy_bench SRC DST [SIZE_BYTES] [--no-reflink]
// prints: method seconds bytes_written
#include <chrono>
#include <cstdio>
#include <cstdlib>
#include <string>

#include "providers/raw_disk.h"

int main(int argc, char** argv) {
  if (argc < 3) {
    std::fprintf(stderr, "usage: %s SRC DST [SIZE_BYTES] [--no-reflink]\n", argv[0]);
    return 2;
  }
  uint64_t size = 0;
  bool reflink = true;
  for (int i = 3; i < argc; ++i) {
    std::string a = argv[i];
    if (a == "--no-reflink") reflink = false;
    else size = std::strtoull(a.c_str(), nullptr, 10);
  }
  auto t0 = std::chrono::steady_clock::now();
  auto r = banger::CopyRawDisk(argv[1], argv[2], size, reflink);
  double s = std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();
  if (!r) {
    std::fprintf(stderr, "%s\n", r.error().message().c_str());
    return 1;
  }
  std::printf("%s %.4f %llu\n", reflink && r->method == banger::RawCopyMethod::kReflink ? "reflink" : "sparse", s,
              static_cast<unsigned long long>(r->bytes_written));
  return 0;
}
