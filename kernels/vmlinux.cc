#include "kernels/vmlinux.h"

#include <archive.h>
#include <fcntl.h>
#include <sys/stat.h>
#include <unistd.h>

#include <cerrno>
#include <cstring>
#include <random>
#include <string_view>
#include <vector>

#include <spdlog/spdlog.h>

namespace banger::kernels {
namespace {

namespace fs = std::filesystem;

// A decompressed kernel larger than this is refused (decompression bombs).
constexpr uint64_t kMaxVmlinuxBytes = 1ull << 30;

constexpr uint16_t kEmX86_64 = 62;
constexpr uint32_t kPtNote = 4;
constexpr uint32_t kXenElfnotePhys32Entry = 18;

uint16_t Le16(const unsigned char* p) { return static_cast<uint16_t>(p[0] | (p[1] << 8)); }
uint32_t Le32(const unsigned char* p) {
  return static_cast<uint32_t>(p[0]) | (static_cast<uint32_t>(p[1]) << 8) |
         (static_cast<uint32_t>(p[2]) << 16) | (static_cast<uint32_t>(p[3]) << 24);
}
uint64_t Le64(const unsigned char* p) {
  return static_cast<uint64_t>(Le32(p)) | (static_cast<uint64_t>(Le32(p + 4)) << 32);
}

// Read-only file descriptor with positioned reads.
class InputFile {
 public:
  ~InputFile() {
    if (fd_ >= 0) ::close(fd_);
  }
  Status Open(const fs::path& path) {
    path_ = path;
    fd_ = ::open(path.c_str(), O_RDONLY | O_CLOEXEC);
    if (fd_ < 0) return ErrnoStatus(errno, "open " + path.string());
    struct stat st {};
    if (::fstat(fd_, &st) != 0) return ErrnoStatus(errno, "stat " + path.string());
    if (!S_ISREG(st.st_mode)) return InvalidArgument(path.string() + " is not a regular file");
    size_ = static_cast<uint64_t>(st.st_size);
    return OkStatus();
  }
  uint64_t size() const { return size_; }
  int fd() const { return fd_; }

  // Reads exactly `len` bytes at `off`; InvalidArgument if the file is shorter.
  Result<std::string> ReadAt(uint64_t off, uint64_t len) const {
    // Bounds first: `len` comes from the file's own headers (an ELF's
    // phentsize * phnum can claim 4 GiB), and must not be allocated blindly.
    BANGER_RETURN_IF_ERROR(CheckRange(off, len));
    std::string buf(len, '\0');
    BANGER_RETURN_IF_ERROR(ReadInto(off, buf.data(), len));
    return buf;
  }

  Status CheckRange(uint64_t off, uint64_t len) const {
    if (off > size_ || len > size_ - off) {
      return InvalidArgument(path_.string() + ": truncated (need " + std::to_string(len) +
                             " bytes at offset " + std::to_string(off) + ", file has " +
                             std::to_string(size_) + ")");
    }
    return OkStatus();
  }

  Status ReadInto(uint64_t off, char* buf, uint64_t len) const {
    BANGER_RETURN_IF_ERROR(CheckRange(off, len));
    uint64_t done = 0;
    while (done < len) {
      ssize_t n = ::pread(fd_, buf + done, len - done, static_cast<off_t>(off + done));
      if (n < 0) {
        if (errno == EINTR) continue;
        return ErrnoStatus(errno, "read " + path_.string());
      }
      if (n == 0) return InvalidArgument(path_.string() + ": unexpected end of file");
      done += static_cast<uint64_t>(n);
    }
    return OkStatus();
  }

 private:
  fs::path path_;
  int fd_ = -1;
  uint64_t size_ = 0;
};

// Writes a temporary file beside `target` and renames it into place on
// Commit(); removed on destruction otherwise.
class AtomicOutput {
 public:
  explicit AtomicOutput(fs::path target) : target_(std::move(target)) {}
  ~AtomicOutput() {
    if (fd_ >= 0) ::close(fd_);
    if (!committed_ && !tmp_.empty()) ::unlink(tmp_.c_str());
  }
  AtomicOutput(const AtomicOutput&) = delete;
  AtomicOutput& operator=(const AtomicOutput&) = delete;

  Status Open() {
    tmp_ = target_;
    tmp_ += ".tmp." + std::to_string(::getpid()) + "." + std::to_string(std::random_device{}());
    fd_ = ::open(tmp_.c_str(), O_WRONLY | O_CREAT | O_EXCL | O_CLOEXEC, 0644);
    if (fd_ < 0) {
      int err = errno;
      tmp_.clear();
      return ErrnoStatus(err, "create " + target_.string());
    }
    return OkStatus();
  }
  Status Write(std::string_view data) {
    while (!data.empty()) {
      ssize_t n = ::write(fd_, data.data(), data.size());
      if (n < 0) {
        if (errno == EINTR) continue;
        return ErrnoStatus(errno, "write " + tmp_.string());
      }
      data.remove_prefix(static_cast<size_t>(n));
      written_ += static_cast<uint64_t>(n);
    }
    return OkStatus();
  }
  uint64_t written() const { return written_; }
  Status Commit() {
    if (::fchmod(fd_, 0644) != 0 || ::fsync(fd_) != 0) return ErrnoStatus(errno, "sync " + tmp_.string());
    ::close(fd_);
    fd_ = -1;
    if (::rename(tmp_.c_str(), target_.c_str()) != 0) {
      return ErrnoStatus(errno, "rename " + tmp_.string() + " to " + target_.string());
    }
    committed_ = true;
    return OkStatus();
  }

 private:
  fs::path target_;
  fs::path tmp_;
  int fd_ = -1;
  uint64_t written_ = 0;
  bool committed_ = false;
};

// Checks the ELF identification and machine of the first bytes of a file.
Status CheckElfX86_64(std::string_view head, const std::string& what) {
  if (head.size() < 64 || std::memcmp(head.data(), "\x7f" "ELF", 4) != 0) {
    return InvalidArgument(what + " is not an ELF file");
  }
  const auto* p = reinterpret_cast<const unsigned char*>(head.data());
  if (p[4] != 2 || p[5] != 1) return InvalidArgument(what + " is not a 64-bit little-endian ELF");
  uint16_t machine = Le16(p + 18);
  if (machine != kEmX86_64) {
    return InvalidArgument(what + " is an ELF for machine " + std::to_string(machine) +
                           ", not x86-64");
  }
  return OkStatus();
}

KernelCompression DetectCompression(std::string_view p) {
  auto starts = [&](const char* magic, size_t n) {
    return p.size() >= n && std::memcmp(p.data(), magic, n) == 0;
  };
  if (starts("\x1f\x8b", 2)) return KernelCompression::kGzip;
  if (starts("\xfd" "7zXZ\x00", 6)) return KernelCompression::kXz;
  if (starts("\x28\xb5\x2f\xfd", 4)) return KernelCompression::kZstd;
  if (starts("\x02\x21\x4c\x18", 4)) return KernelCompression::kLz4;
  if (starts("BZh", 3)) return KernelCompression::kBzip2;
  if (starts("\x5d\x00\x00", 3)) return KernelCompression::kLzma;
  return KernelCompression::kNone;
}

struct ArchiveReader {
  archive* a = archive_read_new();
  ~ArchiveReader() { archive_read_free(a); }
};

// Decompresses `payload` into `out`. The kernel build appends the
// uncompressed size as 4 little-endian bytes to every payload except gzip's
// (whose own ISIZE trailer is the same thing). Those bytes are not part of
// the compressed stream (xz and zstd decoders reject them as a bad second
// stream), so they are cut off; the size is checked against the output.
Status Decompress(const std::string& payload, KernelCompression compression,
                  const std::string& what, AtomicOutput& out) {
  uint64_t expected = 0;
  if (payload.size() >= 4) {
    expected = Le32(reinterpret_cast<const unsigned char*>(payload.data() + payload.size() - 4));
  }
  size_t stream_size = payload.size();
  if (compression != KernelCompression::kGzip && payload.size() > 4) stream_size -= 4;
  ArchiveReader r;
  if (r.a == nullptr) return Internal("archive_read_new failed");
  archive_read_support_filter_all(r.a);
  archive_read_support_format_raw(r.a);
  if (archive_read_open_memory(r.a, payload.data(), stream_size) != ARCHIVE_OK) {
    const char* err = archive_error_string(r.a);  // may be NULL
    return InvalidArgument(what + ": cannot open " + std::string(ToString(compression)) +
                           " payload: " + (err ? err : "unreadable"));
  }
  archive_entry* entry = nullptr;
  if (archive_read_next_header(r.a, &entry) != ARCHIVE_OK) {
    const char* err = archive_error_string(r.a);
    return DataLoss(what + ": corrupt " + std::string(ToString(compression)) + " payload: " +
                    (err ? err : "unreadable"));
  }
  std::vector<char> buf(1 << 20);
  bool checked_head = false;
  std::string head;
  while (true) {
    la_ssize_t n = archive_read_data(r.a, buf.data(), buf.size());
    if (n < 0) {
      const char* err = archive_error_string(r.a);
      return DataLoss(what + ": corrupt " + std::string(ToString(compression)) +
                      " payload after " + std::to_string(out.written()) +
                      " decompressed bytes: " + (err ? err : "decompression failed"));
    }
    if (n == 0) break;
    std::string_view chunk(buf.data(), static_cast<size_t>(n));
    if (!checked_head) {
      head.append(chunk.substr(0, std::min<size_t>(chunk.size(), 64 - head.size())));
      if (head.size() >= 64) {
        BANGER_RETURN_IF_ERROR(CheckElfX86_64(head, what + "'s decompressed payload"));
        checked_head = true;
      }
    }
    BANGER_RETURN_IF_ERROR(out.Write(chunk));
    if (out.written() > kMaxVmlinuxBytes) {
      return InvalidArgument(what + ": decompressed kernel exceeds " +
                             std::to_string(kMaxVmlinuxBytes) + " bytes");
    }
  }
  if (!checked_head) {
    BANGER_RETURN_IF_ERROR(CheckElfX86_64(head, what + "'s decompressed payload"));
  }
  // Decoders verify their checksums at the end of the stream, which is why
  // it is read to the end; the recorded size catches what they cannot.
  if (out.written() != expected) {
    return DataLoss(what + ": " + std::string(ToString(compression)) + " payload decompressed to " +
                    std::to_string(out.written()) + " bytes but records " +
                    std::to_string(expected));
  }
  return OkStatus();
}

Status CopyElf(const InputFile& in, const fs::path& src, AtomicOutput& out) {
  BANGER_ASSIGN_OR_RETURN(std::string head, in.ReadAt(0, std::min<uint64_t>(64, in.size())));
  BANGER_RETURN_IF_ERROR(CheckElfX86_64(head, src.string()));
  constexpr uint64_t kChunk = 1 << 20;
  for (uint64_t off = 0; off < in.size(); off += kChunk) {
    BANGER_ASSIGN_OR_RETURN(std::string chunk,
                            in.ReadAt(off, std::min<uint64_t>(kChunk, in.size() - off)));
    BANGER_RETURN_IF_ERROR(out.Write(chunk));
  }
  return OkStatus();
}

}  // namespace

std::string_view ToString(KernelCompression c) {
  switch (c) {
    case KernelCompression::kNone: return "none";
    case KernelCompression::kGzip: return "gzip";
    case KernelCompression::kXz: return "xz";
    case KernelCompression::kZstd: return "zstd";
    case KernelCompression::kLz4: return "lz4";
    case KernelCompression::kBzip2: return "bzip2";
    case KernelCompression::kLzma: return "lzma";
  }
  return "unknown";
}

Result<bool> IsElfFile(const fs::path& path) {
  InputFile in;
  BANGER_RETURN_IF_ERROR(in.Open(path));
  if (in.size() < 4) return false;
  BANGER_ASSIGN_OR_RETURN(std::string head, in.ReadAt(0, 4));
  return std::memcmp(head.data(), "\x7f" "ELF", 4) == 0;
}

Result<BzImageInfo> ReadBzImageInfo(const fs::path& bzimage) {
  InputFile in;
  BANGER_RETURN_IF_ERROR(in.Open(bzimage));
  const std::string what = bzimage.string();
  if (in.size() < 0x250) return InvalidArgument(what + " is too small to be a bzImage");
  BANGER_ASSIGN_OR_RETURN(std::string hdr, in.ReadAt(0, 0x250));
  const auto* p = reinterpret_cast<const unsigned char*>(hdr.data());
  if (std::memcmp(p + 0x202, "HdrS", 4) != 0) {
    return InvalidArgument(what + " is not an x86 bzImage (no \"HdrS\" magic at 0x202)");
  }
  BzImageInfo info;
  info.setup_sects = p[0x1f1];
  if (info.setup_sects == 0) info.setup_sects = 4;  // boot protocol: 0 means 4
  info.boot_protocol = Le16(p + 0x206);
  if (info.boot_protocol < 0x0208) {
    return InvalidArgument(what + ": boot protocol " + std::to_string(info.boot_protocol >> 8) +
                           "." + std::to_string(info.boot_protocol & 0xff) +
                           " has no payload fields (need 2.08+)");
  }
  uint64_t pm_start = (static_cast<uint64_t>(info.setup_sects) + 1) * 512;
  info.payload_offset = pm_start + Le32(p + 0x248);
  info.payload_length = Le32(p + 0x24c);
  if (info.payload_length < 8 || info.payload_offset > in.size() ||
      info.payload_length > in.size() - info.payload_offset) {
    return InvalidArgument(what + ": payload (offset " + std::to_string(info.payload_offset) +
                           ", length " + std::to_string(info.payload_length) +
                           ") lies outside the file (" + std::to_string(in.size()) +
                           " bytes); truncated?");
  }
  char magic_buf[8];
  BANGER_RETURN_IF_ERROR(in.ReadInto(info.payload_offset, magic_buf, sizeof(magic_buf)));
  std::string_view magic(magic_buf, sizeof(magic_buf));
  info.compression = DetectCompression(magic);
  if (info.compression == KernelCompression::kNone && std::memcmp(magic_buf, "\x7f" "ELF", 4) != 0) {
    return InvalidArgument(what + ": unknown payload compression (magic " +
                           [&] {
                             std::string hex;
                             static const char* d = "0123456789abcdef";
                             for (unsigned char c : magic.substr(0, 6)) {
                               hex += d[c >> 4];
                               hex += d[c & 15];
                             }
                             return hex;
                           }() +
                           ")");
  }
  uint16_t vptr = Le16(p + 0x20e);
  if (vptr != 0 && vptr + 0x200u < in.size()) {
    auto s = in.ReadAt(vptr + 0x200u, std::min<uint64_t>(128, in.size() - vptr - 0x200u));
    if (s.ok()) {
      std::string v = *s;
      size_t end = v.find_first_of(std::string_view(" \0", 2));
      info.version = v.substr(0, end);
    }
  }
  return info;
}

Status ExtractVmlinux(const fs::path& bzimage, const fs::path& out_elf) {
  InputFile in;
  BANGER_RETURN_IF_ERROR(in.Open(bzimage));
  AtomicOutput out(out_elf);
  BANGER_ASSIGN_OR_RETURN(bool is_elf, IsElfFile(bzimage));
  if (is_elf) {
    BANGER_RETURN_IF_ERROR(out.Open());
    BANGER_RETURN_IF_ERROR(CopyElf(in, bzimage, out));
    return out.Commit();
  }
  BANGER_ASSIGN_OR_RETURN(BzImageInfo info, ReadBzImageInfo(bzimage));
  BANGER_ASSIGN_OR_RETURN(std::string payload, in.ReadAt(info.payload_offset, info.payload_length));
  BANGER_RETURN_IF_ERROR(out.Open());
  if (info.compression == KernelCompression::kNone) {
    BANGER_RETURN_IF_ERROR(CheckElfX86_64(payload, bzimage.string() + "'s payload"));
    BANGER_RETURN_IF_ERROR(out.Write(payload));
  } else {
    BANGER_RETURN_IF_ERROR(Decompress(payload, info.compression, bzimage.string(), out));
  }
  return out.Commit();
}

Result<bool> HasPvhEntry(const fs::path& elf) {
  InputFile in;
  BANGER_RETURN_IF_ERROR(in.Open(elf));
  const std::string what = elf.string();
  if (in.size() < 64) return InvalidArgument(what + " is not an ELF file");
  BANGER_ASSIGN_OR_RETURN(std::string ehdr, in.ReadAt(0, 64));
  BANGER_RETURN_IF_ERROR(CheckElfX86_64(ehdr, what));
  const auto* e = reinterpret_cast<const unsigned char*>(ehdr.data());
  uint64_t phoff = Le64(e + 32);
  uint16_t phentsize = Le16(e + 54);
  uint16_t phnum = Le16(e + 56);
  if (phentsize < 56) return InvalidArgument(what + ": bad program header size");
  BANGER_ASSIGN_OR_RETURN(std::string phdrs,
                          in.ReadAt(phoff, static_cast<uint64_t>(phentsize) * phnum));
  for (uint16_t i = 0; i < phnum; ++i) {
    const auto* ph = reinterpret_cast<const unsigned char*>(phdrs.data()) +
                     static_cast<size_t>(i) * phentsize;
    if (Le32(ph) != kPtNote) continue;
    uint64_t off = Le64(ph + 8);
    uint64_t filesz = Le64(ph + 32);
    if (filesz > (16u << 20)) return InvalidArgument(what + ": implausible PT_NOTE size");
    BANGER_ASSIGN_OR_RETURN(std::string notes, in.ReadAt(off, filesz));
    const auto* n = reinterpret_cast<const unsigned char*>(notes.data());
    size_t pos = 0;
    auto align4 = [](uint64_t v) { return (v + 3) & ~uint64_t{3}; };
    while (pos + 12 <= notes.size()) {
      uint32_t namesz = Le32(n + pos);
      uint32_t descsz = Le32(n + pos + 4);
      uint32_t type = Le32(n + pos + 8);
      uint64_t name_off = pos + 12;
      uint64_t next = name_off + align4(namesz) + align4(descsz);
      if (next > notes.size()) break;
      std::string_view name(notes.data() + name_off, namesz);
      if (!name.empty() && name.back() == '\0') name.remove_suffix(1);
      if (name == "Xen" && type == kXenElfnotePhys32Entry) return true;
      pos = static_cast<size_t>(next);
    }
  }
  return false;
}

Result<std::string> ElfKernelVersion(const fs::path& elf) {
  InputFile in;
  BANGER_RETURN_IF_ERROR(in.Open(elf));
  static constexpr std::string_view kBanner = "Linux version ";
  constexpr uint64_t kChunk = 4 << 20;
  constexpr uint64_t kOverlap = 256;
  for (uint64_t off = 0; off < in.size(); off += kChunk) {
    uint64_t len = std::min<uint64_t>(kChunk + kOverlap, in.size() - off);
    BANGER_ASSIGN_OR_RETURN(std::string data, in.ReadAt(off, len));
    size_t pos = 0;
    while ((pos = data.find(kBanner, pos)) != std::string::npos) {
      size_t start = pos + kBanner.size();
      size_t end = start;
      while (end < data.size() && data[end] != ' ' && data[end] != '\0' && end - start < 64) ++end;
      if (end > start && end < data.size() && data[end] == ' ' && data[start] >= '0' &&
          data[start] <= '9') {
        return data.substr(start, end - start);
      }
      pos = start;
    }
  }
  return NotFound(elf.string() + " has no \"Linux version\" banner");
}

}  // namespace banger::kernels
