// A small HTTP client interface over libcurl, enough for the OCI distribution
// API: request headers, streaming bodies, ranges, redirects, timeouts.
#pragma once

#include <chrono>
#include <cstdint>
#include <functional>
#include <map>
#include <memory>
#include <string>
#include <string_view>
#include <vector>

#include "base/status.h"

namespace banger::oci {

struct HttpRequest {
  std::string method = "GET";                // GET, HEAD, POST, PUT
  std::string url;
  std::vector<std::string> headers;          // "Name: value"
  std::string body;                          // request body for POST/PUT
  uint64_t range_start = 0;                  // > 0 sends "Range: bytes=N-"
  std::string basic_user;                    // HTTP basic auth when non-empty
  std::string basic_password;
  std::chrono::seconds connect_timeout{20};
  /// Abort when fewer than 1 byte/s arrive for this long (stalled transfer):
  /// DeadlineExceeded saying "no data for N s".
  std::chrono::seconds stall_timeout{20};
  /// Called once with the status and headers of a 2xx response before its
  /// first body byte reaches the sink; an error aborts the transfer.
  std::function<Status(long status, const std::map<std::string, std::string>& headers)>
      on_response;
};

struct HttpResponse {
  long status = 0;
  std::map<std::string, std::string> headers;  // lower-case names; last value wins
  std::string body;         // the body, unless a sink took it (2xx responses only)
  std::string effective_url;

  std::string Header(const std::string& lower_name) const {
    auto it = headers.find(lower_name);
    return it == headers.end() ? std::string() : it->second;
  }
};

/// Receives 2xx response bodies chunk by chunk; a non-OK Status aborts the transfer.
using BodySink = std::function<Status(std::string_view chunk)>;

class HttpClient {
 public:
  virtual ~HttpClient() = default;
  /// Performs one exchange. Any HTTP status is a value (check `status`);
  /// only transport failures (connect, reset, timeout) are errors. When `sink`
  /// is set, 2xx bodies go to it instead of HttpResponse::body.
  virtual Result<HttpResponse> Do(const HttpRequest& request, const BodySink& sink = {}) = 0;
};

/// libcurl-backed client; one per thread (it keeps its connections open).
std::unique_ptr<HttpClient> MakeCurlHttpClient();

/// The one mapping from a transfer outcome to a Status. `curl_code` is a
/// CURLcode (0 = transfer completed), `http_status` the response status.
/// 404 -> NotFound; 401/403 -> PermissionDenied; 429, 5xx, timeouts,
/// connection refused/reset -> Unavailable; other 4xx -> InvalidArgument.
Status TransferStatus(int curl_code, long http_status, std::string_view what);

}  // namespace banger::oci
