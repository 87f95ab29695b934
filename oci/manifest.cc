#include "oci/manifest.h"

#include <nlohmann/json.hpp>

#include "base/strings.h"
#include "oci/reference.h"

namespace banger::oci {
namespace {

Result<Descriptor> ParseDescriptor(const nlohmann::json& j, std::string_view what,
                                   std::string_view field) {
  if (!j.is_object()) return InvalidArgument(std::string(what) + ": " + std::string(field) +
                                             " is not an object");
  Descriptor d;
  if (j.contains("mediaType") && j["mediaType"].is_string()) d.media_type = j["mediaType"];
  if (!j.contains("digest") || !j["digest"].is_string()) {
    return InvalidArgument(std::string(what) + ": " + std::string(field) + " has no digest");
  }
  d.digest = j["digest"].get<std::string>();
  if (!IsValidDigest(d.digest)) {
    return InvalidArgument(std::string(what) + ": " + std::string(field) +
                           " has unsupported digest \"" + d.digest + "\" (only sha256)");
  }
  if (j.contains("size") && j["size"].is_number_integer()) d.size = j["size"].get<int64_t>();
  if (j.contains("platform") && j["platform"].is_object()) {
    const auto& p = j["platform"];
    if (p.contains("os") && p["os"].is_string()) d.os = p["os"];
    if (p.contains("architecture") && p["architecture"].is_string()) {
      d.architecture = p["architecture"];
    }
    if (p.contains("variant") && p["variant"].is_string()) d.variant = p["variant"];
  }
  return d;
}

}  // namespace

std::string ManifestAcceptHeader() {
  return "Accept: " + std::string(kOciIndex) + ", " + std::string(kOciManifest) + ", " +
         std::string(kDockerManifestList) + ", " + std::string(kDockerManifest);
}

std::string Descriptor::PlatformString() const {
  std::string s = os + "/" + architecture;
  if (!variant.empty()) s += "/" + variant;
  return s;
}

Result<Manifest> ParseManifest(std::string_view json, std::string_view content_type,
                               std::string_view what) {
  std::string w(what);
  try {
    nlohmann::json j = nlohmann::json::parse(json);
    if (!j.is_object()) return InvalidArgument(w + ": manifest is not a JSON object");
    if (j.contains("schemaVersion") && j["schemaVersion"] == 1) {
      return InvalidArgument(w + ": Docker schema 1 manifests are not supported");
    }
    Manifest m;
    if (j.contains("mediaType") && j["mediaType"].is_string()) {
      m.media_type = j["mediaType"];
    } else {
      std::string_view ct = content_type.substr(0, content_type.find(';'));
      m.media_type = std::string(Trim(ct));
    }
    if (m.media_type == kOciIndex || m.media_type == kDockerManifestList) {
      m.is_index = true;
    } else if (m.media_type == kOciManifest || m.media_type == kDockerManifest) {
      m.is_index = false;
    } else if (j.contains("manifests")) {
      m.is_index = true;
      m.media_type = kOciIndex;
    } else if (j.contains("layers") && j.contains("config")) {
      m.media_type = kOciManifest;
    } else {
      return InvalidArgument(w + ": unsupported manifest type \"" + m.media_type + "\"");
    }
    if (m.is_index) {
      if (!j.contains("manifests") || !j["manifests"].is_array()) {
        return InvalidArgument(w + ": index has no manifests array");
      }
      for (size_t i = 0; i < j["manifests"].size(); ++i) {
        BANGER_ASSIGN_OR_RETURN(Descriptor d, ParseDescriptor(j["manifests"][i], what,
                                                              "manifests[" + std::to_string(i) + "]"));
        m.manifests.push_back(std::move(d));
      }
      return m;
    }
    if (!j.contains("config")) return InvalidArgument(w + ": manifest has no config");
    BANGER_ASSIGN_OR_RETURN(m.config, ParseDescriptor(j["config"], what, "config"));
    if (!j.contains("layers") || !j["layers"].is_array()) {
      return InvalidArgument(w + ": manifest has no layers array");
    }
    for (size_t i = 0; i < j["layers"].size(); ++i) {
      BANGER_ASSIGN_OR_RETURN(Descriptor d, ParseDescriptor(j["layers"][i], what,
                                                            "layers[" + std::to_string(i) + "]"));
      m.layers.push_back(std::move(d));
    }
    return m;
  } catch (const nlohmann::json::exception& e) {
    return InvalidArgument(w + ": invalid manifest JSON: " + e.what());
  }
}

Result<Descriptor> SelectPlatform(const Manifest& index, std::string_view platform,
                                  std::string_view what) {
  std::vector<std::string> parts = Split(platform, '/');
  if (parts.size() < 2 || parts.size() > 3 || parts[0].empty() || parts[1].empty()) {
    return InvalidArgument("invalid platform \"" + std::string(platform) +
                           "\" (want os/arch or os/arch/variant)");
  }
  std::string want_variant = parts.size() == 3 ? parts[2] : "";
  const Descriptor* best = nullptr;
  std::vector<std::string> available;
  for (const Descriptor& d : index.manifests) {
    // Attestation manifests (buildkit) carry platform unknown/unknown.
    if (d.os == "unknown" || d.os.empty()) continue;
    available.push_back(d.PlatformString());
    if (d.os != parts[0] || d.architecture != parts[1]) continue;
    if (!want_variant.empty()) {
      if (d.variant == want_variant && !best) best = &d;
      continue;
    }
    if (!best || (!best->variant.empty() && d.variant.empty())) best = &d;
  }
  if (best) return *best;
  return NotFound(std::string(what) + ": no manifest for platform " + std::string(platform) +
                  "; available: " + (available.empty() ? "(none)" : Join(available, ", ")));
}

bool IsSupportedLayerType(std::string_view mt) {
  static constexpr std::string_view kTypes[] = {
      "application/vnd.oci.image.layer.v1.tar",
      "application/vnd.oci.image.layer.v1.tar+gzip",
      "application/vnd.oci.image.layer.v1.tar+zstd",
      "application/vnd.oci.image.layer.nondistributable.v1.tar",
      "application/vnd.oci.image.layer.nondistributable.v1.tar+gzip",
      "application/vnd.oci.image.layer.nondistributable.v1.tar+zstd",
      "application/vnd.docker.image.rootfs.diff.tar.gzip",
      "application/vnd.docker.image.rootfs.diff.tar",
      "application/vnd.docker.image.rootfs.foreign.diff.tar.gzip",
  };
  for (std::string_view t : kTypes) {
    if (mt == t) return true;
  }
  return false;
}

}  // namespace banger::oci
