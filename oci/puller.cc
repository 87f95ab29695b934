#include "oci/puller.h"

#include <dirent.h>

#include <algorithm>
#include <condition_variable>
#include <cstdlib>
#include <mutex>
#include <thread>

#include <spdlog/spdlog.h>

#include "base/strings.h"
#include "oci/blob_store.h"
#include "oci/flatten.h"
#include "oci/http.h"
#include "oci/manifest.h"
#include "oci/reference.h"
#include "oci/registry_client.h"

namespace banger::oci {

namespace fs = std::filesystem;

namespace {

Status CheckEmptyDir(const fs::path& dir) {
  DIR* d = ::opendir(dir.c_str());
  if (!d) return ErrnoStatus(errno, "open destination " + dir.string());
  bool empty = true;
  while (dirent* de = ::readdir(d)) {
    std::string n = de->d_name;
    if (n != "." && n != "..") {
      empty = false;
      break;
    }
  }
  ::closedir(d);
  if (!empty) return FailedPrecondition("destination " + dir.string() + " is not empty");
  return OkStatus();
}

void Report(const PullOptions& o, std::string phase, std::string item, uint64_t done,
            uint64_t total) {
  if (!o.progress) return;
  static std::mutex report_mu;  // layer downloads report from several threads
  std::lock_guard<std::mutex> lock(report_mu);
  PullProgress p;
  p.phase = std::move(phase);
  p.item = std::move(item);
  p.done_bytes = done;
  p.total_bytes = total;
  o.progress(p);
}

}  // namespace

Result<std::chrono::seconds> EffectiveStallTimeout(std::chrono::seconds configured) {
  if (configured.count() > 0) return configured;
  const char* env = std::getenv("BANGER_REGISTRY_STALL_TIMEOUT");
  if (env == nullptr || *env == '\0') return StallPolicy{}.budget;
  std::string v(env);
  bool digits = v.size() <= 4 && v.find_first_not_of("0123456789") == std::string::npos;
  long n = digits ? std::stol(v) : 0;
  if (n < 1 || n > 3600) {
    return InvalidArgument("BANGER_REGISTRY_STALL_TIMEOUT: '" + v.substr(0, 32) +
                           "' is not a number of seconds from 1 to 3600");
  }
  return std::chrono::seconds(n);
}

Result<PulledImage> PullAndFlatten(const std::string& reference, const fs::path& dest_dir,
                                   const PullOptions& options) {
  BANGER_ASSIGN_OR_RETURN(Reference ref, ParseReference(reference));
  if (options.blob_dir.empty()) return InvalidArgument("PullOptions.blob_dir is empty");
  BANGER_RETURN_IF_ERROR(CheckEmptyDir(dest_dir));
  BlobStore cache(options.blob_dir);
  BANGER_RETURN_IF_ERROR(cache.Init());

  std::unique_ptr<HttpClient> http = MakeCurlHttpClient();
  RegistryClientOptions ro;
  ro.plain_http = options.plain_http;
  ro.docker_config = options.docker_config;
  ro.retry.max_attempts = options.max_attempts;
  ro.retry.initial_backoff = options.initial_backoff;
  ro.clock = options.clock;
  BANGER_ASSIGN_OR_RETURN(ro.stall.budget, EffectiveStallTimeout(options.stall_timeout));
  RegistryClient client(*http, ref, ro);

  PulledImage out;
  out.reference = ref.ToString();
  const std::string what = ref.ToString();

  Report(options, "manifest", what, 0, 0);
  BANGER_ASSIGN_OR_RETURN(FetchedManifest top, client.GetManifest(ref.ManifestSelector(), cache));
  out.bytes_downloaded += top.bytes_transferred;
  BANGER_ASSIGN_OR_RETURN(Manifest manifest, ParseManifest(top.body, top.media_type, what));
  out.manifest_digest = top.digest;
  if (manifest.is_index) {
    out.index_digest = top.digest;
    BANGER_ASSIGN_OR_RETURN(Descriptor pick, SelectPlatform(manifest, options.platform, what));
    BANGER_ASSIGN_OR_RETURN(FetchedManifest child, client.GetManifest(pick.digest, cache));
    out.bytes_downloaded += child.bytes_transferred;
    BANGER_ASSIGN_OR_RETURN(manifest, ParseManifest(child.body, pick.media_type, what + " (" +
                                                        pick.PlatformString() + ")"));
    if (manifest.is_index) {
      return InvalidArgument(what + ": nested image indexes are not supported");
    }
    out.manifest_digest = child.digest;
  }

  for (const Descriptor& l : manifest.layers) {
    if (!IsSupportedLayerType(l.media_type)) {
      return InvalidArgument(what + ": layer " + l.digest + " has unsupported media type \"" +
                             l.media_type + "\"");
    }
  }

  BANGER_ASSIGN_OR_RETURN(uint64_t config_bytes, client.FetchBlob(manifest.config, cache));
  out.bytes_downloaded += config_bytes;
  BANGER_ASSIGN_OR_RETURN(out.config_json, cache.Read(manifest.config.digest));
  if (options.reuse_check) {
    BANGER_ASSIGN_OR_RETURN(bool reuse, options.reuse_check(out.manifest_digest));
    if (reuse) {
      for (const Descriptor& l : manifest.layers) out.layer_digests.push_back(l.digest);
      out.flattened = false;
      spdlog::info("{} ({}): layers not needed, the caller reuses what they built", what,
                   out.manifest_digest);
      return out;
    }
  }

  // Layers download over up to `parallel_layers` connections (each worker has
  // its own client: a client is one connection and not thread-safe) and are
  // applied here, in order, as soon as each one and all below it are cached.
  const size_t n = manifest.layers.size();
  std::vector<LayerFile> layers;
  layers.reserve(n);
  for (const Descriptor& l : manifest.layers) {
    layers.push_back(LayerFile{cache.PathFor(l.digest), l.digest, l.media_type});
    out.layer_digests.push_back(l.digest);
  }
  struct Slot {
    bool done = false;
    Status status;
    uint64_t bytes = 0;
  };
  std::mutex mu;
  std::condition_variable cv;
  std::vector<Slot> slots(n);
  size_t next = 0;
  bool stop = false;
  auto fetch_worker = [&]() {
    std::unique_ptr<HttpClient> wh;
    std::unique_ptr<RegistryClient> wc;
    for (;;) {
      size_t i;
      {
        std::lock_guard<std::mutex> lock(mu);
        if (stop || next >= n) return;
        i = next++;
      }
      const Descriptor& l = manifest.layers[i];
      Result<uint64_t> got = [&]() -> Result<uint64_t> {
        if (cache.Has(l.digest, l.size > 0 ? l.size : -1)) return uint64_t{0};
        if (!wc) {
          wh = MakeCurlHttpClient();
          wc = std::make_unique<RegistryClient>(*wh, ref, ro);
          std::lock_guard<std::mutex> lock(mu);  // workers copy one at a time; nobody writes it now
          wc->ShareAuthFrom(client);
        }
        return wc->FetchBlob(l, cache, [&](uint64_t done, uint64_t t) {
          Report(options, "blob", l.digest, done, t);
        });
      }();
      {
        std::lock_guard<std::mutex> lock(mu);
        slots[i].done = true;
        if (got) {
          slots[i].bytes = *got;
        } else {
          slots[i].status = got.error();
          stop = true;  // start no further download
        }
      }
      cv.notify_all();
    }
  };
  size_t workers = std::min<size_t>(n, static_cast<size_t>(std::max(1, options.parallel_layers)));
  std::vector<std::thread> threads;
  for (size_t w = 0; w < workers; ++w) threads.emplace_back(fetch_worker);
  auto join = [&]() {
    {
      std::lock_guard<std::mutex> lock(mu);
      stop = true;
    }
    for (auto& t : threads) t.join();
    threads.clear();
  };

  auto apply_all = [&]() -> Result<FlattenStats> {
    // The tree opens up front; a caller's sink (a disk to format) only once
    // there is a layer to write.
    std::unique_ptr<LayerSink> applier;
    if (!options.layer_sink) {
      BANGER_ASSIGN_OR_RETURN(applier, LayerApplier::Open(dest_dir, &out.manifest));
    }
    uint64_t compressed = 0;
    for (const Descriptor& l : manifest.layers) compressed += l.size > 0 ? static_cast<uint64_t>(l.size) : 0;
    for (size_t i = 0; i < n; ++i) {
      Slot slot;
      {
        std::unique_lock<std::mutex> lock(mu);
        cv.wait(lock, [&] { return slots[i].done; });
        slot = slots[i];
      }
      BANGER_RETURN_IF_ERROR(slot.status);
      if (!applier) {
        BANGER_ASSIGN_OR_RETURN(applier, options.layer_sink(compressed));
      }
      const Descriptor& l = manifest.layers[i];
      uint64_t total = l.size > 0 ? static_cast<uint64_t>(l.size) : 0;
      if (slot.bytes > 0) spdlog::debug("{}: fetched layer {} ({} bytes)", what, l.digest, slot.bytes);
      Report(options, "blob", l.digest, total, total);
      out.bytes_downloaded += slot.bytes;
      BANGER_RETURN_IF_ERROR(applier->Apply(layers[i], [&](const LayerFile& layer, uint64_t done, uint64_t t) {
        Report(options, "flatten", layer.digest, done, t);
      }));
    }
    if (!applier) {  // an image without layers
      BANGER_ASSIGN_OR_RETURN(applier, options.layer_sink(compressed));
    }
    return applier->Finish();
  };
  Result<FlattenStats> applied = apply_all();
  join();
  if (!applied) return applied.error();
  FlattenStats stats = *applied;
  if (options.layer_sink) {
    out.tree_bytes = stats.file_bytes;
  } else {
    BANGER_ASSIGN_OR_RETURN(out.tree_bytes, TreeApparentSize(dest_dir));
  }
  spdlog::info("pulled {} ({}): {} layers, {} entries, {} downloaded", what, out.manifest_digest,
               layers.size(), stats.entries, HumanBytes(out.bytes_downloaded));
  return out;
}

}  // namespace banger::oci
