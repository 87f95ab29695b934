// Agent builtins: small tools the agent itself provides inside the guest, run
// through an ordinary EXEC whose argv[0] is "@banger/NAME". The agent forks as
// for any command, and the child calls the builtin instead of execve, with the
// exec's stdin/stdout/stderr on fds 0/1/2 and its cwd and environment. They
// work in every image (no tar, ss or nc needed in the guest) and need no new
// frame types: `banger cp`, workspaces, `ports` and `stats` are built on them
// (docs/guest-agent.md lists them).
#pragma once

#include <string>
#include <string_view>
#include <vector>

namespace banger::agent {

inline constexpr std::string_view kBuiltinPrefix = "@banger/";

/// A builtin: gets argv (argv[0] is "@banger/NAME"), returns the exit code.
using BuiltinFn = int (*)(const std::vector<std::string>& argv);

struct Builtin {
  std::string_view name;  // without the prefix
  BuiltinFn fn;
  std::string_view usage;
};

/// The builtin named by argv0 ("@banger/NAME"), or nullptr when argv0 is not
/// one (including an unknown NAME).
const Builtin* FindBuiltin(std::string_view argv0);

/// Every builtin, for `@banger/help`.
const std::vector<Builtin>& Builtins();

}  // namespace banger::agent
