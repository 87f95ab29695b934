// @banger/tar and @banger/untar: a small ustar/pax writer and reader, so
// `banger cp` and workspaces move files into and out of any guest (no tar in
// the image needed). The agent links only libc/libstdc++, so the format is
// written here by hand:
//   - the writer emits POSIX ustar headers, with a pax extended header ('x')
//     for names, link targets or sizes that ustar cannot hold;
//   - the reader takes ustar, pax ('x' per entry, 'g' ignored) and GNU long
//     names ('L'/'K'), and extracts regular files, directories, symlinks and
//     hard links under DEST. It refuses every entry that would land outside
//     DEST: absolute names, ".." components, and paths that pass through a
//     symlink (every component is opened with openat(O_NOFOLLOW)). Modes and
//     modification times are kept; ownership is not (files belong to the
//     user the agent runs as).
#include <dirent.h>
#include <fcntl.h>
#include <sys/stat.h>
#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <cstdint>
#include <cstdio>
#include <cstring>
#include <string>
#include <string_view>
#include <vector>

#include "agent/builtins.h"

namespace banger::agent {
namespace {

constexpr size_t kBlock = 512;

// ---- I/O helpers ---------------------------------------------------------

bool WriteAllFd(int fd, const char* p, size_t n) {
  while (n > 0) {
    ssize_t w = ::write(fd, p, n);
    if (w < 0) {
      if (errno == EINTR) continue;
      return false;
    }
    p += w;
    n -= static_cast<size_t>(w);
  }
  return true;
}

// Reads exactly n bytes; false on EOF or error before n.
bool ReadFull(int fd, char* p, size_t n) {
  while (n > 0) {
    ssize_t r = ::read(fd, p, n);
    if (r < 0) {
      if (errno == EINTR) continue;
      return false;
    }
    if (r == 0) return false;
    p += r;
    n -= static_cast<size_t>(r);
  }
  return true;
}

size_t Padding(uint64_t size) { return static_cast<size_t>((kBlock - size % kBlock) % kBlock); }

// ---- writer --------------------------------------------------------------

void PutOctal(char* field, size_t width, uint64_t value) {
  // width-1 octal digits and a NUL (callers check FitsOctal first).
  field[width - 1] = '\0';
  for (size_t i = width - 1; i > 0; --i) {
    field[i - 1] = static_cast<char>('0' + (value & 7));
    value >>= 3;
  }
}

bool FitsOctal(uint64_t value, size_t width) {
  uint64_t max = 1;
  for (size_t i = 0; i + 1 < width; ++i) max *= 8;
  return value < max;
}

std::string PaxRecord(std::string_view key, std::string_view value) {
  // "LEN KEY=VALUE\n", LEN counting itself.
  size_t body = 1 + key.size() + 1 + value.size() + 1;
  size_t len = body + 1;
  while (std::to_string(len).size() + body != len) ++len;
  return std::to_string(len) + " " + std::string(key) + "=" + std::string(value) + "\n";
}

class TarWriter {
 public:
  explicit TarWriter(int fd) : fd_(fd) {}

  bool Header(const std::string& name, char type, uint32_t mode, uint64_t size, int64_t mtime,
              const std::string& link) {
    std::string pax;
    if (name.size() > 99) pax += PaxRecord("path", name);
    if (link.size() > 99) pax += PaxRecord("linkpath", link);
    if (!FitsOctal(size, 12)) pax += PaxRecord("size", std::to_string(size));
    if (!pax.empty()) {
      if (!Raw("PaxHeader", 'x', 0644, pax.size(), mtime, "")) return false;
      if (!Data(pax.data(), pax.size()) || !Pad(pax.size())) return false;
    }
    return Raw(name.size() > 99 ? name.substr(0, 99) : name, type, mode, FitsOctal(size, 12) ? size : 0, mtime,
               link.size() > 99 ? link.substr(0, 99) : link);
  }
  bool Data(const char* p, size_t n) { return WriteAllFd(fd_, p, n); }
  bool Pad(uint64_t size) {
    static const char zeros[kBlock] = {};
    return WriteAllFd(fd_, zeros, Padding(size));
  }
  bool Finish() {
    static const char zeros[2 * kBlock] = {};
    return WriteAllFd(fd_, zeros, sizeof(zeros));
  }

 private:
  bool Raw(const std::string& name, char type, uint32_t mode, uint64_t size, int64_t mtime,
           const std::string& link) {
    char h[kBlock] = {};
    std::memcpy(h, name.data(), std::min<size_t>(name.size(), 100));
    PutOctal(h + 100, 8, mode & 07777);
    PutOctal(h + 108, 8, 0);
    PutOctal(h + 116, 8, 0);
    PutOctal(h + 124, 12, size);
    uint64_t t = mtime < 0 ? 0 : static_cast<uint64_t>(mtime);
    PutOctal(h + 136, 12, FitsOctal(t, 12) ? t : 0);
    h[156] = type;
    std::memcpy(h + 157, link.data(), std::min<size_t>(link.size(), 100));
    std::memcpy(h + 257, "ustar", 6);
    std::memcpy(h + 263, "00", 2);
    std::memset(h + 148, ' ', 8);
    unsigned sum = 0;
    for (unsigned char c : h) sum += c;
    PutOctal(h + 148, 7, sum);  // six digits, NUL, then the space already there
    h[155] = ' ';
    return WriteAllFd(fd_, h, kBlock);
  }
  int fd_;
};

// Adds `rel` (a path under dirfd, as named in the archive) and, for a
// directory, everything below it. Returns false on a write error (fatal);
// unreadable files are reported and skipped (`*errors` counts them).
bool AddTree(TarWriter& w, int dirfd, const std::string& rel, const std::string& name, int* errors) {
  struct stat st;
  if (::fstatat(dirfd, rel.c_str(), &st, AT_SYMLINK_NOFOLLOW) != 0) {
    std::fprintf(stderr, "tar: %s: %s\n", name.c_str(), std::strerror(errno));
    ++*errors;
    return true;
  }
  if (S_ISLNK(st.st_mode)) {
    std::string target(4096, '\0');
    ssize_t n = ::readlinkat(dirfd, rel.c_str(), target.data(), target.size());
    if (n < 0) {
      std::fprintf(stderr, "tar: %s: %s\n", name.c_str(), std::strerror(errno));
      ++*errors;
      return true;
    }
    target.resize(static_cast<size_t>(n));
    return w.Header(name, '2', st.st_mode, 0, st.st_mtime, target);
  }
  if (S_ISDIR(st.st_mode)) {
    if (!w.Header(name + "/", '5', st.st_mode, 0, st.st_mtime, "")) return false;
    int fd = ::openat(dirfd, rel.c_str(), O_RDONLY | O_DIRECTORY | O_NOFOLLOW | O_CLOEXEC);
    if (fd < 0) {
      std::fprintf(stderr, "tar: %s: %s\n", name.c_str(), std::strerror(errno));
      ++*errors;
      return true;
    }
    DIR* d = ::fdopendir(fd);
    if (d == nullptr) {
      ::close(fd);
      ++*errors;
      return true;
    }
    std::vector<std::string> children;
    while (dirent* e = ::readdir(d)) {
      std::string_view n = e->d_name;
      if (n == "." || n == "..") continue;
      children.emplace_back(n);
    }
    std::sort(children.begin(), children.end());
    bool ok = true;
    for (const std::string& c : children) {
      if (!AddTree(w, ::dirfd(d), c, name + "/" + c, errors)) {
        ok = false;
        break;
      }
    }
    ::closedir(d);
    return ok;
  }
  if (!S_ISREG(st.st_mode)) {
    std::fprintf(stderr, "tar: %s: not a regular file, directory or symlink; skipped\n", name.c_str());
    return true;
  }
  int fd = ::openat(dirfd, rel.c_str(), O_RDONLY | O_NOFOLLOW | O_CLOEXEC);
  if (fd < 0) {
    std::fprintf(stderr, "tar: %s: %s\n", name.c_str(), std::strerror(errno));
    ++*errors;
    return true;
  }
  uint64_t size = static_cast<uint64_t>(st.st_size);
  if (!w.Header(name, '0', st.st_mode, size, st.st_mtime, "")) {
    ::close(fd);
    return false;
  }
  // Exactly `size` bytes: a file that shrank meanwhile is padded with zeros,
  // one that grew is cut (the header is already out).
  std::vector<char> buf(1 << 16);
  uint64_t left = size;
  bool ok = true;
  while (left > 0) {
    size_t want = static_cast<size_t>(std::min<uint64_t>(left, buf.size()));
    ssize_t r = ::read(fd, buf.data(), want);
    if (r < 0 && errno == EINTR) continue;
    if (r <= 0) {
      std::fprintf(stderr, "tar: %s: changed while being read\n", name.c_str());
      ++*errors;
      std::fill(buf.begin(), buf.end(), 0);
      while (left > 0 && ok) {
        size_t z = static_cast<size_t>(std::min<uint64_t>(left, buf.size()));
        ok = w.Data(buf.data(), z);
        left -= z;
      }
      break;
    }
    if (!w.Data(buf.data(), static_cast<size_t>(r))) {
      ok = false;
      break;
    }
    left -= static_cast<uint64_t>(r);
  }
  ::close(fd);
  return ok && w.Pad(size);
}

// @banger/tar [-C DIR] PATH...: a tar stream of PATHs (relative to DIR, or the
// cwd) on stdout; names in the archive are the PATHs as given (without a
// leading "/" or "./").
int Tar(const std::vector<std::string>& argv) {
  std::string dir = ".";
  std::vector<std::string> paths;
  for (size_t i = 1; i < argv.size(); ++i) {
    if (argv[i] == "-C" && i + 1 < argv.size()) {
      dir = argv[++i];
    } else {
      paths.push_back(argv[i]);
    }
  }
  if (paths.empty()) {
    std::fprintf(stderr, "usage: @banger/tar [-C DIR] PATH...\n");
    return 2;
  }
  int dirfd = ::open(dir.c_str(), O_RDONLY | O_DIRECTORY | O_CLOEXEC);
  if (dirfd < 0) {
    std::fprintf(stderr, "tar: %s: %s\n", dir.c_str(), std::strerror(errno));
    return 1;
  }
  TarWriter w(1);
  int errors = 0;
  for (const std::string& p : paths) {
    std::string name = p;
    while (name.size() > 1 && name.back() == '/') name.pop_back();
    std::string shown = name;
    while (!shown.empty() && shown.front() == '/') shown.erase(0, 1);
    while (shown.rfind("./", 0) == 0) shown.erase(0, 2);
    bool ok = true;
    if (shown.empty() || shown == ".") {
      // The directory itself: its children at the top of the archive.
      int fd = ::openat(dirfd, name.c_str(), O_RDONLY | O_DIRECTORY | O_CLOEXEC);
      DIR* d = fd < 0 ? nullptr : ::fdopendir(fd);
      if (d == nullptr) {
        std::fprintf(stderr, "tar: %s: %s\n", p.c_str(), std::strerror(errno));
        if (fd >= 0) ::close(fd);
        ++errors;
        continue;
      }
      std::vector<std::string> children;
      while (dirent* e = ::readdir(d)) {
        std::string_view n = e->d_name;
        if (n != "." && n != "..") children.emplace_back(n);
      }
      std::sort(children.begin(), children.end());
      for (const std::string& c : children) {
        if (!(ok = AddTree(w, ::dirfd(d), c, c, &errors))) break;
      }
      ::closedir(d);
    } else {
      ok = AddTree(w, dirfd, name, shown, &errors);
    }
    if (!ok) {
      std::fprintf(stderr, "tar: writing the archive: %s\n", std::strerror(errno));
      ::close(dirfd);
      return 1;
    }
  }
  ::close(dirfd);
  if (!w.Finish()) return 1;
  return errors == 0 ? 0 : 1;
}

// ---- reader --------------------------------------------------------------

uint64_t ParseNumber(const char* field, size_t width) {
  const auto* u = reinterpret_cast<const unsigned char*>(field);
  if (u[0] & 0x80) {  // GNU base-256
    uint64_t v = u[0] & 0x7f;
    for (size_t i = 1; i < width; ++i) v = (v << 8) | u[i];
    return v;
  }
  uint64_t v = 0;
  size_t i = 0;
  while (i < width && (field[i] == ' ' || field[i] == '\0')) ++i;
  for (; i < width && field[i] >= '0' && field[i] <= '7'; ++i) v = v * 8 + static_cast<uint64_t>(field[i] - '0');
  return v;
}

std::string Field(const char* p, size_t width) { return std::string(p, strnlen(p, width)); }

bool ChecksumOk(const char* h) {
  unsigned sum = 0;
  for (size_t i = 0; i < kBlock; ++i) sum += (i >= 148 && i < 156) ? ' ' : static_cast<unsigned char>(h[i]);
  return ParseNumber(h + 148, 8) == sum;
}

// Splits an archive name into components under DEST; "" on success, else why not.
std::string SplitName(const std::string& name, std::vector<std::string>* parts) {
  parts->clear();
  if (name.empty()) return "empty name";
  if (name[0] == '/') return "absolute name";
  if (name.find('\0') != std::string::npos) return "NUL in name";
  size_t start = 0;
  while (start <= name.size()) {
    size_t end = name.find('/', start);
    if (end == std::string::npos) end = name.size();
    std::string c = name.substr(start, end - start);
    if (c == "..") return "\"..\" in name";
    if (!c.empty() && c != ".") parts->push_back(c);
    start = end + 1;
  }
  return "";
}

class Extractor {
 public:
  explicit Extractor(int root) : root_(root) {}

  // Opens the directory holding the last component of `parts`, creating
  // missing parents (0755) and never following a symlink. -1 with why_ set.
  int OpenParent(const std::vector<std::string>& parts) {
    int fd = ::dup(root_);
    for (size_t i = 0; i + 1 < parts.size(); ++i) {
      int next = ::openat(fd, parts[i].c_str(), O_RDONLY | O_DIRECTORY | O_NOFOLLOW | O_CLOEXEC);
      if (next < 0 && errno == ENOENT) {
        if (::mkdirat(fd, parts[i].c_str(), 0755) != 0 && errno != EEXIST) {
          why_ = std::string("mkdir ") + parts[i] + ": " + std::strerror(errno);
          ::close(fd);
          return -1;
        }
        next = ::openat(fd, parts[i].c_str(), O_RDONLY | O_DIRECTORY | O_NOFOLLOW | O_CLOEXEC);
      }
      if (next < 0) {
        why_ = (errno == ELOOP || errno == ENOTDIR)
                   ? "path passes through a symlink or non-directory (" + parts[i] + ")"
                   : parts[i] + ": " + std::strerror(errno);
        ::close(fd);
        return -1;
      }
      ::close(fd);
      fd = next;
    }
    return fd;
  }

  // Removes a non-directory in the way of a new entry.
  bool ClearSlot(int parent, const std::string& leaf, bool want_dir) {
    struct stat st;
    if (::fstatat(parent, leaf.c_str(), &st, AT_SYMLINK_NOFOLLOW) != 0) return true;
    if (S_ISDIR(st.st_mode)) {
      if (want_dir) return true;
      why_ = "a directory is in the way";
      return false;
    }
    if (::unlinkat(parent, leaf.c_str(), 0) != 0) {
      why_ = std::string("removing the old entry: ") + std::strerror(errno);
      return false;
    }
    return true;
  }

  const std::string& why() const { return why_; }
  std::string why_;

 private:
  int root_;
};

struct Entry {
  std::string name, link;
  char type = '0';
  uint32_t mode = 0644;
  uint64_t size = 0;
  int64_t mtime = 0;
};

// Skips (or copies to `out`, if >= 0) `size` bytes of entry data plus padding.
bool CopyData(uint64_t size, int out, std::string* why) {
  std::vector<char> buf(1 << 16);
  uint64_t left = size + Padding(size);
  uint64_t data_left = size;
  while (left > 0) {
    size_t want = static_cast<size_t>(std::min<uint64_t>(left, buf.size()));
    if (!ReadFull(0, buf.data(), want)) {
      *why = "archive ends inside an entry";
      return false;
    }
    size_t data = static_cast<size_t>(std::min<uint64_t>(data_left, want));
    if (out >= 0 && data > 0 && !WriteAllFd(out, buf.data(), data)) {
      *why = std::string("write: ") + std::strerror(errno);
      return false;
    }
    data_left -= data;
    left -= want;
  }
  return true;
}

bool ReadString(uint64_t size, std::string* s, std::string* why) {
  if (size > (16u << 20)) {
    *why = "extended header too large";
    return false;
  }
  s->assign(static_cast<size_t>(size + Padding(size)), '\0');
  if (!ReadFull(0, s->data(), s->size())) {
    *why = "archive ends inside an extended header";
    return false;
  }
  s->resize(static_cast<size_t>(size));
  return true;
}

void ParsePax(const std::string& data, std::string* path, std::string* link, uint64_t* size, bool* has_size) {
  size_t pos = 0;
  while (pos < data.size()) {
    size_t sp = data.find(' ', pos);
    if (sp == std::string::npos) return;
    size_t len = std::strtoull(data.c_str() + pos, nullptr, 10);
    if (len == 0 || pos + len > data.size()) return;
    std::string rec = data.substr(sp + 1, pos + len - sp - 2);  // without the newline
    size_t eq = rec.find('=');
    if (eq != std::string::npos) {
      std::string key = rec.substr(0, eq), value = rec.substr(eq + 1);
      if (key == "path") *path = value;
      if (key == "linkpath") *link = value;
      if (key == "size") {
        *size = std::strtoull(value.c_str(), nullptr, 10);
        *has_size = true;
      }
    }
    pos += len;
  }
}

struct DirMode {
  std::vector<std::string> parts;
  uint32_t mode;
};

// @banger/untar DEST: extracts the tar stream on stdin under DEST (created
// if missing). Stops at the first refused or failed entry (exit 1).
int Untar(const std::vector<std::string>& argv) {
  if (argv.size() != 2) {
    std::fprintf(stderr, "usage: @banger/untar DEST < archive.tar\n");
    return 2;
  }
  const std::string& dest = argv[1];
  // mkdir -p DEST (DEST itself is the user's choice; below it nothing escapes).
  for (size_t i = 1; i <= dest.size(); ++i) {
    if (i == dest.size() || dest[i] == '/') {
      std::string prefix = dest.substr(0, i);
      if (::mkdir(prefix.c_str(), 0755) != 0 && errno != EEXIST) {
        std::fprintf(stderr, "untar: mkdir %s: %s\n", prefix.c_str(), std::strerror(errno));
        return 1;
      }
    }
  }
  int root = ::open(dest.c_str(), O_RDONLY | O_DIRECTORY | O_CLOEXEC);
  if (root < 0) {
    std::fprintf(stderr, "untar: %s: %s\n", dest.c_str(), std::strerror(errno));
    return 1;
  }
  ::umask(0);
  Extractor ex(root);
  std::vector<DirMode> dirs;  // modes applied at the end (a 0555 dir must stay writable meanwhile)
  std::string next_path, next_link;
  uint64_t next_size = 0;
  bool has_size = false;
  int zero_blocks = 0;
  int rc = 0;
  auto fail = [&](const std::string& name, const std::string& why) {
    std::fprintf(stderr, "untar: %s: %s\n", name.c_str(), why.c_str());
    rc = 1;
  };
  while (rc == 0) {
    char h[kBlock];
    if (!ReadFull(0, h, kBlock)) {
      if (zero_blocks == 0) fail("(archive)", "unexpected end of archive");
      break;
    }
    bool all_zero = std::all_of(h, h + kBlock, [](char c) { return c == 0; });
    if (all_zero) {
      if (++zero_blocks == 2) break;
      continue;
    }
    zero_blocks = 0;
    if (!ChecksumOk(h)) {
      fail("(archive)", "bad header checksum: not a tar stream");
      break;
    }
    Entry e;
    e.type = h[156] == '\0' ? '0' : h[156];
    e.mode = static_cast<uint32_t>(ParseNumber(h + 100, 8)) & 07777;
    e.size = ParseNumber(h + 124, 12);
    e.mtime = static_cast<int64_t>(ParseNumber(h + 136, 12));
    e.name = Field(h, 100);
    if (std::memcmp(h + 257, "ustar", 5) == 0) {
      std::string prefix = Field(h + 345, 155);
      if (!prefix.empty()) e.name = prefix + "/" + e.name;
    }
    e.link = Field(h + 157, 100);
    std::string why;
    if (e.type == 'x' || e.type == 'g' || e.type == 'L' || e.type == 'K') {
      std::string data;
      if (!ReadString(e.size, &data, &why)) {
        fail(e.name, why);
        break;
      }
      if (e.type == 'x') ParsePax(data, &next_path, &next_link, &next_size, &has_size);
      if (e.type == 'L') next_path = std::string(data.c_str());
      if (e.type == 'K') next_link = std::string(data.c_str());
      continue;
    }
    if (!next_path.empty()) e.name = next_path;
    if (!next_link.empty()) e.link = next_link;
    if (has_size) e.size = next_size;
    next_path.clear();
    next_link.clear();
    has_size = false;
    uint64_t data_size = (e.type == '0' || e.type == '7') ? e.size : (e.type == '5' || e.type == '2' || e.type == '1') ? 0 : e.size;

    std::vector<std::string> parts;
    if (std::string bad = SplitName(e.name, &parts); !bad.empty()) {
      fail(e.name, "refused: " + bad);
      break;
    }
    if (parts.empty()) {  // "." or "./": DEST itself
      if (e.type == '5') dirs.push_back({{}, e.mode});
      if (!CopyData(data_size, -1, &why)) fail(e.name, why);
      continue;
    }
    int parent = ex.OpenParent(parts);
    if (parent < 0) {
      fail(e.name, "refused: " + ex.why());
      break;
    }
    const std::string& leaf = parts.back();
    switch (e.type) {
      case '5': {
        if (!ex.ClearSlot(parent, leaf, true)) {
          fail(e.name, ex.why());
          break;
        }
        if (::mkdirat(parent, leaf.c_str(), 0700) != 0 && errno != EEXIST) {
          fail(e.name, std::string("mkdir: ") + std::strerror(errno));
          break;
        }
        dirs.push_back({parts, e.mode});
        break;
      }
      case '0':
      case '7': {
        if (!ex.ClearSlot(parent, leaf, false)) {
          fail(e.name, ex.why());
          break;
        }
        int fd = ::openat(parent, leaf.c_str(), O_WRONLY | O_CREAT | O_EXCL | O_NOFOLLOW | O_CLOEXEC, 0600);
        if (fd < 0) {
          fail(e.name, std::string("create: ") + std::strerror(errno));
          break;
        }
        bool ok = CopyData(e.size, fd, &why);
        data_size = 0;
        if (ok) {
          ::fchmod(fd, e.mode);
          timespec ts[2] = {{e.mtime, 0}, {e.mtime, 0}};
          ::futimens(fd, ts);
        }
        ::close(fd);
        if (!ok) fail(e.name, why);
        break;
      }
      case '2': {
        if (!ex.ClearSlot(parent, leaf, false)) {
          fail(e.name, ex.why());
          break;
        }
        if (::symlinkat(e.link.c_str(), parent, leaf.c_str()) != 0) {
          fail(e.name, std::string("symlink: ") + std::strerror(errno));
          break;
        }
        timespec ts[2] = {{e.mtime, 0}, {e.mtime, 0}};
        ::utimensat(parent, leaf.c_str(), ts, AT_SYMLINK_NOFOLLOW);
        break;
      }
      case '1': {
        std::vector<std::string> target;
        if (std::string bad = SplitName(e.link, &target); !bad.empty() || target.empty()) {
          fail(e.name, "refused hard link target " + e.link + ": " + (bad.empty() ? "empty" : bad));
          break;
        }
        int tparent = ex.OpenParent(target);
        if (tparent < 0) {
          fail(e.name, "refused hard link target: " + ex.why());
          break;
        }
        struct stat st;
        if (::fstatat(tparent, target.back().c_str(), &st, AT_SYMLINK_NOFOLLOW) != 0 || !S_ISREG(st.st_mode)) {
          fail(e.name, "hard link target " + e.link + " is not a file extracted before");
        } else if (!ex.ClearSlot(parent, leaf, false)) {
          fail(e.name, ex.why());
        } else if (::linkat(tparent, target.back().c_str(), parent, leaf.c_str(), 0) != 0) {
          fail(e.name, std::string("link: ") + std::strerror(errno));
        }
        ::close(tparent);
        break;
      }
      default:
        std::fprintf(stderr, "untar: %s: entry type '%c' skipped\n", e.name.c_str(), e.type);
        break;
    }
    ::close(parent);
    if (rc != 0) break;
    if (data_size > 0 && !CopyData(data_size, -1, &why)) fail(e.name, why);
  }
  // Directory modes, deepest first.
  std::sort(dirs.begin(), dirs.end(), [](const DirMode& a, const DirMode& b) { return a.parts.size() > b.parts.size(); });
  for (const DirMode& d : dirs) {
    if (d.parts.empty()) {
      ::fchmod(root, d.mode);
      continue;
    }
    int parent = ex.OpenParent(d.parts);
    if (parent < 0) continue;
    int fd = ::openat(parent, d.parts.back().c_str(), O_RDONLY | O_DIRECTORY | O_NOFOLLOW | O_CLOEXEC);
    if (fd >= 0) {
      ::fchmod(fd, d.mode);
      ::close(fd);
    }
    ::close(parent);
  }
  ::close(root);
  return rc;
}

// @banger/stat PATH: prints what PATH is (following symlinks): directory,
// file, other, or missing.
int Stat(const std::vector<std::string>& argv) {
  if (argv.size() != 2) {
    std::fprintf(stderr, "usage: @banger/stat PATH\n");
    return 2;
  }
  struct stat st;
  if (::stat(argv[1].c_str(), &st) != 0) {
    if (errno == ENOENT || errno == ENOTDIR) {
      std::printf("missing\n");
      return 0;
    }
    std::fprintf(stderr, "stat: %s: %s\n", argv[1].c_str(), std::strerror(errno));
    return 1;
  }
  std::printf("%s\n", S_ISDIR(st.st_mode) ? "directory" : S_ISREG(st.st_mode) ? "file" : "other");
  return 0;
}

}  // namespace

int BuiltinStat(const std::vector<std::string>& argv) { return Stat(argv); }
int BuiltinTar(const std::vector<std::string>& argv) { return Tar(argv); }
int BuiltinUntar(const std::vector<std::string>& argv) { return Untar(argv); }

}  // namespace banger::agent
