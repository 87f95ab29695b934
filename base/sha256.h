// SHA-256 over OpenSSL's EVP interface.
#pragma once

#include <filesystem>
#include <memory>
#include <string>
#include <string_view>

#include "base/status.h"

namespace banger {

/// Incremental hasher. Not thread-safe.
class Sha256 {
 public:
  Sha256();
  ~Sha256();
  Sha256(const Sha256&) = delete;
  Sha256& operator=(const Sha256&) = delete;
  void Update(std::string_view data);
  /// Lower-case hex digest; the hasher must not be used afterwards.
  std::string HexDigest();

 private:
  struct State;
  std::unique_ptr<State> state_;
};

std::string Sha256Hex(std::string_view data);
Result<std::string> Sha256File(const std::filesystem::path& path);

}  // namespace banger
