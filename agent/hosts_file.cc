#include "agent/hosts_file.h"

#include <fcntl.h>
#include <sys/stat.h>
#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <climits>
#include <cstdlib>
#include <cstring>

namespace banger::agent {

namespace {

struct Line {
  std::string_view text;  // without the newline
  bool newline = false;
};

std::vector<Line> SplitLines(std::string_view s) {
  std::vector<Line> out;
  size_t pos = 0;
  while (pos < s.size()) {
    size_t nl = s.find('\n', pos);
    if (nl == std::string_view::npos) {
      out.push_back({s.substr(pos), false});
      break;
    }
    out.push_back({s.substr(pos, nl - pos), true});
    pos = nl + 1;
  }
  return out;
}

std::string_view TrimRight(std::string_view s) {
  while (!s.empty() && (s.back() == ' ' || s.back() == '\t' || s.back() == '\r')) s.remove_suffix(1);
  return s;
}

bool IsBegin(const Line& l) { return TrimRight(l.text) == kHostsBlockBegin; }
bool IsEnd(const Line& l) { return TrimRight(l.text) == kHostsBlockEnd; }

// For each line: whether it belongs to banger (a marker or inside a block).
// A begin marker without a later end marker is banger's alone.
std::vector<bool> BangerLines(const std::vector<Line>& lines) {
  std::vector<bool> ours(lines.size(), false);
  for (size_t i = 0; i < lines.size(); ++i) {
    if (IsEnd(lines[i])) {
      ours[i] = true;  // a stray end marker
      continue;
    }
    if (!IsBegin(lines[i])) continue;
    ours[i] = true;
    size_t j = i + 1;
    while (j < lines.size() && !IsEnd(lines[j]) && !IsBegin(lines[j])) ++j;
    if (j < lines.size() && IsEnd(lines[j])) {
      for (size_t k = i + 1; k <= j; ++k) ours[k] = true;
      i = j;
    }
  }
  return ours;
}

std::string Errno(const std::string& what) { return what + ": " + std::strerror(errno); }

bool WriteAll(int fd, const std::string& content) {
  size_t off = 0;
  while (off < content.size()) {
    ssize_t n = ::write(fd, content.data() + off, content.size() - off);
    if (n < 0 && errno == EINTR) continue;
    if (n <= 0) return false;
    off += static_cast<size_t>(n);
  }
  return true;
}

// Not atomic (a reader may see a mix of old and new bytes for a moment), but
// never empty: for a bind-mounted file, which cannot be renamed over.
std::string RewriteInPlace(const std::string& path, const std::string& content) {
  int fd = ::open(path.c_str(), O_WRONLY | O_CREAT | O_CLOEXEC, 0644);
  if (fd < 0) return Errno("open " + path);
  bool ok = WriteAll(fd, content) && ::ftruncate(fd, static_cast<off_t>(content.size())) == 0;
  std::string err = ok ? "" : Errno("write " + path);
  if (::close(fd) != 0 && err.empty()) err = Errno("close " + path);
  return err;
}

}  // namespace

std::string RewriteHostsBlock(std::string_view existing, const std::vector<agent_protocol::HostsEntry>& hosts) {
  std::vector<Line> lines = SplitLines(existing);
  std::vector<bool> ours = BangerLines(lines);
  std::string out;
  out.reserve(existing.size() + hosts.size() * 48 + 96);
  size_t insert_at = std::string::npos;
  for (size_t i = 0; i < lines.size(); ++i) {
    if (ours[i]) {
      if (insert_at == std::string::npos) insert_at = out.size();
      continue;
    }
    out.append(lines[i].text);
    if (lines[i].newline) out.push_back('\n');
  }
  if (hosts.empty()) return out;
  std::string block(kHostsBlockBegin);
  block.push_back('\n');
  for (const auto& h : hosts) {
    block += h.address;
    block.push_back('\t');
    for (size_t i = 0; i < h.names.size(); ++i) {
      if (i) block.push_back(' ');
      block += h.names[i];
    }
    block.push_back('\n');
  }
  block.append(kHostsBlockEnd);
  block.push_back('\n');
  if (insert_at == std::string::npos) {
    if (!out.empty() && out.back() != '\n') out.push_back('\n');
    insert_at = out.size();
  }
  out.insert(insert_at, block);
  return out;
}

std::string EnsureHostnameLine(std::string_view existing, const std::string& hostname) {
  if (hostname.empty()) return std::string(existing);
  std::string text(existing);
  if (text.find_first_not_of(" \t\r\n") == std::string::npos) {
    text = "127.0.0.1\tlocalhost\n::1\tlocalhost ip6-localhost ip6-loopback\n";
  }
  std::vector<Line> lines = SplitLines(text);
  std::vector<bool> ours = BangerLines(lines);
  size_t block_offset = std::string::npos;
  size_t offset = 0;
  for (size_t i = 0; i < lines.size(); ++i) {
    size_t line_start = offset;
    offset += lines[i].text.size() + (lines[i].newline ? 1 : 0);
    if (ours[i]) {
      if (block_offset == std::string::npos) block_offset = line_start;
      continue;
    }
    std::string_view l = lines[i].text.substr(0, lines[i].text.find('#'));
    // Fields: address, then names, separated by blanks.
    size_t field = 0, pos = 0;
    while (pos < l.size()) {
      while (pos < l.size() && (l[pos] == ' ' || l[pos] == '\t' || l[pos] == '\r')) ++pos;
      size_t start = pos;
      while (pos < l.size() && l[pos] != ' ' && l[pos] != '\t' && l[pos] != '\r') ++pos;
      if (pos == start) break;
      std::string_view token = l.substr(start, pos - start);
      if (field++ > 0 && token.size() == hostname.size() &&
          std::equal(token.begin(), token.end(), hostname.begin(), [](char a, char b) {
            auto lower = [](char c) { return c >= 'A' && c <= 'Z' ? static_cast<char>(c - 'A' + 'a') : c; };
            return lower(a) == lower(b);
          })) {
        return text;
      }
    }
  }
  std::string line = "127.0.1.1\t" + hostname + "\n";
  if (block_offset != std::string::npos) {
    text.insert(block_offset, line);
  } else {
    if (!text.empty() && text.back() != '\n') text.push_back('\n');
    text += line;
  }
  return text;
}

std::string ReadHostsFile(const std::string& path, std::string* content) {
  content->clear();
  int fd = ::open(path.c_str(), O_RDONLY | O_CLOEXEC);
  if (fd < 0) return errno == ENOENT ? "" : Errno("open " + path);
  char buf[8192];
  ssize_t n;
  while ((n = ::read(fd, buf, sizeof(buf))) != 0) {
    if (n < 0 && errno == EINTR) continue;
    if (n < 0) {
      std::string err = Errno("read " + path);
      ::close(fd);
      return err;
    }
    content->append(buf, static_cast<size_t>(n));
  }
  ::close(fd);
  return "";
}

std::string WriteHostsFile(const std::string& path, const std::string& content) {
  std::string target = path;
  struct stat st{};
  if (::lstat(path.c_str(), &st) == 0 && S_ISLNK(st.st_mode)) {
    char resolved[PATH_MAX];
    if (::realpath(path.c_str(), resolved) != nullptr) {
      target = resolved;
    } else if (errno != ENOENT) {
      return Errno("resolve " + path);
    }
    // Dangling: the link itself is replaced by the file.
  }
  size_t slash = target.rfind('/');
  std::string dir = slash == std::string::npos ? "." : slash == 0 ? "/" : target.substr(0, slash);
  std::string tmp = dir + (dir == "/" ? "" : "/") + ".banger-hosts.XXXXXX";
  int fd = ::mkostemp(tmp.data(), O_CLOEXEC);
  if (fd < 0) {
    // A read-only directory with a writable (bind-mounted) file in it.
    if (errno == EROFS || errno == EACCES || errno == EPERM) return RewriteInPlace(target, content);
    return Errno("create a temporary file in " + dir);
  }
  bool ok = WriteAll(fd, content) && ::fchmod(fd, 0644) == 0 && ::fsync(fd) == 0;
  std::string err = ok ? "" : Errno("write " + tmp);
  if (::close(fd) != 0 && err.empty()) err = Errno("close " + tmp);
  if (!err.empty()) {
    ::unlink(tmp.c_str());
    return err;
  }
  if (::rename(tmp.c_str(), target.c_str()) == 0) return "";
  int rename_errno = errno;
  ::unlink(tmp.c_str());
  if (rename_errno == EBUSY || rename_errno == EXDEV) return RewriteInPlace(target, content);
  errno = rename_errno;
  return Errno("rename " + tmp + " to " + target);
}

}  // namespace banger::agent
