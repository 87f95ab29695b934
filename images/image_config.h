// What an OCI image says about the process it runs: entrypoint and command,
// environment, working directory. Stored with each image record
// (ImageRecord::config_json) and handed to the guest agent at boot.
#pragma once

#include <map>
#include <string>
#include <string_view>
#include <vector>

namespace banger::images {

struct ImageRunConfig {
  std::vector<std::string> entrypoint;       // Entrypoint followed by Cmd
  std::map<std::string, std::string> env;    // Env ("KEY=VALUE" entries)
  std::string workdir;                       // WorkingDir
};

/// Reads an OCI image config (the whole config blob, whose "config" object is
/// used, or that object alone). Empty, unparsable or non-object JSON gives an
/// empty result; non-string array items and Env entries without '=' are skipped.
ImageRunConfig ParseImageRunConfig(std::string_view config_json);

}  // namespace banger::images
