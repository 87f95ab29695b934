#include "providers/firecracker_api.h"

#include <curl/curl.h>

#include <mutex>
#include <nlohmann/json.hpp>

namespace banger {

namespace {

size_t Append(char* data, size_t size, size_t n, void* out) {
  auto* s = static_cast<std::string*>(out);
  // Firecracker's answers are small; a VMM that floods us is cut off.
  if (s->size() + size * n > (1u << 20)) return 0;
  s->append(data, size * n);
  return size * n;
}

void GlobalInit() {
  static std::once_flag once;
  std::call_once(once, [] { curl_global_init(CURL_GLOBAL_DEFAULT); });
}

}  // namespace

std::string FirecrackerFault(const std::string& body) {
  auto j = nlohmann::json::parse(body, nullptr, false);
  if (j.is_object() && j.contains("fault_message") && j["fault_message"].is_string()) {
    return j["fault_message"].get<std::string>();
  }
  std::string raw = body.substr(0, 300);
  return raw.empty() ? "(no error message)" : raw;
}

FirecrackerApi::FirecrackerApi(std::filesystem::path socket, std::chrono::milliseconds timeout)
    : socket_(std::move(socket)), timeout_(timeout) {}

Result<FirecrackerResponse> FirecrackerApi::Call(std::string_view method, std::string_view path,
                                                 const std::string& body) {
  GlobalInit();
  const std::string what = std::string(method) + " " + std::string(path);
  CURL* curl = curl_easy_init();
  if (curl == nullptr) return Internal(what + ": cannot initialise libcurl");
  std::string url = "http://localhost" + std::string(path);
  std::string method_s(method);
  FirecrackerResponse resp;
  curl_slist* headers = nullptr;
  headers = curl_slist_append(headers, "Accept: application/json");
  if (method != "GET") headers = curl_slist_append(headers, "Content-Type: application/json");
  // No "Expect: 100-continue" round trip.
  headers = curl_slist_append(headers, "Expect:");
  curl_easy_setopt(curl, CURLOPT_UNIX_SOCKET_PATH, socket_.c_str());
  curl_easy_setopt(curl, CURLOPT_URL, url.c_str());
  curl_easy_setopt(curl, CURLOPT_CUSTOMREQUEST, method_s.c_str());
  curl_easy_setopt(curl, CURLOPT_HTTPHEADER, headers);
  curl_easy_setopt(curl, CURLOPT_NOSIGNAL, 1L);
  curl_easy_setopt(curl, CURLOPT_TIMEOUT_MS, static_cast<long>(timeout_.count()));
  curl_easy_setopt(curl, CURLOPT_CONNECTTIMEOUT_MS, static_cast<long>(timeout_.count()));
  curl_easy_setopt(curl, CURLOPT_WRITEFUNCTION, Append);
  curl_easy_setopt(curl, CURLOPT_WRITEDATA, &resp.body);
  curl_easy_setopt(curl, CURLOPT_PROXY, "");
  if (method != "GET") {
    curl_easy_setopt(curl, CURLOPT_POSTFIELDS, body.c_str());
    curl_easy_setopt(curl, CURLOPT_POSTFIELDSIZE, static_cast<long>(body.size()));
  }
  char errbuf[CURL_ERROR_SIZE] = {0};
  curl_easy_setopt(curl, CURLOPT_ERRORBUFFER, errbuf);
  CURLcode rc = curl_easy_perform(curl);
  curl_easy_getinfo(curl, CURLINFO_RESPONSE_CODE, &resp.status);
  curl_slist_free_all(headers);
  curl_easy_cleanup(curl);
  if (rc != CURLE_OK) {
    std::string detail = errbuf[0] ? errbuf : curl_easy_strerror(rc);
    std::string msg = "Firecracker API " + what + " on " + socket_.string() + ": " + detail;
    if (rc == CURLE_OPERATION_TIMEDOUT) return DeadlineExceeded(msg);
    return Unavailable(msg);
  }
  return resp;
}

Status FirecrackerApi::Expect2xx(std::string_view method, std::string_view path, const std::string& body) {
  BANGER_ASSIGN_OR_RETURN(FirecrackerResponse r, Call(method, path, body));
  if (r.status >= 200 && r.status < 300) return OkStatus();
  std::string msg = "Firecracker refused " + std::string(method) + " " + std::string(path) + " (HTTP " +
                    std::to_string(r.status) + "): " + FirecrackerFault(r.body);
  // 400 is bad input (ours, or a file the VMM cannot use): retrying won't help.
  return r.status == 400 ? FailedPrecondition(msg) : Internal(msg);
}

Status FirecrackerApi::Put(std::string_view path, const std::string& body) { return Expect2xx("PUT", path, body); }
Status FirecrackerApi::Patch(std::string_view path, const std::string& body) {
  return Expect2xx("PATCH", path, body);
}

Result<std::string> FirecrackerApi::Get(std::string_view path) {
  BANGER_ASSIGN_OR_RETURN(FirecrackerResponse r, Call("GET", path, ""));
  if (r.status == 200) return r.body;
  return Internal("Firecracker refused GET " + std::string(path) + " (HTTP " + std::to_string(r.status) +
                  "): " + FirecrackerFault(r.body));
}

}  // namespace banger
