#include "providers/raw_disk.h"

#include <fcntl.h>
#include <linux/fs.h>
#include <sys/ioctl.h>
#include <sys/stat.h>
#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <cstring>
#include <vector>

#include "base/unique_fd.h"

namespace banger {

namespace fs = std::filesystem;

std::string_view RawCopyMethodName(RawCopyMethod m) {
  return m == RawCopyMethod::kReflink ? "reflink" : "sparse copy";
}

namespace {

Status WriteAll(int fd, const char* p, size_t n, off_t off, const fs::path& dst) {
  while (n > 0) {
    ssize_t w = ::pwrite(fd, p, n, off);
    if (w < 0 && errno == EINTR) continue;
    if (w < 0) return ErrnoStatus(errno, "write " + dst.string());
    p += w;
    n -= static_cast<size_t>(w);
    off += w;
  }
  return OkStatus();
}

// Copies the data extents of in to out; holes stay holes.
Result<uint64_t> SparseCopy(int in, int out, off_t size, const fs::path& src, const fs::path& dst) {
  std::vector<char> buf(1 << 20);
  uint64_t written = 0;
  off_t pos = 0;
  while (pos < size) {
    off_t data = ::lseek(in, pos, SEEK_DATA);
    if (data < 0) {
      if (errno == ENXIO) break;  // only a hole is left
      return ErrnoStatus(errno, "seek data in " + src.string());
    }
    off_t hole = ::lseek(in, data, SEEK_HOLE);
    if (hole < 0) return ErrnoStatus(errno, "seek hole in " + src.string());
    for (off_t off = data; off < hole;) {
      size_t want = static_cast<size_t>(std::min<off_t>(hole - off, static_cast<off_t>(buf.size())));
      ssize_t r = ::pread(in, buf.data(), want, off);
      if (r < 0 && errno == EINTR) continue;
      if (r < 0) return ErrnoStatus(errno, "read " + src.string());
      if (r == 0) break;
      // Blocks of zeros inside data extents stay holes too.
      bool zero = true;
      for (ssize_t i = 0; i < r && zero; i += 8) {
        uint64_t v = 0;
        std::memcpy(&v, buf.data() + i, static_cast<size_t>(std::min<ssize_t>(8, r - i)));
        zero = v == 0;
      }
      if (!zero) {
        BANGER_RETURN_IF_ERROR(WriteAll(out, buf.data(), static_cast<size_t>(r), off, dst));
        written += static_cast<uint64_t>(r);
      }
      off += r;
    }
    pos = hole;
  }
  return written;
}

}  // namespace

Result<RawCopyResult> CopyRawDisk(const fs::path& src, const fs::path& dst, uint64_t size, bool allow_reflink) {
  UniqueFd in(::open(src.c_str(), O_RDONLY | O_CLOEXEC));
  if (in.get() < 0) return ErrnoStatus(errno, "open " + src.string());
  struct stat st {};
  if (::fstat(in.get(), &st) != 0) return ErrnoStatus(errno, "stat " + src.string());
  if (!S_ISREG(st.st_mode)) return InvalidArgument(src.string() + " is not a regular file");
  fs::path partial = dst;
  partial += ".partial";
  ::unlink(partial.c_str());
  RawCopyResult res;
  {
    UniqueFd out(::open(partial.c_str(), O_WRONLY | O_CREAT | O_EXCL | O_CLOEXEC, 0600));
    if (out.get() < 0) return ErrnoStatus(errno, "create " + partial.string());
    bool cloned = allow_reflink && ::ioctl(out.get(), FICLONE, in.get()) == 0;
    Status s = OkStatus();
    if (cloned) {
      res.method = RawCopyMethod::kReflink;
    } else {
      auto n = SparseCopy(in.get(), out.get(), st.st_size, src, partial);
      if (!n) s = n.error();
      else res.bytes_written = *n;
    }
    uint64_t final_size = std::max<uint64_t>(size, static_cast<uint64_t>(st.st_size));
    if (s.ok() && ::ftruncate(out.get(), static_cast<off_t>(final_size)) != 0) {
      s = ErrnoStatus(errno, "resize " + partial.string());
    }
    if (s.ok() && ::fsync(out.get()) != 0) s = ErrnoStatus(errno, "sync " + partial.string());
    if (!s.ok()) {
      ::unlink(partial.c_str());
      return s.WithContext("copying disk " + src.string());
    }
  }
  if (::rename(partial.c_str(), dst.c_str()) != 0) {
    int err = errno;
    ::unlink(partial.c_str());
    return ErrnoStatus(err, "rename " + partial.string() + " to " + dst.string());
  }
  return res;
}

}  // namespace banger
