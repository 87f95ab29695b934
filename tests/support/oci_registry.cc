#include "tests/support/oci_registry.h"

#include <netinet/in.h>
#include <signal.h>
#include <sys/socket.h>
#include <unistd.h>

#include <chrono>
#include <thread>

#include <nlohmann/json.hpp>

#include "base/files.h"
#include "base/sha256.h"
#include "base/strings.h"
#include "oci/http.h"

namespace banger::testing {

namespace fs = std::filesystem;

int FreeLoopbackPort() {
  int fd = ::socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
  if (fd < 0) return 0;
  sockaddr_in a{};
  a.sin_family = AF_INET;
  a.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
  int port = 0;
  if (::bind(fd, reinterpret_cast<sockaddr*>(&a), sizeof(a)) == 0) {
    socklen_t len = sizeof(a);
    if (::getsockname(fd, reinterpret_cast<sockaddr*>(&a), &len) == 0) port = ntohs(a.sin_port);
  }
  ::close(fd);
  return port;
}

bool RegistryProcess::Available() { return fs::exists("/usr/bin/docker-registry"); }

Status RegistryProcess::Start(const fs::path& root) {
  port_ = FreeLoopbackPort();
  if (port_ == 0) return Unavailable("no free loopback port");
  fs::path cfg = root / "registry.yml";
  std::string yaml = "version: 0.1\n"
                     "log:\n  level: warn\n"
                     "storage:\n  filesystem:\n    rootdirectory: " + (root / "storage").string() +
                     "\n  delete:\n    enabled: true\n"
                     "http:\n  addr: 127.0.0.1:" + std::to_string(port_) + "\n";
  BANGER_RETURN_IF_ERROR(WriteFileAtomic(cfg, yaml, 0600));
  auto runner = MakePosixCommandRunner();
  CommandSpec spec;
  spec.argv = {"/usr/bin/docker-registry", "serve", cfg.string()};
  spec.log_file = root / "registry.log";
  BANGER_ASSIGN_OR_RETURN(id_, runner->StartDetached(spec));
  auto http = oci::MakeCurlHttpClient();
  for (int i = 0; i < 400; ++i) {
    oci::HttpRequest req;
    req.url = "http://" + HostPort() + "/v2/";
    req.connect_timeout = std::chrono::seconds(1);
    auto r = http->Do(req);
    if (r.ok() && r->status == 200) return OkStatus();
    if (!ProcessAlive(id_)) break;
    std::this_thread::sleep_for(std::chrono::milliseconds(25));
  }
  auto log = ReadFile(root / "registry.log");
  Stop();
  return Unavailable("docker-registry did not come up: " + log.value_or(""));
}

void RegistryProcess::Stop() {
  if (id_.pid == 0) return;
  (void)SignalProcess(id_, SIGTERM);
  for (int i = 0; i < 200 && ProcessAlive(id_); ++i) {
    std::this_thread::sleep_for(std::chrono::milliseconds(10));
  }
  if (ProcessAlive(id_)) (void)SignalProcess(id_, SIGKILL);
  id_ = {};
}

RegistryProcess::~RegistryProcess() { Stop(); }

std::string OciBlob::Digest() const { return "sha256:" + Sha256Hex(data); }

std::string OciTestImage::Digest() const { return "sha256:" + Sha256Hex(manifest); }

OciTestImage OciTestImage::Make(const std::vector<std::string>& tar_layers,
                                const std::string& config_json) {
  OciTestImage img;
  nlohmann::json diff_ids = nlohmann::json::array();
  for (const std::string& t : tar_layers) {
    img.layers.push_back({"application/vnd.oci.image.layer.v1.tar", t});
    diff_ids.push_back("sha256:" + Sha256Hex(t));
  }
  nlohmann::json cfg = {{"architecture", "amd64"},
                        {"os", "linux"},
                        {"config", nlohmann::json::parse(config_json)},
                        {"rootfs", {{"type", "layers"}, {"diff_ids", diff_ids}}}};
  return FromBlobs(img.layers, cfg.dump());
}

OciTestImage OciTestImage::FromBlobs(const std::vector<OciBlob>& layers,
                                     std::string config_blob) {
  OciTestImage img;
  img.layers = layers;
  img.config = {"application/vnd.oci.image.config.v1+json", std::move(config_blob)};
  nlohmann::json m = {{"schemaVersion", 2},
                      {"mediaType", "application/vnd.oci.image.manifest.v1+json"},
                      {"config",
                       {{"mediaType", img.config.media_type},
                        {"digest", img.config.Digest()},
                        {"size", img.config.data.size()}}},
                      {"layers", nlohmann::json::array()}};
  for (const OciBlob& l : img.layers) {
    m["layers"].push_back({{"mediaType", l.media_type}, {"digest", l.Digest()}, {"size", l.data.size()}});
  }
  img.manifest = m.dump();
  return img;
}

OciPusher::OciPusher(std::string host_port)
    : host_(std::move(host_port)), http_(oci::MakeCurlHttpClient()) {}
OciPusher::~OciPusher() = default;

Status OciPusher::PushBlob(const std::string& repo, const OciBlob& b) {
  oci::HttpRequest post;
  post.method = "POST";
  post.url = "http://" + host_ + "/v2/" + repo + "/blobs/uploads/";
  BANGER_ASSIGN_OR_RETURN(oci::HttpResponse r, http_->Do(post));
  if (r.status != 202) return Internal("upload start: HTTP " + std::to_string(r.status));
  std::string loc = r.Header("location");
  if (StartsWith(loc, "/")) loc = "http://" + host_ + loc;
  oci::HttpRequest put;
  put.method = "PUT";
  put.url = loc + (loc.find('?') == std::string::npos ? "?" : "&") + "digest=sha256%3A" +
            b.Digest().substr(7);
  put.headers = {"Content-Type: application/octet-stream"};
  put.body = b.data;
  BANGER_ASSIGN_OR_RETURN(oci::HttpResponse p, http_->Do(put));
  if (p.status != 201) return Internal("upload: HTTP " + std::to_string(p.status) + " " + p.body);
  return OkStatus();
}

Status OciPusher::PushImage(const std::string& repo, const std::string& tag,
                            const OciTestImage& img) {
  BANGER_RETURN_IF_ERROR(PushBlob(repo, img.config));
  for (const OciBlob& l : img.layers) BANGER_RETURN_IF_ERROR(PushBlob(repo, l));
  return PushManifest(repo, tag, "application/vnd.oci.image.manifest.v1+json", img.manifest);
}

Status OciPusher::PushManifest(const std::string& repo, const std::string& ref,
                               const std::string& media_type, const std::string& body) {
  oci::HttpRequest put;
  put.method = "PUT";
  put.url = "http://" + host_ + "/v2/" + repo + "/manifests/" + ref;
  put.headers = {"Content-Type: " + media_type};
  put.body = body;
  BANGER_ASSIGN_OR_RETURN(oci::HttpResponse p, http_->Do(put));
  if (p.status != 201) return Internal("manifest put: HTTP " + std::to_string(p.status) + " " + p.body);
  return OkStatus();
}

}  // namespace banger::testing
