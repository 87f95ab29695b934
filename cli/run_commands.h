// `banger run`: one command from nothing to a shell (or a command) in a fresh
// sandbox, through the same plan and engine as `apply`.
#pragma once

#include <set>
#include <string>
#include <vector>

#include "base/status.h"
#include "cli/common.h"
#include "host/config.h"

namespace CLI {
class App;
}

namespace banger::cli {

/// The flags of `banger run` (empty strings and zeros: the config's run: defaults).
struct RunFlags {
  std::string name;
  std::string image;
  int cpus = 0;
  std::string memory;
  std::string disk;
  std::vector<std::string> ports;  // HOST:GUEST[/tcp|udp]
  std::vector<std::string> env;    // KEY=VALUE
  std::string network;
  std::string path;                // workspace: a host git repository
  std::string workspace_mode;      // tracked (default) | full
  bool include_untracked = false;  // tracked: also untracked, non-ignored files
};

/// The sandbox spec `banger run` applies, as a YAML document that `banger
/// apply -f` accepts unchanged. Flag errors name the flag.
Result<std::string> RunSpecYaml(const RunFlags& flags, const host::Config& config);

/// A readable DNS-label name ("brave-otter") that is not in `taken`.
std::string GenerateSandboxName(const std::set<std::string>& taken);

/// The apply-set owner of a sandbox made by `banger run`: "run:NAME".
std::string RunOwner(const std::string& name);

/// How many of `argv` (the whole command line) follow the `--` after `run`:
/// those are CMD, the positionals before it PATH.
size_t CountAfterDoubleDash(const std::vector<std::string>& argv);

/// Registers `run` on `app`; it sets `exit_code` (which must outlive the
/// parse). `raw_args` is the command line (to find the `--`), read when it runs.
void AddRunCommands(CLI::App& app, const Globals& globals, int& exit_code,
                    const std::vector<std::string>* raw_args);

}  // namespace banger::cli
