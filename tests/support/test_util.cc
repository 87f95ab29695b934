#include "tests/support/test_util.h"

#include <gtest/gtest.h>

#include <cstdlib>

#include "base/files.h"

namespace banger::testing {

TempDir::TempDir() {
  auto p = MakeTempDir("banger-test-");
  if (!p) {
    ADD_FAILURE() << p.error().ToString();
    return;
  }
  path_ = *p;
}

TempDir::~TempDir() {
  if (!path_.empty()) (void)RemoveAll(path_);
}

void ExpectGolden(const std::string& name, const std::string& actual) {
  std::filesystem::path p = std::filesystem::path(BANGER_SOURCE_DIR) / "tests/testdata/golden" / name;
  const char* accept = std::getenv("BANGER_TEST_ACCEPT");
  if (accept && std::string(accept) == "1") {
    std::filesystem::create_directories(p.parent_path());
    ASSERT_TRUE(WriteFileAtomic(p, actual).ok());
    return;
  }
  auto expected = ReadFile(p);
  ASSERT_TRUE(expected.ok()) << "missing golden file " << p
                             << " (run with BANGER_TEST_ACCEPT=1 to create it)";
  EXPECT_EQ(*expected, actual) << "golden mismatch for " << p
                               << " (review, then BANGER_TEST_ACCEPT=1 to update)";
}

std::chrono::system_clock::time_point FakeClock::Now() const {
  std::lock_guard<std::mutex> l(mu_);
  // A fixed, readable epoch: 2026-01-01T00:00:00Z.
  return std::chrono::system_clock::time_point(std::chrono::seconds(1767225600)) + offset_;
}

std::chrono::steady_clock::time_point FakeClock::SteadyNow() const {
  std::lock_guard<std::mutex> l(mu_);
  return std::chrono::steady_clock::time_point(std::chrono::hours(1)) + offset_;
}

void FakeClock::Advance(std::chrono::milliseconds d) {
  std::lock_guard<std::mutex> l(mu_);
  offset_ += d;
}

SandboxSpec MakeSpec(const std::string& name, const std::string& image) {
  SandboxSpec s;
  s.name = name;
  s.image = image;
  // User-mode networking needs no host network; bridged tests ask for it.
  s.network.mode = NetworkMode::kUser;
  return s;
}

SpecDocument MakeDoc(const SandboxSpec& spec, const std::string& file) {
  return SpecDocument{spec, SourceLocation{file, 1, 1}};
}

ScopedEnv::ScopedEnv(const char* name, std::optional<std::string> value) : name_(name) {
  if (const char* old = std::getenv(name)) old_ = old;
  if (value) {
    ::setenv(name, value->c_str(), 1);
  } else {
    ::unsetenv(name);
  }
}

ScopedEnv::~ScopedEnv() {
  if (old_) {
    ::setenv(name_, old_->c_str(), 1);
  } else {
    ::unsetenv(name_);
  }
}

}  // namespace banger::testing
