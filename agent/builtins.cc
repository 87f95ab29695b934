#include "agent/builtins.h"

#include <cstdio>

namespace banger::agent {

int BuiltinPorts(const std::vector<std::string>& argv);  // builtin_ports.cc
int BuiltinStats(const std::vector<std::string>& argv);  // builtin_stats.cc
int BuiltinTar(const std::vector<std::string>& argv);    // builtin_tar.cc
int BuiltinUntar(const std::vector<std::string>& argv);  // builtin_tar.cc
int BuiltinStat(const std::vector<std::string>& argv);   // builtin_tar.cc

namespace {

int Help(const std::vector<std::string>&) {
  for (const Builtin& b : Builtins()) {
    std::printf("%s%.*s\t%.*s\n", std::string(kBuiltinPrefix).c_str(), static_cast<int>(b.name.size()),
                b.name.data(), static_cast<int>(b.usage.size()), b.usage.data());
  }
  return 0;
}

}  // namespace

const std::vector<Builtin>& Builtins() {
  // One line per builtin; each lives in its own builtin_*.cc.
  static const std::vector<Builtin> all = {
      {"help", &Help, "list the builtins"},
      {"ports", &BuiltinPorts, "listening TCP/UDP sockets, one JSON object a line"},
      {"stats", &BuiltinStats, "memory, CPU time, root file system use and uptime as JSON"},
      {"tar", &BuiltinTar, "[-C DIR] PATH...: a tar stream of PATHs on stdout"},
      {"untar", &BuiltinUntar, "DEST: extracts the tar stream on stdin under DEST"},
      {"stat", &BuiltinStat, "PATH: prints directory, file, other or missing"},
  };
  return all;
}

const Builtin* FindBuiltin(std::string_view argv0) {
  if (argv0.substr(0, kBuiltinPrefix.size()) != kBuiltinPrefix) return nullptr;
  std::string_view name = argv0.substr(kBuiltinPrefix.size());
  for (const Builtin& b : Builtins()) {
    if (b.name == name) return &b;
  }
  return nullptr;
}

}  // namespace banger::agent
