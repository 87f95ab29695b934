// Image layers from a registry (untrusted tar, gzip or zstd bytes) applied
// under a temporary root. Beyond "no crash", the invariant that matters: no
// entry is ever created or changed outside the root. The root sits deep in a
// scratch tree whose every level is checked after each input, together with a
// sentinel file beside it, and no file in the tree may be a hard link to an
// inode outside it.
//
// Input: up to three layers separated by the line "\n--banger-layer--\n", so
// whiteouts and opaque directories meet lower layers.
#include <sys/stat.h>
#include <unistd.h>

#include <cstddef>
#include <cstdint>
#include <map>
#include <set>
#include <string>
#include <string_view>
#include <vector>

#include <spdlog/spdlog.h>

#include "fuzz/fuzz_util.h"
#include "oci/flatten.h"

using namespace banger;
namespace fs = std::filesystem;

namespace {

constexpr std::string_view kSeparator = "\n--banger-layer--\n";
constexpr int kDepth = 6;  // levels between the scratch dir and the root

struct Tree {
  fs::path top;                // scratch/t: holds the layers and the chain
  std::vector<fs::path> chain; // top/d0, top/d0/d1, ...; the root is the last
  fs::path root;
  fs::path sentinel;           // beside the root
};

const Tree& GetTree() {
  static const Tree t = [] {
    Tree t;
    t.top = fuzz::ScratchDir() / "t";
    fs::path p = t.top;
    for (int i = 0; i < kDepth; ++i) {
      p /= "d" + std::to_string(i);
      t.chain.push_back(p);
    }
    t.root = p / "root";
    t.sentinel = p / "sentinel";
    return t;
  }();
  return t;
}

// Names expected in each directory of the chain.
std::set<std::string> Listing(const fs::path& dir) {
  std::set<std::string> names;
  std::error_code ec;
  for (const auto& e : fs::directory_iterator(dir, ec)) names.insert(e.path().filename().string());
  return names;
}

void CheckNothingOutside(const Tree& t, size_t layers) {
  std::set<std::string> top_expected = {"d0"};
  for (size_t i = 0; i < layers; ++i) top_expected.insert("layer" + std::to_string(i));
  FUZZ_CHECK(Listing(t.top) == top_expected, "something was created beside the layers");
  for (int i = 0; i + 1 < kDepth; ++i) {
    FUZZ_CHECK(Listing(t.chain[i]) == std::set<std::string>{"d" + std::to_string(i + 1)},
               "something was created in " + t.chain[i].string());
  }
  FUZZ_CHECK((Listing(t.chain.back()) == std::set<std::string>{"root", "sentinel"}),
             "something was created beside the root");
  struct stat st {};
  FUZZ_CHECK(::lstat(t.sentinel.c_str(), &st) == 0 && S_ISREG(st.st_mode) && st.st_size == 8 &&
                 (st.st_mode & 07777) == 0600 && st.st_nlink == 1,
             "the sentinel beside the root was changed");
  FUZZ_CHECK(::lstat(t.root.c_str(), &st) == 0 && S_ISDIR(st.st_mode), "the root is no longer a directory");
  // Hard links: every link to an inode in the tree must be in the tree.
  std::map<std::pair<dev_t, ino_t>, nlink_t> seen;
  std::map<std::pair<dev_t, ino_t>, nlink_t> nlinks;
  std::error_code ec;
  for (auto it = fs::recursive_directory_iterator(t.root, fs::directory_options::skip_permission_denied, ec);
       !ec && it != fs::recursive_directory_iterator(); it.increment(ec)) {
    if (::lstat(it->path().c_str(), &st) != 0 || S_ISDIR(st.st_mode)) continue;
    auto key = std::make_pair(st.st_dev, st.st_ino);
    ++seen[key];
    nlinks[key] = st.st_nlink;
  }
  for (const auto& [key, count] : seen) {
    FUZZ_CHECK(count == nlinks[key], "a file in the root has " + std::to_string(nlinks[key]) +
                                         " links but only " + std::to_string(count) + " inside the root");
  }
}

}  // namespace

extern "C" int LLVMFuzzerInitialize(int*, char***) {
  spdlog::set_level(spdlog::level::off);
  return 0;
}

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  const Tree& t = GetTree();
  std::error_code ec;
  fs::remove_all(t.top, ec);
  if (fs::exists(t.top)) {
    fuzz::EmptyDir(t.top);
    fs::remove_all(t.top, ec);
  }
  fs::create_directories(t.root, ec);
  FUZZ_CHECK(!ec, "create " + t.root.string());
  fuzz::WriteFileOrDie(t.sentinel, "sentinel");
  ::chmod(t.sentinel.c_str(), 0600);

  std::string_view in(reinterpret_cast<const char*>(data), size);
  std::vector<oci::LayerFile> layers;
  while (layers.size() < 3) {
    size_t cut = layers.size() < 2 ? in.find(kSeparator) : std::string_view::npos;
    oci::LayerFile l;
    l.path = t.top / ("layer" + std::to_string(layers.size()));
    l.digest = "sha256:layer" + std::to_string(layers.size());
    fuzz::WriteFileOrDie(l.path, in.substr(0, cut));
    layers.push_back(l);
    if (cut == std::string_view::npos) break;
    in.remove_prefix(cut + kSeparator.size());
  }

  Result<oci::FlattenStats> r = oci::FlattenLayers(layers, t.root);
  if (!r.ok()) FUZZ_CHECK(!r.error().message().empty(), "refused without a message");
  CheckNothingOutside(t, layers.size());
  // The tree is always measurable (never follows a symlink out of it).
  (void)oci::TreeApparentSize(t.root);

  fuzz::EmptyDir(t.top);
  return 0;
}
