#include "oci/registry_client.h"

#include <nlohmann/json.hpp>
#include <spdlog/spdlog.h>

#include "base/sha256.h"
#include "base/strings.h"

namespace banger::oci {
namespace {

constexpr size_t kMaxManifestBytes = 8 << 20;

std::string RepoScope(const Reference& ref) { return "repository:" + ref.repository + ":pull"; }

}  // namespace

std::chrono::milliseconds RetryPolicy::BackoffBefore(int attempt) const {
  if (attempt <= 1) return std::chrono::milliseconds(0);
  auto d = initial_backoff;
  for (int i = 2; i < attempt && d < max_backoff; ++i) d *= 2;
  return std::min(d, max_backoff);
}

std::chrono::seconds StallPolicy::PerAttempt() const {
  auto per = std::min(std::chrono::seconds(20), budget / 4);
  return std::max(std::chrono::seconds(1), per);
}

std::chrono::milliseconds WorstCaseStalledTransfer(const RetryPolicy& retry, const StallPolicy& stall) {
  // WithRetries counts every moment of an attempt outside the span between
  // its first and last body byte, and the backoff sleeps, as silence; it
  // stops once the silence reaches the budget, sleeps no backoff past it,
  // and gives no attempt more silence (connect + low-speed window) than
  // what is left. Only the last attempt can overrun, by libcurl's lag in
  // noticing a stall: it averages the speed over about 5 s and checks once
  // a second.
  (void)retry;
  return stall.budget + kCurlStallLag;
}

std::string UrlEncode(std::string_view s) {
  static constexpr char kHex[] = "0123456789ABCDEF";
  std::string out;
  for (unsigned char c : s) {
    if (std::isalnum(c) || c == '-' || c == '_' || c == '.' || c == '~') {
      out += static_cast<char>(c);
    } else {
      out += '%';
      out += kHex[c >> 4];
      out += kHex[c & 15];
    }
  }
  return out;
}

RegistryClient::RegistryClient(HttpClient& http, Reference ref, RegistryClientOptions options)
    : http_(http), ref_(std::move(ref)), options_(std::move(options)) {
  if (options_.clock) {
    clock_ = options_.clock;
  } else {
    own_clock_ = MakeSystemClock();
    clock_ = own_clock_.get();
  }
  if (options_.retry.max_attempts < 1) options_.retry.max_attempts = 1;
}

RegistryClient::~RegistryClient() = default;

std::string RegistryClient::BaseUrl() const {
  bool http = options_.plain_http || ref_.IsLoopback();
  return std::string(http ? "http://" : "https://") + ref_.ApiHost() + "/v2/" + ref_.repository;
}

template <typename T>
Result<T> RegistryClient::WithRetries(std::string_view what,
                                      const std::function<Result<T>()>& attempt) {
  using std::chrono::duration_cast;
  using std::chrono::milliseconds;
  using std::chrono::seconds;
  Status last;
  const milliseconds budget = options_.stall.budget;
  milliseconds silent{0};  // counted against the stall budget
  int attempts = 0;
  bool stalled = false;
  auto give_up_stalled = [&]() -> Status {
    return DeadlineExceeded("registry stalled: no data for " +
                            std::to_string(duration_cast<seconds>(silent).count()) + " s while downloading " +
                            std::string(what) + " (" + std::to_string(attempts) +
                            (attempts == 1 ? " attempt" : " attempts") + ", each abandoned after " +
                            std::to_string(options_.stall.PerAttempt().count()) +
                            " s without data; BANGER_REGISTRY_STALL_TIMEOUT=" +
                            std::to_string(options_.stall.budget.count()) + "): " + last.message());
  };
  for (int i = 1; i <= options_.retry.max_attempts; ++i) {
    if (i > 1) {
      auto delay = options_.retry.BackoffBefore(i);
      if (stalled && silent + delay + seconds(1) >= budget) return give_up_stalled();
      spdlog::info("{}: retrying in {} ms (attempt {}/{}) after: {}", what, delay.count(), i,
                   options_.retry.max_attempts, last.message());
      clock_->SleepFor(delay);
      silent += delay;
    }
    // This attempt may stay silent only for what is left of the budget.
    auto left = duration_cast<seconds>(budget - silent);
    attempt_connect_ = std::max(seconds(1), std::min(seconds(20), left / 2));
    attempt_stall_ = std::max(seconds(1), std::min(options_.stall.PerAttempt(), left - attempt_connect_));
    auto started = clock_->SteadyNow();
    first_data_ = last_data_ = {};
    ++attempts;
    Result<T> r = attempt();
    if (r.ok()) return r;
    last = r.status();
    if (last.code() != StatusCode::kUnavailable && last.code() != StatusCode::kDeadlineExceeded) {
      return last;
    }
    // This attempt's silence: all of it but the span in which data moved.
    stalled = last.code() == StatusCode::kDeadlineExceeded;
    auto took = clock_->SteadyNow() - started;
    if (first_data_ != std::chrono::steady_clock::time_point{}) took -= last_data_ - first_data_;
    silent += duration_cast<milliseconds>(took);
    if (stalled && silent + seconds(1) >= budget) return give_up_stalled();
  }
  if (stalled) return give_up_stalled();
  return std::move(last).WithContext("giving up after " +
                                     std::to_string(options_.retry.max_attempts) + " attempts");
}

Status RegistryClient::FetchToken(const AuthChallenge& ch) {
  std::string realm = ch.Param("realm");
  if (!StartsWith(realm, "https://") && !StartsWith(realm, "http://")) {
    return PermissionDenied(ref_.registry + ": bearer challenge has no usable realm \"" + realm +
                            "\"");
  }
  std::string scope = ch.Param("scope");
  if (scope.empty()) scope = RepoScope(ref_);
  HttpRequest req;
  req.url = realm + (realm.find('?') == std::string::npos ? "?" : "&");
  std::vector<std::string> query;
  if (!ch.Param("service").empty()) query.push_back("service=" + UrlEncode(ch.Param("service")));
  query.push_back("scope=" + UrlEncode(scope));
  req.url += Join(query, "&");
  if (creds_) {
    req.basic_user = creds_->username;
    req.basic_password = creds_->password;
  }
  req.stall_timeout = attempt_stall_;
  req.connect_timeout = attempt_connect_;
  BANGER_ASSIGN_OR_RETURN(HttpResponse resp, http_.Do(req));
  BANGER_RETURN_IF_ERROR(TransferStatus(0, resp.status, "token request to " + realm));
  try {
    nlohmann::json j = nlohmann::json::parse(resp.body);
    std::string token;
    if (j.contains("token") && j["token"].is_string()) token = j["token"];
    if (token.empty() && j.contains("access_token") && j["access_token"].is_string()) {
      token = j["access_token"];
    }
    if (token.empty()) return PermissionDenied("token response from " + realm + " has no token");
    tokens_[RepoScope(ref_)] = token;
    return OkStatus();
  } catch (const nlohmann::json::exception& e) {
    return PermissionDenied("token response from " + realm + " is not JSON: " + e.what());
  }
}

Result<HttpResponse> RegistryClient::Send(HttpRequest req, const BodySink& sink) {
  if (!creds_loaded_) {
    creds_loaded_ = true;
    BANGER_ASSIGN_OR_RETURN(creds_, LookupDockerCredentials(options_.docker_config, ref_.registry));
  }
  const std::vector<std::string> base_headers = req.headers;
  req.stall_timeout = attempt_stall_;
  req.connect_timeout = attempt_connect_;
  // Notes when body bytes arrive: silence, not slowness, is what the stall
  // budget counts.
  BodySink timed;
  if (sink) {
    timed = [&](std::string_view chunk) {
      last_data_ = clock_->SteadyNow();
      if (first_data_ == std::chrono::steady_clock::time_point{}) first_data_ = last_data_;
      return sink(chunk);
    };
  }
  for (int round = 0; round < 2; ++round) {
    req.headers = base_headers;
    req.basic_user.clear();
    req.basic_password.clear();
    auto tok = tokens_.find(RepoScope(ref_));
    if (tok != tokens_.end()) {
      req.headers.push_back("Authorization: Bearer " + tok->second);
    } else if (use_basic_ && creds_) {
      req.basic_user = creds_->username;
      req.basic_password = creds_->password;
    }
    BANGER_ASSIGN_OR_RETURN(HttpResponse resp, http_.Do(req, timed));
    if (resp.status != 401 || round == 1) return resp;
    std::string header = resp.Header("www-authenticate");
    if (header.empty()) return resp;
    BANGER_ASSIGN_OR_RETURN(AuthChallenge ch, ParseWwwAuthenticate(header));
    if (ch.scheme == "bearer") {
      BANGER_RETURN_IF_ERROR(FetchToken(ch));
    } else if (ch.scheme == "basic") {
      if (!creds_) {
        return PermissionDenied(ref_.registry + " requires credentials; none found for it in " +
                                (options_.docker_config.empty()
                                     ? std::string("(no docker config given)")
                                     : options_.docker_config.string()));
      }
      use_basic_ = true;
    } else {
      return PermissionDenied(ref_.registry + ": unsupported auth scheme \"" + ch.scheme + "\"");
    }
  }
  return Internal("unreachable");
}

Result<FetchedManifest> RegistryClient::GetManifest(std::string_view selector,
                                                    const BlobStore& cache) {
  const std::string what = ref_.registry + "/" + ref_.repository + ":" + std::string(selector);
  const bool by_digest = IsValidDigest(selector);
  const std::string url = BaseUrl() + "/manifests/" + std::string(selector);

  auto from_cache = [&](const std::string& digest) -> Result<FetchedManifest> {
    BANGER_ASSIGN_OR_RETURN(std::string body, cache.Read(digest));
    FetchedManifest m;
    m.digest = digest;
    m.body = std::move(body);
    return m;
  };
  if (by_digest && cache.Has(selector)) return from_cache(std::string(selector));

  if (!by_digest) {
    // HEAD is cheap (and not rate-limited on Docker Hub); reuse a cached manifest.
    auto head = WithRetries<HttpResponse>(what, [&]() -> Result<HttpResponse> {
      HttpRequest req;
      req.method = "HEAD";
      req.url = url;
      req.headers.push_back(ManifestAcceptHeader());
      BANGER_ASSIGN_OR_RETURN(HttpResponse r, Send(req, {}));
      BANGER_RETURN_IF_ERROR(TransferStatus(0, r.status, "HEAD " + url));
      return r;
    });
    if (head.ok()) {
      std::string digest = head->Header("docker-content-digest");
      if (IsValidDigest(digest) && cache.Has(digest)) {
        auto cached = from_cache(digest);
        if (cached.ok()) {
          cached->media_type = head->Header("content-type");
          return cached;
        }
      }
    } else if (head.error().code() == StatusCode::kNotFound) {
      return NotFound("manifest " + what + " not found");
    } else if (head.error().code() == StatusCode::kPermissionDenied ||
               head.error().code() == StatusCode::kUnavailable ||
               head.error().code() == StatusCode::kDeadlineExceeded) {
      return head.error().WithContext(what);
    }
    // Other HEAD failures (some registries answer 405): fall back to GET.
  }

  BANGER_ASSIGN_OR_RETURN(
      HttpResponse resp, WithRetries<HttpResponse>(what, [&]() -> Result<HttpResponse> {
        HttpRequest req;
        req.url = url;
        req.headers.push_back(ManifestAcceptHeader());
        std::string body;
        BodySink sink = [&](std::string_view chunk) -> Status {
          if (body.size() + chunk.size() > kMaxManifestBytes) {
            return InvalidArgument("manifest " + what + " is larger than 8 MiB");
          }
          body.append(chunk);
          return OkStatus();
        };
        BANGER_ASSIGN_OR_RETURN(HttpResponse r, Send(req, sink));
        Status s = TransferStatus(0, r.status, "GET " + url);
        if (s.code() == StatusCode::kNotFound) return NotFound("manifest " + what + " not found");
        BANGER_RETURN_IF_ERROR(s);
        r.body = std::move(body);
        return r;
      }));

  FetchedManifest m;
  m.body = std::move(resp.body);
  m.media_type = resp.Header("content-type");
  m.bytes_transferred = m.body.size();
  std::string actual = "sha256:" + Sha256Hex(m.body);
  std::string expected = by_digest ? std::string(selector) : resp.Header("docker-content-digest");
  if (!expected.empty() && IsValidDigest(expected) && expected != actual) {
    return DataLoss("manifest " + what + " digest mismatch: expected " + expected +
                    ", content hashes to " + actual);
  }
  m.digest = actual;
  BANGER_RETURN_IF_ERROR(cache.Put(m.digest, m.body));
  return m;
}

Result<uint64_t> RegistryClient::FetchBlob(const Descriptor& d, const BlobStore& cache,
                                           const BlobProgressFn& progress) {
  if (cache.Has(d.digest, d.size)) return uint64_t{0};
  BANGER_ASSIGN_OR_RETURN(std::unique_ptr<BlobWriter> writer, cache.NewWriter(d.digest));
  const std::string url = BaseUrl() + "/blobs/" + d.digest;
  const std::string what = "blob " + d.digest + " from " + ref_.registry + "/" + ref_.repository;
  const uint64_t total = d.size > 0 ? static_cast<uint64_t>(d.size) : 0;
  uint64_t transferred = 0;

  BANGER_RETURN_IF_ERROR(
      WithRetries<bool>(what, [&]() -> Result<bool> {
        HttpRequest req;
        req.url = url;
        req.range_start = writer->size();
        if (req.range_start > 0) {
          spdlog::info("{}: resuming at byte {}", what, req.range_start);
        }
        req.on_response = [&](long status, const std::map<std::string, std::string>& h) {
          if (req.range_start == 0) return OkStatus();
          if (status == 206) {
            auto it = h.find("content-range");
            std::string want = "bytes " + std::to_string(req.range_start) + "-";
            if (it != h.end() && StartsWith(it->second, want)) return OkStatus();
            BANGER_RETURN_IF_ERROR(writer->Restart());
            return Unavailable(what + ": unexpected Content-Range; restarting");
          } else {
            spdlog::info("{}: server ignored Range, restarting", what);
          }
          return writer->Restart();
        };
        BodySink sink = [&](std::string_view chunk) -> Status {
          BANGER_RETURN_IF_ERROR(writer->Append(chunk));
          transferred += chunk.size();
          if (progress) progress(writer->size(), total);
          return OkStatus();
        };
        auto r = Send(req, sink);
        if (!r.ok()) return r.status();
        if (r->status == 416) {
          BANGER_RETURN_IF_ERROR(writer->Restart());
          return Unavailable(what + ": range not satisfiable; restarting");
        }
        BANGER_RETURN_IF_ERROR(TransferStatus(0, r->status, "GET " + url));
        return true;
      }).status());
  BANGER_RETURN_IF_ERROR(writer->Commit(d.size));
  return transferred;
}

void RegistryClient::ShareAuthFrom(const RegistryClient& other) {
  creds_ = other.creds_;
  creds_loaded_ = other.creds_loaded_;
  use_basic_ = other.use_basic_;
  tokens_ = other.tokens_;
}

}  // namespace banger::oci
