#include "images/image_service.h"

#include <fcntl.h>
#include <sys/file.h>
#include <sys/stat.h>
#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <cstdlib>
#include <cstring>
#include <random>
#include <set>

#include <nlohmann/json.hpp>
#include <spdlog/spdlog.h>

#include "base/disk_space.h"
#include "base/failpoint.h"
#include "base/files.h"
#include "base/strings.h"
#include "images/bundle.h"
#include "images/disk_cache.h"
#include "images/ext4_builder.h"
#include "images/ext4_writer.h"
#include "images/recipes.h"

namespace banger::images {

namespace fs = std::filesystem;
using json = nlohmann::json;

namespace {

constexpr char kStagingSuffix[] = ".staging";
constexpr char kTreeSuffix[] = ".tree.staging";
constexpr char kLockSuffix[] = ".lock";
constexpr char kRootfsName[] = "rootfs.ext4";
constexpr char kMetadataName[] = "metadata.json";

std::string RandomId() {
  static thread_local std::mt19937_64 rng{std::random_device{}()};
  uint64_t v = rng();
  std::string bytes(reinterpret_cast<const char*>(&v), 6);
  return "img-" + HexEncode(bytes);
}

bool IsImageId(std::string_view id) {
  if (!StartsWith(id, "img-") || id.size() != 16) return false;
  return std::all_of(id.begin() + 4, id.end(),
                     [](char c) { return (c >= '0' && c <= '9') || (c >= 'a' && c <= 'f'); });
}

bool IsReferenceChars(std::string_view s) {
  if (s.empty() || s.size() > 512) return false;
  return std::all_of(s.begin(), s.end(), [](char c) {
    return (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9') ||
           c == '.' || c == '-' || c == '_' || c == '/' || c == ':' || c == '@';
  });
}

// Bytes allocated below `path` (for prune reports).
uint64_t DiskUsage(const fs::path& path) {
  uint64_t total = 0;
  struct stat st;
  if (::lstat(path.c_str(), &st) != 0) return 0;
  total += static_cast<uint64_t>(st.st_blocks) * 512;
  if (!S_ISDIR(st.st_mode)) return total;
  std::error_code ec;
  for (fs::recursive_directory_iterator it(path, fs::directory_options::none, ec), end;
       !ec && it != end; it.increment(ec)) {
    if (::lstat(it->path().c_str(), &st) == 0) total += static_cast<uint64_t>(st.st_blocks) * 512;
  }
  return total;
}

void Report(const ProgressFn& progress, const std::string& phase, const std::string& item) {
  if (progress) progress(oci::PullProgress{phase, item, 0, 0});
}

// An exclusive flock on images_dir/<id>.lock; fd -1 when there is no lock file.
class FileLock {
 public:
  FileLock() = default;
  explicit FileLock(int fd, fs::path path) : fd_(fd), path_(std::move(path)) {}
  FileLock(FileLock&& o) noexcept : fd_(std::exchange(o.fd_, -1)), path_(std::move(o.path_)) {}
  FileLock& operator=(FileLock&& o) noexcept {
    Close();
    fd_ = std::exchange(o.fd_, -1);
    path_ = std::move(o.path_);
    return *this;
  }
  ~FileLock() { Close(); }
  bool held() const { return fd_ >= 0; }
  /// Unlinks the lock file while still holding the lock, then releases it.
  void UnlinkAndRelease() {
    if (fd_ >= 0) ::unlink(path_.c_str());
    Close();
  }

 private:
  void Close() {
    if (fd_ >= 0) ::close(fd_);
    fd_ = -1;
  }
  int fd_ = -1;
  fs::path path_;
};

enum class LockState { kNoLockFile, kAcquired, kBusy };

// Tries to take an existing lock file without blocking.
LockState TryLockExisting(const fs::path& lock_path, FileLock& out) {
  int fd = ::open(lock_path.c_str(), O_RDWR | O_CLOEXEC | O_NOFOLLOW);
  if (fd < 0) return LockState::kNoLockFile;
  if (::flock(fd, LOCK_EX | LOCK_NB) != 0) {
    ::close(fd);
    return LockState::kBusy;
  }
  out = FileLock(fd, lock_path);
  return LockState::kAcquired;
}

std::string JoinNames(const std::vector<std::string>& names) {
  std::string out;
  for (size_t i = 0; i < names.size(); ++i) out += (i ? ", " : "") + names[i];
  return out;
}

// Best-effort: the "image" field of a sandbox's applied spec.
std::string SpecImage(const std::string& spec_json) {
  if (spec_json.empty()) return "";
  try {
    json j = json::parse(spec_json);
    if (j.is_object()) {
      if (j.contains("image") && j["image"].is_string()) return j["image"].get<std::string>();
      if (j.contains("spec") && j["spec"].is_object() && j["spec"].contains("image") &&
          j["spec"]["image"].is_string()) {
        return j["spec"]["image"].get<std::string>();
      }
    }
  } catch (const json::exception&) {
  }
  return "";
}

// Removes cached OCI blobs that no recorded image needs (the manifests, their
// configs and layers); returns (blobs removed, bytes freed).
Result<std::pair<uint64_t, uint64_t>> PruneBlobCache(const fs::path& blobs_dir,
                                                     const std::vector<std::string>& digests) {
  std::set<std::string> keep;
  for (const auto& d : digests) {
    auto refs = oci::ReferencedDigests(blobs_dir, d);
    if (!refs) {
      // Bundles and manifests no longer cached have nothing to keep.
      if (refs.error().code() == StatusCode::kNotFound) continue;
      return refs.error().WithContext("prune blobs: read manifest " + d);
    }
    keep.insert(refs->begin(), refs->end());
  }
  std::map<std::string, uint64_t> before;
  std::error_code ec;
  fs::path dir = blobs_dir / "sha256";
  for (const auto& e : fs::directory_iterator(dir, ec)) before[e.path().string()] = DiskUsage(e.path());
  if (ec) return ErrnoStatus(ec.value(), "read directory " + dir.string());
  BANGER_RETURN_IF_ERROR(oci::PruneBlobs(blobs_dir, keep));
  uint64_t removed = 0, freed = 0;
  for (const auto& [path, bytes] : before) {
    if (!fs::exists(path, ec)) {
      ++removed;
      freed += bytes;
    }
  }
  return std::make_pair(removed, freed);
}

}  // namespace

std::string DeriveImageName(const std::string& reference) {
  std::string ref = reference;
  std::string digest_hex;
  if (size_t at = ref.find('@'); at != std::string::npos) {
    std::string digest = ref.substr(at + 1);
    if (size_t colon = digest.find(':'); colon != std::string::npos) digest = digest.substr(colon + 1);
    digest_hex = digest.substr(0, 12);
    ref.resize(at);
  }
  std::string last = ref;
  if (size_t slash = last.rfind('/'); slash != std::string::npos) last = last.substr(slash + 1);
  std::string tag = "latest";
  if (size_t colon = last.find(':'); colon != std::string::npos) {
    tag = last.substr(colon + 1);
    last.resize(colon);
  }
  std::string name = last + "-" + (digest_hex.empty() ? tag : digest_hex);
  for (char& c : name) {
    if (c >= 'A' && c <= 'Z') c = static_cast<char>(c - 'A' + 'a');
    bool ok = (c >= 'a' && c <= 'z') || (c >= '0' && c <= '9') || c == '.' || c == '_' || c == '-';
    if (!ok) c = '-';
  }
  if (!IsValidImageName(name)) name = "image-" + HexEncode(reference).substr(0, 12);
  return name;
}

bool LooksLikeOciReference(std::string_view s) {
  return s.find_first_of("/:@") != std::string_view::npos;
}

// ---------------------------------------------------------------------------

struct ImageService::Source {
  std::string name;     // record name
  std::string source;   // record source
  SourceKind kind = SourceKind::kOci;
  std::string oci_ref;
  CatalogEntry entry;   // recipes and bundles
  fs::path import_path; // Import(): a directory or an archive
  bool is_import = false;
};

struct ImageService::Built {
  std::string digest;
  std::string config_json;
  std::string bundle_manifest;
};

struct ImageService::Inflight {
  std::condition_variable cv;
  std::optional<Result<ImageRecord>> result;
};

/// One publish attempt: the lock, the staging directories and (after
/// Publish) the published directory, all removed unless Commit()ed.
class ImageService::Staging {
 public:
  static Result<std::unique_ptr<Staging>> Create(const fs::path& images_dir) {
    for (int attempt = 0; attempt < 8; ++attempt) {
      std::string id = RandomId();
      fs::path lock_path = images_dir / (id + kLockSuffix);
      int fd = ::open(lock_path.c_str(), O_RDWR | O_CREAT | O_EXCL | O_CLOEXEC | O_NOFOLLOW, 0600);
      if (fd < 0) {
        if (errno == EEXIST) continue;
        return ErrnoStatus(errno, "create " + lock_path.string());
      }
      if (::flock(fd, LOCK_EX | LOCK_NB) != 0) {
        // A concurrent Prune grabbed it first and will remove it: pick another id.
        ::close(fd);
        continue;
      }
      auto s = std::unique_ptr<Staging>(new Staging(images_dir, id, FileLock(fd, lock_path)));
      if (::mkdir(s->dir().c_str(), 0700) != 0) {
        return ErrnoStatus(errno, "create " + s->dir().string());
      }
      return s;
    }
    return Internal("could not allocate a staging directory in " + images_dir.string());
  }

  ~Staging() {
    tree_.reset();
    if (!committed_) {
      (void)RemoveAll(dir());
      if (published_) (void)RemoveAll(final_dir());
    }
    lock_.UnlinkAndRelease();
  }

  const std::string& id() const { return id_; }
  fs::path dir() const { return images_dir_ / (id_ + kStagingSuffix); }
  fs::path tree_dir() const { return images_dir_ / (id_ + kTreeSuffix); }
  fs::path final_dir() const { return images_dir_ / id_; }

  /// Creates the scratch tree directory (removed with the staging).
  Result<fs::path> MakeTree() {
    if (::mkdir(tree_dir().c_str(), 0755) != 0) {
      return ErrnoStatus(errno, "create " + tree_dir().string());
    }
    tree_ = std::make_unique<ScratchTree>(tree_dir());
    return tree_dir();
  }
  Status RemoveTree() {
    if (!tree_) return OkStatus();
    Status st = tree_->Remove();
    tree_.reset();
    return st;
  }

  Status Publish() {
    if (::rename(dir().c_str(), final_dir().c_str()) != 0) {
      return ErrnoStatus(errno, "rename " + dir().string() + " to " + final_dir().string());
    }
    published_ = true;
    int dfd = ::open(images_dir_.c_str(), O_RDONLY | O_DIRECTORY | O_CLOEXEC);
    if (dfd >= 0) {
      (void)::fsync(dfd);
      ::close(dfd);
    }
    return OkStatus();
  }
  void Commit() { committed_ = true; }

 private:
  Staging(fs::path images_dir, std::string id, FileLock lock)
      : images_dir_(std::move(images_dir)), id_(std::move(id)), lock_(std::move(lock)) {}

  fs::path images_dir_;
  std::string id_;
  FileLock lock_;
  std::unique_ptr<ScratchTree> tree_;
  bool published_ = false;
  bool committed_ = false;
};

// ---------------------------------------------------------------------------

ImageService::ImageService(StateStore& store, CommandRunner& runner, Clock& clock,
                           ImageServiceOptions options)
    : store_(store), runner_(runner), clock_(clock), options_(std::move(options)) {
  if (!options_.tree_source) options_.tree_source = &oci::PullAndFlatten;
  if (const char* w = std::getenv("BANGER_DISK_WRITER"); w && std::string_view(w) == "tree") {
    options_.stream_disks = false;
  }
  // Beside images_dir (state root/disks), on the same file system: published
  // disks are hard links to the cached ones.
  if (options_.disks_dir.empty()) options_.disks_dir = options_.images_dir.parent_path() / "disks";
}

ImageService::~ImageService() = default;

Result<ImageService::Source> ImageService::Resolve(const std::string& name_or_ref,
                                                   const std::string& name_override) const {
  Source src;
  if (const CatalogEntry* entry = options_.catalog.Find(name_or_ref)) {
    src.kind = entry->kind;
    src.entry = *entry;
    src.oci_ref = entry->oci_ref;
    src.source = entry->name;
    src.name = name_override.empty() ? entry->name : name_override;
  } else if (LooksLikeOciReference(name_or_ref)) {
    if (!IsReferenceChars(name_or_ref)) {
      return InvalidArgument("\"" + name_or_ref + "\" is not a valid OCI image reference");
    }
    src.kind = SourceKind::kOci;
    src.oci_ref = name_or_ref;
    src.source = name_or_ref;
    src.name = name_override.empty() ? DeriveImageName(name_or_ref) : name_override;
  } else {
    std::string hint = ClosestMatch(name_or_ref, options_.catalog.Names());
    return NotFound("image \"" + name_or_ref +
                    "\" is not installed, not in the image catalog and not an OCI reference" +
                    (hint.empty() ? "" : " (did you mean \"" + hint + "\"?)"));
  }
  // Names are never paths (directories use the id), but keep them printable:
  // a plain catalog-style name, or exactly the reference a spec named.
  bool exact_ref = src.name == name_or_ref && LooksLikeOciReference(src.name);
  if (!IsValidImageName(src.name) && !exact_ref) {
    return InvalidArgument("invalid image name \"" + src.name +
                           "\" (use 1-128 of a-z, 0-9, '.', '_', '-', starting with a letter "
                           "or digit)");
  }
  return src;
}

Result<ImageRecord> ImageService::Pull(const std::string& name_or_ref,
                                       const PullRequest& request) {
  BANGER_ASSIGN_OR_RETURN(Source src, Resolve(name_or_ref, request.name));
  return Publish(src, request);
}

Result<ImageRecord> ImageService::Import(const fs::path& dir_or_tar, const std::string& name,
                                         uint64_t disk_size_bytes) {
  if (!IsValidImageName(name)) {
    return InvalidArgument("invalid image name \"" + name +
                           "\" (use 1-128 of a-z, 0-9, '.', '_', '-', starting with a letter "
                           "or digit)");
  }
  std::error_code ec;
  fs::path abs = fs::absolute(dir_or_tar, ec);
  if (ec || !fs::exists(abs, ec)) return NotFound("import source " + dir_or_tar.string() + " does not exist");
  Source src;
  src.name = name;
  src.source = "import:" + abs.string();
  src.is_import = true;
  src.import_path = abs;
  PullRequest req;
  req.disk_size_bytes = disk_size_bytes;
  return Publish(src, req);
}

Status ImageService::BuildInto(const Source& src, const PullRequest& request, Staging& staging,
                               Built& built) {
  fs::path rootfs = staging.dir() / kRootfsName;
  if (!src.is_import && src.kind == SourceKind::kBundle) {
    fs::path archive = staging.dir() / "bundle.download";
    Report(request.progress, "download", src.entry.bundle_url);
    auto downloaded = DownloadFile(src.entry.bundle_url, archive, request.progress);
    if (!downloaded) return NoSpaceError(downloaded.error(), staging.dir(), "downloading " + src.entry.bundle_url);
    std::string sha = std::move(*downloaded);
    BANGER_FAILPOINT("image.pull.after_fetch");
    if (sha != src.entry.bundle_sha256) {
      return DataLoss("bundle " + src.entry.bundle_url + " has sha256 " + sha + ", expected " +
                      src.entry.bundle_sha256);
    }
    Report(request.progress, "extract", src.entry.bundle_url);
    BANGER_RETURN_IF_ERROR(NoSpaceError(ExtractBundle(archive, staging.dir()), staging.dir(),
                                        "unpacking " + src.entry.bundle_url));
    BANGER_RETURN_IF_ERROR(RemoveAll(archive));
    built.digest = "sha256:" + sha;
    fs::path manifest = staging.dir() / "manifest.json";
    if (fs::exists(manifest)) {
      BANGER_ASSIGN_OR_RETURN(built.bundle_manifest, ReadFile(manifest));
      try {
        json m = json::parse(built.bundle_manifest);
        if (m.is_object() && m.contains("config") && m["config"].is_object()) {
          built.config_json = m["config"].dump();
        }
      } catch (const json::exception& e) {
        return InvalidArgument("bundle " + src.entry.bundle_url +
                               ": manifest.json is not valid JSON: " + e.what());
      }
    }
    if (request.disk_size_bytes != 0) {
      spdlog::info("image {}: bundles are used as shipped; ignoring the requested disk size",
                   src.name);
    }
    return OkStatus();
  }

  fs::path tree;
  oci::TreeManifest manifest;
  bool have_manifest = false;
  DiskCache disk_cache(options_.disks_dir);
  DiskCache::Lock cache_lock;  // held from the manifest until the disk is cached
  auto finish_disk = [&]() -> Status {
    if (cache_lock.held()) {
      // A disk that cannot be cached is still a good disk: the next pull builds again.
      if (Status c = disk_cache.Publish(cache_lock, rootfs); !c.ok()) {
        spdlog::warn("image {}: root disk not cached: {}", src.name, c.ToString());
      }
    }
    return staging.RemoveTree();
  };
  if (src.is_import && fs::is_directory(src.import_path)) {
    tree = src.import_path;  // mkfs reads it in place; nothing to copy
  } else {
    BANGER_ASSIGN_OR_RETURN(tree, staging.MakeTree());
    if (src.is_import) {
      Report(request.progress, "extract", src.import_path.string());
      BANGER_RETURN_IF_ERROR(NoSpaceError(ExtractTree(src.import_path, tree), tree,
                                          "unpacking " + src.import_path.string()));
    } else if (src.kind == SourceKind::kOci) {
      oci::PullOptions opts;
      opts.blob_dir = options_.blobs_dir;
      opts.docker_config = options_.docker_config;
      opts.plain_http = options_.plain_http;
      opts.progress = request.progress;
      // Once the manifest digest is known: take the disk cache's lock for it
      // (held until this disk is cached, so concurrent pulls build once) and,
      // if that disk was built before, link it and skip the layers.
      opts.reuse_check = [&](const std::string& digest) -> Result<bool> {
        auto key = DiskCache::Key(digest, request.disk_size_bytes);
        if (!key) return false;
        BANGER_ASSIGN_OR_RETURN(cache_lock, disk_cache.Acquire(*key));
        return disk_cache.LinkInto(cache_lock, rootfs);
      };
      // The disk is written as the layers stream in, unless that is turned
      // off or the tree source (a test's fake) never asks for the sink.
      bool streamed = false;
      if (options_.stream_disks) {
        opts.layer_sink = [&](uint64_t compressed) -> Result<std::unique_ptr<oci::LayerSink>> {
          uint64_t size = request.disk_size_bytes != 0 ? request.disk_size_bytes
                                                       : StreamedDiskSize(compressed);
          Report(request.progress, "write", rootfs.string());
          BANGER_ASSIGN_OR_RETURN(std::unique_ptr<Ext4DiskWriter> w,
                                  Ext4DiskWriter::Create(runner_, rootfs, size,
                                                         /*grow=*/request.disk_size_bytes == 0));
          streamed = true;
          return std::unique_ptr<oci::LayerSink>(std::move(w));
        };
      }
      auto pulled_or = options_.tree_source(src.oci_ref, tree, opts);
      if (!pulled_or && streamed && pulled_or.error().code() == StatusCode::kResourceExhausted &&
          !IsNoSpace(pulled_or.error())) {
        // The image outgrew the disk sized from its compressed layers (or its
        // inodes): build it from a tree, which is measured first. The blobs
        // are cached now; nothing is downloaded again.
        spdlog::info("image {}: {}; building the disk from a flattened tree instead", src.name,
                     pulled_or.error().message());
        streamed = false;
        opts.layer_sink = nullptr;
        opts.reuse_check = nullptr;  // the disk cache's lock is held already
        pulled_or = options_.tree_source(src.oci_ref, tree, opts);
      }
      if (!pulled_or) {
        // Blobs go to the blob cache, layers into the staging disk or tree.
        bool blobs_full = IsNoSpace(pulled_or.error()) && FreeBytes(options_.blobs_dir).value_or(1) == 0;
        if (streamed && !blobs_full) {
          return NoSpaceError(pulled_or.error(), rootfs,
                              "writing the root disk from the layers of " + src.oci_ref);
        }
        return NoSpaceError(pulled_or.error(), blobs_full ? options_.blobs_dir : tree,
                            "downloading and unpacking the layers of " + src.oci_ref);
      }
      oci::PulledImage pulled = std::move(*pulled_or);
      built.digest = pulled.manifest_digest;
      built.config_json = pulled.config_json;
      manifest = std::move(pulled.manifest);
      have_manifest = true;
      if (!pulled.flattened) {
        spdlog::info("image {}: root disk of {} reused from the disk cache", src.name, built.digest);
        Report(request.progress, "cached", built.digest);
        return staging.RemoveTree();
      }
      if (streamed) {
        BANGER_FAILPOINT("image.pull.after_fetch");
        return finish_disk();
      }
    } else if (src.entry.recipe == RecipeKind::kBusybox) {
      Report(request.progress, "recipe", "busybox");
      BANGER_RETURN_IF_ERROR(BuildBusyboxTree(runner_, options_.busybox, tree));
    } else {
      if (::geteuid() != 0) {
        // debootstrap chroots, mounts /proc and runs maintainer scripts as root.
        return FailedPrecondition(
            "the image is built by the debootstrap recipe, which needs root; run this pull as root "
            "(e.g. sudo banger image pull " + src.name + " --state-dir ...), or use an OCI image "
            "or a bundle, which an ordinary user can pull");
      }
      Report(request.progress, "recipe", "debootstrap " + src.entry.suite);
      BANGER_ASSIGN_OR_RETURN(AptSource mirror, FindAptMirror(options_.apt_dir, src.entry.suite));
      BANGER_RETURN_IF_ERROR(
          BuildDebootstrapTree(runner_, src.entry, mirror, tree, options_.debootstrap_timeout));
    }
  }
  BANGER_FAILPOINT("image.pull.after_fetch");
  Report(request.progress, "mkfs", rootfs.string());
  BANGER_RETURN_IF_ERROR(NoSpaceError(BuildExt4(runner_, tree, rootfs, request.disk_size_bytes,
                                                have_manifest ? &manifest : nullptr),
                                      rootfs, "building the root disk (mkfs.ext4 -d)"));
  return finish_disk();
}

Result<ImageRecord> ImageService::Publish(const Source& src, const PullRequest& request) {
  auto taken = [&]() -> Status {
    auto existing = store_.GetImage(src.name);
    if (existing) return AlreadyExists("image \"" + src.name + "\" is already installed");
    if (existing.error().code() != StatusCode::kNotFound) return existing.error();
    return OkStatus();
  };
  BANGER_RETURN_IF_ERROR(taken());
  BANGER_RETURN_IF_ERROR(MakePrivateDir(options_.images_dir));
  {
    // What an interrupted publish (a crash, a kill -9) left behind goes
    // before the next one starts; publishes in progress hold their locks.
    PruneReport swept;
    bool running = false;
    if (Status s = SweepStaging(swept, running); !s.ok()) spdlog::warn("images: {}", s.ToString());
    for (const auto& n : swept.removed_orphans) spdlog::info("images: removed {} (left by an interrupted publish)", n);
  }
  BANGER_ASSIGN_OR_RETURN(std::unique_ptr<Staging> staging, Staging::Create(options_.images_dir));
  spdlog::info("image {}: building from {} in {}", src.name, src.source, staging->dir().string());

  Built built;
  Status st = BuildInto(src, request, *staging, built);
  if (!st.ok()) return std::move(st).WithContext("image " + src.name);  // ~Staging removes the staging

  fs::path rootfs_final = staging->final_dir() / kRootfsName;
  struct stat rst;
  if (::stat((staging->dir() / kRootfsName).c_str(), &rst) != 0) {
    return ErrnoStatus(errno, "stat " + (staging->dir() / kRootfsName).string());
  }
  ImageRecord rec;
  rec.name = src.name;
  rec.id = staging->id();
  rec.source = src.source;
  rec.digest = built.digest;
  rec.rootfs_path = rootfs_final.string();
  rec.config_json = built.config_json;
  rec.size_bytes = static_cast<uint64_t>(rst.st_size);
  rec.created_at = clock_.NowUnix();

  json meta = {{"name", rec.name},         {"id", rec.id},
               {"source", rec.source},     {"digest", rec.digest},
               {"size_bytes", rec.size_bytes}, {"created_at", rec.created_at},
               {"kind", src.is_import ? "import" : std::string(ToString(src.kind))}};
  try {
    meta["config"] = rec.config_json.empty() ? json(nullptr) : json::parse(rec.config_json);
    if (!built.bundle_manifest.empty()) meta["bundle_manifest"] = json::parse(built.bundle_manifest);
  } catch (const json::exception& e) {
    return InvalidArgument("image " + rec.name + ": image config is not valid JSON: " + e.what());
  }
  BANGER_RETURN_IF_ERROR(NoSpaceError(WriteFileAtomic(staging->dir() / kMetadataName, meta.dump(2) + "\n", 0600),
                                      staging->dir() / kMetadataName, "publishing image " + rec.name));

  Report(request.progress, "publish", rec.name);
  BANGER_RETURN_IF_ERROR(taken());  // someone may have won while we built
  BANGER_FAILPOINT("image.publish.before_rename");
  BANGER_RETURN_IF_ERROR(staging->Publish());
  BANGER_FAILPOINT("image.publish.after_rename");
  Status ins = store_.InsertImage(rec);
  if (!ins.ok()) {
    if (ins.code() == StatusCode::kAlreadyExists) {
      return AlreadyExists("image \"" + rec.name + "\" is already installed");
    }
    return std::move(ins).WithContext("record image " + rec.name);
  }
  staging->Commit();
  spdlog::info("image {}: published {} ({})", rec.name, rec.rootfs_path, HumanBytes(rec.size_bytes));
  return rec;
}

Result<ImageRecord> ImageService::Ensure(const std::string& name_or_ref,
                                         const ProgressFn& progress) {
  BANGER_ASSIGN_OR_RETURN(std::optional<ImageRecord> found, Find(name_or_ref));
  if (found) return *found;

  std::shared_ptr<Inflight> flight;
  bool leader = false;
  {
    std::lock_guard<std::mutex> lock(inflight_mu_);
    auto it = inflight_.find(name_or_ref);
    if (it != inflight_.end()) {
      flight = it->second;
    } else {
      flight = std::make_shared<Inflight>();
      inflight_.emplace(name_or_ref, flight);
      leader = true;
    }
  }
  if (!leader) {
    std::unique_lock<std::mutex> lock(inflight_mu_);
    flight->cv.wait(lock, [&] { return flight->result.has_value(); });
    return *flight->result;
  }

  auto run = [&]() -> Result<ImageRecord> {
    // The record is named exactly what the caller asked for, so the next
    // lookup of that string finds it.
    BANGER_ASSIGN_OR_RETURN(Source src, Resolve(name_or_ref, name_or_ref));
    PullRequest req;
    req.progress = progress;
    auto rec = Publish(src, req);
    if (!rec && rec.error().code() == StatusCode::kAlreadyExists) {
      // Another process published it meanwhile: use theirs.
      return store_.GetImage(name_or_ref);
    }
    return rec;
  };
  Result<ImageRecord> result = run();
  {
    std::lock_guard<std::mutex> lock(inflight_mu_);
    flight->result = result;
    inflight_.erase(name_or_ref);
  }
  flight->cv.notify_all();
  return result;
}

Result<std::optional<ImageRecord>> ImageService::Find(const std::string& name) {
  auto rec = store_.GetImage(name);
  if (rec) return std::optional<ImageRecord>(std::move(rec).value());
  if (rec.error().code() == StatusCode::kNotFound) return std::optional<ImageRecord>();
  return rec.error();
}

bool ImageService::IsPresent(const std::string& name) {
  auto found = Find(name);
  return found && found->has_value();
}

Result<std::vector<ImageRecord>> ImageService::List() { return store_.ListImages(); }

Status ImageService::Remove(const std::string& name) {
  BANGER_ASSIGN_OR_RETURN(ImageRecord rec, store_.GetImage(name));
  BANGER_ASSIGN_OR_RETURN(std::vector<SandboxRecord> sandboxes, store_.ListSandboxes());
  std::vector<std::string> users;
  for (const auto& sb : sandboxes) {
    if (sb.image_ref == rec.name || sb.image_ref == rec.id || SpecImage(sb.spec_json) == rec.name) {
      users.push_back(sb.name);
    }
  }
  if (!users.empty()) {
    return FailedPrecondition("image \"" + name + "\" is used by sandbox" +
                              (users.size() > 1 ? "es " : " ") + JoinNames(users) +
                              "; delete them first");
  }
  BANGER_RETURN_IF_ERROR(store_.DeleteImage(name));
  if (!IsImageId(rec.id)) {
    spdlog::warn("image {}: record has unexpected id \"{}\"; not removing files", name, rec.id);
    return OkStatus();
  }
  BANGER_RETURN_IF_ERROR(RemoveAll(options_.images_dir / rec.id));
  spdlog::info("image {}: removed", name);
  return OkStatus();
}

Result<PruneReport> ImageService::Prune() {
  PruneReport report;
  std::error_code ec;
  if (!fs::is_directory(options_.images_dir, ec)) return report;
  bool pulls_running = false;
  BANGER_RETURN_IF_ERROR(SweepStaging(report, pulls_running));
  {
    // Removed images (and the orphans just swept) no longer link their disks.
    DiskCache disks(options_.disks_dir);
    BANGER_ASSIGN_OR_RETURN(DiskCache::PruneResult pruned, disks.Prune());
    report.removed_disks = std::move(pruned.removed);
    report.freed_bytes += pruned.freed_bytes;
  }
  if (pulls_running) {
    // A running pull may be filling the blob cache with blobs no record
    // names yet; leave the cache alone this time.
    spdlog::info("prune: pulls are running; not pruning cached blobs");
    return report;
  }
  BANGER_ASSIGN_OR_RETURN(std::vector<ImageRecord> images, store_.ListImages());
  std::vector<std::string> keep;
  for (const auto& i : images) {
    if (StartsWith(i.digest, "sha256:")) keep.push_back(i.digest);
  }
  if (blob_pruner_) {
    BANGER_ASSIGN_OR_RETURN(auto blobs, blob_pruner_(keep));
    report.removed_blobs = blobs.first;
    report.freed_bytes += blobs.second;
  } else if (!options_.blobs_dir.empty() && fs::is_directory(options_.blobs_dir / "sha256", ec)) {
    BANGER_ASSIGN_OR_RETURN(auto blobs, PruneBlobCache(options_.blobs_dir, keep));
    report.removed_blobs = blobs.first;
    report.freed_bytes += blobs.second;
  }
  return report;
}

Status ImageService::SweepStaging(PruneReport& report, bool& pulls_running) {
  std::error_code ec;
  if (!fs::is_directory(options_.images_dir, ec)) return OkStatus();
  auto known_ids = [this]() -> Result<std::set<std::string>> {
    BANGER_ASSIGN_OR_RETURN(std::vector<ImageRecord> images, store_.ListImages());
    std::set<std::string> ids;
    for (const auto& i : images) ids.insert(i.id);
    return ids;
  };
  BANGER_ASSIGN_OR_RETURN(std::set<std::string> ids, known_ids());

  std::vector<fs::directory_entry> entries;
  for (const auto& e : fs::directory_iterator(options_.images_dir, ec)) entries.push_back(e);
  if (ec) return ErrnoStatus(ec.value(), "read directory " + options_.images_dir.string());
  std::sort(entries.begin(), entries.end());

  for (const auto& e : entries) {
    std::string fname = e.path().filename().string();
    std::string id;
    enum { kStaging, kTree, kLock, kPublished } kind;
    if (EndsWith(fname, kTreeSuffix)) {
      kind = kTree;
      id = fname.substr(0, fname.size() - std::strlen(kTreeSuffix));
    } else if (EndsWith(fname, kStagingSuffix)) {
      kind = kStaging;
      id = fname.substr(0, fname.size() - std::strlen(kStagingSuffix));
    } else if (EndsWith(fname, kLockSuffix)) {
      kind = kLock;
      id = fname.substr(0, fname.size() - std::strlen(kLockSuffix));
    } else {
      kind = kPublished;
      id = fname;
    }
    if (!IsImageId(id)) continue;  // not ours
    if (kind == kPublished && ids.count(id)) continue;

    FileLock lock;
    fs::path lock_path = options_.images_dir / (id + kLockSuffix);
    if (TryLockExisting(lock_path, lock) == LockState::kBusy) {  // a pull is running
      pulls_running = true;
      continue;
    }

    if (kind == kLock) {
      // Only remove a stray lock when nothing else of that id is left.
      bool alone = !fs::exists(options_.images_dir / (id + kStagingSuffix), ec) &&
                   !fs::exists(options_.images_dir / (id + kTreeSuffix), ec);
      if (alone && lock.held()) {
        lock.UnlinkAndRelease();
        report.removed_staging.push_back(fname);
      }
      continue;
    }
    if (kind == kPublished) {
      // The publisher holds its lock until the record is inserted; re-read
      // the records now that nobody holds it.
      BANGER_ASSIGN_OR_RETURN(std::set<std::string> now, known_ids());
      if (now.count(id)) continue;
    }
    uint64_t bytes = DiskUsage(e.path());
    Status st;
    if (kind == kTree) {
      ScratchTree tree(e.path());
      st = tree.Remove();
    } else {
      st = RemoveAll(e.path());
    }
    if (!st.ok()) return std::move(st).WithContext("prune " + e.path().string());
    report.freed_bytes += bytes;
    (kind == kPublished ? report.removed_orphans : report.removed_staging).push_back(fname);
    spdlog::info("prune: removed {}", e.path().string());
    // Keep a lock file while the sibling dir of the same id still exists.
    bool siblings = fs::exists(options_.images_dir / (id + kStagingSuffix), ec) ||
                    fs::exists(options_.images_dir / (id + kTreeSuffix), ec);
    if (lock.held() && !siblings) {
      lock.UnlinkAndRelease();
      report.removed_staging.push_back(id + kLockSuffix);
    }
  }

  return OkStatus();
}

}  // namespace banger::images
