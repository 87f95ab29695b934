#include "host/volume_files.h"

#include <fcntl.h>
#include <spdlog/spdlog.h>
#include <sys/stat.h>
#include <unistd.h>

#include <system_error>

#include "base/disk_space.h"
#include "base/files.h"
#include "base/strings.h"
#include "images/ext4_builder.h"
#include "images/ext4_fixup.h"

namespace banger {
namespace {

namespace fs = std::filesystem;

class HostVolumeFiles final : public VolumeFiles {
 public:
  HostVolumeFiles(CommandRunner& runner, fs::path dir) : runner_(runner), dir_(std::move(dir)) {}

  std::string PathOf(const std::string& sandbox, const std::string& name) const override {
    return (dir_ / sandbox / (name + ".ext4")).string();
  }

  Result<BuiltVolume> Create(const VolumeBuild& b) override {
    if (b.sandbox.empty() || b.name.empty() || b.sandbox.find('/') != std::string::npos ||
        b.name.find('/') != std::string::npos || b.sandbox[0] == '.' || b.name[0] == '.') {
      return InvalidArgument("invalid volume name \"" + b.sandbox + "/" + b.name + "\"");
    }
    BANGER_RETURN_IF_ERROR(MakePrivateDir(dir_));
    const fs::path sandbox_dir = dir_ / b.sandbox;
    BANGER_RETURN_IF_ERROR(MakePrivateDir(sandbox_dir));
    const fs::path final_path = PathOf(b.sandbox, b.name);
    const fs::path partial = sandbox_dir / ("." + b.name + ".ext4.partial");
    // A leftover of an interrupted creation is never attached: start afresh.
    BANGER_RETURN_IF_ERROR(RemoveAll(partial));
    BANGER_ASSIGN_OR_RETURN(fs::path staging, MakeTempDir(".staging-" + b.name + "-", sandbox_dir));
    ScopedRemove remove_staging(staging);
    BuiltVolume out;
    out.path = final_path.string();
    fs::path tree = staging / "empty";
    if (!b.seed_rootfs.empty()) {
      auto seeded = ExtractSeed(b, staging, out.seed_found);
      if (!seeded) {
        return NoSpaceError(seeded.error(), sandbox_dir,
                            "seeding volume " + b.sandbox + "/" + b.name + " from its image (debugfs)");
      }
      tree = std::move(*seeded);
    } else if (::mkdir(tree.c_str(), 0755) != 0) {
      return ErrnoStatus(errno, "create " + tree.string());
    }
    if (!out.seed_found) {
      tree = staging / "empty";
      if (::mkdir(tree.c_str(), 0755) != 0) return ErrnoStatus(errno, "create " + tree.string());
    }
    // The seed's owners, modes, xattrs and devices come from the image itself
    // (debugfs rdump as a user writes everything as that user and skips
    // devices), so a user's volume equals root's. The volume's root stays 0:0.
    oci::TreeManifest seed_manifest;
    const bool seeded = !b.seed_rootfs.empty() && out.seed_found;
    if (seeded) {
      std::string rel = b.seed_path;
      while (!rel.empty() && rel.front() == '/') rel.erase(0, 1);
      BANGER_ASSIGN_OR_RETURN(seed_manifest, images::ReadExt4Manifest(b.seed_rootfs, rel));
      seed_manifest.erase("");
      if (::geteuid() != 0) BANGER_RETURN_IF_ERROR(MakeOwnerReadable(tree));
    }
    BANGER_RETURN_IF_ERROR(NoSpaceError(images::BuildExt4(runner_, tree, partial, b.size_bytes,
                                                          seeded ? &seed_manifest : nullptr),
                                        sandbox_dir, "creating volume " + b.sandbox + "/" + b.name + " (mkfs.ext4 -d)")
                               .WithContext("build volume " + b.sandbox + "/" + b.name));
    if (::chmod(partial.c_str(), 0600) != 0) {
      Status s = ErrnoStatus(errno, "chmod " + partial.string());
      ::unlink(partial.c_str());
      return s;
    }
    if (::rename(partial.c_str(), final_path.c_str()) != 0) {
      Status s = ErrnoStatus(errno, "publish " + final_path.string());
      ::unlink(partial.c_str());
      return s;
    }
    return out;
  }

  Status Grow(const std::string& path, uint64_t size_bytes) override {
    struct stat st{};
    if (::stat(path.c_str(), &st) != 0) return ErrnoStatus(errno, "volume file " + path);
    if (static_cast<uint64_t>(st.st_size) >= size_bytes) return OkStatus();
    if (::truncate(path.c_str(), static_cast<off_t>(size_bytes)) != 0) {
      return ErrnoStatus(errno, "grow " + path + " to " + FormatByteSize(size_bytes));
    }
    return OkStatus();
  }

  Status Remove(const std::string& path) override {
    fs::path p(path);
    if (::unlink(p.c_str()) != 0 && errno != ENOENT) return ErrnoStatus(errno, "remove " + path);
    // The sandbox's directory goes with its last volume (rmdir fails while
    // anything else is in it, which is fine).
    ::rmdir(p.parent_path().c_str());
    return OkStatus();
  }

 private:
  // Adds owner read/write (and search for directories) below `tree`, so mkfs
  // can read what rdump wrote with the image's restrictive modes; the exact
  // modes are restored from the image by the fixup.
  static Status MakeOwnerReadable(const fs::path& tree) {
    std::error_code ec;
    for (auto it = fs::recursive_directory_iterator(tree, ec);
         !ec && it != fs::recursive_directory_iterator(); it.increment(ec)) {
      struct stat st{};
      if (::lstat(it->path().c_str(), &st) != 0 || S_ISLNK(st.st_mode)) continue;
      mode_t want = st.st_mode | (S_ISDIR(st.st_mode) ? 0700 : 0600);
      if (want != st.st_mode && ::chmod(it->path().c_str(), want & 07777) != 0) {
        return ErrnoStatus(errno, "chmod " + it->path().string());
      }
    }
    if (ec) return ErrnoStatus(ec.value(), "read " + tree.string());
    return OkStatus();
  }

  // Copies the image's files at b.seed_path into staging/seed/<base> and
  // returns that directory. `found` is false when the image has nothing there.
  Result<fs::path> ExtractSeed(const VolumeBuild& b, const fs::path& staging, bool& found) {
    const fs::path into = staging / "seed";
    if (::mkdir(into.c_str(), 0700) != 0) return ErrnoStatus(errno, "create " + into.string());
    CommandSpec spec;
    // mountPath is validated to [A-Za-z0-9/._+@-] (spec/loader.cc), so it
    // needs no quoting inside debugfs's request line. The destination comes
    // from the state directory: one debugfs would split or unquote is refused
    // rather than written somewhere else.
    if (into.string().find_first_of(" \t\n\"'\\") != std::string::npos) {
      return FailedPrecondition("cannot seed volume " + b.sandbox + "/" + b.name + ": the state directory path " +
                                into.string() + " holds a space, quote or backslash, which debugfs's request "
                                "line would split; use a state directory without them");
    }
    spec.argv = {"debugfs", "-R", "rdump " + b.seed_path + " " + into.string(), b.seed_rootfs};
    spec.timeout = std::chrono::minutes(30);
    BANGER_ASSIGN_OR_RETURN(CommandOutput r, RunChecked(runner_, spec));
    const fs::path tree = into / fs::path(b.seed_path).filename();
    std::error_code ec;
    fs::file_status st = fs::symlink_status(tree, ec);
    if (ec || !fs::exists(st)) {
      // debugfs reports a missing path on stderr and exits 0.
      if (r.stderr_data.find("not found") != std::string::npos) {
        found = false;
        return tree;
      }
      return Internal("seeding from the image: debugfs did not extract " + b.seed_path + ": " +
                      std::string(Trim(r.stderr_data)));
    }
    if (fs::is_symlink(st)) {
      return FailedPrecondition("seedFrom image: " + b.seed_path +
                                " is a symbolic link in the image; use the directory it points to as mountPath");
    }
    if (!fs::is_directory(st)) {
      return FailedPrecondition("seedFrom image: " + b.seed_path + " is not a directory in the image");
    }
    found = true;
    return tree;
  }

  CommandRunner& runner_;
  fs::path dir_;
};

}  // namespace

std::unique_ptr<VolumeFiles> MakeVolumeFiles(CommandRunner& runner, const std::filesystem::path& volumes_dir) {
  return std::make_unique<HostVolumeFiles>(runner, volumes_dir);
}

}  // namespace banger
