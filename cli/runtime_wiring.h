// Builds the real engine ports (hypervisor runtime, image and kernel stores)
// from the host configuration, and the commands that drive them directly
// (image, kernel, exec, logs, ...).
#pragma once

#include <functional>
#include <memory>

#include "base/clock.h"
#include "cli/config.h"
#include "reconciler/ports.h"
#include "state/layout.h"
#include "state/state_store.h"

namespace CLI {
class App;
}

namespace banger::cli {

class RuntimeWiring {
 public:
  virtual ~RuntimeWiring() = default;
  /// Null when no hypervisor can run on this host.
  virtual SandboxRuntime* runtime() = 0;
  virtual ArtifactStore& artifacts() = 0;
};

Result<std::unique_ptr<RuntimeWiring>> MakeRuntimeWiring(const Config& config,
                                                         const StateLayout& layout,
                                                         StateStore& store, Clock& clock);

struct RuntimeCommandContext {
  Config config;
  StateLayout layout;
  bool verbose = false;
};

/// Registers `image`, `kernel`, `exec`, `logs`, ... on `app`.
void AddRuntimeCommands(CLI::App& app,
                        std::function<Result<RuntimeCommandContext>()> context,
                        int& exit_code);

}  // namespace banger::cli
