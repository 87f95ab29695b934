// Helpers shared by the libFuzzer targets in fuzz/ (docs/testing.md#fuzzing).
#pragma once

#include <stdlib.h>
#include <unistd.h>

#include <cstdio>
#include <cstdlib>
#include <filesystem>
#include <string>
#include <string_view>

namespace banger::fuzz {

/// An invariant the code under test must keep: on failure, prints the reason
/// and aborts, which libFuzzer reports as a crash and saves the input.
#define FUZZ_CHECK(cond, msg)                                                        \
  do {                                                                               \
    if (!(cond)) {                                                                   \
      std::fprintf(stderr, "FUZZ_CHECK failed at %s:%d: %s: %s\n", __FILE__, __LINE__, \
                   #cond, std::string(msg).c_str());                                 \
      std::abort();                                                                  \
    }                                                                                \
  } while (0)

/// A private directory for this fuzzer process (under $TMPDIR or /tmp),
/// removed by a normal exit; libFuzzer ends with _Exit, so scripts/fuzz.sh
/// points TMPDIR at build-fuzz/scratch and removes that instead.
inline const std::filesystem::path& ScratchDir() {
  static const std::filesystem::path dir = [] {
    const char* base = std::getenv("TMPDIR");
    std::string tmpl = std::string(base && *base ? base : "/tmp") + "/banger-fuzz-XXXXXX";
    if (::mkdtemp(tmpl.data()) == nullptr) {
      std::perror("mkdtemp");
      std::abort();
    }
    std::atexit([] {
      std::error_code ec;
      std::filesystem::remove_all(ScratchDir(), ec);
    });
    return std::filesystem::path(tmpl);
  }();
  return dir;
}

/// Writes `data` to `path` (replacing it).
inline void WriteFileOrDie(const std::filesystem::path& path, std::string_view data) {
  FILE* f = std::fopen(path.c_str(), "wb");
  FUZZ_CHECK(f != nullptr, "open " + path.string());
  FUZZ_CHECK(std::fwrite(data.data(), 1, data.size(), f) == data.size() || data.empty(),
             "write " + path.string());
  std::fclose(f);
}

/// Removes everything below `dir` (not `dir` itself), making every directory
/// writable first: a fuzzed layer can leave a 0000 directory behind.
inline void EmptyDir(const std::filesystem::path& dir) {
  std::error_code ec;
  for (auto it = std::filesystem::recursive_directory_iterator(
           dir, std::filesystem::directory_options::skip_permission_denied, ec);
       !ec && it != std::filesystem::recursive_directory_iterator(); it.increment(ec)) {
    if (it->is_directory(ec) && !it->is_symlink(ec)) {
      std::filesystem::permissions(it->path(), std::filesystem::perms::owner_all,
                                   std::filesystem::perm_options::add, ec);
    }
  }
  for (const auto& e : std::filesystem::directory_iterator(dir, ec)) {
    std::filesystem::remove_all(e.path(), ec);
  }
}

}  // namespace banger::fuzz
