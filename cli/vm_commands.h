// Helpers for commands that talk to a running sandbox directly.
#pragma once

#include <filesystem>
#include <map>
#include <string>
#include <vector>

#include "base/clock.h"
#include "base/status.h"
#include "state/state_store.h"

namespace banger::cli {

/// Runs argv in the sandbox through its guest agent, wiring this process's
/// stdin (when `pass_stdin`), stdout and stderr to it; with `tty`, allocates a
/// terminal in the guest and puts the local one in raw mode for the duration.
/// Returns the command's exit code (128+signal when killed).
Result<int> RunInteractiveExec(const SandboxRecord& record, const std::vector<std::string>& argv,
                               const std::map<std::string, std::string>& env, const std::string& cwd,
                               bool pass_stdin, bool tty);

/// Copies a file to stdout; with `follow`, keeps copying what is appended
/// until interrupted. False if the file cannot be read.
bool FollowFile(const std::filesystem::path& path, bool follow, Clock& clock);

}  // namespace banger::cli
