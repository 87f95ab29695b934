// Benchmark: parse + validate + plan N sandbox specs against a converged
// state (every sandbox already applied and Ready), the work of a no-op
// `banger plan`. Run: build/bench/plan_bench --benchmark_counters_tabular=true
//
// `plan_bench --make-fixture DIR N` writes DIR/specs/*.yaml and a converged
// DIR/state/state.db, so the real CLI can be timed on the same input:
//   hyperfine 'build/cli/banger plan -f DIR/specs --state-dir DIR/state'
#include <benchmark/benchmark.h>

#include <cstdio>
#include <cstring>
#include <filesystem>
#include <string>

#include "base/files.h"
#include "bench/bench_specs.h"
#include "reconciler/plan.h"
#include "spec/loader.h"
#include "state/state_store.h"

namespace banger {
namespace {

namespace fs = std::filesystem;

// Writes N specs (100 per file) and a state database where each is applied
// and Ready. Returns the owner used.
std::string MakeFixture(const fs::path& dir, int n) {
  bench::WriteSpecFiles(dir / "specs", n);
  LoadResult loaded = LoadSpecPaths({dir / "specs"});
  if (loaded.diagnostics.HasErrors()) {
    std::fprintf(stderr, "%s", loaded.diagnostics.ToString().c_str());
    std::abort();
  }
  std::string owner = OwnerFor({fs::weakly_canonical(dir / "specs").string()}, "");
  auto store = StateStore::Open(dir / "state");
  if (!store) std::abort();
  for (const auto& d : loaded.specs) {
    SandboxRecord r;
    r.name = d.spec.name;
    r.id = "id-" + d.spec.name;
    r.owner = owner;
    r.spec_json = CanonicalJson(d.spec);
    r.spec_hash = SpecHash(d.spec);
    r.phase = SandboxPhase::kReady;
    if (!(*store)->PutSandbox(r).ok()) std::abort();
  }
  return owner;
}

void BM_NoOpPlan(benchmark::State& state) {
  int n = static_cast<int>(state.range(0));
  auto tmp = MakeTempDir("banger-bench-");
  if (!tmp) std::abort();
  ScopedRemove cleanup(*tmp);
  std::string owner = MakeFixture(*tmp, n);
  auto store = StateStore::Open(*tmp / "state");
  for (auto _ : state) {
    LoadResult loaded = LoadSpecPaths({*tmp / "specs"});
    auto observed = (*store)->ListSandboxes();
    PlanOptions o;
    o.owner = owner;
    o.artifact_present = [](std::string_view, const std::string&) { return true; };
    Plan p = ComputePlan(loaded.specs, *observed, o);
    if (p.HasChanges()) state.SkipWithError("plan unexpectedly has changes");
    benchmark::DoNotOptimize(p);
  }
  state.SetComplexityN(n);
  state.counters["specs"] = n;
}
BENCHMARK(BM_NoOpPlan)->Arg(1000)->Arg(10000)->Unit(benchmark::kMillisecond)->Complexity(benchmark::oN)->Iterations(3);

}  // namespace
}  // namespace banger

int main(int argc, char** argv) {
  if (argc == 4 && std::strcmp(argv[1], "--make-fixture") == 0) {
    banger::MakeFixture(argv[2], std::atoi(argv[3]));
    return 0;
  }
  benchmark::Initialize(&argc, argv);
  benchmark::RunSpecifiedBenchmarks();
  benchmark::Shutdown();
  return 0;
}
