#include "images/recipes.h"

#include <elf.h>
#include <fcntl.h>
#include <sys/mount.h>
#include <sys/stat.h>
#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <cstring>
#include <map>
#include <sstream>

#include <spdlog/spdlog.h>

#include "base/files.h"
#include "base/strings.h"

namespace banger::images {

namespace fs = std::filesystem;

namespace {

// True when the ELF file has no PT_INTERP program header (statically linked).
Result<bool> IsStaticElf(const fs::path& path) {
  BANGER_ASSIGN_OR_RETURN(std::string data, ReadFile(path));
  if (data.size() < sizeof(Elf64_Ehdr) || data.compare(0, 4, ELFMAG) != 0) {
    return InvalidArgument(path.string() + " is not an ELF executable");
  }
  if (data[EI_CLASS] != ELFCLASS64) return InvalidArgument(path.string() + " is not a 64-bit ELF");
  Elf64_Ehdr eh;
  std::memcpy(&eh, data.data(), sizeof(eh));
  for (unsigned i = 0; i < eh.e_phnum; ++i) {
    uint64_t off = eh.e_phoff + static_cast<uint64_t>(i) * eh.e_phentsize;
    if (off + sizeof(Elf64_Phdr) > data.size()) {
      return InvalidArgument(path.string() + ": truncated ELF program headers");
    }
    Elf64_Phdr ph;
    std::memcpy(&ph, data.data() + off, sizeof(ph));
    if (ph.p_type == PT_INTERP) return false;
  }
  return true;
}

Status WriteTreeFile(const fs::path& root, const std::string& rel, std::string_view content,
                     unsigned mode) {
  return WriteFileAtomic(root / rel, content, mode);
}

Status Symlink(const std::string& target, const fs::path& link) {
  if (::symlink(target.c_str(), link.c_str()) != 0 && errno != EEXIST) {
    return ErrnoStatus(errno, "symlink " + link.string());
  }
  return OkStatus();
}

bool SafeRelative(std::string_view p) {
  if (p.empty() || p.front() == '/') return false;
  for (const auto& part : Split(p, '/')) {
    if (part.empty() || part == "." || part == "..") return false;
  }
  return true;
}

std::string Inittab() {
  return std::string("# banger busybox: minimal init\n"
                     "# Under banger the guest agent has already mounted /proc, /sys and /run:\n"
                     "# only what is missing is mounted (images/recipes.h).\n") +
         kBusyboxSysinit + "::ctrlaltdel:/sbin/reboot\n::shutdown:/bin/umount -a -r\n";
}

constexpr char kOsRelease[] =
    "NAME=\"banger busybox\"\n"
    "ID=banger-busybox\n"
    "PRETTY_NAME=\"banger busybox\"\n"
    "HOME_URL=\"https://busybox.net/\"\n";

}  // namespace

Status BuildBusyboxTree(CommandRunner& runner, const fs::path& busybox, const fs::path& dest) {
  BANGER_ASSIGN_OR_RETURN(bool is_static, IsStaticElf(busybox));
  if (!is_static) {
    return FailedPrecondition(busybox.string() +
                              " is dynamically linked; the busybox recipe needs a static "
                              "busybox (Debian package busybox-static)");
  }
  BANGER_ASSIGN_OR_RETURN(
      CommandOutput list,
      RunChecked(runner, CommandSpec{.argv = {busybox.string(), "--list-full"},
                                     .timeout = std::chrono::seconds(30)}));

  struct Dir {
    const char* path;
    unsigned mode;
  };
  for (const Dir& d : {Dir{"bin", 0755}, Dir{"sbin", 0755}, Dir{"usr", 0755},
                       Dir{"usr/bin", 0755}, Dir{"usr/sbin", 0755}, Dir{"etc", 0755},
                       Dir{"proc", 0555}, Dir{"sys", 0555}, Dir{"dev", 0755},
                       Dir{"tmp", 01777}, Dir{"run", 0755}, Dir{"root", 0700},
                       Dir{"var", 0755}, Dir{"var/log", 0755}, Dir{"home", 0755},
                       Dir{"mnt", 0755}}) {
    fs::path p = dest / d.path;
    if (::mkdir(p.c_str(), d.mode) != 0 && errno != EEXIST) {
      return ErrnoStatus(errno, "mkdir " + p.string());
    }
    if (::chmod(p.c_str(), d.mode) != 0) return ErrnoStatus(errno, "chmod " + p.string());
  }

  // Copy the binary (not a hard link: the tree is removed after the build).
  BANGER_ASSIGN_OR_RETURN(std::string bin, ReadFile(busybox));
  BANGER_RETURN_IF_ERROR(WriteTreeFile(dest, "bin/busybox", bin, 0755));

  size_t applets = 0;
  for (const auto& raw : Split(list.stdout_data, '\n')) {
    std::string rel(Trim(raw));
    if (rel.empty() || rel == "bin/busybox") continue;
    if (!SafeRelative(rel)) {
      return Internal("busybox --list-full printed an unsafe path: \"" + rel + "\"");
    }
    fs::path link = dest / rel;
    std::error_code ec;
    fs::create_directories(link.parent_path(), ec);
    if (ec) return ErrnoStatus(ec.value(), "mkdir " + link.parent_path().string());
    BANGER_RETURN_IF_ERROR(Symlink("/bin/busybox", link));
    ++applets;
  }
  if (applets == 0) return Internal(busybox.string() + " --list-full printed no applets");
  BANGER_RETURN_IF_ERROR(Symlink("/bin/busybox", dest / "sbin/init"));
  BANGER_RETURN_IF_ERROR(Symlink("/bin/busybox", dest / "bin/sh"));

  BANGER_RETURN_IF_ERROR(WriteTreeFile(dest, "etc/passwd", "root:x:0:0:root:/root:/bin/sh\n", 0644));
  BANGER_RETURN_IF_ERROR(WriteTreeFile(dest, "etc/group", "root:x:0:\n", 0644));
  BANGER_RETURN_IF_ERROR(WriteTreeFile(dest, "etc/shadow", "root:*:19000:0:99999:7:::\n", 0600));
  BANGER_RETURN_IF_ERROR(WriteTreeFile(dest, "etc/hostname", "busybox\n", 0644));
  BANGER_RETURN_IF_ERROR(WriteTreeFile(dest, "etc/os-release", kOsRelease, 0644));
  BANGER_RETURN_IF_ERROR(WriteTreeFile(dest, "etc/inittab", Inittab(), 0644));
  spdlog::debug("busybox tree in {}: {} applets", dest.string(), applets);
  return OkStatus();
}

namespace {

// Parses one-line "deb [opts] uri suite comps..." entries.
void ParseListFile(std::string_view text, std::vector<AptSource>& out) {
  for (const auto& raw : Split(text, '\n')) {
    std::string line(Trim(raw));
    if (size_t hash = line.find('#'); hash != std::string::npos) line.resize(hash);
    std::istringstream in(line);
    std::string type;
    if (!(in >> type) || type != "deb") continue;
    std::string tok;
    AptSource src;
    while (in >> tok) {
      if (tok.front() == '[') {
        // Options: [signed-by=/x arch=amd64]
        std::string opts = tok;
        while (opts.find(']') == std::string::npos && in >> tok) opts += " " + tok;
        std::string inner = opts.substr(1, opts.find(']') - 1);
        std::istringstream oin(inner);
        std::string opt;
        while (oin >> opt) {
          if (StartsWith(opt, "signed-by=")) src.keyring = opt.substr(10);
        }
        continue;
      }
      if (src.uri.empty()) {
        src.uri = tok;
      } else {
        src.suites.push_back(tok);
        break;  // components follow
      }
    }
    if (!src.uri.empty() && !src.suites.empty()) out.push_back(std::move(src));
  }
}

// Parses deb822 stanzas (Types/URIs/Suites/Signed-By, "Enabled: no" skipped).
void ParseSourcesFile(std::string_view text, std::vector<AptSource>& out) {
  auto flush = [&out](std::map<std::string, std::string>& fields) {
    if (!fields.empty()) {
      auto words = [](const std::string& v) {
        std::vector<std::string> w;
        std::istringstream in(v);
        std::string t;
        while (in >> t) w.push_back(t);
        return w;
      };
      auto types = words(fields["types"]);
      bool enabled = fields.count("enabled") == 0 || Trim(fields["enabled"]) != "no";
      if (enabled && std::find(types.begin(), types.end(), "deb") != types.end()) {
        for (const auto& uri : words(fields["uris"])) {
          AptSource src;
          src.uri = uri;
          src.suites = words(fields["suites"]);
          std::string keyring(Trim(fields["signed-by"]));
          // Signed-By may also hold an inline key block; only paths are usable.
          if (StartsWith(keyring, "/") && keyring.find('\n') == std::string::npos) {
            src.keyring = keyring;
          }
          if (!src.suites.empty()) out.push_back(std::move(src));
        }
      }
    }
    fields.clear();
  };
  std::map<std::string, std::string> fields;
  std::string last_key;
  for (const auto& raw : Split(text, '\n')) {
    std::string_view line = raw;
    if (!line.empty() && line.front() == '#') continue;
    if (Trim(line).empty()) {
      flush(fields);
      last_key.clear();
      continue;
    }
    if ((line.front() == ' ' || line.front() == '\t') && !last_key.empty()) {
      fields[last_key] += "\n" + std::string(Trim(line));
      continue;
    }
    size_t colon = line.find(':');
    if (colon == std::string_view::npos) continue;
    std::string key(Trim(line.substr(0, colon)));
    std::transform(key.begin(), key.end(), key.begin(),
                   [](unsigned char c) { return static_cast<char>(std::tolower(c)); });
    fields[key] = std::string(Trim(line.substr(colon + 1)));
    last_key = key;
  }
  flush(fields);
}

}  // namespace

Result<std::vector<AptSource>> ReadAptSources(const fs::path& apt_dir) {
  std::vector<AptSource> out;
  fs::path list = apt_dir / "sources.list";
  if (fs::exists(list)) {
    BANGER_ASSIGN_OR_RETURN(std::string text, ReadFile(list));
    ParseListFile(text, out);
  }
  fs::path dir = apt_dir / "sources.list.d";
  std::error_code ec;
  if (fs::is_directory(dir, ec)) {
    std::vector<fs::path> files;
    for (const auto& e : fs::directory_iterator(dir, ec)) files.push_back(e.path());
    if (ec) return ErrnoStatus(ec.value(), "read directory " + dir.string());
    std::sort(files.begin(), files.end());
    for (const auto& f : files) {
      bool is_list = f.extension() == ".list";
      bool is_sources = f.extension() == ".sources";
      if (!is_list && !is_sources) continue;
      BANGER_ASSIGN_OR_RETURN(std::string text, ReadFile(f));
      if (is_list) ParseListFile(text, out);
      else ParseSourcesFile(text, out);
    }
  }
  return out;
}

Result<AptSource> FindAptMirror(const fs::path& apt_dir, const std::string& suite) {
  BANGER_ASSIGN_OR_RETURN(std::vector<AptSource> sources, ReadAptSources(apt_dir));
  for (const auto& s : sources) {
    if (std::find(s.suites.begin(), s.suites.end(), suite) != s.suites.end()) return s;
  }
  return NotFound("no apt source serving suite \"" + suite + "\" is configured in " +
                  (apt_dir / "sources.list").string() + " or " +
                  (apt_dir / "sources.list.d").string());
}

Status BuildDebootstrapTree(CommandRunner& runner, const CatalogEntry& entry,
                            const AptSource& mirror, const fs::path& dest,
                            std::chrono::milliseconds timeout) {
  if (entry.suite.empty()) return InvalidArgument("image " + entry.name + ": debootstrap needs a suite");
  CommandSpec spec;
  spec.argv = {"debootstrap", "--variant=" + (entry.variant.empty() ? "minbase" : entry.variant)};
  if (!entry.include.empty()) spec.argv.push_back("--include=" + Join(entry.include, ","));
  if (!mirror.keyring.empty()) spec.argv.push_back("--keyring=" + mirror.keyring);
  spec.argv.push_back(entry.suite);
  spec.argv.push_back(dest.string());
  spec.argv.push_back(mirror.uri);
  spec.env["DEBIAN_FRONTEND"] = "noninteractive";
  spec.timeout = timeout;
  spdlog::info("image {}: debootstrap {} from the host's apt source", entry.name, entry.suite);
  auto result = RunChecked(runner, spec);
  Status unmount = UnmountBelow(dest);
  if (!result) return result.error().WithContext("image " + entry.name);
  BANGER_RETURN_IF_ERROR(unmount);
  return OkStatus();
}

namespace {
}  // namespace

Status UnmountBelow(const fs::path& path) {
  std::error_code ec;
  fs::path root = fs::weakly_canonical(path, ec);
  if (ec) root = path;
  std::string prefix = root.string();
  BANGER_ASSIGN_OR_RETURN(std::string info, ReadFile("/proc/self/mountinfo"));
  std::vector<std::string> targets;
  for (const auto& line : Split(info, '\n')) {
    std::istringstream in(line);
    std::string id, parent, devno, mroot, mpoint;
    if (!(in >> id >> parent >> devno >> mroot >> mpoint)) continue;
    std::string mp = UnescapeMountInfo(mpoint);
    if (mp == prefix || StartsWith(mp, prefix + "/")) targets.push_back(mp);
  }
  // Deepest first.
  std::sort(targets.begin(), targets.end(),
            [](const std::string& a, const std::string& b) { return a.size() > b.size(); });
  Status first;
  for (const auto& t : targets) {
    if (::umount2(t.c_str(), MNT_DETACH) != 0 && errno != EINVAL && errno != ENOENT) {
      if (first.ok()) first = ErrnoStatus(errno, "unmount " + t);
    } else {
      spdlog::debug("unmounted {}", t);
    }
  }
  return first;
}

ScratchTree::~ScratchTree() { (void)Remove(); }

Status ScratchTree::Remove() {
  if (path_.empty()) return OkStatus();
  Status unmount = UnmountBelow(path_);
  if (!unmount.ok()) {
    // Never recurse into a host file system that is still mounted below.
    spdlog::warn("leaving {} in place: {}", path_.string(), unmount.message());
    path_.clear();
    return unmount;
  }
  Status st = RemoveAll(path_);
  path_.clear();
  return st;
}

}  // namespace banger::images
