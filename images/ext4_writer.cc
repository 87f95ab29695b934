#include "images/ext4_writer.h"

#include <archive.h>
#include <archive_entry.h>
#include <ext2fs/ext2fs.h>
#include <sys/stat.h>
#include <unistd.h>

#include <chrono>
#include <cstddef>
#include <cstring>
#include <ctime>
#include <map>
#include <string>
#include <vector>

#include <spdlog/spdlog.h>

#include "base/disk_space.h"
#include "base/strings.h"
#include "images/ext2_util.h"
#include "images/ext4_builder.h"

namespace banger::images {

namespace fs = std::filesystem;
using namespace ext2;

namespace {

constexpr uint64_t kBlock = 4096;
constexpr uint32_t kNoLayer = ~0u;

uint64_t RoundUp(uint64_t v, uint64_t unit) { return (v + unit - 1) / unit * unit; }

// What becomes one ext4 inode. Hard links share one.
struct Inode {
  oci::EntryMeta meta;        // mode carries the file type
  long mtime_ns = 0;
  std::string target;         // symlinks
  ext2_ino_t ino = 0;         // regular files: allocated (and filled) at Apply
  uint64_t size = 0;
  uint32_t names = 0;         // regular files: directory entries naming it
  bool written = false;       // metadata written at Finish
};

struct Node {
  std::shared_ptr<Inode> inode;
  std::map<std::string, std::unique_ptr<Node>> children;  // directories
  uint32_t touched = kNoLayer;  // the last layer that wrote this entry or one below it
  bool is_dir() const { return S_ISDIR(inode->meta.mode); }
};

std::unique_ptr<Node> ImplicitDir() {
  auto n = std::make_unique<Node>();
  n->inode = std::make_shared<Inode>();
  n->inode->meta.mode = S_IFDIR | 0755;
  n->inode->meta.mtime = static_cast<int64_t>(::time(nullptr));
  return n;
}

}  // namespace

uint64_t StreamedDiskSize(uint64_t compressed_bytes) { return DefaultDiskSize(compressed_bytes * 4); }

struct Ext4DiskWriter::Impl {
  CommandRunner& runner;
  fs::path out;
  uint64_t size_bytes = 0;
  bool grow = false;
  ext2_filsys fs = nullptr;
  bool finished = false;

  std::unique_ptr<Node> root = ImplicitDir();
  const oci::LayerFile* layer = nullptr;
  uint32_t layer_index = kNoLayer;
  oci::FlattenStats stats;

  Impl(CommandRunner& r, fs::path o) : runner(r), out(std::move(o)) {}

  ~Impl() {
    if (fs) ext2fs_free(fs);  // abandoned: nothing is flushed
    if (!finished) ::unlink(out.c_str());
  }

  Status EntryError(std::string_view entry, std::string_view why) const {
    return oci::LayerEntryError(*layer, entry, why);
  }
  // The image is full (not the host: that stays "No space left on device").
  Status Full(const Status& s) const {
    if (s.code() != StatusCode::kResourceExhausted || IsNoSpace(s)) return s;
    return ResourceExhausted("root disk " + out.string() + " (" + HumanBytes(size_bytes) +
                             ") is full: " + s.message());
  }

  // The directory node of comps[0..n), created (as 0755 root directories) when
  // missing and `create`; NotFound when missing otherwise. Never through a
  // symlink or a non-directory.
  Result<Node*> Walk(std::string_view entry, const std::vector<std::string>& comps, size_t n,
                     bool create) {
    Node* cur = root.get();
    for (size_t i = 0; i < n; ++i) {
      auto it = cur->children.find(comps[i]);
      if (it == cur->children.end()) {
        if (!create) return NotFound("\"" + oci::JoinLayerPath(comps, i + 1) + "\" does not exist");
        it = cur->children.emplace(comps[i], ImplicitDir()).first;
      }
      Node* next = it->second.get();
      if (S_ISLNK(next->inode->meta.mode)) {
        return EntryError(entry, "path escapes the root (parent \"" + oci::JoinLayerPath(comps, i + 1) +
                                     "\" is a symlink)");
      }
      if (!next->is_dir()) {
        return EntryError(entry, "parent \"" + oci::JoinLayerPath(comps, i + 1) + "\" is not a directory");
      }
      cur = next;
    }
    return cur;
  }

  // Frees a file's inode and blocks once no name refers to it.
  Status Release(Node& node, const std::string& path) {
    for (auto& [name, child] : node.children) BANGER_RETURN_IF_ERROR(Release(*child, Join(path, name)));
    Inode& in = *node.inode;
    if (!S_ISREG(in.meta.mode) || in.ino == 0) return OkStatus();
    if (--in.names > 0) return OkStatus();
    ext2_inode_large raw;
    errcode_t err = ext2fs_read_inode_full(fs, in.ino, reinterpret_cast<ext2_inode*>(&raw), sizeof(raw));
    if (!err) err = ext2fs_punch(fs, in.ino, reinterpret_cast<ext2_inode*>(&raw), nullptr, 0, ~0ULL);
    if (!err) err = ext2fs_read_inode_full(fs, in.ino, reinterpret_cast<ext2_inode*>(&raw), sizeof(raw));
    if (!err) {
      raw.i_links_count = 0;
      raw.i_dtime = static_cast<__u32>(::time(nullptr));
      err = ext2fs_write_inode_full(fs, in.ino, reinterpret_cast<ext2_inode*>(&raw), sizeof(raw));
    }
    if (err) return Ext2Error(err, "free the blocks of /" + path);
    ext2fs_inode_alloc_stats2(fs, in.ino, -1, 0);
    in.ino = 0;
    return OkStatus();
  }

  Status Remove(Node& parent, const std::string& name, const std::string& path) {
    auto it = parent.children.find(name);
    if (it == parent.children.end()) return OkStatus();
    BANGER_RETURN_IF_ERROR(Release(*it->second, path));
    parent.children.erase(it);
    return OkStatus();
  }

  // Empties `dir` of what lower layers put there (an opaque whiteout).
  Status CleanOpaque(Node& dir, const std::string& path) {
    for (auto it = dir.children.begin(); it != dir.children.end();) {
      std::string cpath = Join(path, it->first);
      if (it->second->touched != layer_index) {
        BANGER_RETURN_IF_ERROR(Release(*it->second, cpath));
        it = dir.children.erase(it);
        continue;
      }
      if (it->second->is_dir()) BANGER_RETURN_IF_ERROR(CleanOpaque(*it->second, cpath));
      ++it;
    }
    return OkStatus();
  }

  bool WrittenInLayer(const std::vector<std::string>& comps) {
    Node* cur = root.get();
    for (const std::string& c : comps) {
      auto it = cur->children.find(c);
      if (it == cur->children.end()) return false;
      cur = it->second.get();
    }
    return cur->touched == layer_index;
  }

  void Touch(const std::vector<std::string>& comps) {
    Node* cur = root.get();
    cur->touched = layer_index;
    for (const std::string& c : comps) {
      auto it = cur->children.find(c);
      if (it == cur->children.end()) return;
      cur = it->second.get();
      cur->touched = layer_index;
    }
  }

  // A new inode holding the entry's contents (metadata follows at Finish).
  Status WriteFile(archive* a, archive_entry* e, std::string_view entry, Inode& in) {
    ext2_ino_t ino = 0;
    errcode_t err = ext2fs_new_inode(fs, EXT2_ROOT_INO, LINUX_S_IFREG | 0600, nullptr, &ino);
    if (err) return Full(Ext2Error(err, "allocate an inode for " + std::string(entry)));
    ext2fs_inode_alloc_stats2(fs, ino, +1, 0);
    in.ino = ino;
    in.names = 1;
    ext2_inode_large raw;
    std::memset(&raw, 0, sizeof(raw));
    raw.i_mode = LINUX_S_IFREG | 0600;
    raw.i_links_count = 1;
    SetExtraIsize(fs, raw);
    if (ext2fs_has_feature_extents(fs->super)) {
      ext2_extent_handle_t h = nullptr;
      err = ext2fs_extent_open2(fs, ino, reinterpret_cast<ext2_inode*>(&raw), &h);
      if (err) return Ext2Error(err, "start the extent tree of " + std::string(entry));
      ext2fs_extent_free(h);
    }
    err = ext2fs_write_new_inode(fs, ino, reinterpret_cast<ext2_inode*>(&raw));
    if (err) return Ext2Error(err, "write the inode of " + std::string(entry));
    ext2_file_t f = nullptr;
    err = ext2fs_file_open(fs, ino, EXT2_FILE_WRITE, &f);
    if (err) return Ext2Error(err, "open " + std::string(entry));
    auto close = [&](Status s) -> Status {
      errcode_t cerr = ext2fs_file_close(f);
      if (s.ok() && cerr) s = Ext2Error(cerr, "write " + std::string(entry));
      return Full(s);
    };
    const void* data = nullptr;
    size_t len = 0;
    la_int64_t offset = 0;
    uint64_t pos = 0;
    while (true) {
      int r = archive_read_data_block(a, &data, &len, &offset);
      if (r == ARCHIVE_EOF) break;
      if (r < ARCHIVE_WARN) {
        return close(DataLoss("layer " + layer->digest + " entry \"" + std::string(entry) +
                              "\": " + oci::ArchiveErrorOf(a, r)));
      }
      if (static_cast<uint64_t>(offset) != pos) {
        err = ext2fs_file_llseek(f, static_cast<__u64>(offset), EXT2_SEEK_SET, nullptr);
        if (err) return close(Ext2Error(err, "seek in " + std::string(entry)));
        pos = static_cast<uint64_t>(offset);
      }
      const char* p = static_cast<const char*>(data);
      while (len > 0) {
        unsigned int wrote = 0;
        err = ext2fs_file_write(f, p, static_cast<unsigned int>(len), &wrote);
        if (err) return close(Ext2Error(err, "write " + std::string(entry)));
        p += wrote;
        len -= wrote;
        pos += wrote;
        stats.file_bytes += wrote;
      }
    }
    uint64_t size = archive_entry_size_is_set(e) ? static_cast<uint64_t>(archive_entry_size(e)) : pos;
    err = ext2fs_file_set_size2(f, size);
    if (err) return close(Ext2Error(err, "size " + std::string(entry)));
    in.size = size;
    return close(OkStatus());
  }

  Status ApplyEntry(archive* a, archive_entry* e) {
    const char* raw_c = archive_entry_pathname(e);
    std::string raw = raw_c ? raw_c : "";
    std::string_view entry = raw;
    BANGER_ASSIGN_OR_RETURN(std::vector<std::string> comps, oci::SplitLayerPath(*layer, entry, raw));
    for (const std::string& c : comps) {
      if (c.size() > EXT2_NAME_LEN) return EntryError(entry, "a name is longer than 255 bytes");
    }
    ++stats.entries;
    mode_t type = archive_entry_filetype(e);
    const char* hardlink = archive_entry_hardlink(e);

    if (comps.empty()) {
      if (type == AE_IFDIR && !hardlink) {
        root->inode->meta = oci::EntryMetaOf(e);
        root->inode->mtime_ns = archive_entry_mtime_nsec(e);
        root->touched = layer_index;
        return OkStatus();
      }
      return EntryError(entry, "refusing to replace the root directory");
    }
    const std::string name = comps.back();
    const std::string path = oci::JoinLayerPath(comps, comps.size());

    if (StartsWith(name, oci::kWhiteoutPrefix)) {
      if (name == oci::kOpaqueMarker) {
        BANGER_ASSIGN_OR_RETURN(Node * dir, Walk(entry, comps, comps.size() - 1, /*create=*/true));
        return CleanOpaque(*dir, oci::JoinLayerPath(comps, comps.size() - 1));
      }
      std::string target = name.substr(oci::kWhiteoutPrefix.size());
      if (target.empty() || target == "." || target == "..") {
        return EntryError(entry, "path escapes the root (invalid whiteout)");
      }
      std::vector<std::string> tcomps = comps;
      tcomps.back() = target;
      if (WrittenInLayer(tcomps)) return OkStatus();  // only lower layers are whited out
      auto parent = Walk(entry, comps, comps.size() - 1, /*create=*/false);
      if (!parent) {
        if (parent.error().code() == StatusCode::kNotFound) return OkStatus();
        return parent.error();
      }
      return Remove(**parent, target, oci::JoinLayerPath(tcomps, tcomps.size()));
    }

    BANGER_ASSIGN_OR_RETURN(Node * parent, Walk(entry, comps, comps.size() - 1, /*create=*/true));
    bool new_is_dir = !hardlink && type == AE_IFDIR;
    auto existing = parent->children.find(name);
    if (existing != parent->children.end() && !(new_is_dir && existing->second->is_dir())) {
      BANGER_RETURN_IF_ERROR(Release(*existing->second, path));
      parent->children.erase(existing);
      existing = parent->children.end();
    }

    auto node = std::make_unique<Node>();
    if (hardlink) {
      BANGER_ASSIGN_OR_RETURN(std::vector<std::string> tcomps, oci::SplitLayerPath(*layer, entry, hardlink));
      if (tcomps.empty()) return EntryError(entry, "hard link to the root directory");
      auto tparent = Walk(entry, tcomps, tcomps.size() - 1, /*create=*/false);
      if (!tparent && tparent.error().code() != StatusCode::kNotFound) {
        return tparent.error().WithContext("hard link target \"" + std::string(hardlink) + "\"");
      }
      Node* target = nullptr;
      if (tparent) {
        auto it = (*tparent)->children.find(tcomps.back());
        if (it != (*tparent)->children.end()) target = it->second.get();
      }
      if (!target) {
        return EntryError(entry, "hard link target \"" + std::string(hardlink) + "\" does not exist");
      }
      if (target->is_dir()) return EntryError(entry, "hard link to a directory");
      if (S_ISREG(target->inode->meta.mode)) {
        node->inode = target->inode;
        ++node->inode->names;
      } else {
        // Symlinks, devices, fifos: a second inode with the same metadata.
        node->inode = std::make_shared<Inode>(*target->inode);
      }
    } else {
      auto in = std::make_shared<Inode>();
      in->meta = oci::EntryMetaOf(e);
      in->mtime_ns = archive_entry_mtime_nsec(e);
      switch (type) {
        case AE_IFREG:
          BANGER_RETURN_IF_ERROR(WriteFile(a, e, entry, *in));
          break;
        case AE_IFDIR:
          if (existing != parent->children.end()) {
            // A directory again: new metadata, same contents.
            existing->second->inode = std::move(in);
            Touch(comps);
            return OkStatus();
          }
          break;
        case AE_IFLNK: {
          const char* target = archive_entry_symlink(e);
          if (!target || !*target) return EntryError(entry, "symlink without target");
          if (std::strlen(target) >= kBlock) return EntryError(entry, "symlink target longer than 4095 bytes");
          in->target = target;
          break;
        }
        case AE_IFCHR:
        case AE_IFBLK:
        case AE_IFIFO:
          break;
        case AE_IFSOCK:
          spdlog::debug("layer {} entry \"{}\": skipping socket", layer->digest, entry);
          Touch(comps);
          return OkStatus();
        default:
          return EntryError(entry, "unsupported entry type " + std::to_string(type));
      }
      node->inode = std::move(in);
    }
    parent->children[name] = std::move(node);
    Touch(comps);
    return OkStatus();
  }

  // --- Finish -------------------------------------------------------------

  Status WriteMeta(ext2_ino_t ino, Inode& in, const std::string& path, bool keep_links) {
    ext2_inode_large raw;
    errcode_t err = ext2fs_read_inode_full(fs, ino, reinterpret_cast<ext2_inode*>(&raw), sizeof(raw));
    if (err) return Ext2Error(err, "read inode of /" + path);
    raw.i_mode = static_cast<__u16>((raw.i_mode & S_IFMT) | (in.meta.mode & 07777));
    SetOwner(raw, in.meta.uid, in.meta.gid);
    raw.i_atime = raw.i_mtime = raw.i_ctime = static_cast<__u32>(in.meta.mtime);
    constexpr size_t kTimesExtraEnd = offsetof(ext2_inode_large, i_crtime);
    if (static_cast<size_t>(EXT2_GOOD_OLD_INODE_SIZE + raw.i_extra_isize) >= kTimesExtraEnd) {
      __u32 extra = static_cast<__u32>(in.mtime_ns) << 2;
      raw.i_atime_extra = raw.i_mtime_extra = raw.i_ctime_extra = extra;
    }
    if (!keep_links) raw.i_links_count = static_cast<__u16>(in.names);
    err = ext2fs_write_inode_full(fs, ino, reinterpret_cast<ext2_inode*>(&raw), sizeof(raw));
    if (err) return Ext2Error(err, "write inode of /" + path);
    if (!in.meta.xattrs.empty()) BANGER_RETURN_IF_ERROR(WriteXattrs(fs, ino, in.meta.xattrs, path));
    in.written = true;
    return OkStatus();
  }

  Status Populate(Node& dir, ext2_ino_t dir_ino, const std::string& path, uint64_t& bytes) {
    for (auto& [name, child] : dir.children) {
      std::string cpath = Join(path, name);
      Inode& in = *child->inode;
      uint32_t mode = in.meta.mode;
      if (S_ISDIR(mode)) {
        bytes += kBlock;
        ext2_ino_t ino = 0;
        if (dir_ino == EXT2_ROOT_INO && name == "lost+found") {  // mkfs made it
          errcode_t err = ext2fs_lookup(fs, dir_ino, name.c_str(), static_cast<int>(name.size()),
                                        nullptr, &ino);
          if (err) return Ext2Error(err, "look up /lost+found");
        } else {
          errcode_t err = ext2fs_new_inode(fs, dir_ino, LINUX_S_IFDIR | 0755, nullptr, &ino);
          if (!err) err = ext2fs_mkdir(fs, dir_ino, ino, nullptr);
          if (err) return Ext2Error(err, "create directory /" + cpath);
          BANGER_RETURN_IF_ERROR(Link(fs, dir_ino, name, ino, EXT2_FT_DIR, cpath));
        }
        BANGER_RETURN_IF_ERROR(Populate(*child, ino, cpath, bytes));
        BANGER_RETURN_IF_ERROR(WriteMeta(ino, in, cpath, /*keep_links=*/true));
      } else if (dir_ino == EXT2_ROOT_INO && name == "lost+found") {
        return InvalidArgument("the image's /lost+found is not a directory; an ext4 root disk "
                               "needs that name for its own lost+found directory");
      } else if (S_ISREG(mode)) {
        BANGER_RETURN_IF_ERROR(Link(fs, dir_ino, name, in.ino, EXT2_FT_REG_FILE, cpath));
        if (!in.written) {
          bytes += RoundUp(in.size, kBlock);
          BANGER_RETURN_IF_ERROR(WriteMeta(in.ino, in, cpath, /*keep_links=*/false));
        }
      } else if (S_ISLNK(mode)) {
        bytes += kBlock;
        ext2_ino_t ino = 0;
        errcode_t err = ext2fs_new_inode(fs, dir_ino, LINUX_S_IFLNK | 0777, nullptr, &ino);
        if (!err) err = ext2fs_symlink(fs, dir_ino, ino, nullptr, in.target.data());
        if (err) return Ext2Error(err, "create symlink /" + cpath);
        BANGER_RETURN_IF_ERROR(Link(fs, dir_ino, name, ino, EXT2_FT_SYMLINK, cpath));
        BANGER_RETURN_IF_ERROR(WriteMeta(ino, in, cpath, /*keep_links=*/true));
      } else {
        bytes += kBlock;
        BANGER_RETURN_IF_ERROR(CreateNode(fs, dir_ino, name, cpath, in.meta));
      }
    }
    return OkStatus();
  }
};

Ext4DiskWriter::Ext4DiskWriter(std::unique_ptr<Impl> impl) : impl_(std::move(impl)) {}
Ext4DiskWriter::~Ext4DiskWriter() = default;

Result<std::unique_ptr<Ext4DiskWriter>> Ext4DiskWriter::Create(CommandRunner& runner,
                                                              const fs::path& out,
                                                              uint64_t size_bytes, bool grow) {
  BANGER_ASSIGN_OR_RETURN(size_bytes, CheckedDiskSize(size_bytes, out));
  BANGER_RETURN_IF_ERROR(FormatExt4(runner, out, size_bytes, size_bytes / 16384, nullptr));
  auto impl = std::make_unique<Impl>(runner, out);
  impl->size_bytes = size_bytes;
  impl->grow = grow;
  FsHandle h;
  BANGER_RETURN_IF_ERROR(Open(out, /*write=*/true, h));
  impl->fs = h.get();
  h.get() = nullptr;
  return std::unique_ptr<Ext4DiskWriter>(new Ext4DiskWriter(std::move(impl)));
}

Status Ext4DiskWriter::Apply(const oci::LayerFile& layer, const oci::FlattenProgressFn& progress) {
  Impl& m = *impl_;
  if (!m.fs) return FailedPrecondition("the disk writer for " + m.out.string() + " is closed");
  m.layer = &layer;
  m.layer_index = m.layer_index == kNoLayer ? 0 : m.layer_index + 1;
  return oci::ForEachLayerEntry(layer, progress,
                                [&](archive* a, archive_entry* e) { return m.ApplyEntry(a, e); });
}

Result<oci::FlattenStats> Ext4DiskWriter::Finish() {
  Impl& m = *impl_;
  if (!m.fs) return FailedPrecondition("the disk writer for " + m.out.string() + " is closed");
  auto started = std::chrono::steady_clock::now();
  uint64_t bytes = kBlock;
  BANGER_RETURN_IF_ERROR(m.Full(m.Populate(*m.root, EXT2_ROOT_INO, "", bytes)));
  BANGER_RETURN_IF_ERROR(m.WriteMeta(EXT2_ROOT_INO, *m.root->inode, "", /*keep_links=*/true));
  errcode_t err = ext2fs_close_free(&m.fs);
  m.fs = nullptr;
  if (err) return m.Full(Ext2Error(err, "write " + m.out.string()));
  uint64_t want = DefaultDiskSize(bytes);
  if (m.grow && want > m.size_bytes) {
    CommandSpec spec;
    spec.argv = {"resize2fs", "-f", m.out.string(), std::to_string(want / 1024) + "K"};
    spec.timeout = std::chrono::minutes(10);
    auto grown = RunChecked(m.runner, spec);
    if (!grown) return grown.error().WithContext("grow root disk " + m.out.string());
    spdlog::debug("grew {} from {} to {} for a {} tree", m.out.string(), HumanBytes(m.size_bytes),
                  HumanBytes(want), HumanBytes(bytes));
    m.size_bytes = want;
  }
  m.finished = true;
  spdlog::debug("wrote {} from the layers: {} entries, {} of files; names and metadata in {} ms",
                m.out.string(), m.stats.entries, HumanBytes(m.stats.file_bytes),
                std::chrono::duration_cast<std::chrono::milliseconds>(
                    std::chrono::steady_clock::now() - started).count());
  return m.stats;
}

}  // namespace banger::images
