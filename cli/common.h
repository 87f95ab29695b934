// What several command files share: global flags, the lazily opened host
// context, exit codes, and the plan/apply helpers that `apply` and `run`
// both go through.
#pragma once

#include <memory>
#include <string>
#include <vector>

#include "base/status.h"
#include "host/config.h"
#include "host/host.h"
#include "reconciler/engine.h"
#include "reconciler/plan.h"
#include "spec/loader.h"

namespace banger::cli {

// Exit codes (docs/cli.md).
inline constexpr int kExitOk = 0;
inline constexpr int kExitError = 1;
inline constexpr int kExitChanges = 2;
inline constexpr int kExitUsage = 64;

/// The global flags (--state-dir, --config, --log-level, -v).
struct Globals {
  std::string state_dir;
  std::string config_path;
  std::string log_level = "warn";
  bool verbose = false;
};

/// The host, opened by the commands that need it (validate, schema and
/// config show never create a state directory).
class Context {
 public:
  explicit Context(const Globals& g) : globals_(g) {}

  Status Init() {
    BANGER_ASSIGN_OR_RETURN(host_, host::Host::Open(Options(globals_)));
    return OkStatus();
  }

  static host::HostOptions Options(const Globals& g) { return {g.state_dir, g.config_path}; }

  host::Host& host() { return *host_; }
  Engine MakeEngine(EventSink& sink, int parallel) { return host_->MakeEngine(sink, parallel); }
  StateStore& store() { return host_->store(); }
  Clock& clock() { return host_->clock(); }
  Result<SandboxRecord> FindSandbox(const std::string& name) { return host_->FindSandbox(name); }
  const host::Config& config() const { return host_->config(); }
  const StateLayout& layout() const { return host_->layout(); }

 private:
  Globals globals_;
  std::unique_ptr<host::Host> host_;
};

/// Prints the error and returns kExitError.
int Fail(const Status& s);

/// Opens the host context; on failure prints the error and sets exit_code.
bool OpenOrFail(Context& ctx, int& exit_code);

/// Loads specs and prints diagnostics; returns false on errors.
bool LoadSpecs(const std::vector<std::string>& paths, LoadResult& out);

/// The paths made absolute and canonical (what OwnerFor records).
std::vector<std::string> AbsolutePaths(const std::vector<std::string>& paths);

/// Refreshes the observed state, then plans `specs` for apply set `owner`
/// (OwnerFor(...) or "run:NAME").
Result<Plan> MakePlan(Context& ctx, const LoadResult& specs, const std::string& owner, bool prune,
                      EventSink& sink);

/// Asks on stderr; true for y/yes.
bool Confirm(const std::string& question);

/// "✓ web: created, Ready at 10.0.0.2 (3.1s)" / "✗ web: create failed after ...".
std::string ResultLine(const ChangeResult& r);

/// `apply -o json`'s report.
std::string ReportJson(const ApplyReport& rep);

/// The names of the recorded sandboxes, read without creating a state
/// directory (none recorded when it does not exist yet).
Result<std::vector<std::string>> ExistingSandboxNames(const Globals& g);

}  // namespace banger::cli
