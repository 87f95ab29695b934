#include "providers/testing/firecracker_contract.h"

#include <poll.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/un.h>
#include <unistd.h>

#include <cstring>
#include <fstream>

#include "base/files.h"
#include "base/strings.h"

namespace banger::testing {

namespace fs = std::filesystem;
using nlohmann::json;

fs::path FirecrackerSwaggerPath() { return fs::path(BANGER_SOURCE_DIR) / "providers/testdata/firecracker-api.yaml"; }

Result<SwaggerContract> SwaggerContract::Load(const fs::path& yaml_file) {
  SwaggerContract c;
  try {
    c.doc_ = YAML::LoadFile(yaml_file.string());
  } catch (const std::exception& e) {
    return InvalidArgument("cannot parse " + yaml_file.string() + ": " + e.what());
  }
  const YAML::Node& d = c.doc_;
  if (!d["paths"] || !d["paths"].IsMap() || !d["definitions"] || !d["definitions"].IsMap()) {
    return InvalidArgument(yaml_file.string() + " has no paths or definitions");
  }
  return c;
}

YAML::Node SwaggerContract::Definition(const std::string& name) const {
  const YAML::Node& defs = doc_["definitions"];
  return defs[name];
}

YAML::Node SwaggerContract::Resolve(const YAML::Node& schema, std::string* error) const {
  // Only const lookups: yaml-cpp's non-const operator[] inserts missing keys.
  const YAML::Node& defs = doc_["definitions"];
  YAML::Node s = schema;
  for (int depth = 0; depth < 16 && s && s.IsMap(); ++depth) {
    const YAML::Node& cs = s;
    if (!cs["$ref"]) break;
    std::string ref = cs["$ref"].as<std::string>();
    const std::string prefix = "#/definitions/";
    if (ref.rfind(prefix, 0) != 0 || !defs[ref.substr(prefix.size())]) {
      *error = "unresolvable $ref " + ref;
      return YAML::Node();
    }
    s.reset(defs[ref.substr(prefix.size())]);  // rebind (operator= would write into the doc)
  }
  return s;
}

namespace {

std::string TypeOf(const json& v) {
  if (v.is_object()) return "object";
  if (v.is_array()) return "array";
  if (v.is_string()) return "string";
  if (v.is_boolean()) return "boolean";
  if (v.is_number_integer()) return "integer";
  if (v.is_number()) return "number";
  return "null";
}

std::string Scalar(const json& v) { return v.is_string() ? v.get<std::string>() : v.dump(); }

}  // namespace

std::string SwaggerContract::CheckValue(const YAML::Node& schema_in, const json& v, const std::string& where) const {
  std::string err;
  const YAML::Node schema = Resolve(schema_in, &err);
  if (!err.empty()) return where + ": " + err;
  if (!schema || !schema.IsMap()) return "";
  std::string type = schema["type"] ? schema["type"].as<std::string>() : (schema["properties"] ? "object" : "");
  if (!type.empty()) {
    std::string got = TypeOf(v);
    bool ok = got == type || (type == "number" && got == "integer");
    if (!ok) return where + ": expected " + type + ", got " + got + " (" + v.dump() + ")";
  }
  if (schema["enum"] && schema["enum"].IsSequence()) {
    bool found = false;
    for (const auto& e : schema["enum"]) found = found || e.as<std::string>() == Scalar(v);
    if (!found) return where + ": " + v.dump() + " is not one of the enum values";
  }
  if (v.is_number()) {
    if (schema["minimum"] && v.get<double>() < schema["minimum"].as<double>()) {
      return where + ": " + v.dump() + " is below the minimum " + schema["minimum"].as<std::string>();
    }
    if (schema["maximum"] && v.get<double>() > schema["maximum"].as<double>()) {
      return where + ": " + v.dump() + " is above the maximum " + schema["maximum"].as<std::string>();
    }
  }
  if (v.is_array() && schema["items"]) {
    for (size_t i = 0; i < v.size(); ++i) {
      if (std::string e = CheckValue(schema["items"], v[i], where + "[" + std::to_string(i) + "]"); !e.empty()) return e;
    }
  }
  if (v.is_object()) {
    if (schema["required"] && schema["required"].IsSequence()) {
      for (const auto& r : schema["required"]) {
        if (!v.contains(r.as<std::string>())) return where + ": missing required field \"" + r.as<std::string>() + "\"";
      }
    }
    const YAML::Node props = schema["properties"];
    const YAML::Node extra = schema["additionalProperties"];
    for (const auto& [key, value] : v.items()) {
      if (props && props[key]) {
        if (std::string e = CheckValue(props[key], value, where + "." + key); !e.empty()) return e;
      } else if (extra && extra.IsMap()) {
        if (std::string e = CheckValue(extra, value, where + "." + key); !e.empty()) return e;
      } else if (extra && extra.IsScalar() && extra.as<bool>()) {
        continue;
      } else if (props || (extra && extra.IsScalar())) {
        // Firecracker's request types deny unknown fields.
        return where + ": unknown field \"" + key + "\"";
      }
    }
  }
  return "";
}

std::string SwaggerContract::CheckRequest(const std::string& method, const std::string& path, const std::string& body,
                                          std::string* path_template) const {
  std::vector<std::string> want = Split(path, '/');
  const YAML::Node& paths = doc_["paths"];
  YAML::Node op;
  std::string tmpl;
  for (const auto& entry : paths) {
    std::string t = entry.first.as<std::string>();
    std::vector<std::string> have = Split(t, '/');
    if (have.size() != want.size()) continue;
    bool match = true;
    for (size_t i = 0; i < have.size() && match; ++i) {
      bool param = have[i].size() > 2 && have[i].front() == '{' && have[i].back() == '}';
      match = param ? !want[i].empty() : have[i] == want[i];
    }
    if (!match) continue;
    tmpl = t;
    std::string m = method;
    for (char& ch : m) ch = static_cast<char>(std::tolower(static_cast<unsigned char>(ch)));
    const YAML::Node ops = entry.second;
    if (!ops[m]) return method + " " + path + ": the API has no " + method + " on " + t;
    op.reset(ops[m]);
    break;
  }
  if (tmpl.empty()) return method + " " + path + ": no such path in the API";
  if (path_template) *path_template = tmpl;
  const YAML::Node cop = op;
  YAML::Node body_param;
  bool has_body_param = false;
  const YAML::Node params = cop["parameters"];
  for (size_t i = 0; params && params.IsSequence() && i < params.size(); ++i) {
    const YAML::Node p = params[i];
    if (p && p.IsMap() && p["in"] && p["in"].as<std::string>() == "body") {
      body_param.reset(p);
      has_body_param = true;
    }
  }
  if (!has_body_param) {
    if (!body.empty()) return method + " " + tmpl + ": takes no body";
    return "";
  }
  const YAML::Node cbody = body_param;
  if (body.empty()) {
    if (cbody["required"] && cbody["required"].as<bool>()) return method + " " + tmpl + ": the body is required";
    return "";
  }
  json v = json::parse(body, nullptr, false);
  if (v.is_discarded()) return method + " " + tmpl + ": the body is not JSON";
  return CheckValue(cbody["schema"], v, method + " " + tmpl + " body");
}

std::string SwaggerContract::CheckResponse(const std::string& method, const std::string& tmpl, int status,
                                           const std::string& body) const {
  std::string m = method;
  for (char& ch : m) ch = static_cast<char>(std::tolower(static_cast<unsigned char>(ch)));
  const YAML::Node& paths = doc_["paths"];
  const YAML::Node path_node = paths[tmpl];
  const YAML::Node op = path_node[m];
  const YAML::Node responses = op["responses"];
  if (!responses) return method + " " + tmpl + ": no responses";
  const std::string code = std::to_string(status);
  const YAML::Node r = responses[code] ? responses[code] : responses["default"];
  if (!r) return method + " " + tmpl + ": status " + std::to_string(status) + " is not a documented answer";
  if (!r.IsMap() || !r["schema"]) return body.empty() ? "" : method + " " + tmpl + ": answer " + std::to_string(status) + " has no body";
  json v = json::parse(body, nullptr, false);
  if (v.is_discarded()) return method + " " + tmpl + ": the answer is not JSON";
  return CheckValue(r["schema"], v, method + " " + tmpl + " answer " + std::to_string(status));
}

// ---------------------------------------------------------------------------

FakeVmm::FakeVmm(const SwaggerContract& contract, FakeVmmOptions options)
    : contract_(contract), opts_(std::move(options)) {}

FakeVmm::~FakeVmm() {
  if (vsock_fd_ >= 0) ::close(vsock_fd_);
}

std::vector<RecordedRequest> FakeVmm::Requests() const {
  std::lock_guard<std::mutex> l(mu_);
  return requests_;
}

std::string FakeVmm::state() const {
  std::lock_guard<std::mutex> l(mu_);
  return state_;
}

FakeVmm::Response FakeVmm::Fault(int status, const std::string& message) {
  return {status, json{{"fault_message", message}}.dump()};
}

fs::path FakeVmm::Resolve(const std::string& path) const {
  // A jailed fake runs with the jail's root as its working directory, as
  // the real one after chroot: "/x" is "x" there.
  fs::path p(path);
  if (p.is_absolute() && !opts_.root.empty()) return p.relative_path();
  return p;
}

void FakeVmm::ListenVsock() {
  if (!vsock_.is_object() || vsock_fd_ >= 0) return;
  fs::path p = Resolve(vsock_["uds_path"].get<std::string>());
  ::unlink(p.c_str());
  int fd = ::socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0);
  sockaddr_un addr{};
  addr.sun_family = AF_UNIX;
  std::strncpy(addr.sun_path, p.c_str(), sizeof(addr.sun_path) - 1);
  if (fd >= 0 && ::bind(fd, reinterpret_cast<sockaddr*>(&addr), sizeof(addr)) == 0 && ::listen(fd, 4) == 0) {
    vsock_fd_ = fd;
  } else if (fd >= 0) {
    ::close(fd);
  }
}

FakeVmm::Response FakeVmm::Handle(const std::string& method, const std::string& path, const std::string& body) {
  std::string tmpl;
  Response r;
  if (std::string err = contract_.CheckRequest(method, path, body, &tmpl); !err.empty()) {
    r = Fault(400, "contract violation: " + err);
  } else if (auto it = opts_.fail.find(method + " " + path); it != opts_.fail.end()) {
    r = Fault(400, it->second);
  } else {
    std::lock_guard<std::mutex> l(mu_);
    r = Apply(method, tmpl, path, body.empty() ? json() : json::parse(body));
  }
  if (r.status < 300 && !tmpl.empty()) {
    // The fake's own answers must follow the contract too.
    if (std::string err = contract_.CheckResponse(method, tmpl, r.status, r.body); !err.empty()) {
      r = Fault(500, "fake VMM answer violates the contract: " + err);
    }
  }
  std::lock_guard<std::mutex> l(mu_);
  requests_.push_back({method, path, body, r.status, r.body});
  if (!opts_.record_file.empty()) {
    std::ofstream out(opts_.record_file, std::ios::app);
    out << json{{"method", method}, {"path", path}, {"body", body}, {"status", r.status}, {"response", r.body}}.dump()
        << "\n";
  }
  return r;
}

FakeVmm::Response FakeVmm::Apply(const std::string& method, const std::string& tmpl, const std::string& path,
                                 const json& b) {
  const bool started = state_ != "Not started";
  auto exists = [&](const std::string& p) {
    std::error_code ec;
    return fs::exists(Resolve(p), ec);
  };
  auto pre_boot = [&]() -> std::optional<Response> {
    if (started) return Fault(400, "The requested operation is not supported after starting the microVM.");
    return std::nullopt;
  };
  if (method == "GET" && tmpl == "/") {
    return {200, json{{"app_name", "Firecracker"}, {"id", opts_.instance_id}, {"state", state_},
                      {"vmm_version", "1.17.0-fake"}}
                     .dump()};
  }
  if (method == "GET" && tmpl == "/version") return {200, json{{"firecracker_version", "1.17.0-fake"}}.dump()};
  if (method == "PUT" && (tmpl == "/logger" || tmpl == "/metrics")) {
    if (auto f = pre_boot()) return *f;
    std::string file = b.value(tmpl == "/logger" ? "log_path" : "metrics_path", "");
    if (!file.empty() && !exists(file)) return Fault(400, "Cannot open " + file + ": No such file or directory (os error 2)");
    bool& done = tmpl == "/logger" ? logger_ : metrics_;
    if (done) return Fault(400, std::string(tmpl == "/logger" ? "Logger" : "Metrics") + " already initialized");
    done = true;
    return {};
  }
  if (method == "PUT" && tmpl == "/machine-config") {
    if (auto f = pre_boot()) return *f;
    machine_ = b;
    configured_ = true;
    return {};
  }
  if (method == "PUT" && tmpl == "/boot-source") {
    if (auto f = pre_boot()) return *f;
    if (!exists(b["kernel_image_path"].get<std::string>())) {
      return Fault(400, "Kernel file cannot be opened: No such file or directory (os error 2)");
    }
    if (b.contains("initrd_path") && !exists(b["initrd_path"].get<std::string>())) {
      return Fault(400, "Initrd file cannot be opened: No such file or directory (os error 2)");
    }
    boot_source_ = b;
    configured_ = true;
    return {};
  }
  if (method == "PUT" && tmpl == "/drives/{drive_id}") {
    if (auto f = pre_boot()) return *f;
    std::string id = path.substr(std::string("/drives/").size());
    if (b["drive_id"] != id) return Fault(400, "The id from the path does not match the id from the body!");
    if (!b.contains("path_on_host") || !exists(b["path_on_host"].get<std::string>())) {
      return Fault(400, "Unable to create the virtio block device: No such file or directory (os error 2)");
    }
    if (b["is_root_device"].get<bool>()) {
      for (const auto& [other, d] : drives_) {
        if (other != id && d["is_root_device"].get<bool>()) return Fault(400, "A root block device already exists!");
      }
    }
    drives_[id] = b;
    configured_ = true;
    return {};
  }
  if (method == "PATCH" && tmpl == "/drives/{drive_id}") {
    if (!started) return Fault(400, "The requested operation is not supported before starting the microVM.");
    std::string id = path.substr(std::string("/drives/").size());
    if (!drives_.count(id)) return Fault(400, "Invalid block device ID: " + id);
    if (b.contains("path_on_host")) {
      if (!exists(b["path_on_host"].get<std::string>())) return Fault(400, "Unable to patch the block device: No such file");
      drives_[id]["path_on_host"] = b["path_on_host"];
    }
    return {};
  }
  if (method == "PUT" && tmpl == "/network-interfaces/{iface_id}") {
    if (auto f = pre_boot()) return *f;
    std::string id = path.substr(std::string("/network-interfaces/").size());
    if (b["iface_id"] != id) return Fault(400, "The id from the path does not match the id from the body!");
    nics_[id] = b;
    configured_ = true;
    return {};
  }
  if (method == "PUT" && tmpl == "/vsock") {
    if (auto f = pre_boot()) return *f;
    vsock_ = b;
    configured_ = true;
    return {};
  }
  if (method == "PUT" && tmpl == "/actions") {
    std::string action = b["action_type"];
    if (action == "InstanceStart") {
      if (started) return Fault(400, "The requested operation is not supported after starting the microVM.");
      if (!boot_source_.is_object()) return Fault(400, "Cannot start microvm without kernel configuration.");
      state_ = "Running";
      ListenVsock();
      return {};
    }
    if (action == "SendCtrlAltDel") {
      if (state_ != "Running") return Fault(400, "The requested operation is not supported before starting the microVM.");
      exit_requested_ = true;
      return {};
    }
    return {};
  }
  if (method == "PATCH" && tmpl == "/vm") {
    if (!started) return Fault(400, "The requested operation is not supported before starting the microVM.");
    state_ = b["state"] == "Paused" ? "Paused" : "Running";
    return {};
  }
  if (method == "PUT" && tmpl == "/snapshot/create") {
    if (state_ != "Paused") return Fault(400, "Cannot save microVM state while the VM is not paused.");
    json snap = {{"machine", machine_}, {"boot_source", boot_source_}, {"drives", drives_}, {"nics", nics_},
                 {"vsock", vsock_}};
    std::ofstream(Resolve(b["snapshot_path"].get<std::string>())) << snap.dump();
    std::ofstream(Resolve(b["mem_file_path"].get<std::string>())) << std::string(4096, 'm');
    return {};
  }
  if (method == "PUT" && tmpl == "/snapshot/load") {
    if (started || configured_) {
      return Fault(400, "Loading a microVM snapshot not allowed after configuring boot-specific resources.");
    }
    auto text = ReadFile(Resolve(b["snapshot_path"].get<std::string>()));
    if (!text) return Fault(400, "Cannot open snapshot file: No such file or directory (os error 2)");
    json snap = json::parse(*text, nullptr, false);
    if (!snap.is_object()) return Fault(400, "Cannot deserialize the microVM state");
    bool has_mem = b.contains("mem_backend") || b.contains("mem_file_path");
    if (!has_mem || (b.contains("mem_backend") && b.contains("mem_file_path"))) {
      return Fault(400, "Exactly one of mem_file_path and mem_backend must be given");
    }
    std::string mem = b.contains("mem_backend") ? b["mem_backend"]["backend_path"].get<std::string>()
                                                : b["mem_file_path"].get<std::string>();
    if (!exists(mem)) return Fault(400, "Cannot open the memory file: No such file or directory (os error 2)");
    machine_ = snap["machine"];
    boot_source_ = snap["boot_source"];
    for (const auto& [id, d] : snap["drives"].items()) {
      if (!exists(d["path_on_host"].get<std::string>())) {
        return Fault(400, "Block device " + id + ": cannot open " + d["path_on_host"].get<std::string>());
      }
      drives_[id] = d;
    }
    for (const auto& [id, n] : snap["nics"].items()) nics_[id] = n;
    for (const auto& o : b.value("network_overrides", json::array())) {
      std::string id = o["iface_id"];
      if (!nics_.count(id)) return Fault(400, "Invalid network interface override: no interface " + id);
      nics_[id]["host_dev_name"] = o["host_dev_name"];
    }
    vsock_ = snap["vsock"];
    if (b.contains("vsock_override")) {
      if (!vsock_.is_object()) return Fault(400, "Invalid vsock override: the snapshot has no vsock device");
      vsock_["uds_path"] = b["vsock_override"]["uds_path"];
    }
    state_ = b.value("resume_vm", false) ? "Running" : "Paused";
    configured_ = true;
    ListenVsock();
    return {};
  }
  if (method == "GET") return {200, "{}"};
  return {};
}

// ---------------------------------------------------------------------------

Result<std::unique_ptr<FakeVmmServer>> FakeVmmServer::Start(const fs::path& socket, FakeVmm& vmm) {
  ::unlink(socket.c_str());
  int fd = ::socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0);
  if (fd < 0) return ErrnoStatus(errno, "socket");
  sockaddr_un addr{};
  addr.sun_family = AF_UNIX;
  if (socket.string().size() >= sizeof(addr.sun_path)) {
    ::close(fd);
    return InvalidArgument("socket path too long: " + socket.string());
  }
  std::strncpy(addr.sun_path, socket.c_str(), sizeof(addr.sun_path) - 1);
  if (::bind(fd, reinterpret_cast<sockaddr*>(&addr), sizeof(addr)) != 0 || ::listen(fd, 16) != 0) {
    int err = errno;
    ::close(fd);
    return ErrnoStatus(err, "listen on " + socket.string());
  }
  std::unique_ptr<FakeVmmServer> s(new FakeVmmServer(fd, vmm));
  s->path_ = socket;
  return s;
}

FakeVmmServer::~FakeVmmServer() {
  Stop();
  ::close(fd_);
  ::unlink(path_.c_str());
}

void FakeVmmServer::ServeInBackground() {
  thread_ = std::thread([this] { ServeForever(); });
}

void FakeVmmServer::Stop() {
  stop_ = true;
  if (thread_.joinable()) thread_.join();
}

void FakeVmmServer::ServeForever() {
  while (!stop_ && !vmm_.exit_requested()) {
    pollfd p{fd_, POLLIN, 0};
    if (::poll(&p, 1, 50) <= 0) continue;
    int conn = ::accept4(fd_, nullptr, nullptr, SOCK_CLOEXEC);
    if (conn < 0) continue;
    ServeConnection(conn);
    ::close(conn);
  }
}

void FakeVmmServer::ServeConnection(int conn) {
  std::string buf;
  char chunk[4096];
  while (!stop_) {
    // One request: headers, then Content-Length bytes of body.
    size_t header_end;
    while ((header_end = buf.find("\r\n\r\n")) == std::string::npos) {
      pollfd p{conn, POLLIN, 0};
      if (::poll(&p, 1, 2000) <= 0) return;
      ssize_t n = ::read(conn, chunk, sizeof(chunk));
      if (n <= 0) return;
      buf.append(chunk, static_cast<size_t>(n));
    }
    std::string head = buf.substr(0, header_end);
    std::vector<std::string> lines = Split(head, '\n');
    std::vector<std::string> request_line = Split(std::string(Trim(lines[0])), ' ');
    if (request_line.size() < 2) return;
    size_t length = 0;
    for (size_t i = 1; i < lines.size(); ++i) {
      std::string line(Trim(lines[i]));
      std::string lower = line;
      for (char& ch : lower) ch = static_cast<char>(std::tolower(static_cast<unsigned char>(ch)));
      if (lower.rfind("content-length:", 0) == 0) length = std::stoul(line.substr(15));
    }
    while (buf.size() < header_end + 4 + length) {
      pollfd p{conn, POLLIN, 0};
      if (::poll(&p, 1, 2000) <= 0) return;
      ssize_t n = ::read(conn, chunk, sizeof(chunk));
      if (n <= 0) return;
      buf.append(chunk, static_cast<size_t>(n));
    }
    std::string body = buf.substr(header_end + 4, length);
    buf.erase(0, header_end + 4 + length);
    FakeVmm::Response r = vmm_.Handle(request_line[0], request_line[1], body);
    const char* reason = r.status == 204 ? "No Content" : r.status == 200 ? "OK" : r.status == 400 ? "Bad Request" : "Error";
    std::string out = "HTTP/1.1 " + std::to_string(r.status) + " " + reason + "\r\nServer: Firecracker API\r\n";
    if (r.status != 204) {
      out += "Content-Type: application/json\r\nContent-Length: " + std::to_string(r.body.size()) + "\r\n\r\n" + r.body;
    } else {
      out += "\r\n";
    }
    size_t off = 0;
    while (off < out.size()) {
      ssize_t w = ::send(conn, out.data() + off, out.size() - off, MSG_NOSIGNAL);
      if (w <= 0) return;
      off += static_cast<size_t>(w);
    }
    if (vmm_.exit_requested()) return;
  }
}

}  // namespace banger::testing
