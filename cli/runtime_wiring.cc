#include "cli/runtime_wiring.h"

#include <CLI/CLI.hpp>

namespace banger::cli {
namespace {

// Artifacts recorded in the state database. Pulling lands with the images and
// kernels modules; until then a missing artifact is reported as such.
class RecordedArtifacts final : public ArtifactStore {
 public:
  RecordedArtifacts(StateStore& store, std::string default_kernel)
      : store_(store), default_kernel_(std::move(default_kernel)) {}
  bool ImagePresent(const std::string& name) override { return store_.GetImage(name).ok(); }
  bool KernelPresent(const std::string& name) override { return store_.GetKernel(name).ok(); }
  Result<ImageRecord> EnsureImage(const std::string& name,
                                  const std::function<void(uint64_t, uint64_t)>&) override {
    auto r = store_.GetImage(name);
    if (!r && r.error().code() == StatusCode::kNotFound) {
      return NotFound("image \"" + name + "\" is not present on this host");
    }
    return r;
  }
  Result<KernelRecord> EnsureKernel(const std::string& name,
                                    const std::function<void(uint64_t, uint64_t)>&) override {
    auto r = store_.GetKernel(name);
    if (!r && r.error().code() == StatusCode::kNotFound) {
      return NotFound("kernel \"" + name + "\" is not present on this host");
    }
    return r;
  }
  std::string DefaultKernel() const override { return default_kernel_; }

 private:
  StateStore& store_;
  std::string default_kernel_;
};

class Wiring final : public RuntimeWiring {
 public:
  Wiring(StateStore& store, const Config& config) : artifacts_(store, config.default_kernel) {}
  SandboxRuntime* runtime() override { return nullptr; }
  ArtifactStore& artifacts() override { return artifacts_; }

 private:
  RecordedArtifacts artifacts_;
};

}  // namespace

Result<std::unique_ptr<RuntimeWiring>> MakeRuntimeWiring(const Config& config, const StateLayout&,
                                                         StateStore& store, Clock&) {
  return std::unique_ptr<RuntimeWiring>(std::make_unique<Wiring>(store, config));
}

void AddRuntimeCommands(CLI::App&, std::function<Result<RuntimeCommandContext>()>, int&) {}

}  // namespace banger::cli
