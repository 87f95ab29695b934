// Client for the OCI distribution API (pull side): manifests and blobs, with
// anonymous, bearer-token and basic authentication, retries with exponential
// backoff, and resumable blob downloads into the BlobStore.
#pragma once

#include <chrono>
#include <cstdint>
#include <filesystem>
#include <functional>
#include <map>
#include <optional>
#include <string>
#include <string_view>

#include "base/clock.h"
#include "base/status.h"
#include "oci/auth.h"
#include "oci/blob_store.h"
#include "oci/http.h"
#include "oci/manifest.h"
#include "oci/reference.h"

namespace banger::oci {

struct RetryPolicy {
  int max_attempts = 5;
  std::chrono::milliseconds initial_backoff{500};
  std::chrono::milliseconds max_backoff{8000};

  /// Delay before attempt `attempt` (2, 3, ...): initial * 2^(attempt-2), capped.
  std::chrono::milliseconds BackoffBefore(int attempt) const;
};

struct RegistryClientOptions {
  bool plain_http = false;               // forced on for loopback registries
  std::filesystem::path docker_config;   // basic credentials; may be empty
  RetryPolicy retry;
  Clock* clock = nullptr;                // sleeps between retries; nullptr: system clock
};

struct FetchedManifest {
  std::string digest;      // "sha256:..."
  std::string media_type;
  std::string body;
  uint64_t bytes_transferred = 0;  // 0 when served from the cache
};

using BlobProgressFn = std::function<void(uint64_t done, uint64_t total)>;

/// One client per repository and thread.
class RegistryClient {
 public:
  RegistryClient(HttpClient& http, Reference ref, RegistryClientOptions options);
  ~RegistryClient();

  /// Resolves `selector` (tag or digest) to a verified manifest, stored in
  /// `cache` by digest. A tag is checked with HEAD first so a cached manifest
  /// is not downloaded again.
  Result<FetchedManifest> GetManifest(std::string_view selector, const BlobStore& cache);

  /// Ensures blob `d` is in `cache`, downloading, verifying and resuming as
  /// needed. Returns the bytes transferred (0 when it was cached).
  Result<uint64_t> FetchBlob(const Descriptor& d, const BlobStore& cache,
                             const BlobProgressFn& progress = {});

  std::string BaseUrl() const;  // "https://host/v2/repo"

 private:
  // Sends with the current credentials, answering one 401 challenge.
  Result<HttpResponse> Send(HttpRequest req, const BodySink& sink);
  Status FetchToken(const AuthChallenge& challenge);
  // Runs `attempt` until it succeeds, fails terminally, or attempts run out.
  template <typename T>
  Result<T> WithRetries(std::string_view what, const std::function<Result<T>()>& attempt);

  HttpClient& http_;
  Reference ref_;
  RegistryClientOptions options_;
  std::unique_ptr<Clock> own_clock_;
  Clock* clock_ = nullptr;
  std::optional<Credentials> creds_;
  bool creds_loaded_ = false;
  bool use_basic_ = false;
  std::map<std::string, std::string> tokens_;  // scope -> bearer token
};

/// Percent-encodes for a URL query value.
std::string UrlEncode(std::string_view s);

}  // namespace banger::oci
