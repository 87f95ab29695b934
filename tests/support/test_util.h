// Small helpers shared by tests: temp dirs, golden files, a fake clock.
#pragma once

#include <chrono>
#include <filesystem>
#include <mutex>
#include <optional>
#include <string>

#include "base/clock.h"
#include "spec/sandbox_spec.h"

namespace banger::testing {

/// A temporary directory removed (recursively) when the object dies.
class TempDir {
 public:
  TempDir();
  ~TempDir();
  TempDir(const TempDir&) = delete;
  TempDir& operator=(const TempDir&) = delete;
  const std::filesystem::path& path() const { return path_; }

 private:
  std::filesystem::path path_;
};

/// Compares `actual` with tests/testdata/golden/<name>. With
/// BANGER_TEST_ACCEPT=1 in the environment, (re)writes the golden file instead.
void ExpectGolden(const std::string& name, const std::string& actual);

/// A clock whose time only moves when told (SleepFor advances it).
class FakeClock : public Clock {
 public:
  std::chrono::system_clock::time_point Now() const override;
  std::chrono::steady_clock::time_point SteadyNow() const override;
  void SleepFor(std::chrono::milliseconds d) override { Advance(d); }
  void Advance(std::chrono::milliseconds d);

 private:
  mutable std::mutex mu_;
  std::chrono::milliseconds offset_{0};
};

/// A valid spec with defaults, for building test inputs.
/// A spec with network mode user (bridged tests set it themselves).
SandboxSpec MakeSpec(const std::string& name, const std::string& image = "busybox");
SpecDocument MakeDoc(const SandboxSpec& spec, const std::string& file = "specs/test.yaml");

/// Sets (or, with nullopt, unsets) an environment variable for one scope and
/// restores the old value afterwards.
class ScopedEnv {
 public:
  ScopedEnv(const char* name, std::optional<std::string> value);
  ~ScopedEnv();
  ScopedEnv(const ScopedEnv&) = delete;
  ScopedEnv& operator=(const ScopedEnv&) = delete;

 private:
  const char* name_;
  std::optional<std::string> old_;
};

}  // namespace banger::testing
