// `banger completion bash|zsh|fish` and the hidden `banger __complete KIND`
// the scripts call for live names. The command and flag lists are read from
// the CLI11 app tree itself, so they follow the commands as they change.
#pragma once

#include <string>
#include <vector>

#include "cli/common.h"

namespace CLI {
class App;
}

namespace banger::cli {

/// One command of the tree: "network ls" (root: "").
struct CommandInfo {
  std::string path;
  std::string description;
  std::vector<std::string> subcommands;
  std::vector<std::string> flags;        // every spelling, global ones included
  std::vector<std::string> value_flags;  // the flags that take a value
  std::string positional_kind;           // "sandboxes", "images", "kernels" or ""
};

/// Every visible command of `app` (hidden ones, whose group is empty, left out).
std::vector<CommandInfo> CommandTree(const CLI::App& app);

/// The completion script for `shell` (bash, zsh or fish).
std::string CompletionScript(const CLI::App& app, const std::string& shell);

/// Registers `completion` and the hidden `__complete`.
void AddCompletionCommands(CLI::App& app, const Globals& globals, int& exit_code);

}  // namespace banger::cli
