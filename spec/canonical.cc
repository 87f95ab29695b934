// Canonical JSON form of a SandboxSpec, its hash, and the way back.
#include <nlohmann/json.hpp>

#include <cstdio>
#include <exception>
#include <string>

#include "base/sha256.h"
#include "base/strings.h"
#include "spec/loader.h"

namespace banger {
namespace {

using Json = nlohmann::json;  // std::map objects: keys come out sorted

std::string FormatMode(uint32_t mode) {
  char buf[16];
  std::snprintf(buf, sizeof(buf), "%04o", static_cast<unsigned>(mode));
  return buf;
}

Json ToJson(const SandboxSpec& s) {
  Json labels = Json::object();
  for (const auto& [k, v] : s.labels) labels[k] = v;
  Json env = Json::object();
  for (const auto& [k, v] : s.env) env[k] = v;

  Json ports = Json::array();
  for (const PortMapping& p : s.network.ports) {
    ports.push_back({{"host", p.host}, {"guest", p.guest}, {"protocol", ToString(p.protocol)}, {"address", p.address}});
  }
  Json files = Json::array();
  for (const FileSpec& f : s.files) {
    Json file = {{"path", f.path}, {"mode", FormatMode(f.mode)}};
    if (f.content) file["content"] = *f.content;
    if (f.source) {
      file["source"] = *f.source;
      file["sourceSha256"] = f.source_sha256;
    }
    files.push_back(std::move(file));
  }
  Json spec = {
      {"image", s.image},
      {"kernel", s.kernel},
      {"cpus", s.cpus},
      {"memory", FormatByteSize(s.memory_bytes)},
      {"disk", s.disk_bytes == 0 ? std::string("auto") : FormatByteSize(s.disk_bytes)},
      {"network",
       {{"mode", ToString(s.network.mode)},
        {"name", s.network.name},
        {"address", s.network.address},
        {"ports", ports}}},
      {"ssh", {{"authorizedKeys", s.ssh_authorized_keys}}},
      {"env", env},
      {"files", files},
      {"provision", s.provision},
      {"readiness",
       {{"command", s.readiness.command}, {"timeout", FormatDuration(s.readiness.timeout)}}},
      {"restartPolicy", ToString(s.restart_policy)},
      {"hypervisor", ToString(s.hypervisor)},
  };
  // Omitted when auto, so specs without it keep the hash they had before.
  if (s.start != StartMode::kAuto) spec["start"] = ToString(s.start);
  // Volumes are keyed by name, so a plan diff names the volume and field
  // ("spec.volumes.data.size"). Omitted when there are none, so specs without
  // volumes keep the hash they had before volumes existed.
  if (!s.volumes.empty()) {
    Json volumes = Json::object();
    for (const VolumeSpec& v : s.volumes) {
      volumes[v.name] = {{"mountPath", v.mount_path},
                         {"size", FormatByteSize(v.size_bytes)},
                         {"seedFrom", ToString(v.seed_from)}};
    }
    spec["volumes"] = std::move(volumes);
  }
  // Only when set, so the canonical form (and so the plan) of every spec
  // without a workspace is what it was before workspaces existed.
  if (s.workspace) {
    spec["workspace"] = {{"source", s.workspace->source},
                         {"path", s.workspace->path},
                         {"mode", ToString(s.workspace->mode)},
                         {"includeUntracked", s.workspace->include_untracked}};
  }
  return {{"apiVersion", kApiVersion},
          {"kind", kKindSandbox},
          {"metadata", {{"name", s.name}, {"labels", labels}}},
          {"spec", spec}};
}

// Readers for SpecFromCanonicalJson. Missing members keep their defaults, so
// specs stored by an older banger still load; wrong types are errors.
const Json* Member(const Json& obj, const char* key) {
  if (!obj.is_object()) return nullptr;
  auto it = obj.find(key);
  return it == obj.end() ? nullptr : &*it;
}

template <typename E>
Result<E> ParseEnum(const Json& j, const char* field, std::initializer_list<E> values) {
  std::string s = j.get<std::string>();
  for (E v : values) {
    if (ToString(v) == s) return v;
  }
  return InvalidArgument(std::string(field) + ": unknown value \"" + s + "\"");
}

Result<SandboxSpec> FromJson(const Json& root) {
  if (!root.is_object()) return InvalidArgument("expected a JSON object");
  const Json* api = Member(root, "apiVersion");
  if (!api || api->get<std::string>() != kApiVersion) {
    return InvalidArgument(std::string("apiVersion: must be \"") + kApiVersion + "\"");
  }
  const Json* kind = Member(root, "kind");
  if (!kind || kind->get<std::string>() != kKindSandbox) {
    return InvalidArgument(std::string("kind: must be \"") + kKindSandbox + "\"");
  }
  SandboxSpec s;
  const Json* meta = Member(root, "metadata");
  const Json* name = meta ? Member(*meta, "name") : nullptr;
  if (!name) return InvalidArgument("metadata.name: missing");
  s.name = name->get<std::string>();
  if (!IsDnsLabel(s.name)) return InvalidArgument("metadata.name: invalid \"" + s.name + "\"");
  if (const Json* labels = Member(*meta, "labels")) {
    for (const auto& [k, v] : labels->items()) s.labels[k] = v.get<std::string>();
  }
  const Json* spec = Member(root, "spec");
  if (!spec || !spec->is_object()) return InvalidArgument("spec: missing");
  const Json& sp = *spec;
  if (const Json* j = Member(sp, "image")) s.image = j->get<std::string>();
  if (s.image.empty()) return InvalidArgument("spec.image: missing");
  if (const Json* j = Member(sp, "kernel")) s.kernel = j->get<std::string>();
  if (const Json* j = Member(sp, "cpus")) s.cpus = j->get<uint32_t>();
  if (const Json* j = Member(sp, "memory")) {
    Result<uint64_t> v = ParseByteSize(j->get<std::string>());
    if (!v.ok()) return v.error().WithContext("spec.memory");
    s.memory_bytes = *v;
  }
  if (const Json* j = Member(sp, "disk")) {
    std::string d = j->get<std::string>();
    if (d != "auto") {
      Result<uint64_t> v = ParseByteSize(d);
      if (!v.ok()) return v.error().WithContext("spec.disk");
      s.disk_bytes = *v;
    }
  }
  if (const Json* net = Member(sp, "network")) {
    if (const Json* j = Member(*net, "mode")) {
      if (j->is_string() && j->get<std::string>() == "nat") {
        s.network.mode = NetworkMode::kUser;  // recorded by a banger before bridged networking
      } else {
        BANGER_ASSIGN_OR_RETURN(s.network.mode,
                                ParseEnum(*j, "spec.network.mode",
                                          {NetworkMode::kBridged, NetworkMode::kUser, NetworkMode::kIsolated,
                                           NetworkMode::kNone}));
      }
    }
    if (const Json* j = Member(*net, "name")) s.network.name = j->get<std::string>();
    if (const Json* j = Member(*net, "address")) s.network.address = j->get<std::string>();
    if (const Json* ports = Member(*net, "ports")) {
      for (const Json& p : *ports) {
        PortMapping m;
        m.host = p.at("host").get<uint16_t>();
        m.guest = p.at("guest").get<uint16_t>();
        if (const Json* proto = Member(p, "protocol")) {
          BANGER_ASSIGN_OR_RETURN(m.protocol, ParseEnum(*proto, "spec.network.ports[].protocol",
                                                        {Protocol::kTcp, Protocol::kUdp}));
        }
        if (const Json* a = Member(p, "address")) m.address = a->get<std::string>();
        s.network.ports.push_back(m);
      }
    }
  }
  if (const Json* ssh = Member(sp, "ssh")) {
    if (const Json* keys = Member(*ssh, "authorizedKeys")) {
      s.ssh_authorized_keys = keys->get<std::vector<std::string>>();
    }
  }
  if (const Json* env = Member(sp, "env")) {
    for (const auto& [k, v] : env->items()) s.env[k] = v.get<std::string>();
  }
  if (const Json* files = Member(sp, "files")) {
    for (const Json& f : *files) {
      FileSpec file;
      file.path = f.at("path").get<std::string>();
      if (const Json* j = Member(f, "content")) file.content = j->get<std::string>();
      if (const Json* j = Member(f, "source")) file.source = j->get<std::string>();
      if (const Json* j = Member(f, "sourceSha256")) file.source_sha256 = j->get<std::string>();
      if (const Json* j = Member(f, "mode")) {
        std::string text = j->get<std::string>();
        size_t used = 0;
        unsigned long v = std::stoul(text, &used, 8);
        if (used != text.size() || v > 07777) {
          return InvalidArgument("spec.files[].mode: invalid \"" + text + "\"");
        }
        file.mode = static_cast<uint32_t>(v);
      }
      if (file.content.has_value() == file.source.has_value()) {
        return InvalidArgument("spec.files[]: " + file.path +
                               ": needs exactly one of content and source");
      }
      s.files.push_back(std::move(file));
    }
  }
  if (const Json* j = Member(sp, "provision")) s.provision = j->get<std::vector<std::string>>();
  if (const Json* r = Member(sp, "readiness")) {
    if (const Json* j = Member(*r, "command")) {
      s.readiness.command = j->get<std::vector<std::string>>();
    }
    if (const Json* j = Member(*r, "timeout")) {
      Result<std::chrono::milliseconds> d = ParseDuration(j->get<std::string>());
      if (!d.ok()) return d.error().WithContext("spec.readiness.timeout");
      s.readiness.timeout = *d;
    }
  }
  if (const Json* j = Member(sp, "restartPolicy")) {
    BANGER_ASSIGN_OR_RETURN(s.restart_policy,
                            ParseEnum(*j, "spec.restartPolicy",
                                      {RestartPolicy::kAlways, RestartPolicy::kOnFailure,
                                       RestartPolicy::kNever}));
  }
  if (const Json* w = Member(sp, "workspace")) {
    WorkspaceSpec ws;
    ws.source = w->at("source").get<std::string>();
    if (const Json* j = Member(*w, "path")) ws.path = j->get<std::string>();
    if (const Json* j = Member(*w, "mode")) {
      BANGER_ASSIGN_OR_RETURN(ws.mode, ParseEnum(*j, "spec.workspace.mode", {WorkspaceMode::kTracked, WorkspaceMode::kFull}));
    }
    if (const Json* j = Member(*w, "includeUntracked")) ws.include_untracked = j->get<bool>();
    s.workspace = std::move(ws);
  }
  if (const Json* j = Member(sp, "start")) {
    BANGER_ASSIGN_OR_RETURN(s.start, ParseEnum(*j, "spec.start", {StartMode::kAuto, StartMode::kBoot, StartMode::kSnapshot}));
  }
  if (const Json* j = Member(sp, "hypervisor")) {
    BANGER_ASSIGN_OR_RETURN(s.hypervisor,
                            ParseEnum(*j, "spec.hypervisor",
                                      {HypervisorKind::kAuto, HypervisorKind::kQemu,
                                       HypervisorKind::kFirecracker}));
  }
  if (const Json* volumes = Member(sp, "volumes")) {
    if (!volumes->is_object()) return InvalidArgument("spec.volumes: expected an object keyed by volume name");
    for (const auto& [vname, v] : volumes->items()) {
      VolumeSpec vol;
      vol.name = vname;
      if (!IsDnsLabel(vol.name)) return InvalidArgument("spec.volumes: invalid name \"" + vname + "\"");
      vol.mount_path = v.at("mountPath").get<std::string>();
      Result<uint64_t> size = ParseByteSize(v.at("size").get<std::string>());
      if (!size.ok()) return size.error().WithContext("spec.volumes." + vname + ".size");
      vol.size_bytes = *size;
      if (const Json* j = Member(v, "seedFrom")) {
        BANGER_ASSIGN_OR_RETURN(vol.seed_from, ParseEnum(*j, "spec.volumes[].seedFrom",
                                                         {VolumeSeed::kEmpty, VolumeSeed::kImage}));
      }
      s.volumes.push_back(std::move(vol));
    }
  }
  NormalizeSpec(s);
  return s;
}

}  // namespace

std::string CanonicalJson(const SandboxSpec& spec) {
  SandboxSpec normal = spec;
  NormalizeSpec(normal);
  // The loader only admits UTF-8; `replace` keeps hand-built specs with bad
  // bytes from throwing.
  return ToJson(normal).dump(-1, ' ', false, Json::error_handler_t::replace);
}

std::string SpecHash(const SandboxSpec& spec) { return Sha256Hex(CanonicalJson(spec)); }

std::string CanonicalNetworkJson(const NetworkSpecDoc& n) {
  Json labels = Json::object();
  for (const auto& [k, v] : n.labels) labels[k] = v;
  Json root = {{"apiVersion", kApiVersion},
               {"kind", kKindNetwork},
               {"metadata", {{"name", n.name}, {"labels", labels}}},
               {"spec", {{"subnet", n.subnet}, {"nat", n.nat}, {"isolated", n.isolated}}}};
  return root.dump(-1, ' ', false, Json::error_handler_t::replace);
}

Result<NetworkSpecDoc> NetworkSpecFromCanonicalJson(std::string_view json) {
  try {
    Json root = Json::parse(json.begin(), json.end());
    const Json* kind = Member(root, "kind");
    if (!kind || kind->get<std::string>() != kKindNetwork) return InvalidArgument("kind: must be \"Network\"");
    NetworkSpecDoc n;
    if (const Json* md = Member(root, "metadata")) {
      if (const Json* j = Member(*md, "name")) n.name = j->get<std::string>();
      if (const Json* j = Member(*md, "labels")) {
        for (const auto& [k, v] : j->items()) n.labels[k] = v.get<std::string>();
      }
    }
    if (n.name.empty()) return InvalidArgument("metadata.name: missing");
    if (const Json* sp = Member(root, "spec")) {
      if (const Json* j = Member(*sp, "subnet")) n.subnet = j->get<std::string>();
      if (const Json* j = Member(*sp, "nat")) n.nat = j->get<bool>();
      if (const Json* j = Member(*sp, "isolated")) n.isolated = j->get<bool>();
    }
    return n;
  } catch (const std::exception& e) {
    return InvalidArgument(std::string("invalid canonical network JSON: ") + e.what());
  }
}

Result<SandboxSpec> SpecFromCanonicalJson(std::string_view json) {
  try {
    Json root = Json::parse(json.begin(), json.end());
    return FromJson(root);
  } catch (const std::exception& e) {
    return InvalidArgument(std::string("invalid canonical spec JSON: ") + e.what());
  }
}

}  // namespace banger
