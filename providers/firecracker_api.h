// A small client for Firecracker's REST API, served over the unix socket
// given with `--api-sock` (docs/firecracker.md). Requests and responses follow
// providers/testdata/firecracker-api.yaml (Firecracker's own swagger file);
// providers/firecracker_contract_test.cc checks every request banger sends
// against it.
#pragma once

#include <chrono>
#include <filesystem>
#include <string>
#include <string_view>

#include "base/status.h"

namespace banger {

struct FirecrackerResponse {
  long status = 0;    // HTTP status
  std::string body;   // as received (JSON or empty)
};

class FirecrackerApi {
 public:
  /// Every request must be answered within `timeout`.
  FirecrackerApi(std::filesystem::path socket, std::chrono::milliseconds timeout);

  /// PUT/PATCH `path` with the JSON `body`; OK on a 2xx answer. Anything
  /// else is an error naming the request ("PUT /drives/rootfs") and
  /// Firecracker's fault_message.
  Status Put(std::string_view path, const std::string& body);
  Status Patch(std::string_view path, const std::string& body);
  /// GET `path`; the body of a 200 answer.
  Result<std::string> Get(std::string_view path);

  /// One request; a transport failure (no socket, no answer in time) is an
  /// error, any HTTP status is a response.
  Result<FirecrackerResponse> Call(std::string_view method, std::string_view path, const std::string& body);

  const std::filesystem::path& socket() const { return socket_; }

 private:
  Status Expect2xx(std::string_view method, std::string_view path, const std::string& body);

  std::filesystem::path socket_;
  std::chrono::milliseconds timeout_;
};

/// "PUT /x: fault" from an error answer's body ({"fault_message": ...}); the
/// raw body (bounded) when it is not that shape.
std::string FirecrackerFault(const std::string& body);

}  // namespace banger
