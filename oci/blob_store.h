// Content-addressed blob cache: <blob_dir>/sha256/<hex>. A blob is published
// (renamed into place) only after its sha256 (and size, when known) matched,
// so a present file is a verified blob.
#pragma once

#include <cstdint>
#include <filesystem>
#include <memory>
#include <set>
#include <string>
#include <string_view>

#include "base/status.h"

namespace banger::oci {

class BlobWriter;

class BlobStore {
 public:
  explicit BlobStore(std::filesystem::path blob_dir) : dir_(std::move(blob_dir)) {}

  /// Creates blob_dir and blob_dir/sha256 (0700).
  Status Init() const;
  std::filesystem::path PathFor(std::string_view digest) const;
  /// True when the verified blob is present (and has `size` bytes when size >= 0).
  bool Has(std::string_view digest, int64_t size = -1) const;
  /// Reads a (small) blob fully and re-verifies its digest.
  Result<std::string> Read(std::string_view digest) const;
  /// Verifies `data` against `digest` and publishes it.
  Status Put(std::string_view digest, std::string_view data) const;
  /// Starts a streaming write to a unique temporary file beside the final path.
  Result<std::unique_ptr<BlobWriter>> NewWriter(std::string_view digest) const;

  const std::filesystem::path& dir() const { return dir_; }

 private:
  std::filesystem::path dir_;
};

/// Streams one blob to a temp file while hashing it. Destroying an uncommitted
/// writer removes the temp file.
class BlobWriter {
 public:
  ~BlobWriter();
  BlobWriter(const BlobWriter&) = delete;
  BlobWriter& operator=(const BlobWriter&) = delete;

  Status Append(std::string_view data);
  /// Discards what was written (the server ignored a Range request).
  Status Restart();
  uint64_t size() const { return size_; }
  /// Verifies digest (and size when expected_size >= 0), fsyncs and renames
  /// into place. On mismatch returns DataLoss naming the digest and removes
  /// the temp file; nothing is published.
  Status Commit(int64_t expected_size);

 private:
  friend class BlobStore;
  BlobWriter() = default;
  struct Hasher;
  std::string digest_;
  std::filesystem::path final_path_;
  std::filesystem::path temp_path_;
  int fd_ = -1;
  uint64_t size_ = 0;
  std::unique_ptr<Hasher> hasher_;
  bool done_ = false;
};

/// Removes every blob in blob_dir/sha256 whose digest is not in keep_digests,
/// and abandoned temporary files older than an hour.
Status PruneBlobs(const std::filesystem::path& blob_dir,
                  const std::set<std::string>& keep_digests);

/// The digests an image needs, read from the cache: the manifest itself, and
/// for an image manifest its config and layers; for an index, every entry
/// present in the cache and what those reference.
Result<std::set<std::string>> ReferencedDigests(const std::filesystem::path& blob_dir,
                                                std::string_view manifest_digest);

}  // namespace banger::oci
