// Image layers (untrusted tar, gzip or zstd bytes) written into an ext4 disk
// by images::Ext4DiskWriter, against oci::FlattenLayers on the same input:
// what the tree path refuses as an escape the writer refuses too, every
// refusal has a message and leaves no disk, and when both accept, the disk
// holds exactly the tree's paths (plus the devices the tree only records),
// each with the type the tree has, read back with libext2fs. Beyond "no
// crash": no corrupt directory entry, no entry lost or invented by the
// in-memory model of the layer rules.
//
// Input: as flatten_fuzz (up to three layers separated by the line
// "\n--banger-layer--\n"); its seeds are this target's too. The disk is a copy
// of one formatted once by the real mkfs.ext4 (the CommandRunner below hands
// out copies instead of formatting each time).
#include <sys/stat.h>
#include <unistd.h>

#include <cstddef>
#include <cstdint>
#include <map>
#include <string>
#include <string_view>
#include <vector>

#include <spdlog/spdlog.h>

#include "base/command_runner.h"
#include "fuzz/fuzz_util.h"
#include "images/ext4_builder.h"
#include "images/ext4_fixup.h"
#include "images/ext4_writer.h"
#include "oci/flatten.h"

using namespace banger;
namespace fs = std::filesystem;

namespace {

constexpr std::string_view kSeparator = "\n--banger-layer--\n";
constexpr uint64_t kDiskBytes = 8ull << 20;

// Stands in for mkfs.ext4: copies the disk formatted at start-up.
class CopyingRunner final : public CommandRunner {
 public:
  explicit CopyingRunner(fs::path formatted) : formatted_(std::move(formatted)) {}
  Result<CommandOutput> Run(const CommandSpec& spec) override {
    FUZZ_CHECK(!spec.argv.empty() && spec.argv[0] == "mkfs.ext4", "unexpected command");
    fs::path out = spec.argv[spec.argv.size() - 2];
    std::error_code ec;
    fs::copy_file(formatted_, out, fs::copy_options::overwrite_existing, ec);
    FUZZ_CHECK(!ec, "copy the formatted disk: " + ec.message());
    return CommandOutput{};
  }
  Result<ProcessIdentity> StartDetached(const CommandSpec&) override {
    return Internal("not used");
  }

 private:
  fs::path formatted_;
};

const fs::path& Formatted() {
  static const fs::path p = [] {
    fs::path f = fuzz::ScratchDir() / "formatted.ext4";
    auto runner = MakePosixCommandRunner();
    Status s = images::FormatExt4(*runner, f, kDiskBytes, kDiskBytes / 16384, nullptr);
    FUZZ_CHECK(s.ok(), "format the template disk: " + s.ToString());
    return f;
  }();
  return p;
}

// Tree-relative path -> file type, for the tree and the devices its manifest
// records.
std::map<std::string, uint32_t> TreeEntries(const fs::path& root, const oci::TreeManifest& m) {
  std::map<std::string, uint32_t> out;
  std::error_code ec;
  for (auto it = fs::recursive_directory_iterator(root, fs::directory_options::skip_permission_denied, ec);
       !ec && it != fs::recursive_directory_iterator(); it.increment(ec)) {
    struct stat st {};
    if (::lstat(it->path().c_str(), &st) != 0) continue;
    out[it->path().lexically_relative(root).string()] = st.st_mode & S_IFMT;
  }
  for (const auto& [path, meta] : m) {
    if (S_ISCHR(meta.mode) || S_ISBLK(meta.mode)) out[path] = meta.mode & S_IFMT;
  }
  return out;
}

}  // namespace

extern "C" int LLVMFuzzerInitialize(int*, char***) {
  spdlog::set_level(spdlog::level::off);
  (void)Formatted();
  return 0;
}

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  fs::path top = fuzz::ScratchDir() / "t";
  std::error_code ec;
  if (fs::exists(top)) fuzz::EmptyDir(top);
  fs::remove_all(top, ec);
  fs::create_directories(top / "root", ec);
  FUZZ_CHECK(!ec, "create " + top.string());

  std::string_view in(reinterpret_cast<const char*>(data), size);
  std::vector<oci::LayerFile> layers;
  while (layers.size() < 3) {
    size_t cut = layers.size() < 2 ? in.find(kSeparator) : std::string_view::npos;
    oci::LayerFile l;
    l.path = top / ("layer" + std::to_string(layers.size()));
    l.digest = "sha256:layer" + std::to_string(layers.size());
    fuzz::WriteFileOrDie(l.path, in.substr(0, cut));
    layers.push_back(l);
    if (cut == std::string_view::npos) break;
    in.remove_prefix(cut + kSeparator.size());
  }

  oci::TreeManifest manifest;
  Result<oci::FlattenStats> flat = oci::FlattenLayers(layers, top / "root", {}, &manifest);

  CopyingRunner runner(Formatted());
  fs::path disk = top / "disk.ext4";
  Status wrote = [&]() -> Status {
    BANGER_ASSIGN_OR_RETURN(auto w, images::Ext4DiskWriter::Create(runner, disk, kDiskBytes, false));
    for (const auto& l : layers) BANGER_RETURN_IF_ERROR(w->Apply(l));
    return w->Finish().status();
  }();
  if (!wrote.ok()) {
    FUZZ_CHECK(!wrote.message().empty(), "refused without a message");
    FUZZ_CHECK(!fs::exists(disk), "a failed disk was left behind");
  }
  if (wrote.code() == StatusCode::kResourceExhausted) {  // an 8 MiB disk is too small: fine
    fuzz::EmptyDir(top);
    return 0;
  }
  // Whatever the tree path refuses as an escape, the writer refuses too. (It
  // may refuse more: a name ext4 cannot hold, a device used as a directory.)
  if (!flat.ok() && flat.error().message().find("escapes the root") != std::string::npos) {
    FUZZ_CHECK(!wrote.ok(), "the disk writer accepts layers the tree path refuses: " +
                                flat.error().ToString());
  }
  if (wrote.ok() && flat.ok()) {
    auto read = images::ReadExt4Manifest(disk);
    FUZZ_CHECK(read.ok(), "the written disk cannot be read back: " + read.status().ToString());
    std::map<std::string, uint32_t> on_disk;
    for (const auto& [path, meta] : *read) {
      if (path.empty() || (path == "lost+found" && !manifest.count(path))) continue;
      on_disk[path] = meta.mode & S_IFMT;
    }
    std::map<std::string, uint32_t> in_tree = TreeEntries(top / "root", manifest);
    std::string diff;
    for (const auto& [p, t] : in_tree) {
      auto it = on_disk.find(p);
      if (it == on_disk.end()) diff += " /" + p + " missing from the disk;";
      else if (it->second != t) diff += " /" + p + " has another type;";
    }
    for (const auto& [p, t] : on_disk) {
      if (!in_tree.count(p)) diff += " /" + p + " only on the disk;";
    }
    FUZZ_CHECK(diff.empty(), "the disk's entries differ from the tree's:" + diff);
  }
  fuzz::EmptyDir(top);
  return 0;
}
