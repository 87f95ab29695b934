// banger's host configuration: /etc/banger/config.yaml for root, else
// $XDG_CONFIG_HOME/banger/config.yaml; --config overrides. Every key is
// optional; see docs/config.md.
#pragma once

#include <map>
#include <string>
#include <vector>

#include "base/status.h"

namespace banger::host {

struct Config {
  std::string path;                   // file it was read from ("" = defaults)
  std::string default_kernel;         // empty: the kernel catalog's default
  std::string accel = "auto";         // auto | kvm | tcg
  std::string machine = "auto";       // auto | microvm | q35
  /// hypervisor: the provider of specs that say `hypervisor: auto` (or
  /// nothing): auto (Firecracker where it works, else QEMU) | qemu | firecracker.
  std::string hypervisor = "auto";
  int parallel = 4;
  std::string image_catalog_yaml;     // "images:" document: extra/overriding image catalog entries
  std::string kernel_catalog_yaml;    // "kernels:" document: extra/overriding kernel catalog entries
  /// network.netns: the named network namespace (`ip netns`) holding banger's
  /// bridges and taps, and in which QEMU is started. "" = the host's.
  /// $BANGER_NETNS, when set, overrides the file (set but empty: the host's).
  std::string netns;
  /// run: the defaults of `banger run`'s flags (its --image, --cpus, ...).
  struct RunDefaults {
    std::string image = "busybox";    // catalog name or OCI reference
    int cpus = 1;
    std::string memory = "512MiB";    // a spec size
    std::string disk = "auto";        // a spec size or auto
    std::string network = "user";     // bridged | user | isolated | none
  } run;
  /// Where each key's value came from (dotted key, e.g. "run.image"):
  /// "PATH:LINE" for the file, "env NAME" for the environment; a key not
  /// listed has its built-in default.
  std::map<std::string, std::string> sources;
};

/// One effective setting for `banger config show`.
struct ConfigEntry {
  std::string key;     // dotted: "accel", "run.image"
  std::string value;   // as shown
  std::string source;  // "default", "PATH:LINE", "env NAME", "flag --X"
};

/// Every scalar setting with its value and source, in a fixed order.
std::vector<ConfigEntry> ConfigEntries(const Config& config);

/// "" if `name` can name a network namespace (`ip netns` file name), else why not.
std::string ValidateNetnsName(const std::string& name);

/// Reads `explicit_path` if given (must exist), else the default location if
/// it exists, else defaults. Errors name the file, line and key.
Result<Config> LoadConfig(const std::string& explicit_path);

/// The config rendered as YAML (for `banger config show`), each key with a
/// trailing comment naming where its value came from; `extra` entries
/// (settings that come from flags, such as the state directory) go first.
std::string RenderConfig(const Config& config, const std::vector<ConfigEntry>& extra = {});

}  // namespace banger::host
