#include "providers/initramfs.h"

#include <archive.h>
#include <archive_entry.h>
#include <sys/stat.h>

#include <sys/sysmacros.h>

#include <unistd.h>

#include <cstdio>
#include <functional>
#include <map>
#include <memory>
#include <set>
#include <thread>

#include "base/files.h"
#include "base/sha256.h"
#include "base/strings.h"

namespace banger {

namespace fs = std::filesystem;

namespace {

constexpr const char* kModulesDirInImage = "lib/banger/modules";

// "kernel/fs/ext4/ext4.ko.xz" -> "ext4"; dashes and underscores are the same
// in module names.
std::string ModuleName(std::string_view path) {
  std::string_view base = path.substr(path.rfind('/') + 1);
  size_t ko = base.find(".ko");
  std::string name(base.substr(0, ko));
  for (char& c : name) {
    if (c == '-') c = '_';
  }
  return name;
}

std::string NormalizeName(std::string_view name) {
  std::string n(name);
  for (char& c : n) {
    if (c == '-') c = '_';
  }
  return n;
}

struct ModuleDb {
  std::map<std::string, std::string> path;                    // name -> relative path
  std::map<std::string, std::vector<std::string>> deps;       // name -> dep names (modules.dep order)
  std::map<std::string, std::vector<std::string>> pre_soft;   // name -> "pre:" softdep names/aliases
  std::multimap<std::string, std::string> alias;              // alias -> module name (file order)
  std::vector<std::string> alias_order;
  std::set<std::string> builtin;
};

Result<ModuleDb> LoadModuleDb(const fs::path& dir) {
  ModuleDb db;
  auto dep_text = ReadFile(dir / "modules.dep");
  if (!dep_text) return dep_text.error().WithContext("reading kernel modules index");
  for (const std::string& raw : Split(*dep_text, '\n')) {
    std::string_view line = Trim(raw);
    if (line.empty()) continue;
    size_t colon = line.find(':');
    if (colon == std::string_view::npos) {
      return InvalidArgument((dir / "modules.dep").string() + ": malformed line '" + std::string(line) + "'");
    }
    std::string path(Trim(line.substr(0, colon)));
    std::string name = ModuleName(path);
    db.path[name] = path;
    auto& d = db.deps[name];
    for (const std::string& dep : Split(std::string(Trim(line.substr(colon + 1))), ' ')) {
      if (!dep.empty()) d.push_back(ModuleName(dep));
    }
    // Make sure deps not listed as their own line still resolve to a path.
    for (const std::string& dep : Split(std::string(Trim(line.substr(colon + 1))), ' ')) {
      if (!dep.empty() && !db.path.count(ModuleName(dep))) db.path[ModuleName(dep)] = dep;
    }
  }
  if (auto soft = ReadFile(dir / "modules.softdep")) {
    for (const std::string& raw : Split(*soft, '\n')) {
      std::vector<std::string> words;
      for (const std::string& w : Split(std::string(Trim(raw)), ' ')) {
        if (!w.empty()) words.push_back(w);
      }
      if (words.size() < 3 || words[0] != "softdep") continue;
      std::string mod = NormalizeName(words[1]);
      bool pre = false;
      for (size_t i = 2; i < words.size(); ++i) {
        if (words[i] == "pre:") pre = true;
        else if (words[i] == "post:") pre = false;
        else if (pre) db.pre_soft[mod].push_back(words[i]);
      }
    }
  }
  if (auto alias = ReadFile(dir / "modules.alias")) {
    for (const std::string& raw : Split(*alias, '\n')) {
      std::vector<std::string> words;
      for (const std::string& w : Split(std::string(Trim(raw)), ' ')) {
        if (!w.empty()) words.push_back(w);
      }
      // Only exact aliases matter here (softdeps name crypto-* aliases).
      if (words.size() == 3 && words[0] == "alias" && words[1].find_first_of("*?[") == std::string::npos) {
        db.alias.emplace(words[1], NormalizeName(words[2]));
      }
    }
  }
  if (auto builtin = ReadFile(dir / "modules.builtin")) {
    for (const std::string& raw : Split(*builtin, '\n')) {
      if (!Trim(raw).empty()) db.builtin.insert(ModuleName(Trim(raw)));
    }
  }
  return db;
}

// Returns module names for a softdep word: a module name or an alias.
std::vector<std::string> ResolveSoft(const ModuleDb& db, const std::string& word) {
  std::string n = NormalizeName(word);
  if (db.path.count(n)) return {n};
  std::vector<std::string> out;
  auto [b, e] = db.alias.equal_range(word);
  for (auto it = b; it != e; ++it) {
    if (db.path.count(it->second)) out.push_back(it->second);
  }
  return out;
}

struct ArchiveWriteDeleter {
  void operator()(archive* a) const { archive_write_free(a); }
};
struct ArchiveReadDeleter {
  void operator()(archive* a) const { archive_read_free(a); }
};
struct EntryDeleter {
  void operator()(archive_entry* e) const { archive_entry_free(e); }
};

Status ArchiveError(archive* a, const std::string& what) {
  const char* msg = archive_error_string(a);
  return Internal(what + ": " + (msg ? msg : "libarchive error"));
}

// Reads a module file, decompressing .xz/.zst/.gz through libarchive's raw format.
Result<std::string> ReadModule(const fs::path& path) {
  std::string p = path.string();
  if (!EndsWith(p, ".xz") && !EndsWith(p, ".zst") && !EndsWith(p, ".gz")) return ReadFile(path);
  std::unique_ptr<archive, ArchiveReadDeleter> a(archive_read_new());
  archive_read_support_filter_all(a.get());
  archive_read_support_format_raw(a.get());
  if (archive_read_open_filename(a.get(), p.c_str(), 65536) != ARCHIVE_OK) {
    return ArchiveError(a.get(), "open module " + p);
  }
  archive_entry* entry = nullptr;
  if (archive_read_next_header(a.get(), &entry) != ARCHIVE_OK) {
    return ArchiveError(a.get(), "decompress module " + p);
  }
  std::string out;
  char buf[65536];
  la_ssize_t n;
  while ((n = archive_read_data(a.get(), buf, sizeof(buf))) > 0) out.append(buf, static_cast<size_t>(n));
  if (n < 0) return ArchiveError(a.get(), "decompress module " + p);
  return out;
}

std::string StripCompression(std::string path) {
  for (const char* ext : {".xz", ".zst", ".gz"}) {
    if (EndsWith(path, ext)) return path.substr(0, path.size() - std::string_view(ext).size());
  }
  return path;
}

// Builds newc cpio archives with fixed metadata so output is reproducible.
class CpioWriter {
 public:
  Status Open(bool gzip, std::string* sink) {
    a_.reset(archive_write_new());
    if (archive_write_set_format_cpio_newc(a_.get()) != ARCHIVE_OK) return ArchiveError(a_.get(), "cpio format");
    if (gzip) {
      if (archive_write_add_filter_gzip(a_.get()) != ARCHIVE_OK) return ArchiveError(a_.get(), "gzip filter");
      // No timestamp in the gzip header: identical inputs, identical bytes.
      archive_write_set_filter_option(a_.get(), "gzip", "timestamp", nullptr);
      archive_write_set_filter_option(a_.get(), "gzip", "compression-level", "9");
    }
    archive_write_set_bytes_in_last_block(a_.get(), 1);
    sink_ = sink;
    if (archive_write_open(a_.get(), this, nullptr, &CpioWriter::WriteCb, nullptr) != ARCHIVE_OK) {
      return ArchiveError(a_.get(), "open cpio writer");
    }
    return OkStatus();
  }

  Status Add(const std::string& path, unsigned type, unsigned mode, std::string_view data = {},
             dev_t rdev = 0) {
    std::unique_ptr<archive_entry, EntryDeleter> e(archive_entry_new());
    archive_entry_set_pathname(e.get(), path.c_str());
    archive_entry_set_filetype(e.get(), type);
    archive_entry_set_perm(e.get(), mode);
    archive_entry_set_uid(e.get(), 0);
    archive_entry_set_gid(e.get(), 0);
    archive_entry_set_mtime(e.get(), 0, 0);
    archive_entry_set_ino(e.get(), ++ino_);
    archive_entry_set_nlink(e.get(), type == AE_IFDIR ? 2 : 1);
    if (type == AE_IFCHR) archive_entry_set_rdev(e.get(), rdev);
    archive_entry_set_size(e.get(), type == AE_IFREG ? static_cast<la_int64_t>(data.size()) : 0);
    if (archive_write_header(a_.get(), e.get()) != ARCHIVE_OK) return ArchiveError(a_.get(), "cpio entry " + path);
    if (type == AE_IFREG && !data.empty() &&
        archive_write_data(a_.get(), data.data(), data.size()) != static_cast<la_ssize_t>(data.size())) {
      return ArchiveError(a_.get(), "cpio data " + path);
    }
    return OkStatus();
  }

  Status AddDirs(const std::string& path) {
    std::string cur;
    for (const std::string& part : Split(path, '/')) {
      if (part.empty()) continue;
      cur += cur.empty() ? part : "/" + part;
      if (dirs_.insert(cur).second) BANGER_RETURN_IF_ERROR(Add(cur, AE_IFDIR, 0755));
    }
    return OkStatus();
  }

  Status Close() {
    if (archive_write_close(a_.get()) != ARCHIVE_OK) return ArchiveError(a_.get(), "finish cpio");
    return OkStatus();
  }

 private:
  static la_ssize_t WriteCb(archive*, void* self, const void* buf, size_t n) {
    static_cast<CpioWriter*>(self)->sink_->append(static_cast<const char*>(buf), n);
    return static_cast<la_ssize_t>(n);
  }
  std::unique_ptr<archive, ArchiveWriteDeleter> a_;
  std::string* sink_ = nullptr;
  la_int64_t ino_ = 0;
  std::set<std::string> dirs_;
};

}  // namespace

const std::vector<std::string>& DefaultGuestModules() {
  static const std::vector<std::string> kModules = {"virtio_pci", "virtio_mmio", "virtio_blk",
                                                    "virtio_net", "virtio_console", "ext4"};
  return kModules;
}

const std::vector<std::string>& OptionalGuestModules() {
  // The vsock channel of Firecracker VMs (docs/guest-agent.md, "Channels");
  // a kernel without them still boots under QEMU over virtio-serial.
  static const std::vector<std::string> kModules = {"vmw_vsock_virtio_transport"};
  return kModules;
}

Result<std::vector<std::string>> ResolveModuleLoadOrder(const fs::path& modules_dir,
                                                        const std::vector<std::string>& wanted,
                                                        const std::vector<std::string>& optional) {
  BANGER_ASSIGN_OR_RETURN(ModuleDb db, LoadModuleDb(modules_dir));
  std::vector<std::string> order;
  std::set<std::string> done, visiting;
  std::function<void(const std::string&)> visit = [&](const std::string& name) {
    if (done.count(name) || visiting.count(name)) return;
    visiting.insert(name);
    if (auto it = db.pre_soft.find(name); it != db.pre_soft.end()) {
      for (const std::string& word : it->second) {
        for (const std::string& m : ResolveSoft(db, word)) visit(m);
      }
    }
    // modules.dep lists the transitive closure with the deepest dependencies
    // last, so walking it backwards loads dependencies first (as modprobe does).
    const auto& deps = db.deps[name];
    for (auto it = deps.rbegin(); it != deps.rend(); ++it) visit(*it);
    visiting.erase(name);
    done.insert(name);
    order.push_back(db.path.at(name));
  };
  for (const std::string& w : wanted) {
    std::string n = NormalizeName(w);
    if (db.path.count(n)) {
      visit(n);
    } else if (!db.builtin.count(n)) {
      return NotFound("kernel module " + w + " is neither in " + (modules_dir / "modules.dep").string() +
                      " nor built in");
    }
  }
  for (const std::string& w : optional) {
    std::string n = NormalizeName(w);
    if (db.path.count(n)) visit(n);  // absent or built in: nothing to load
  }
  return order;
}

Status BuildInitramfs(const fs::path& modules_dir, const fs::path& agent_binary, const fs::path& out,
                      const std::vector<std::string>& modules, const std::vector<std::string>& optional_modules) {
  auto ctx = [&](const Status& s) { return s.WithContext("building initramfs " + out.string()); };
  auto order = ResolveModuleLoadOrder(modules_dir, modules, optional_modules);
  if (!order) return ctx(order.error());
  auto agent = ReadFile(agent_binary);
  if (!agent) return ctx(agent.error().WithContext("reading guest agent"));

  std::string bytes;
  CpioWriter w;
  if (Status s = w.Open(/*gzip=*/true, &bytes); !s.ok()) return ctx(s);
  std::string order_file;
  std::vector<Status> results;
  for (const char* d : {"dev", "proc", "sys", "run", "newroot", "banger", "tmp"}) {
    results.push_back(w.AddDirs(d));
  }
  results.push_back(w.Add("dev/console", AE_IFCHR, 0600, {}, makedev(5, 1)));
  results.push_back(w.Add("init", AE_IFREG, 0755, *agent));
  for (const std::string& rel : *order) {
    auto data = ReadModule(modules_dir / rel);
    if (!data) return ctx(data.error());
    std::string dst = std::string(kModulesDirInImage) + "/" + StripCompression(rel);
    results.push_back(w.AddDirs(dst.substr(0, dst.rfind('/'))));
    results.push_back(w.Add(dst, AE_IFREG, 0644, *data));
    order_file += "/" + dst + "\n";
  }
  results.push_back(w.AddDirs("lib/banger"));
  results.push_back(w.Add("lib/banger/modules.order", AE_IFREG, 0644, order_file));
  results.push_back(w.Close());
  for (const Status& s : results) {
    if (!s.ok()) return ctx(s);
  }
  return WriteFileAtomic(out, bytes, 0644);
}

Status WriteSandboxInitrd(const fs::path& kernel_initramfs, const GuestConfig& guest, const fs::path& out) {
  auto base = ReadFile(kernel_initramfs);
  if (!base) return base.error().WithContext("reading kernel initramfs for " + out.string());
  std::string bytes = std::move(*base);
  bytes.append((4 - bytes.size() % 4) % 4, '\0');
  std::string cpio;
  CpioWriter w;
  BANGER_RETURN_IF_ERROR(w.Open(/*gzip=*/false, &cpio));
  BANGER_RETURN_IF_ERROR(w.Add("banger", AE_IFDIR, 0700));
  BANGER_RETURN_IF_ERROR(w.Add("banger/config.json", AE_IFREG, 0600, GuestConfigToJson(guest)));
  BANGER_RETURN_IF_ERROR(w.Close());
  bytes += cpio;
  return WriteFileAtomic(out, bytes, 0600);
}

Result<std::vector<std::string>> ListCpio(const fs::path& path) {
  std::unique_ptr<archive, ArchiveReadDeleter> a(archive_read_new());
  archive_read_support_filter_all(a.get());
  archive_read_support_format_cpio(a.get());
  if (archive_read_open_filename(a.get(), path.c_str(), 65536) != ARCHIVE_OK) {
    return ArchiveError(a.get(), "open " + path.string());
  }
  std::vector<std::string> out;
  archive_entry* e = nullptr;
  int r;
  while ((r = archive_read_next_header(a.get(), &e)) == ARCHIVE_OK) {
    char mode[8];
    std::snprintf(mode, sizeof(mode), "%o", archive_entry_mode(e));
    out.push_back(std::string(archive_entry_pathname(e)) + " " + mode);
    archive_read_data_skip(a.get());
  }
  if (r != ARCHIVE_EOF) return ArchiveError(a.get(), "read " + path.string());
  return out;
}

Result<std::string> InitramfsCacheName(const fs::path& modules_dir, const std::string& agent_sha256,
                                       const std::vector<std::string>& modules) {
  BANGER_ASSIGN_OR_RETURN(std::vector<std::string> order, ResolveModuleLoadOrder(modules_dir, modules));
  Sha256 h;
  h.Update("banger-initramfs-v1\n");  // bump when BuildInitramfs changes what it writes
  h.Update("agent " + agent_sha256 + "\n");
  for (const auto& m : modules) h.Update("want " + m + "\n");
  for (const auto& rel : order) {
    struct stat st;
    fs::path p = modules_dir / rel;
    if (::stat(p.c_str(), &st) != 0) return ErrnoStatus(errno, "stat " + p.string());
    h.Update("module " + rel + " " + std::to_string(st.st_size) + " " + std::to_string(st.st_mtim.tv_sec) +
             "." + std::to_string(st.st_mtim.tv_nsec) + "\n");
  }
  return "banger-initramfs-" + h.HexDigest().substr(0, 16) + ".img";
}

Result<fs::path> EnsureCachedInitramfs(const fs::path& modules_dir, const fs::path& agent_binary,
                                       const fs::path& cache_dir, bool* built,
                                       const std::vector<std::string>& modules) {
  if (built) *built = false;
  BANGER_ASSIGN_OR_RETURN(std::string agent_hash, Sha256File(agent_binary));
  BANGER_ASSIGN_OR_RETURN(std::string name, InitramfsCacheName(modules_dir, agent_hash, modules));
  fs::path out = cache_dir / name;
  std::error_code ec;
  if (fs::exists(out, ec)) return out;
  fs::path tmp = out;
  tmp += ".tmp." + std::to_string(::getpid()) + "." + std::to_string(std::hash<std::thread::id>{}(std::this_thread::get_id()));
  Status s = BuildInitramfs(modules_dir, agent_binary, tmp, modules);
  if (!s.ok()) {
    (void)RemoveAll(tmp);
    return s;
  }
  fs::rename(tmp, out, ec);
  if (ec) {
    (void)RemoveAll(tmp);
    return ErrnoStatus(ec.value(), "publish " + out.string());
  }
  if (built) *built = true;
  return out;
}

}  // namespace banger
