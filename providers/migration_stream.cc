#include "providers/migration_stream.h"

#include <fcntl.h>
#include <sys/socket.h>
#include <unistd.h>
#include <zstd.h>

#include <cerrno>
#include <memory>
#include <string>
#include <vector>

namespace banger {

namespace {

struct FdCloser {
  int fd;
  ~FdCloser() {
    if (fd >= 0) ::close(fd);
  }
};

Status WriteAllFd(int fd, const char* data, size_t size, bool socket) {
  while (size > 0) {
    ssize_t n = socket ? ::send(fd, data, size, MSG_NOSIGNAL) : ::write(fd, data, size);
    if (n < 0 && errno == EINTR) continue;
    if (n <= 0) return ErrnoStatus(errno, socket ? "sending migration stream" : "writing state file");
    data += n;
    size -= static_cast<size_t>(n);
  }
  return OkStatus();
}

}  // namespace

Result<uint64_t> CompressStreamToFile(int in_fd, const std::filesystem::path& out, int level, int workers) {
  int ofd = ::open(out.c_str(), O_WRONLY | O_CREAT | O_EXCL | O_CLOEXEC | O_NOFOLLOW, 0600);
  if (ofd < 0) return ErrnoStatus(errno, "create " + out.string());
  FdCloser closer{ofd};
  std::unique_ptr<ZSTD_CCtx, size_t (*)(ZSTD_CCtx*)> cctx(ZSTD_createCCtx(), ZSTD_freeCCtx);
  if (!cctx) return ResourceExhausted("zstd: cannot allocate a compression context");
  ZSTD_CCtx_setParameter(cctx.get(), ZSTD_c_compressionLevel, level);
  if (workers > 1) (void)ZSTD_CCtx_setParameter(cctx.get(), ZSTD_c_nbWorkers, workers);  // ignored without MT
  std::vector<char> in(ZSTD_CStreamInSize()), obuf(ZSTD_CStreamOutSize());
  uint64_t total = 0;
  while (true) {
    ssize_t n = ::read(in_fd, in.data(), in.size());
    if (n < 0 && errno == EINTR) continue;
    if (n < 0) return ErrnoStatus(errno, "reading migration stream");
    const bool last = n == 0;
    total += static_cast<uint64_t>(n);
    ZSTD_inBuffer ib{in.data(), static_cast<size_t>(n), 0};
    bool done = false;
    while (!done) {
      ZSTD_outBuffer ob{obuf.data(), obuf.size(), 0};
      size_t rem = ZSTD_compressStream2(cctx.get(), &ob, &ib, last ? ZSTD_e_end : ZSTD_e_continue);
      if (ZSTD_isError(rem)) return Internal(std::string("zstd: ") + ZSTD_getErrorName(rem));
      BANGER_RETURN_IF_ERROR(WriteAllFd(ofd, obuf.data(), ob.pos, false));
      done = last ? rem == 0 : ib.pos == ib.size;
    }
    if (last) break;
  }
  if (::fsync(ofd) != 0) return ErrnoStatus(errno, "fsync " + out.string());
  return total;
}

Status DecompressFileToStream(const std::filesystem::path& in, int out_fd) {
  int ifd = ::open(in.c_str(), O_RDONLY | O_CLOEXEC | O_NOFOLLOW);
  if (ifd < 0) return ErrnoStatus(errno, "open " + in.string());
  FdCloser closer{ifd};
  std::unique_ptr<ZSTD_DCtx, size_t (*)(ZSTD_DCtx*)> dctx(ZSTD_createDCtx(), ZSTD_freeDCtx);
  if (!dctx) return ResourceExhausted("zstd: cannot allocate a decompression context");
  std::vector<char> ibuf(ZSTD_DStreamInSize()), obuf(ZSTD_DStreamOutSize());
  size_t pending = 1;  // 0 once a frame has ended exactly at the end of input
  while (true) {
    ssize_t n = ::read(ifd, ibuf.data(), ibuf.size());
    if (n < 0 && errno == EINTR) continue;
    if (n < 0) return ErrnoStatus(errno, "read " + in.string());
    if (n == 0) break;
    ZSTD_inBuffer ib{ibuf.data(), static_cast<size_t>(n), 0};
    while (ib.pos < ib.size) {
      ZSTD_outBuffer ob{obuf.data(), obuf.size(), 0};
      pending = ZSTD_decompressStream(dctx.get(), &ob, &ib);
      if (ZSTD_isError(pending)) {
        return DataLoss(in.string() + ": corrupt state file (zstd: " + ZSTD_getErrorName(pending) + ")");
      }
      BANGER_RETURN_IF_ERROR(WriteAllFd(out_fd, obuf.data(), ob.pos, true));
    }
  }
  // Flush what the decoder still holds.
  while (pending != 0) {
    ZSTD_inBuffer ib{nullptr, 0, 0};
    ZSTD_outBuffer ob{obuf.data(), obuf.size(), 0};
    size_t r = ZSTD_decompressStream(dctx.get(), &ob, &ib);
    if (ZSTD_isError(r)) return DataLoss(in.string() + ": corrupt state file");
    BANGER_RETURN_IF_ERROR(WriteAllFd(out_fd, obuf.data(), ob.pos, true));
    if (ob.pos == 0) return DataLoss(in.string() + ": truncated state file");
    pending = r;
  }
  return OkStatus();
}

}  // namespace banger
