#include "oci/blob_store.h"

#include <fcntl.h>
#include <sys/stat.h>
#include <unistd.h>

#include <atomic>
#include <cerrno>
#include <chrono>
#include <random>

#include <spdlog/spdlog.h>

#include "base/files.h"
#include "base/sha256.h"
#include "base/strings.h"
#include "oci/manifest.h"
#include "oci/reference.h"

namespace banger::oci {

namespace fs = std::filesystem;

struct BlobWriter::Hasher {
  Sha256 sha;
};

namespace {

constexpr std::string_view kTempMarker = ".partial.";

std::string UniqueSuffix() {
  static std::atomic<uint64_t> counter{0};
  thread_local std::mt19937_64 rng{std::random_device{}()};
  return std::to_string(::getpid()) + "." + std::to_string(counter.fetch_add(1)) + "." +
         std::to_string(rng() & 0xffffffffu);
}

Status WriteAll(int fd, std::string_view data, const fs::path& path) {
  while (!data.empty()) {
    ssize_t n = ::write(fd, data.data(), data.size());
    if (n < 0) {
      if (errno == EINTR) continue;
      return ErrnoStatus(errno, "write " + path.string());
    }
    data.remove_prefix(static_cast<size_t>(n));
  }
  return OkStatus();
}

}  // namespace

Status BlobStore::Init() const {
  BANGER_RETURN_IF_ERROR(MakeDirs(dir_, 0700));
  return MakeDirs(dir_ / "sha256", 0700);
}

fs::path BlobStore::PathFor(std::string_view digest) const {
  return dir_ / "sha256" / std::string(digest.substr(digest.find(':') + 1));
}

bool BlobStore::Has(std::string_view digest, int64_t size) const {
  if (!IsValidDigest(digest)) return false;
  struct stat st {};
  if (::stat(PathFor(digest).c_str(), &st) != 0 || !S_ISREG(st.st_mode)) return false;
  return size < 0 || st.st_size == size;
}

Result<std::string> BlobStore::Read(std::string_view digest) const {
  if (!IsValidDigest(digest)) return InvalidArgument("invalid digest \"" + std::string(digest) + "\"");
  BANGER_ASSIGN_OR_RETURN(std::string data, ReadFile(PathFor(digest)));
  if ("sha256:" + Sha256Hex(data) != digest) {
    return DataLoss("cached blob " + std::string(digest) + " is corrupt (" +
                    PathFor(digest).string() + ")");
  }
  return data;
}

Status BlobStore::Put(std::string_view digest, std::string_view data) const {
  BANGER_ASSIGN_OR_RETURN(auto w, NewWriter(digest));
  BANGER_RETURN_IF_ERROR(w->Append(data));
  return w->Commit(static_cast<int64_t>(data.size()));
}

Result<std::unique_ptr<BlobWriter>> BlobStore::NewWriter(std::string_view digest) const {
  if (!IsValidDigest(digest)) return InvalidArgument("invalid digest \"" + std::string(digest) + "\"");
  BANGER_RETURN_IF_ERROR(Init());
  std::unique_ptr<BlobWriter> w(new BlobWriter());
  w->digest_ = std::string(digest);
  w->final_path_ = PathFor(digest);
  w->temp_path_ = w->final_path_;
  w->temp_path_ += std::string(kTempMarker) + UniqueSuffix();
  w->fd_ = ::open(w->temp_path_.c_str(), O_RDWR | O_CREAT | O_EXCL | O_CLOEXEC | O_NOFOLLOW, 0600);
  if (w->fd_ < 0) return ErrnoStatus(errno, "create " + w->temp_path_.string());
  w->hasher_ = std::make_unique<BlobWriter::Hasher>();
  return w;
}

BlobWriter::~BlobWriter() {
  if (fd_ >= 0) ::close(fd_);
  if (!done_ && !temp_path_.empty()) ::unlink(temp_path_.c_str());
}

Status BlobWriter::Append(std::string_view data) {
  if (done_ || fd_ < 0) return Internal("blob writer for " + digest_ + " already finished");
  BANGER_RETURN_IF_ERROR(WriteAll(fd_, data, temp_path_));
  hasher_->sha.Update(data);
  size_ += data.size();
  return OkStatus();
}

Status BlobWriter::Restart() {
  if (::ftruncate(fd_, 0) != 0 || ::lseek(fd_, 0, SEEK_SET) != 0) {
    return ErrnoStatus(errno, "truncate " + temp_path_.string());
  }
  hasher_ = std::make_unique<Hasher>();
  size_ = 0;
  return OkStatus();
}

Status BlobWriter::Commit(int64_t expected_size) {
  if (done_) return Internal("blob writer for " + digest_ + " already finished");
  done_ = true;
  auto fail = [&](Status s) {
    ::close(fd_);
    fd_ = -1;
    ::unlink(temp_path_.c_str());
    return s;
  };
  std::string got = "sha256:" + hasher_->sha.HexDigest();
  if (expected_size >= 0 && size_ != static_cast<uint64_t>(expected_size)) {
    return fail(DataLoss("blob " + digest_ + " size mismatch: expected " +
                         std::to_string(expected_size) + " bytes, got " + std::to_string(size_)));
  }
  if (got != digest_) {
    return fail(DataLoss("blob " + digest_ + " digest mismatch: content hashes to " + got));
  }
  if (::fsync(fd_) != 0) return fail(ErrnoStatus(errno, "fsync " + temp_path_.string()));
  ::close(fd_);
  fd_ = -1;
  if (::rename(temp_path_.c_str(), final_path_.c_str()) != 0) {
    int err = errno;
    ::unlink(temp_path_.c_str());
    return ErrnoStatus(err, "rename " + temp_path_.string() + " to " + final_path_.string());
  }
  return OkStatus();
}

Status PruneBlobs(const fs::path& blob_dir, const std::set<std::string>& keep_digests) {
  fs::path dir = blob_dir / "sha256";
  std::error_code ec;
  if (!fs::exists(dir, ec)) return OkStatus();
  fs::directory_iterator it(dir, ec);
  if (ec) return ErrnoStatus(ec.value(), "read directory " + dir.string());
  auto now = fs::file_time_type::clock::now();
  size_t removed = 0;
  for (; it != fs::directory_iterator(); it.increment(ec)) {
    if (ec) return ErrnoStatus(ec.value(), "read directory " + dir.string());
    std::string name = it->path().filename().string();
    bool remove = false;
    if (name.find(kTempMarker) != std::string::npos) {
      std::error_code tec;
      auto mtime = fs::last_write_time(it->path(), tec);
      remove = !tec && now - mtime > std::chrono::hours(1);
    } else {
      remove = keep_digests.count("sha256:" + name) == 0;
    }
    if (!remove) continue;
    if (::unlink(it->path().c_str()) != 0 && errno != ENOENT) {
      return ErrnoStatus(errno, "remove " + it->path().string());
    }
    ++removed;
  }
  spdlog::debug("pruned {} blobs from {}", removed, dir.string());
  return OkStatus();
}

Result<std::set<std::string>> ReferencedDigests(const fs::path& blob_dir,
                                                std::string_view manifest_digest) {
  BlobStore store(blob_dir);
  std::set<std::string> out;
  BANGER_ASSIGN_OR_RETURN(std::string json, store.Read(manifest_digest));
  BANGER_ASSIGN_OR_RETURN(Manifest m, ParseManifest(json, "", manifest_digest));
  out.insert(std::string(manifest_digest));
  if (m.is_index) {
    for (const Descriptor& d : m.manifests) {
      if (!store.Has(d.digest)) continue;
      BANGER_ASSIGN_OR_RETURN(std::string child, store.Read(d.digest));
      BANGER_ASSIGN_OR_RETURN(Manifest cm, ParseManifest(child, d.media_type, d.digest));
      if (cm.is_index) continue;  // nested indexes are not followed
      out.insert(d.digest);
      out.insert(cm.config.digest);
      for (const Descriptor& l : cm.layers) out.insert(l.digest);
    }
  } else {
    out.insert(m.config.digest);
    for (const Descriptor& l : m.layers) out.insert(l.digest);
  }
  return out;
}

}  // namespace banger::oci
