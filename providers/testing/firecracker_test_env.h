// A host for the Firecracker provider's tests: a temporary state directory
// with a kernel, an initramfs and a base disk, the fake `firecracker` (and
// `jailer`) executable, and its control file ($BANGER_FAKE_FIRECRACKER).
#pragma once

#include <gtest/gtest.h>
#include <sys/stat.h>
#include <unistd.h>

#include <fstream>
#include <nlohmann/json.hpp>
#include <string>
#include <vector>

#include "base/clock.h"
#include "base/command_runner.h"
#include "base/files.h"
#include "base/strings.h"
#include "providers/firecracker_hypervisor.h"

namespace banger::testing {

class FirecrackerTestEnv {
 public:
  FirecrackerTestEnv() {
    root_ = MakeTempDir("bfc").value();
    kernel_ = root_ / "kernels/6.1/vmlinux";
    initramfs_ = root_ / "kernels/6.1/initrd.img";
    base_disk_ = root_ / "images/busybox/rootfs.ext4";
    for (const auto& d : {kernel_.parent_path(), base_disk_.parent_path(), root_ / "sandboxes", root_ / "volumes"}) {
      std::filesystem::create_directories(d);
    }
    EXPECT_TRUE(WriteFileAtomic(kernel_, "\x7f" "ELF vmlinux stand-in", 0644).ok());
    EXPECT_TRUE(WriteFileAtomic(initramfs_, "070701 initramfs stand-in", 0644).ok());
    // A 16 MiB sparse base with data at both ends.
    {
      std::ofstream out(base_disk_, std::ios::binary);
      out << "ext4 superblock stand-in";
      out.seekp((16 << 20) - 5);
      out << "tail!";
    }
    control_ = root_ / "fake-firecracker.json";
    record_ = root_ / "requests.jsonl";
    SetControl(nlohmann::json::object());
    ::setenv("BANGER_FAKE_FIRECRACKER", control_.c_str(), 1);
    jailer_ = root_ / "fake-jailer";
    std::filesystem::create_symlink(BANGER_FAKE_FIRECRACKER_PATH, jailer_);
    runner_ = MakePosixCommandRunner();
    clock_ = MakeSystemClock();
  }
  ~FirecrackerTestEnv() {
    ::unsetenv("BANGER_FAKE_FIRECRACKER");
    // Whatever a failed test left running below root_.
    std::error_code ec;
    for (const auto& e : std::filesystem::directory_iterator(root_ / "sandboxes", ec)) {
      while (auto p = RecoverFirecrackerProcess(e.path())) {
        (void)SignalProcess(*p, SIGKILL);
        for (int i = 0; i < 500 && ProcessAlive(*p); ++i) ::usleep(10000);
      }
    }
    (void)RemoveAll(root_);
  }

  /// Sets the fake's behaviour; "record" is always the env's record file.
  void SetControl(nlohmann::json control) {
    control["record"] = record_.string();
    ASSERT_TRUE(WriteFileAtomic(control_, control.dump(), 0600).ok());
  }

  FirecrackerOptions Options() const {
    FirecrackerOptions o;
    o.firecracker_binary = BANGER_FAKE_FIRECRACKER_PATH;
    o.socket_timeout = std::chrono::milliseconds(10000);
    return o;
  }
  FirecrackerOptions JailedOptions() const {
    FirecrackerOptions o = Options();
    o.jailer.enabled = true;
    o.jailer.jailer_binary = jailer_.string();
    o.jailer.uid = 1234;
    o.jailer.gid = 1234;
    return o;
  }

  VmLaunchConfig Config(const std::string& id) const {
    VmLaunchConfig c;
    c.sandbox_id = id;
    c.name = id;
    c.cpus = 2;
    c.memory_bytes = 512ull << 20;
    c.runtime_dir = root_ / "sandboxes" / id;
    c.kernel_path = kernel_;
    c.initrd_path = initramfs_;
    c.base_disk = base_disk_;
    c.disk_bytes = 64ull << 20;
    c.guest.hostname = id;
    return c;
  }

  std::filesystem::path Volume(const std::string& name) {
    std::filesystem::path p = root_ / "volumes" / (name + ".ext4");
    std::ofstream(p, std::ios::binary) << "volume " << name;
    std::filesystem::resize_file(p, 8 << 20);
    return p;
  }

  /// The recorded requests ("" when none), with paths below root_ as $ROOT,
  /// one per line: "METHOD PATH BODY -> STATUS".
  std::string Recorded(size_t skip = 0) const {
    std::string out;
    auto text = ReadFile(record_);
    if (!text) return out;
    size_t n = 0;
    for (const auto& line : Split(*text, '\n')) {
      if (line.empty() || n++ < skip) continue;
      auto j = nlohmann::json::parse(line);
      std::string body = j["body"].get<std::string>();
      if (!body.empty()) body = nlohmann::json::parse(body).dump();
      std::string s = j["method"].get<std::string>() + " " + j["path"].get<std::string>() + " " + body + " -> " +
                      std::to_string(j["status"].get<int>());
      if (j["status"].get<int>() >= 300) s += " " + j["response"].get<std::string>();
      out += s + "\n";
    }
    for (size_t pos; (pos = out.find(root_.string())) != std::string::npos;) out.replace(pos, root_.string().size(), "$ROOT");
    return out;
  }
  size_t RecordedCount() const {
    auto text = ReadFile(record_);
    if (!text) return 0;
    size_t n = 0;
    for (const auto& line : Split(*text, '\n')) n += !line.empty();
    return n;
  }
  void ClearRecord() { ::unlink(record_.c_str()); }

  const std::filesystem::path& root() const { return root_; }
  CommandRunner& runner() { return *runner_; }
  Clock& clock() { return *clock_; }

 private:
  std::filesystem::path root_, kernel_, initramfs_, base_disk_, control_, record_, jailer_;
  std::unique_ptr<CommandRunner> runner_;
  std::unique_ptr<Clock> clock_;
};

/// Compares `actual` with providers/testdata/<name>; BANGER_TEST_ACCEPT=1 rewrites it.
inline void ExpectFirecrackerGolden(const std::string& name, const std::string& actual) {
  std::filesystem::path golden = std::filesystem::path(BANGER_SOURCE_DIR) / "providers/testdata" / name;
  if (std::getenv("BANGER_TEST_ACCEPT")) {
    ASSERT_TRUE(WriteFileAtomic(golden, actual, 0644).ok());
  }
  auto expected = ReadFile(golden);
  ASSERT_TRUE(expected.ok()) << "missing golden " << golden << "; run with BANGER_TEST_ACCEPT=1";
  EXPECT_EQ(actual, *expected) << "the request sequence changed; review and re-run with BANGER_TEST_ACCEPT=1";
}

}  // namespace banger::testing
