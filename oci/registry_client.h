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

/// How long a registry may send nothing before a transfer fails. A transfer
/// (one manifest or blob) that receives no data for `budget` in total, across
/// all its attempts and the backoff sleeps between them, fails with
/// "registry stalled: ..."; time in which data arrives does not count, so a
/// slow but moving download of a large layer goes on (resumed with Range
/// after each stalled attempt). Each attempt connects within half of what is
/// left of the budget (at most 20 s) and is abandoned after PerAttempt()
/// without data (at most what is left after that).
struct StallPolicy {
  std::chrono::seconds budget{90};

  /// min(20 s, budget / 4), at least 1 s.
  std::chrono::seconds PerAttempt() const;
};

/// How late libcurl may notice that a transfer went silent (its speed is an
/// average over about 5 s, checked once a second).
inline constexpr std::chrono::seconds kCurlStallLag{7};

/// The longest a transfer can take while receiving no data at all, with
/// `retry` and `stall` (the bound the tests hold the defaults to: < 2 min).
std::chrono::milliseconds WorstCaseStalledTransfer(const RetryPolicy& retry, const StallPolicy& stall);

struct RegistryClientOptions {
  bool plain_http = false;               // forced on for loopback registries
  std::filesystem::path docker_config;   // basic credentials; may be empty
  RetryPolicy retry;
  StallPolicy stall;
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

  /// Starts with `other`'s credentials and bearer tokens (a client for
  /// another connection to the same repository, e.g. a parallel layer
  /// download), so the registry is not asked for a token again. `other` must
  /// not be in use by another thread meanwhile.
  void ShareAuthFrom(const RegistryClient& other);

 private:
  // Sends with the current credentials, answering one 401 challenge.
  Result<HttpResponse> Send(HttpRequest req, const BodySink& sink);
  Status FetchToken(const AuthChallenge& challenge);
  // Runs `attempt` until it succeeds, fails terminally, or attempts run out.
  template <typename T>
  Result<T> WithRetries(std::string_view what, const std::function<Result<T>()>& attempt);

  // Per attempt (set by WithRetries from the stall budget left).
  std::chrono::seconds attempt_stall_{20};
  std::chrono::seconds attempt_connect_{20};
  // First and last body byte of the current attempt (epoch: none yet).
  std::chrono::steady_clock::time_point first_data_{}, last_data_{};

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
