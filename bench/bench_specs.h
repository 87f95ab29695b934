// Spec files shared by the benchmarks: N sandbox specs, 100 to a file.
#pragma once

#include <cstdio>
#include <filesystem>
#include <string>

#include "base/files.h"

namespace banger::bench {

/// Sandbox spec number `i` (name sb-I), one YAML document ending in "---".
inline std::string SpecText(int i) {
  std::string n = "sb-" + std::to_string(i);
  return "apiVersion: banger.dev/v1\nkind: Sandbox\nmetadata:\n  name: " + n +
         "\n  labels: {team: bench, shard: \"" + std::to_string(i % 16) +
         "\"}\nspec:\n  image: busybox\n  cpus: 1\n  memory: 256MiB\n  network:\n    mode: nat\n"
         "    ports:\n      - {host: " + std::to_string(20000 + i) + ", guest: 80}\n"
         "  env: {APP_ENV: bench}\n  readiness:\n    command: [\"true\"]\n    timeout: 30s\n"
         "---\n";
}

/// Writes specs 0..n-1 into `dir` (created) as specs-00000.yaml, ... with
/// 100 documents per file.
inline void WriteSpecFiles(const std::filesystem::path& dir, int n) {
  std::filesystem::create_directories(dir);
  std::string file;
  int file_no = 0;
  for (int i = 0; i < n; ++i) {
    file += SpecText(i);
    if ((i + 1) % 100 == 0 || i + 1 == n) {
      char name[32];
      std::snprintf(name, sizeof(name), "specs-%05d.yaml", file_no++);
      (void)WriteFileAtomic(dir / name, file);
      file.clear();
    }
  }
}

}  // namespace banger::bench
