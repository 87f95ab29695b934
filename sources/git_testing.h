// Test helper shared by the sources/ integration tests: runs the git CLI
// reproducibly (fixed identity, no user or system configuration).
#pragma once

#include <gtest/gtest.h>

#include <chrono>
#include <filesystem>
#include <string>
#include <vector>

#include "base/command_runner.h"
#include "base/strings.h"

namespace banger::testing {

/// Runs `git ARGS` with HOME=`home`; returns its trimmed stdout, or records
/// a test failure and returns "".
inline std::string RunGit(CommandRunner& runner, const std::filesystem::path& home,
                          const std::vector<std::string>& args) {
  CommandSpec spec;
  spec.argv = {"git"};
  spec.argv.insert(spec.argv.end(), args.begin(), args.end());
  spec.env = {{"GIT_AUTHOR_NAME", "Banger Test"},  {"GIT_AUTHOR_EMAIL", "test@banger.invalid"},
              {"GIT_COMMITTER_NAME", "Banger Test"}, {"GIT_COMMITTER_EMAIL", "test@banger.invalid"},
              {"GIT_CONFIG_NOSYSTEM", "1"},        {"GIT_CONFIG_GLOBAL", "/dev/null"},
              {"HOME", home.string()}};
  spec.timeout = std::chrono::seconds(60);
  Result<CommandOutput> out = RunChecked(runner, spec);
  if (!out.ok()) {
    ADD_FAILURE() << out.error().ToString();
    return "";
  }
  return std::string(Trim(out->stdout_data));
}

}  // namespace banger::testing
