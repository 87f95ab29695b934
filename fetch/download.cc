#include "fetch/download.h"

#include <curl/curl.h>
#include <fcntl.h>
#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <mutex>

#include "base/sha256.h"

namespace banger::fetch {

namespace fs = std::filesystem;

namespace {

struct DownloadState {
  int fd = -1;
  int write_errno = 0;
  Sha256 hash;
  uint64_t written = 0;
  const ProgressFn* progress = nullptr;
  const DownloadOptions* options = nullptr;
};

size_t WriteCallback(char* data, size_t size, size_t nmemb, void* user) {
  auto* st = static_cast<DownloadState*>(user);
  size_t len = size * nmemb;
  size_t done = 0;
  while (done < len) {
    ssize_t n = ::write(st->fd, data + done, len - done);
    if (n < 0) {
      if (errno == EINTR) continue;
      st->write_errno = errno;
      return 0;  // makes curl fail with CURLE_WRITE_ERROR
    }
    done += static_cast<size_t>(n);
  }
  st->hash.Update(std::string_view(data, len));
  st->written += len;
  return len;
}

int ProgressCallback(void* user, curl_off_t dltotal, curl_off_t dlnow, curl_off_t, curl_off_t) {
  auto* st = static_cast<DownloadState*>(user);
  uint64_t max = st->options->max_bytes;
  if (max != 0 && dlnow > 0 && static_cast<uint64_t>(dlnow) > max) return 1;  // abort
  if (st->progress && *st->progress && (dlnow > 0 || st->options->report_zero_progress)) {
    (*st->progress)(static_cast<uint64_t>(std::max<curl_off_t>(dlnow, 0)),
                    static_cast<uint64_t>(std::max<curl_off_t>(dltotal, 0)));
  }
  return 0;
}

std::string LimitText(uint64_t max) {
  if (max % (uint64_t{1} << 30) == 0) return std::to_string(max >> 30) + " GiB";
  if (max % (uint64_t{1} << 20) == 0) return std::to_string(max >> 20) + " MiB";
  return std::to_string(max) + " bytes";
}

}  // namespace

Result<std::string> DownloadFile(const std::string& url, const fs::path& dest,
                                 const ProgressFn& progress, const DownloadOptions& options) {
  static std::once_flag init;
  std::call_once(init, [] { curl_global_init(CURL_GLOBAL_DEFAULT); });
  DownloadState st;
  st.progress = &progress;
  st.options = &options;
  st.fd = ::open(dest.c_str(), O_WRONLY | O_CREAT | O_EXCL | O_CLOEXEC, 0600);
  if (st.fd < 0) return ErrnoStatus(errno, "create " + dest.string());
  CURL* curl = curl_easy_init();
  if (!curl) {
    ::close(st.fd);
    ::unlink(dest.c_str());
    return Internal("curl_easy_init failed");
  }
  char errbuf[CURL_ERROR_SIZE] = {0};
  curl_easy_setopt(curl, CURLOPT_URL, url.c_str());
  curl_easy_setopt(curl, CURLOPT_PROTOCOLS_STR, "http,https,file");
  curl_easy_setopt(curl, CURLOPT_REDIR_PROTOCOLS_STR, "http,https");
  curl_easy_setopt(curl, CURLOPT_FOLLOWLOCATION, 1L);
  curl_easy_setopt(curl, CURLOPT_MAXREDIRS, 10L);
  curl_easy_setopt(curl, CURLOPT_FAILONERROR, 1L);
  curl_easy_setopt(curl, CURLOPT_NOSIGNAL, 1L);
  curl_easy_setopt(curl, CURLOPT_CONNECTTIMEOUT, 30L);
  // Abort a stalled transfer: under 1 KiB/s for 60 s.
  curl_easy_setopt(curl, CURLOPT_LOW_SPEED_LIMIT, 1024L);
  curl_easy_setopt(curl, CURLOPT_LOW_SPEED_TIME, 60L);
  if (options.max_bytes != 0) {
    curl_easy_setopt(curl, CURLOPT_MAXFILESIZE_LARGE, static_cast<curl_off_t>(options.max_bytes));
  }
  curl_easy_setopt(curl, CURLOPT_ERRORBUFFER, errbuf);
  curl_easy_setopt(curl, CURLOPT_WRITEFUNCTION, &WriteCallback);
  curl_easy_setopt(curl, CURLOPT_WRITEDATA, &st);
  curl_easy_setopt(curl, CURLOPT_XFERINFOFUNCTION, &ProgressCallback);
  curl_easy_setopt(curl, CURLOPT_XFERINFODATA, &st);
  curl_easy_setopt(curl, CURLOPT_NOPROGRESS, 0L);
  CURLcode rc = curl_easy_perform(curl);
  long http_code = 0;
  curl_easy_getinfo(curl, CURLINFO_RESPONSE_CODE, &http_code);
  curl_easy_cleanup(curl);
  int close_err = (::fsync(st.fd) != 0) ? errno : 0;
  if (::close(st.fd) != 0 && close_err == 0) close_err = errno;
  auto fail = [&dest](Status s) {
    ::unlink(dest.c_str());
    return s;
  };
  if (st.write_errno != 0) return fail(ErrnoStatus(st.write_errno, "write " + dest.string()));
  if (rc != CURLE_OK) {
    std::string text = "download " + url + ": " + (errbuf[0] ? errbuf : curl_easy_strerror(rc));
    switch (rc) {
      case CURLE_HTTP_RETURNED_ERROR:
        if (http_code == 404) return fail(NotFound(text));
        if (http_code == 401 || http_code == 403) return fail(PermissionDenied(text));
        if (http_code >= 500 || http_code == 429) return fail(Unavailable(text));
        return fail(InvalidArgument(text));
      case CURLE_FILE_COULDNT_READ_FILE:
        return fail(NotFound(text));
      case CURLE_UNSUPPORTED_PROTOCOL:
      case CURLE_URL_MALFORMAT:
        return fail(InvalidArgument(text));
      case CURLE_FILESIZE_EXCEEDED:
      case CURLE_ABORTED_BY_CALLBACK:
        if (options.max_bytes != 0) {
          return fail(InvalidArgument(text + " (larger than the " + LimitText(options.max_bytes) +
                                      " limit)"));
        }
        return fail(Unavailable(text));
      default:
        return fail(Unavailable(text));
    }
  }
  if (close_err != 0) return fail(ErrnoStatus(close_err, "close " + dest.string()));
  return st.hash.HexDigest();
}

}  // namespace banger::fetch
