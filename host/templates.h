// Templates (docs/snapshots.md): the saved state of a VM that booted as far
// as its guest agent holding for an identity, published once per boot
// identity under <state>/templates/<hash>/ and restored instead of booting.
#pragma once

#include <cstdint>
#include <filesystem>
#include <functional>
#include <optional>
#include <string>
#include <vector>

#include "base/clock.h"
#include "base/status.h"
#include "providers/hypervisor.h"
#include "state/layout.h"

namespace banger::host {

/// Everything a template's saved state depends on. Any change gives another
/// hash, so a template is never used for a different image, kernel, agent
/// or machine shape.
struct TemplateIdentity {
  std::string provider;        // "qemu"
  std::string image_digest;    // the image's manifest digest
  std::string image_disk;      // its root disk (the template layer's backing file)
  std::string kernel_sha256;   // of the kernel file booted
  std::string initramfs;       // banger-initramfs-<agent hash>.img: agent build + kernel modules
  uint32_t cpus = 1;
  uint64_t memory_bytes = 0;
  uint64_t disk_bytes = 0;
  std::string machine;         // accel/machine settings ("auto/auto")
  std::string network;         // "none" | "user" | "user-isolated" | "bridged"
  std::string devices;         // the device set ("root" today: sandboxes with volumes are not templated)
  std::string vmm;             // the VMM binary's SHA-256: a saved state loads only into the VMM that saved it

  /// Canonical JSON (sorted keys): what is hashed and kept in meta.json.
  std::string Json() const;
  /// sha256 hex of Json().
  std::string Hash() const;
};

/// A published template.
struct TemplateInfo {
  std::string hash;                  // full sha256 hex
  std::filesystem::path dir;         // <state>/templates/<hash>
  std::string identity_json;
  std::string image_digest, kernel_sha256;
  uint32_t cpus = 0;
  uint64_t memory_bytes = 0;
  uint64_t state_bytes = 0;          // state (+ memory) file sizes
  uint64_t disk_layer_bytes = 0;
  int64_t created_at = 0;
  uint64_t build_ms = 0;             // boot-to-held + save
  VmTemplateFiles files;             // absolute paths inside dir
  std::vector<std::string> used_by;  // sandbox ids whose disk is layered on it
};

/// The first 12 hex digits, as shown to users.
inline std::string ShortHash(const std::string& hash) { return hash.substr(0, 12); }

std::filesystem::path TemplatesDir(const StateLayout& layout);

/// The id (and runtime dir name under sandboxes/) of the VM that builds the
/// template of `hash`: "tpl-" and its short hash, never a sandbox's id.
std::string TemplateBuildId(const std::string& hash);

/// The hash of the template a sandbox's disk is layered on (read from its
/// overlay's qcow2 header), or "" when it booted from its image.
std::string TemplateOfRuntimeDir(const std::filesystem::path& runtime_dir);

/// Published templates, oldest first, with the sandboxes that use them.
Result<std::vector<TemplateInfo>> ListTemplates(const StateLayout& layout);
/// The template with this full hash, if published.
Result<std::optional<TemplateInfo>> FindTemplate(const StateLayout& layout, const std::string& hash);
/// The template whose hash starts with `prefix` (at least 4 hex digits);
/// NotFound, or InvalidArgument when ambiguous.
Result<TemplateInfo> ResolveTemplate(const StateLayout& layout, const std::string& prefix);

/// Saves a template into `staging` (an existing private directory).
using TemplateBuilder = std::function<Result<VmTemplateFiles>(const std::filesystem::path& staging)>;

/// The template of `identity`: the published one, or built by `build` and
/// published atomically (staging dir + rename). Built once under
/// concurrency: one process holds run/locks/template-<hash>.lock and builds,
/// the others wait for it and then use its result.
Result<TemplateInfo> EnsureTemplate(const StateLayout& layout, Clock& clock, const TemplateIdentity& identity,
                                    const TemplateBuilder& build);

/// Removes what interrupted template builds left, for every identity whose
/// build lock is free (nobody is building it): the build VM's runtime dir
/// sandboxes/tpl-<hash12> (after `stop_vm` ends its VMM) and staging or
/// removal dirs under templates/. Best effort: problems are logged and the
/// first one returned, nothing else stops.
Status CleanUpAbandonedTemplateBuilds(const StateLayout& layout,
                                      const std::function<Status(const std::filesystem::path&)>& stop_vm);

/// Removes a template; FailedPrecondition naming the sandboxes using it.
Status RemoveTemplate(const StateLayout& layout, const TemplateInfo& t);

}  // namespace banger::host
