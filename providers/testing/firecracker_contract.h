// Test support: Firecracker's API contract, taken from its own swagger file
// (providers/testdata/firecracker-api.yaml, parsed with yaml-cpp, never
// hand-copied), and a fake VMM that answers like Firecracker on a unix
// socket. Used by the fake `firecracker` executable
// (providers/testing/fake_firecracker.cc) and the provider's contract tests.
#pragma once

#include <yaml-cpp/yaml.h>

#include <atomic>
#include <filesystem>
#include <functional>
#include <map>
#include <mutex>
#include <nlohmann/json.hpp>
#include <set>
#include <string>
#include <thread>
#include <vector>

#include "base/status.h"

namespace banger::testing {

/// The swagger file's paths and definitions.
class SwaggerContract {
 public:
  static Result<SwaggerContract> Load(const std::filesystem::path& yaml_file);

  /// "" when `method path` exists and `body` (JSON text, "" for none) is
  /// valid for it; else what is wrong. `path_template` gets the matched
  /// template ("/drives/{drive_id}").
  std::string CheckRequest(const std::string& method, const std::string& path, const std::string& body,
                           std::string* path_template = nullptr) const;
  /// "" when `body` is a valid answer `status` to `method path_template`.
  std::string CheckResponse(const std::string& method, const std::string& path_template, int status,
                            const std::string& body) const;
  /// "" when `value` matches `schema` ($ref, type, required, properties,
  /// additionalProperties, enum, items, minimum, maximum); `where` names the
  /// value in the message. Objects with `properties` and no
  /// additionalProperties refuse unknown fields, as Firecracker does.
  std::string CheckValue(const YAML::Node& schema, const nlohmann::json& value, const std::string& where) const;
  /// The definition `name` (for tests).
  YAML::Node Definition(const std::string& name) const;

 private:
  YAML::Node Resolve(const YAML::Node& schema, std::string* error) const;
  YAML::Node doc_;
};

/// One request the fake VMM got, and its answer.
struct RecordedRequest {
  std::string method, path, body;
  int status = 0;
  std::string response;
};

struct FakeVmmOptions {
  /// "PUT /drives/rootfs" -> fault_message: refuse that request with 400.
  std::map<std::string, std::string> fail;
  /// A fake jail's root, which is the working directory: absolute paths in
  /// requests are looked up below it. Empty: paths are taken as they are.
  std::filesystem::path root;
  std::string instance_id = "anonymous-instance";
  /// Each request is appended here as one JSON line before it is answered
  /// (method, path, body, status, response).
  std::filesystem::path record_file;
};

/// Firecracker's API semantics, enough for banger: the contract check, the
/// VM state (Not started, Running, Paused), pre-boot-only resources, files
/// that must exist, snapshots written and loaded, the vsock socket created.
class FakeVmm {
 public:
  FakeVmm(const SwaggerContract& contract, FakeVmmOptions options);
  ~FakeVmm();

  struct Response {
    int status = 204;
    std::string body;
  };
  Response Handle(const std::string& method, const std::string& path, const std::string& body);

  std::vector<RecordedRequest> Requests() const;
  /// Set after SendCtrlAltDel: Firecracker exits when the guest reboots.
  bool exit_requested() const { return exit_requested_; }
  std::string state() const;

 private:
  Response Fault(int status, const std::string& message);
  std::filesystem::path Resolve(const std::string& path) const;
  Response Apply(const std::string& method, const std::string& tmpl, const std::string& path,
                 const nlohmann::json& body);
  void ListenVsock();

  const SwaggerContract& contract_;
  FakeVmmOptions opts_;
  mutable std::mutex mu_;
  std::vector<RecordedRequest> requests_;
  std::string state_ = "Not started";
  bool configured_ = false;  // anything but logger/metrics
  bool logger_ = false, metrics_ = false;
  nlohmann::json boot_source_, machine_, vsock_;
  std::map<std::string, nlohmann::json> drives_, nics_;
  std::atomic<bool> exit_requested_{false};
  int vsock_fd_ = -1;
};

/// Serves a FakeVmm's HTTP/1.1 API on a unix socket, one thread.
class FakeVmmServer {
 public:
  /// Binds and listens on `socket` (removed first), then serves until Stop.
  static Result<std::unique_ptr<FakeVmmServer>> Start(const std::filesystem::path& socket, FakeVmm& vmm);
  ~FakeVmmServer();
  /// Serves in the calling thread until the VMM asks to exit or Stop.
  void ServeForever();
  /// Serves in a background thread (until Stop or destruction).
  void ServeInBackground();
  void Stop();

 private:
  FakeVmmServer(int fd, FakeVmm& vmm) : fd_(fd), vmm_(vmm) {}
  void ServeConnection(int conn);
  int fd_;
  FakeVmm& vmm_;
  std::atomic<bool> stop_{false};
  std::thread thread_;
  std::filesystem::path path_;
};

/// The swagger file in the source tree.
std::filesystem::path FirecrackerSwaggerPath();

}  // namespace banger::testing
