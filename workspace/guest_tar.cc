#include "workspace/guest_tar.h"

#include <archive.h>
#include <archive_entry.h>
#include <fcntl.h>
#include <sys/mman.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <cstring>
#include <thread>

#include "base/files.h"
#include "base/strings.h"
#include "base/unique_fd.h"
#include "fetch/extract.h"

namespace banger::workspace {
namespace {

namespace fs = std::filesystem;

// A guest that stops answering in the middle of a copy (nothing moves on the
// agent channel either way for this long) fails the copy instead of hanging
// `banger cp`, `apply` (workspace shipping) or `workspace sync` forever.
constexpr std::chrono::milliseconds kGuestIdleTimeout{60000};

// A memfd collecting a command's stderr (bounded by what the guest writes;
// builtins write one line per problem).
Result<std::string> ReadBack(int fd) {
  if (::lseek(fd, 0, SEEK_SET) < 0) return ErrnoStatus(errno, "lseek");
  std::string out;
  char buf[4096];
  while (true) {
    ssize_t n = ::read(fd, buf, sizeof(buf));
    if (n < 0 && errno == EINTR) continue;
    if (n <= 0) break;
    out.append(buf, static_cast<size_t>(n));
    if (out.size() > 64 * 1024) break;
  }
  return std::string(Trim(out));
}

struct WriteTarget {
  int fd;
};

la_ssize_t WriteCallback(struct archive* a, void* data, const void* buf, size_t n) {
  int fd = static_cast<WriteTarget*>(data)->fd;
  const char* p = static_cast<const char*>(buf);
  size_t left = n;
  while (left > 0) {
    ssize_t w = ::send(fd, p, left, MSG_NOSIGNAL);
    if (w < 0) {
      if (errno == EINTR) continue;
      archive_set_error(a, errno, "sending the archive to the guest: %s", std::strerror(errno));
      return -1;
    }
    p += w;
    left -= static_cast<size_t>(w);
  }
  return static_cast<la_ssize_t>(n);
}

Status ArchiveStatus(struct archive* a, const std::string& what) {
  const char* e = archive_error_string(a);
  return Internal(what + ": " + (e ? e : "unknown error"));
}

Status WriteEntry(struct archive* a, struct archive_entry* e, const std::string& name) {
  if (archive_write_header(a, e) != ARCHIVE_OK) return ArchiveStatus(a, "archiving " + name);
  return OkStatus();
}

}  // namespace

Status AddBuffer(struct archive* a, const std::string& name, std::string_view content, unsigned mode) {
  struct archive_entry* e = archive_entry_new();
  archive_entry_set_pathname(e, name.c_str());
  archive_entry_set_filetype(e, AE_IFREG);
  archive_entry_set_perm(e, mode);
  archive_entry_set_size(e, static_cast<la_int64_t>(content.size()));
  archive_entry_set_mtime(e, ::time(nullptr), 0);
  Status s = WriteEntry(a, e, name);
  archive_entry_free(e);
  BANGER_RETURN_IF_ERROR(s);
  if (!content.empty() && archive_write_data(a, content.data(), content.size()) < 0) {
    return ArchiveStatus(a, "archiving " + name);
  }
  return OkStatus();
}

Status AddLocalFile(struct archive* a, const fs::path& path, const std::string& name) {
  struct stat st;
  if (::lstat(path.c_str(), &st) != 0) return ErrnoStatus(errno, "lstat " + path.string());
  struct archive_entry* e = archive_entry_new();
  archive_entry_set_pathname(e, name.c_str());
  archive_entry_set_perm(e, st.st_mode & 07777);
  archive_entry_set_mtime(e, st.st_mtim.tv_sec, st.st_mtim.tv_nsec);
  Status s = OkStatus();
  if (S_ISLNK(st.st_mode)) {
    std::error_code ec;
    fs::path target = fs::read_symlink(path, ec);
    if (ec) {
      archive_entry_free(e);
      return Internal("readlink " + path.string() + ": " + ec.message());
    }
    archive_entry_set_filetype(e, AE_IFLNK);
    archive_entry_set_symlink(e, target.c_str());
    s = WriteEntry(a, e, name);
  } else if (S_ISDIR(st.st_mode)) {
    archive_entry_set_filetype(e, AE_IFDIR);
    s = WriteEntry(a, e, name);
  } else if (S_ISREG(st.st_mode)) {
    int fd = ::open(path.c_str(), O_RDONLY | O_CLOEXEC | O_NOFOLLOW);
    if (fd < 0) {
      archive_entry_free(e);
      return ErrnoStatus(errno, "open " + path.string());
    }
    archive_entry_set_filetype(e, AE_IFREG);
    archive_entry_set_size(e, st.st_size);
    s = WriteEntry(a, e, name);
    static thread_local std::vector<char> buf(1 << 18);
    off_t left = st.st_size;
    while (s.ok() && left > 0) {
      ssize_t n = ::read(fd, buf.data(), static_cast<size_t>(std::min<off_t>(left, static_cast<off_t>(buf.size()))));
      if (n < 0 && errno == EINTR) continue;
      if (n <= 0) {
        s = Internal(path.string() + " changed while being archived");
        break;
      }
      if (archive_write_data(a, buf.data(), static_cast<size_t>(n)) < 0) s = ArchiveStatus(a, "archiving " + name);
      left -= n;
    }
    ::close(fd);
  }  // devices, fifos, sockets: skipped
  archive_entry_free(e);
  return s;
}

Status AddLocalPath(struct archive* a, const fs::path& path, const std::string& name) {
  BANGER_RETURN_IF_ERROR(AddLocalFile(a, path, name));
  std::error_code ec;
  if (!fs::is_directory(fs::symlink_status(path, ec))) return OkStatus();
  std::vector<fs::path> children;
  for (const auto& entry : fs::directory_iterator(path, ec)) children.push_back(entry.path());
  if (ec) return Internal("listing " + path.string() + ": " + ec.message());
  std::sort(children.begin(), children.end());
  for (const fs::path& c : children) {
    BANGER_RETURN_IF_ERROR(AddLocalPath(a, c, name + "/" + c.filename().string()));
  }
  return OkStatus();
}

Status PushArchive(AgentConnection& conn, const std::string& guest_dir, const ArchiveProducer& produce) {
  int sv[2];
  if (::socketpair(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0, sv) != 0) return ErrnoStatus(errno, "socketpair");
  UniqueFd reader(sv[0]);
  UniqueFd writer(sv[1]);
  UniqueFd err(::memfd_create("banger-untar-stderr", MFD_CLOEXEC));
  if (err.get() < 0) return ErrnoStatus(errno, "memfd_create");

  Status produced = OkStatus();
  std::thread producer([&] {
    WriteTarget target{writer.get()};
    struct archive* a = archive_write_new();
    archive_write_set_format_pax_restricted(a);
    archive_write_set_bytes_per_block(a, 64 * 1024);
    if (archive_write_open(a, &target, nullptr, WriteCallback, nullptr) != ARCHIVE_OK) {
      produced = ArchiveStatus(a, "starting the archive");
    } else {
      produced = produce(a);
      if (archive_write_close(a) != ARCHIVE_OK && produced.ok()) produced = ArchiveStatus(a, "finishing the archive");
    }
    archive_write_free(a);
    writer.Reset();  // EOF for the guest
  });
  ExecCommand cmd;
  cmd.argv = {"@banger/untar", guest_dir};
  InteractiveOptions io;
  io.in_fd = reader.get();
  io.out_fd = err.get();
  io.err_fd = err.get();
  io.tty = false;
  io.idle_timeout = kGuestIdleTimeout;
  Result<int> code = conn.ExecInteractive(cmd, io);
  // The guest stopped reading (done, or refused an entry): a producer still
  // writing gets EPIPE instead of blocking.
  ::shutdown(reader.get(), SHUT_RDWR);
  producer.join();
  // The guest's refusal explains a producer's broken pipe, so it comes first.
  if (code.ok() && *code != 0) {
    std::string why = ReadBack(err.get()).value_or("");
    return FailedPrecondition("extracting into " + guest_dir + " in the guest failed (exit " +
                              std::to_string(*code) + ")" + (why.empty() ? "" : ": " + why));
  }
  if (!produced.ok()) return produced.WithContext("shipping to " + guest_dir + " in the guest");
  if (!code.ok()) return code.error().WithContext("extracting into " + guest_dir + " in the guest");
  return OkStatus();
}

Status PullTree(AgentConnection& conn, const std::string& guest_dir, const std::vector<std::string>& names,
                const fs::path& dest) {
  BANGER_ASSIGN_OR_RETURN(fs::path tmp, MakeTempDir("banger-pull"));
  ScopedRemove cleanup(tmp);
  fs::path tar = tmp / "stream.tar";
  UniqueFd out(::open(tar.c_str(), O_WRONLY | O_CREAT | O_EXCL | O_CLOEXEC, 0600));
  if (out.get() < 0) return ErrnoStatus(errno, "creating " + tar.string());
  UniqueFd err(::memfd_create("banger-tar-stderr", MFD_CLOEXEC));
  UniqueFd in(::open("/dev/null", O_RDONLY | O_CLOEXEC));
  if (err.get() < 0 || in.get() < 0) return ErrnoStatus(errno, "memfd_create");
  ExecCommand cmd;
  cmd.argv = {"@banger/tar", "-C", guest_dir};
  cmd.argv.insert(cmd.argv.end(), names.begin(), names.end());
  InteractiveOptions io;
  io.in_fd = in.get();
  io.out_fd = out.get();
  io.err_fd = err.get();
  io.tty = false;
  io.idle_timeout = kGuestIdleTimeout;
  Result<int> code = conn.ExecInteractive(cmd, io);
  if (!code.ok()) return code.error().WithContext("reading " + guest_dir + " from the guest");
  if (*code != 0) {
    std::string why = ReadBack(err.get()).value_or("");
    return FailedPrecondition("reading " + guest_dir + " from the guest failed (exit " + std::to_string(*code) +
                              ")" + (why.empty() ? "" : ": " + why));
  }
  out.Reset();
  fetch::ExtractOptions opts;
  opts.tar_only = true;
  opts.plain_files_only = true;
  return fetch::ExtractArchive(tar, dest, opts);
}

Result<std::string> GuestPathKind(AgentConnection& conn, const std::string& guest_path) {
  ExecCommand cmd;
  cmd.argv = {"@banger/stat", guest_path};
  BANGER_ASSIGN_OR_RETURN(ExecResult r, conn.Exec(cmd, "", std::chrono::seconds(30)));
  if (r.exit_code != 0) {
    return FailedPrecondition("cannot look at " + guest_path + " in the guest: " +
                              std::string(Trim(r.stderr_data)));
  }
  return std::string(Trim(r.stdout_data));
}

}  // namespace banger::workspace
