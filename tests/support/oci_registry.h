// Test support (target banger_registry_testing, shared by the oci, images and
// e2e tests): a real OCI registry (Debian's docker-registry, distribution
// 2.8) on 127.0.0.1 as a child process, and a minimal pusher for it.
#pragma once

#include <filesystem>
#include <memory>
#include <string>
#include <vector>

#include "base/command_runner.h"
#include "base/status.h"

namespace banger::oci {
class HttpClient;
}

namespace banger::testing {

/// A free TCP port on 127.0.0.1 (bound, read, released).
int FreeLoopbackPort();

/// docker-registry serving `root`/storage on 127.0.0.1:<free port>; stopped
/// (SIGTERM, then SIGKILL, by process identity) when the object dies.
class RegistryProcess {
 public:
  RegistryProcess() = default;
  ~RegistryProcess();
  RegistryProcess(const RegistryProcess&) = delete;
  RegistryProcess& operator=(const RegistryProcess&) = delete;

  /// True if /usr/bin/docker-registry exists on this machine.
  static bool Available();
  [[nodiscard]] Status Start(const std::filesystem::path& root);
  void Stop();
  std::string HostPort() const { return "127.0.0.1:" + std::to_string(port_); }

 private:
  int port_ = 0;
  ProcessIdentity id_;
};

struct OciBlob {
  std::string media_type;
  std::string data;
  std::string Digest() const;  // "sha256:<hex>"
};

/// An OCI image manifest with its config and layer blobs, built in memory.
struct OciTestImage {
  OciBlob config;
  std::vector<OciBlob> layers;
  std::string manifest;
  std::string Digest() const;

  /// `config_json` is the image config's "config" object (Entrypoint, Env, ...)
  /// serialized as JSON; layers are uncompressed tars (their diff_ids are
  /// filled in).
  static OciTestImage Make(const std::vector<std::string>& tar_layers,
                           const std::string& config_json);

  /// An image of the given layer blobs (any media type) whose config blob is
  /// exactly `config_blob` (a whole image config JSON, used as is).
  static OciTestImage FromBlobs(const std::vector<OciBlob>& layers, std::string config_blob);
};

/// Pushes blobs and manifests with the distribution API (monolithic uploads).
class OciPusher {
 public:
  explicit OciPusher(std::string host_port);
  ~OciPusher();
  [[nodiscard]] Status PushBlob(const std::string& repo, const OciBlob& b);
  [[nodiscard]] Status PushManifest(const std::string& repo, const std::string& ref,
                                    const std::string& media_type, const std::string& body);
  [[nodiscard]] Status PushImage(const std::string& repo, const std::string& tag,
                                 const OciTestImage& img);

 private:
  std::string host_;
  std::unique_ptr<oci::HttpClient> http_;
};

}  // namespace banger::testing
