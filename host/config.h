// banger's host configuration: /etc/banger/config.yaml for root, else
// $XDG_CONFIG_HOME/banger/config.yaml; --config overrides. Every key is
// optional; see docs/config.md.
#pragma once

#include <string>

#include "base/status.h"

namespace banger::host {

struct Config {
  std::string path;                   // file it was read from ("" = defaults)
  std::string default_kernel;         // empty: the kernel catalog's default
  std::string accel = "auto";         // auto | kvm | tcg
  std::string machine = "auto";       // auto | microvm | q35
  int parallel = 4;
  std::string image_catalog_yaml;     // "images:" document: extra/overriding image catalog entries
  std::string kernel_catalog_yaml;    // "kernels:" document: extra/overriding kernel catalog entries
  /// network.netns: the named network namespace (`ip netns`) holding banger's
  /// bridges and taps, and in which QEMU is started. "" = the host's.
  /// $BANGER_NETNS, when set, overrides the file (set but empty: the host's).
  std::string netns;
};

/// "" if `name` can name a network namespace (`ip netns` file name), else why not.
std::string ValidateNetnsName(const std::string& name);

/// Reads `explicit_path` if given (must exist), else the default location if
/// it exists, else defaults. Errors name the file, line and key.
Result<Config> LoadConfig(const std::string& explicit_path);

/// The config rendered as YAML (for `banger config show`).
std::string RenderConfig(const Config& config);

}  // namespace banger::host
