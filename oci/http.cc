#include "oci/http.h"

#include <curl/curl.h>

#include <algorithm>
#include <cctype>
#include <mutex>

#include "base/strings.h"

namespace banger::oci {
namespace {

void GlobalInit() {
  static std::once_flag once;
  std::call_once(once, [] { curl_global_init(CURL_GLOBAL_DEFAULT); });
}

constexpr size_t kMaxErrorBody = 64 * 1024;

struct Exchange {
  CURL* curl = nullptr;
  HttpResponse* response = nullptr;
  const BodySink* sink = nullptr;
  const HttpRequest* request = nullptr;
  Status sink_status;
  bool announced = false;
  bool saw_final_status = false;
};

bool Is2xx(long s) { return s >= 200 && s < 300; }

size_t OnHeader(char* data, size_t size, size_t n, void* user) {
  auto* ex = static_cast<Exchange*>(user);
  std::string_view line(data, size * n);
  if (StartsWith(line, "HTTP/")) {
    // A new response (after a redirect or 100-continue): start over.
    ex->response->headers.clear();
    return size * n;
  }
  size_t colon = line.find(':');
  if (colon != std::string_view::npos) {
    std::string name(Trim(line.substr(0, colon)));
    std::transform(name.begin(), name.end(), name.begin(),
                   [](unsigned char c) { return static_cast<char>(std::tolower(c)); });
    ex->response->headers[name] = std::string(Trim(line.substr(colon + 1)));
  }
  return size * n;
}

size_t OnBody(char* data, size_t size, size_t n, void* user) {
  auto* ex = static_cast<Exchange*>(user);
  size_t len = size * n;
  long code = 0;
  curl_easy_getinfo(ex->curl, CURLINFO_RESPONSE_CODE, &code);
  if (Is2xx(code) && !ex->announced) {
    ex->announced = true;
    if (ex->request->on_response) {
      Status s = ex->request->on_response(code, ex->response->headers);
      if (!s.ok()) {
        ex->sink_status = std::move(s);
        return 0;
      }
    }
  }
  if (ex->sink && *ex->sink && Is2xx(code)) {
    Status s = (*ex->sink)(std::string_view(data, len));
    if (!s.ok()) {
      ex->sink_status = std::move(s);
      return 0;  // aborts with CURLE_WRITE_ERROR
    }
    return len;
  }
  if (!Is2xx(code) && ex->response->body.size() >= kMaxErrorBody) return len;  // drop
  ex->response->body.append(data, len);
  return len;
}

class CurlHttpClient final : public HttpClient {
 public:
  CurlHttpClient() {
    GlobalInit();
    curl_ = curl_easy_init();
  }
  ~CurlHttpClient() override {
    if (curl_) curl_easy_cleanup(curl_);
  }
  CurlHttpClient(const CurlHttpClient&) = delete;
  CurlHttpClient& operator=(const CurlHttpClient&) = delete;

  Result<HttpResponse> Do(const HttpRequest& req, const BodySink& sink) override {
    if (!curl_) return Internal("curl_easy_init failed");
    if (!StartsWith(req.url, "http://") && !StartsWith(req.url, "https://")) {
      return InvalidArgument("refusing non-HTTP URL " + req.url);
    }
    curl_easy_reset(curl_);  // keeps the connection cache
    HttpResponse resp;
    Exchange ex;
    ex.curl = curl_;
    ex.response = &resp;
    ex.sink = &sink;
    ex.request = &req;

    curl_easy_setopt(curl_, CURLOPT_URL, req.url.c_str());
    curl_easy_setopt(curl_, CURLOPT_PROTOCOLS_STR, "http,https");
    curl_easy_setopt(curl_, CURLOPT_REDIR_PROTOCOLS_STR, "http,https");
    curl_easy_setopt(curl_, CURLOPT_FOLLOWLOCATION, 1L);
    curl_easy_setopt(curl_, CURLOPT_MAXREDIRS, 10L);
    curl_easy_setopt(curl_, CURLOPT_NOSIGNAL, 1L);
    curl_easy_setopt(curl_, CURLOPT_USERAGENT, "banger/0.1");
    curl_easy_setopt(curl_, CURLOPT_CONNECTTIMEOUT,
                     static_cast<long>(req.connect_timeout.count()));
    curl_easy_setopt(curl_, CURLOPT_LOW_SPEED_LIMIT, 1L);
    curl_easy_setopt(curl_, CURLOPT_LOW_SPEED_TIME, static_cast<long>(req.stall_timeout.count()));
    curl_easy_setopt(curl_, CURLOPT_HEADERFUNCTION, &OnHeader);
    curl_easy_setopt(curl_, CURLOPT_HEADERDATA, &ex);
    curl_easy_setopt(curl_, CURLOPT_WRITEFUNCTION, &OnBody);
    curl_easy_setopt(curl_, CURLOPT_WRITEDATA, &ex);

    if (req.method == "HEAD") {
      curl_easy_setopt(curl_, CURLOPT_NOBODY, 1L);
    } else if (req.method == "POST" || req.method == "PUT" || req.method == "PATCH") {
      curl_easy_setopt(curl_, CURLOPT_CUSTOMREQUEST, req.method.c_str());
      curl_easy_setopt(curl_, CURLOPT_POSTFIELDS, req.body.data());
      curl_easy_setopt(curl_, CURLOPT_POSTFIELDSIZE_LARGE,
                       static_cast<curl_off_t>(req.body.size()));
    } else if (req.method != "GET") {
      curl_easy_setopt(curl_, CURLOPT_CUSTOMREQUEST, req.method.c_str());
    }
    if (!req.basic_user.empty()) {
      curl_easy_setopt(curl_, CURLOPT_HTTPAUTH, CURLAUTH_BASIC);
      curl_easy_setopt(curl_, CURLOPT_USERNAME, req.basic_user.c_str());
      curl_easy_setopt(curl_, CURLOPT_PASSWORD, req.basic_password.c_str());
    }
    std::string range;
    if (req.range_start > 0) {
      range = std::to_string(req.range_start) + "-";
      curl_easy_setopt(curl_, CURLOPT_RANGE, range.c_str());
    }
    curl_slist* headers = nullptr;
    for (const std::string& h : req.headers) headers = curl_slist_append(headers, h.c_str());
    // libcurl adds "Expect: 100-continue" to large PUTs; registries do not need it.
    headers = curl_slist_append(headers, "Expect:");
    curl_easy_setopt(curl_, CURLOPT_HTTPHEADER, headers);

    CURLcode rc = curl_easy_perform(curl_);
    curl_slist_free_all(headers);
    curl_easy_getinfo(curl_, CURLINFO_RESPONSE_CODE, &resp.status);
    char* eff = nullptr;
    if (curl_easy_getinfo(curl_, CURLINFO_EFFECTIVE_URL, &eff) == CURLE_OK && eff) {
      resp.effective_url = eff;
    }
    if (rc == CURLE_WRITE_ERROR && !ex.sink_status.ok()) return ex.sink_status;
    if (rc == CURLE_OPERATION_TIMEDOUT) {
      // Connect timeout or the low-speed limit: nothing (usable) arrived.
      return DeadlineExceeded(req.method + " " + req.url + ": no data for " +
                              std::to_string(req.stall_timeout.count()) + " s (" +
                              curl_easy_strerror(rc) + ")");
    }
    if (rc != CURLE_OK) {
      return TransferStatus(rc, resp.status, req.method + " " + req.url);
    }
    return resp;
  }

 private:
  CURL* curl_ = nullptr;
};

}  // namespace

std::unique_ptr<HttpClient> MakeCurlHttpClient() { return std::make_unique<CurlHttpClient>(); }

Status TransferStatus(int curl_code, long http_status, std::string_view what) {
  std::string w(what);
  if (curl_code != CURLE_OK) {
    auto code = static_cast<CURLcode>(curl_code);
    std::string msg = w + ": " + curl_easy_strerror(code);
    switch (code) {
      case CURLE_COULDNT_RESOLVE_HOST:
      case CURLE_COULDNT_RESOLVE_PROXY:
      case CURLE_COULDNT_CONNECT:
      case CURLE_OPERATION_TIMEDOUT:
      case CURLE_RECV_ERROR:
      case CURLE_SEND_ERROR:
      case CURLE_PARTIAL_FILE:
      case CURLE_GOT_NOTHING:
      case CURLE_HTTP2:
      case CURLE_HTTP2_STREAM:
      case CURLE_SSL_CONNECT_ERROR:
        return Unavailable(std::move(msg));
      case CURLE_UNSUPPORTED_PROTOCOL:
      case CURLE_URL_MALFORMAT:
        return InvalidArgument(std::move(msg));
      case CURLE_PEER_FAILED_VERIFICATION:
        return PermissionDenied(std::move(msg));
      case CURLE_TOO_MANY_REDIRECTS:
        return FailedPrecondition(std::move(msg));
      default:
        return Internal(std::move(msg));
    }
  }
  if (http_status >= 200 && http_status < 300) return OkStatus();
  std::string msg = w + ": HTTP " + std::to_string(http_status);
  if (http_status == 404) return NotFound(std::move(msg));
  if (http_status == 401 || http_status == 403) return PermissionDenied(std::move(msg));
  if (http_status == 429 || http_status == 408 || http_status >= 500) {
    return Unavailable(std::move(msg));
  }
  if (http_status >= 400) return InvalidArgument(std::move(msg));
  return Internal(std::move(msg) + " (unexpected status)");
}

}  // namespace banger::oci
