#include "sources/directory_source.h"

#include <poll.h>
#include <sys/eventfd.h>
#include <sys/inotify.h>
#include <unistd.h>

#include <algorithm>
#include <atomic>
#include <cerrno>
#include <map>
#include <set>
#include <system_error>

#include "base/files.h"
#include "base/sha256.h"
#include "base/strings.h"
#include "reconciler/plan.h"

namespace banger {

namespace fs = std::filesystem;

namespace {

constexpr uint32_t kDirMask = IN_CLOSE_WRITE | IN_MOVED_TO | IN_MOVED_FROM | IN_CREATE | IN_DELETE |
                              IN_DELETE_SELF | IN_MOVE_SELF | IN_ONLYDIR;

bool IsSpecName(std::string_view name) {
  return EndsWith(name, ".yaml") || EndsWith(name, ".yml");
}

fs::path Absolute(const fs::path& p) {
  std::error_code ec;
  fs::path abs = fs::absolute(p, ec);
  if (ec) abs = p;
  fs::path canon = fs::weakly_canonical(abs, ec);
  return ec ? abs.lexically_normal() : canon;
}

}  // namespace

// The inotify thread and its bookkeeping. Only the thread touches `watches`
// once it runs.
struct DirectorySource::Watcher {
  struct Watch {
    fs::path dir;
    bool recursive = false;          // a followed directory (or below one)
    std::set<std::string> names;     // followed files in `dir`
  };

  int inotify_fd = -1;
  int stop_fd = -1;
  std::function<void()> on_change;
  std::map<int, Watch> watches;
  std::thread thread;

  ~Watcher() {
    if (inotify_fd >= 0) close(inotify_fd);
    if (stop_fd >= 0) close(stop_fd);
  }

  Status AddWatch(const fs::path& dir, bool recursive, const std::string& name) {
    int wd = inotify_add_watch(inotify_fd, dir.c_str(), kDirMask);
    if (wd < 0) return ErrnoStatus(errno, "inotify_add_watch " + dir.string());
    Watch& w = watches[wd];
    w.dir = dir;
    w.recursive = w.recursive || recursive;
    if (!name.empty()) w.names.insert(name);
    return OkStatus();
  }

  // Watches `dir` and every directory below it. Directories that vanish
  // meanwhile are skipped: the event that removed them is reported anyway.
  Status AddRecursive(const fs::path& dir) {
    BANGER_RETURN_IF_ERROR(AddWatch(dir, true, ""));
    std::error_code ec;
    fs::recursive_directory_iterator it(dir, fs::directory_options::skip_permission_denied, ec);
    for (; !ec && it != fs::recursive_directory_iterator(); it.increment(ec)) {
      std::error_code sec;
      if (it->is_directory(sec) && !it->is_symlink(sec)) {
        Status s = AddWatch(it->path(), true, "");
        if (!s.ok() && s.code() != StatusCode::kNotFound) return s;
      }
    }
    return OkStatus();
  }

  void Run() {
    alignas(struct inotify_event) char buf[16 * 1024];
    for (;;) {
      pollfd fds[2] = {{inotify_fd, POLLIN, 0}, {stop_fd, POLLIN, 0}};
      int n = poll(fds, 2, -1);
      if (n < 0) {
        if (errno == EINTR) continue;
        return;
      }
      if (fds[1].revents) return;
      if (!(fds[0].revents & POLLIN)) continue;
      ssize_t len = read(inotify_fd, buf, sizeof(buf));
      if (len <= 0) continue;  // EAGAIN or EINTR
      bool changed = false;
      for (char* p = buf; p < buf + len;) {
        auto* ev = reinterpret_cast<struct inotify_event*>(p);
        p += sizeof(struct inotify_event) + ev->len;
        changed = Handle(*ev) || changed;
      }
      if (changed && on_change) on_change();
    }
  }

  // Returns true when the event may change what Fetch() reads.
  bool Handle(const struct inotify_event& ev) {
    if (ev.mask & IN_Q_OVERFLOW) return true;  // events lost: assume a change
    auto it = watches.find(ev.wd);
    if (it == watches.end()) return false;
    if (ev.mask & IN_IGNORED) {
      watches.erase(it);
      return false;
    }
    Watch& w = it->second;
    // A watched directory went away: whatever it held is gone too.
    if (ev.mask & (IN_DELETE_SELF | IN_MOVE_SELF)) return true;
    std::string name = ev.len > 0 ? std::string(ev.name) : std::string();
    if (w.names.count(name)) return true;
    if (!w.recursive) return false;
    if (ev.mask & IN_ISDIR) {
      if (ev.mask & (IN_CREATE | IN_MOVED_TO)) {
        // Files may appear in it before the watch exists; AddRecursive and
        // the change report below cover them.
        (void)AddRecursive(w.dir / name);
      }
      return true;
    }
    return IsSpecName(name);
  }
};

DirectorySource::DirectorySource(std::vector<fs::path> paths) : paths_(std::move(paths)) {}

DirectorySource::~DirectorySource() { StopNotifications(); }

std::string DirectorySource::Key() const {
  std::vector<std::string> abs;
  for (const fs::path& p : paths_) abs.push_back(Absolute(p).string());
  return OwnerFor(abs, "");
}

std::string DirectorySource::Url() const {
  std::vector<std::string> s;
  for (const fs::path& p : paths_) s.push_back(p.string());
  return Join(s, ",");
}

std::string DirectorySource::Ref() const { return ""; }

Result<SourceSnapshot> DirectorySource::Fetch() {
  std::vector<fs::path> files;
  for (const fs::path& p : paths_) {
    std::error_code ec;
    if (fs::is_directory(p, ec)) {
      Result<std::vector<fs::path>> listed = ListFilesRecursive(p, {".yaml", ".yml"});
      if (listed.ok()) files.insert(files.end(), listed->begin(), listed->end());
    } else {
      files.push_back(p);
    }
  }
  std::sort(files.begin(), files.end());
  files.erase(std::unique(files.begin(), files.end()), files.end());

  Sha256 h;
  for (const fs::path& f : files) {
    Result<std::string> content = ReadFile(f);
    // Length-prefixed fields, so no two file sets hash alike by concatenation.
    std::string name = f.string();
    h.Update("file " + std::to_string(name.size()) + " " + name + "\n");
    if (content.ok()) {
      h.Update("content " + std::to_string(content->size()) + "\n");
      h.Update(*content);
    } else {
      h.Update("unreadable\n");
    }
  }
  const std::string files_digest = h.HexDigest();
  {
    std::lock_guard<std::mutex> l(cache_mu_);
    if (cached_ && cached_files_digest_ == files_digest) {
      bool same = true;
      for (const SpecDocument& doc : cached_->specs.specs) {
        for (const FileSpec& file : doc.spec.files) {
          if (!file.source) continue;
          auto digest = Sha256File(*file.source);
          if (!digest.ok() || *digest != file.source_sha256) same = false;
        }
      }
      if (same) return *cached_;
    }
  }
  SourceSnapshot snap;
  snap.specs = LoadSpecPaths(paths_);
  Sha256 rev;
  rev.Update(files_digest + "\n");
  // Host files named by `files[].source` are part of what an apply would do.
  for (const SpecDocument& doc : snap.specs.specs) {
    for (const FileSpec& file : doc.spec.files) {
      if (!file.source) continue;
      rev.Update("source " + std::to_string(file.source->size()) + " " + *file.source + " " +
                 file.source_sha256 + "\n");
    }
  }
  snap.revision = "sha256:" + rev.HexDigest();
  std::lock_guard<std::mutex> l(cache_mu_);
  cached_files_digest_ = files_digest;
  cached_ = snap;
  return snap;
}

Status DirectorySource::StartNotifications(std::function<void()> on_change) {
  std::lock_guard<std::mutex> l(mu_);
  if (watcher_) return FailedPrecondition("notifications already started for " + Url());
  auto w = std::make_unique<Watcher>();
  w->on_change = std::move(on_change);
  w->inotify_fd = inotify_init1(IN_CLOEXEC | IN_NONBLOCK);
  if (w->inotify_fd < 0) return ErrnoStatus(errno, "inotify_init1");
  w->stop_fd = eventfd(0, EFD_CLOEXEC | EFD_NONBLOCK);
  if (w->stop_fd < 0) return ErrnoStatus(errno, "eventfd");
  for (const fs::path& given : paths_) {
    fs::path p = Absolute(given);
    std::error_code ec;
    if (fs::is_directory(p, ec)) {
      BANGER_RETURN_IF_ERROR(w->AddRecursive(p).WithContext("watching " + given.string()));
    } else {
      // A file (or one that does not exist yet): its directory, by name.
      BANGER_RETURN_IF_ERROR(
          w->AddWatch(p.parent_path(), false, p.filename().string()).WithContext("watching " + given.string()));
    }
  }
  Watcher* raw = w.get();
  w->thread = std::thread([raw] { raw->Run(); });
  watcher_ = std::move(w);
  return OkStatus();
}

void DirectorySource::StopNotifications() {
  std::unique_ptr<Watcher> w;
  {
    std::lock_guard<std::mutex> l(mu_);
    w = std::move(watcher_);
  }
  if (!w) return;
  uint64_t one = 1;
  // eventfd writes of 8 bytes do not fail short of counter overflow.
  (void)!write(w->stop_fd, &one, sizeof(one));
  if (w->thread.joinable()) w->thread.join();
}

}  // namespace banger
