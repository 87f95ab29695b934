// Benchmark driver for a watcher's resync pass (docs/benchmarks.md, section 4):
// N sandboxes declared in spec files, all converged, a real SQLite state
// database and the real DirectorySource; the VMs are the FakeRuntime (a VM
// boot is not what this measures). Prints the time of each no-op pass and the
// process's peak RSS.
//
//   build/bench/watch_resync_bench [N=1000] [PASSES=20]
#include <sys/resource.h>

#include <algorithm>
#include <chrono>
#include <cstdio>
#include <cstdlib>
#include <filesystem>
#include <string>
#include <vector>

#include "base/files.h"
#include "bench/bench_specs.h"
#include "reconciler/engine.h"
#include "reconciler/watcher.h"
#include "sources/directory_source.h"
#include "tests/support/fakes.h"

namespace banger {
namespace {

namespace fs = std::filesystem;

long PeakRssKiB() {
  rusage u{};
  getrusage(RUSAGE_SELF, &u);
  return u.ru_maxrss;
}

int Main(int argc, char** argv) {
  int n = argc > 1 ? std::atoi(argv[1]) : 1000;
  int passes = argc > 2 ? std::atoi(argv[2]) : 20;
  auto tmp = MakeTempDir("banger-watch-bench");
  if (!tmp) return 1;
  ScopedRemove cleanup(*tmp);
  fs::path specs = *tmp / "specs";
  bench::WriteSpecFiles(specs, n);
  auto store = StateStore::Open(*tmp / "state");
  if (!store) {
    std::fprintf(stderr, "%s\n", store.error().ToString().c_str());
    return 1;
  }
  testing::FakeRuntime runtime;
  testing::FakeArtifacts artifacts;
  artifacts.AddImage("busybox");
  artifacts.AddKernel("default-kernel");
  auto clock = MakeSystemClock();
  NullEventSink sink;
  EngineOptions eo;
  eo.locks_dir = *tmp / "locks";
  Engine engine(**store, &runtime, artifacts, *clock, sink, eo);
  DirectorySource source({specs});
  WatchOptions wo;
  Watcher watcher(**store, engine, source, *clock, wo);

  auto t0 = std::chrono::steady_clock::now();
  PassResult first = watcher.RunOnce();
  double create_s = std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();
  if (!first.converged) {
    std::fprintf(stderr, "first pass did not converge: %s\n",
                 first.problems.empty() ? "?" : first.problems[0].c_str());
    return 1;
  }
  long rss_after_create = PeakRssKiB();
  std::vector<double> ms;
  for (int p = 0; p < passes; ++p) {
    auto s = std::chrono::steady_clock::now();
    PassResult r = watcher.RunOnce();
    ms.push_back(std::chrono::duration<double, std::milli>(std::chrono::steady_clock::now() - s).count());
    if (!r.converged || runtime.boots() != n) {
      std::fprintf(stderr, "a no-op pass changed something (boots %d)\n", runtime.boots());
      return 1;
    }
  }
  std::sort(ms.begin(), ms.end());
  std::printf("sandboxes: %d (all converged; fake VMs, real SQLite, real spec files)\n", n);
  std::printf("first pass (creates all): %.2f s\n", create_s);
  std::printf("no-op resync pass over %d runs: min %.1f ms, median %.1f ms, max %.1f ms\n", passes, ms.front(),
              ms[ms.size() / 2], ms.back());
  std::printf("peak RSS: %.1f MiB after the first pass, %.1f MiB at the end\n", rss_after_create / 1024.0,
              PeakRssKiB() / 1024.0);
  return 0;
}

}  // namespace
}  // namespace banger

int main(int argc, char** argv) { return banger::Main(argc, argv); }
