#include "images/ext4_builder.h"

#include <fcntl.h>
#include <sys/stat.h>
#include <unistd.h>

#include <algorithm>
#include <chrono>
#include <cerrno>
#include <string>
#include <vector>

#include <spdlog/spdlog.h>

#include "base/strings.h"
#include "images/ext4_fixup.h"

namespace banger::images {

namespace fs = std::filesystem;

namespace {
constexpr uint64_t kBlock = 4096;
constexpr uint64_t kMiB = 1ull << 20;

uint64_t RoundUp(uint64_t v, uint64_t unit) { return (v + unit - 1) / unit * unit; }
}  // namespace

Result<TreeUsage> MeasureTree(const fs::path& tree) {
  struct stat root_st;
  if (::lstat(tree.c_str(), &root_st) != 0) return ErrnoStatus(errno, "stat " + tree.string());
  if (!S_ISDIR(root_st.st_mode)) return InvalidArgument(tree.string() + " is not a directory");
  TreeUsage usage;
  usage.bytes = kBlock;
  usage.entries = 1;
  std::error_code ec;
  fs::recursive_directory_iterator it(tree, fs::directory_options::none, ec);
  if (ec) return ErrnoStatus(ec.value(), "read directory " + tree.string());
  for (; it != fs::recursive_directory_iterator(); it.increment(ec)) {
    if (ec) return ErrnoStatus(ec.value(), "read directory " + tree.string());
    struct stat st;
    if (::lstat(it->path().c_str(), &st) != 0) {
      return ErrnoStatus(errno, "stat " + it->path().string());
    }
    ++usage.entries;
    if (S_ISREG(st.st_mode)) {
      // Sparse files only need their allocated blocks.
      uint64_t allocated = static_cast<uint64_t>(st.st_blocks) * 512;
      usage.bytes += RoundUp(std::min<uint64_t>(static_cast<uint64_t>(st.st_size), allocated),
                             kBlock);
    } else {
      usage.bytes += kBlock;
    }
  }
  if (ec) return ErrnoStatus(ec.value(), "read directory " + tree.string());
  return usage;
}

uint64_t DefaultDiskSize(uint64_t tree_bytes) {
  uint64_t padded = tree_bytes + tree_bytes / 4;
  return RoundUp(std::max(padded, kMinDefaultDiskBytes), kMiB);
}

Result<uint64_t> CheckedDiskSize(uint64_t size_bytes, const fs::path& out) {
  size_bytes = RoundUp(size_bytes, kBlock);
  if (size_bytes < 8 * kMiB) {
    return InvalidArgument("disk size " + FormatByteSize(size_bytes) + " for " + out.string() +
                           " is below the 8MiB minimum");
  }
  return size_bytes;
}

Status FormatExt4(CommandRunner& runner, const fs::path& out, uint64_t size_bytes, uint64_t inodes,
                  const fs::path* tree) {
  int fd = ::open(out.c_str(), O_WRONLY | O_CREAT | O_EXCL | O_CLOEXEC, 0600);
  if (fd < 0) return ErrnoStatus(errno, "create " + out.string());
  if (::ftruncate(fd, static_cast<off_t>(size_bytes)) != 0) {
    int err = errno;
    ::close(fd);
    ::unlink(out.c_str());
    return ErrnoStatus(err, "size " + out.string() + " to " + FormatByteSize(size_bytes));
  }
  ::close(fd);
  CommandSpec spec;
  spec.argv = {"mkfs.ext4", "-q", "-F"};
  if (tree) spec.argv.insert(spec.argv.end(), {"-d", tree->string()});
  spec.argv.insert(spec.argv.end(), {"-L", "rootfs",
                                     "-E", "root_owner=0:0,nodiscard",
                                     "-b", std::to_string(kBlock),
                                     "-N", std::to_string(inodes),
                                     out.string(), std::to_string(size_bytes / 1024) + "k"});
  spec.timeout = std::chrono::minutes(30);
  spdlog::debug("formatting {} ({}){}", out.string(), HumanBytes(size_bytes),
                tree ? " from " + tree->string() : "");
  auto result = RunChecked(runner, spec);
  if (!result) {
    ::unlink(out.c_str());
    return result.error().WithContext("build root disk " + out.string());
  }
  return OkStatus();
}

Status BuildExt4(CommandRunner& runner, const fs::path& tree, const fs::path& out,
                 uint64_t size_bytes, const oci::TreeManifest* manifest) {
  BANGER_ASSIGN_OR_RETURN(TreeUsage usage, MeasureTree(tree));
  if (size_bytes == 0) size_bytes = DefaultDiskSize(usage.bytes);
  BANGER_ASSIGN_OR_RETURN(size_bytes, CheckedDiskSize(size_bytes, out));
  if (size_bytes < usage.bytes) {
    return InvalidArgument("disk size " + HumanBytes(size_bytes) + " is smaller than the " +
                           HumanBytes(usage.bytes) + " the tree " + tree.string() + " needs");
  }

  // Enough inodes for the tree even when it is made of many small files.
  uint64_t inodes = std::max<uint64_t>(size_bytes / 16384, usage.entries * 2 + 1024);
  BANGER_RETURN_IF_ERROR(FormatExt4(runner, out, size_bytes, inodes, &tree));
  if (manifest == nullptr && ::geteuid() == 0) return OkStatus();
  auto started = std::chrono::steady_clock::now();
  static const oci::TreeManifest kEmpty;
  auto fixed = FixupExt4(out, manifest ? *manifest : kEmpty, OwnTreeFixupOptions());
  if (!fixed) {
    ::unlink(out.c_str());
    return fixed.error().WithContext("set ownership in root disk " + out.string());
  }
  spdlog::debug("fixup of {}: {} entries, {} changed, {} created in {} ms", out.string(),
                fixed->visited, fixed->changed, fixed->created,
                std::chrono::duration_cast<std::chrono::milliseconds>(
                    std::chrono::steady_clock::now() - started).count());
  return OkStatus();
}

}  // namespace banger::images
