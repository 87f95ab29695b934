#include "cli/artifact_commands.h"

#include <CLI/CLI.hpp>

#include <cstdio>
#include <iostream>
#include <nlohmann/json.hpp>

#include "base/strings.h"
#include "cli/output.h"
#include "images/catalog.h"
#include "images/image_service.h"
#include "kernels/kernel_service.h"

namespace banger::cli {
namespace {

int Fail(const Status& s) { return PrintError(s); }

nlohmann::json ImageJson(const ImageRecord& r) {
  return {{"name", r.name},         {"id", r.id},          {"source", r.source},
          {"digest", r.digest},     {"rootfs", r.rootfs_path}, {"sizeBytes", r.size_bytes},
          {"createdAt", r.created_at}};
}

nlohmann::json KernelJson(const KernelRecord& r) {
  return {{"name", r.name},          {"id", r.id},           {"source", r.source},
          {"version", r.version},    {"kernel", r.kernel_path}, {"vmlinux", r.vmlinux_path},
          {"initrd", r.initrd_path}, {"modules", r.modules_dir}, {"createdAt", r.created_at}};
}

}  // namespace

void AddArtifactCommands(CLI::App& app, HostOpener open_host, int& exit_code) {
  auto with_host = [open_host, &exit_code](const std::function<int(host::Host&)>& body) {
    auto h = open_host();
    if (!h) {
      exit_code = Fail(h.error());
      return;
    }
    exit_code = body(**h);
  };

  // ---- image ----
  auto* image = app.add_subcommand("image", "Manage root disk images");
  image->footer("Examples:\n  banger image ls\n  banger image pull debian-bookworm");
  image->require_subcommand(1);

  auto* pull = image->add_subcommand("pull", "Pull an image from the catalog or an OCI registry");

  pull->footer("Examples:\n  banger image pull busybox\n  banger image pull docker.io/library/alpine:3.19 --name alpine");
  auto* pull_ref = new std::string();
  auto* pull_name = new std::string();
  auto* pull_size = new std::string();
  pull->add_option("ref", *pull_ref, "Catalog name or OCI reference (registry/repo:tag)")->required();
  pull->add_option("--name", *pull_name, "Name to install it under");
  pull->add_option("--size", *pull_size, "Root disk size (e.g. 4GiB); default max(1.25 x tree, 1GiB)");
  pull->callback([=] {
    with_host([=](host::Host& h) {
      images::PullRequest req;
      req.name = *pull_name;
      if (!pull_size->empty()) {
        auto sz = ParseByteSize(*pull_size);
        if (!sz) return Fail(sz.error().WithContext("--size"));
        req.disk_size_bytes = *sz;
      }
      // Pulling what is already installed from the same source is a no-op.
      std::string name = !req.name.empty() ? req.name
                         : h.images().catalog().Find(*pull_ref) != nullptr
                             ? *pull_ref
                             : images::DeriveImageName(*pull_ref);
      if (auto existing = h.images().Find(name); existing.ok() && existing->has_value() &&
                                                         (*existing)->source == *pull_ref) {
        std::printf("✓ image %s: already installed%s\n", name.c_str(),
                    (*existing)->digest.empty() ? "" : (" (" + (*existing)->digest + ")").c_str());
        return 0;
      }
      ProgressLine bar(*pull_ref);
      req.progress = [&bar](const oci::PullProgress& p) { bar.Update(p.phase, p.done_bytes, p.total_bytes); };
      auto r = h.images().Pull(*pull_ref, req);
      bar.Done();
      if (!r) return Fail(r.error());
      // Recipe-built images have no digest: say how they came to be instead.
      const std::string what = r->digest.empty() ? "built from its recipe" : r->digest;
      std::printf("✓ image %s: %s (%s)\n", r->name.c_str(), what.c_str(), HumanBytes(r->size_bytes).c_str());
      return 0;
    });
  });

  auto* ls = image->add_subcommand("ls", "List installed images");

  ls->footer("Examples:\n  banger image ls\n  banger image ls -o json");
  auto* ls_out = new std::string("table");
  ls->add_option("-o,--output", *ls_out, "table|json")->check(CLI::IsMember({"table", "json"}));
  ls->callback([=] {
    with_host([=](host::Host& h) {
      auto list = h.images().List();
      if (!list) return Fail(list.error());
      if (*ls_out == "json") {
        nlohmann::json items = nlohmann::json::array();
        for (const auto& r : *list) items.push_back(ImageJson(r));
        std::cout << nlohmann::json{{"items", items}}.dump(2) << "\n";
        return 0;
      }
      std::vector<std::vector<std::string>> rows = {{"NAME", "SOURCE", "DIGEST", "SIZE", "AGE"}};
      int64_t now = h.clock().NowUnix();
      for (const auto& r : *list) {
        rows.push_back({r.name, r.source, r.digest.substr(0, 19), HumanBytes(r.size_bytes), Age(r.created_at, now)});
      }
      std::cout << RenderTable(rows);
      return 0;
    });
  });

  auto* rm = image->add_subcommand("rm", "Remove images (refused while a sandbox uses them)");

  rm->footer("Example:\n  banger image rm alpine");
  auto* rm_names = new std::vector<std::string>();
  rm->add_option("names", *rm_names, "Image names")->required();
  rm->callback([=] {
    with_host([=](host::Host& h) {
      int rc = 0;
      for (const auto& n : *rm_names) {
        Status s = h.images().Remove(n);
        if (!s.ok()) {
          std::fprintf(stderr, "✗ image %s: %s\n", n.c_str(), s.message().c_str());
          rc = 1;
        } else {
          std::printf("✓ image %s: removed\n", n.c_str());
        }
      }
      return rc;
    });
  });

  auto* imp = image->add_subcommand("import", "Build an image from a local directory or tar archive");

  imp->footer("Example:\n  banger image import ./rootfs.tar.gz --name mytools --size 2GiB");
  auto* imp_path = new std::string();
  auto* imp_name = new std::string();
  auto* imp_size = new std::string();
  imp->add_option("path", *imp_path, "Directory or tar archive (any compression)")->required();
  imp->add_option("--name", *imp_name, "Image name")->required();
  imp->add_option("--size", *imp_size, "Root disk size");
  imp->callback([=] {
    with_host([=](host::Host& h) {
      uint64_t size = 0;
      if (!imp_size->empty()) {
        auto sz = ParseByteSize(*imp_size);
        if (!sz) return Fail(sz.error().WithContext("--size"));
        size = *sz;
      }
      auto r = h.images().Import(*imp_path, *imp_name, size);
      if (!r) return Fail(r.error());
      std::printf("✓ image %s: imported (%s)\n", r->name.c_str(), HumanBytes(r->size_bytes).c_str());
      return 0;
    });
  });

  auto* prune = image->add_subcommand("prune", "Remove cached blobs, cached root disks and leftovers no image uses");

  prune->footer("Example:\n  banger image prune");
  prune->callback([=] {
    with_host([=](host::Host& h) {
      auto r = h.images().Prune();
      if (!r) return Fail(r.error());
      std::printf("✓ pruned %zu staging leftovers, %zu orphaned images, %zu cached disks, %llu blobs (%s freed)\n",
                  r->removed_staging.size(), r->removed_orphans.size(), r->removed_disks.size(),
                  static_cast<unsigned long long>(r->removed_blobs), HumanBytes(r->freed_bytes).c_str());
      return 0;
    });
  });

  auto* catalog = image->add_subcommand("catalog", "List the image catalog");

  catalog->footer("Example:\n  banger image catalog");
  catalog->callback([=] {
    with_host([=](host::Host& h) {
      std::vector<std::vector<std::string>> rows = {{"NAME", "INSTALLED", "DESCRIPTION"}};
      const auto& cat = h.images().catalog();
      for (const auto& n : cat.Names()) {
        const auto* e = cat.Find(n);
        rows.push_back({n, h.images().IsPresent(n) ? "yes" : "no", e ? e->description : ""});
      }
      std::cout << RenderTable(rows);
      return 0;
    });
  });

  // ---- kernel ----
  auto* kernel = app.add_subcommand("kernel", "Manage guest kernels");
  kernel->footer("Examples:\n  banger kernel ls\n  banger kernel pull default");
  kernel->require_subcommand(1);
  auto* kpull = kernel->add_subcommand("pull", "Install a kernel from the kernel catalog");
  kpull->footer("Examples:\n  banger kernel pull default\n  banger kernel pull debian-6.1");
  auto* kpull_name = new std::string();
  kpull->add_option("name", *kpull_name, "Catalog name (or \"default\")")->required();
  kpull->callback([=] {
    with_host([=](host::Host& h) {
      ProgressLine bar("kernel " + *kpull_name);
      auto r = h.kernels().Pull(*kpull_name, [&bar](uint64_t d, uint64_t t) { bar.Update("", d, t); });
      bar.Done();
      if (!r) return Fail(r.error());
      std::printf("✓ kernel %s: %s\n", r->name.c_str(), r->version.c_str());
      return 0;
    });
  });
  auto* kimp = kernel->add_subcommand("import", "Install a kernel from local files");
  kimp->footer("Example:\n  banger kernel import --name mine --kernel ./bzImage --modules ./lib/modules/6.1.0");
  auto* kimp_name = new std::string();
  auto* kimp_kernel = new std::string();
  auto* kimp_modules = new std::string();
  auto* kimp_initrd = new std::string();
  kimp->add_option("--name", *kimp_name, "Kernel name")->required();
  kimp->add_option("--kernel", *kimp_kernel, "bzImage or vmlinux")->required();
  kimp->add_option("--modules", *kimp_modules, "Modules directory (lib/modules/<version>)");
  kimp->add_option("--initrd", *kimp_initrd, "Initrd to keep with the kernel");
  kimp->callback([=] {
    with_host([=](host::Host& h) {
      kernels::ImportKernelRequest req;
      req.name = *kimp_name;
      req.kernel = *kimp_kernel;
      req.modules_dir = *kimp_modules;
      req.initrd = *kimp_initrd;
      auto r = h.kernels().Import(req);
      if (!r) return Fail(r.error());
      std::printf("✓ kernel %s: %s%s\n", r->name.c_str(), r->version.c_str(),
                  r->vmlinux_path.empty() ? "" : " (vmlinux extracted)");
      return 0;
    });
  });
  auto* kls = kernel->add_subcommand("ls", "List installed kernels");
  kls->footer("Example:\n  banger kernel ls -o json");
  auto* kls_out = new std::string("table");
  kls->add_option("-o,--output", *kls_out, "table|json")->check(CLI::IsMember({"table", "json"}));
  kls->callback([=] {
    with_host([=](host::Host& h) {
      auto list = h.kernels().List();
      if (!list) return Fail(list.error());
      if (*kls_out == "json") {
        nlohmann::json items = nlohmann::json::array();
        for (const auto& r : *list) items.push_back(KernelJson(r));
        std::cout << nlohmann::json{{"items", items}}.dump(2) << "\n";
        return 0;
      }
      std::vector<std::vector<std::string>> rows = {{"NAME", "VERSION", "SOURCE", "VMLINUX", "AGE"}};
      int64_t now = h.clock().NowUnix();
      for (const auto& r : *list) {
        rows.push_back({r.name, r.version, r.source, r.vmlinux_path.empty() ? "no" : "yes", Age(r.created_at, now)});
      }
      std::cout << RenderTable(rows);
      return 0;
    });
  });
  auto* krm = kernel->add_subcommand("rm", "Remove kernels (refused while a sandbox uses them)");
  krm->footer("Example:\n  banger kernel rm mine");
  auto* krm_names = new std::vector<std::string>();
  krm->add_option("names", *krm_names, "Kernel names")->required();
  krm->callback([=] {
    with_host([=](host::Host& h) {
      int rc = 0;
      for (const auto& n : *krm_names) {
        Status s = h.kernels().Remove(n);
        if (!s.ok()) {
          std::fprintf(stderr, "✗ kernel %s: %s\n", n.c_str(), s.message().c_str());
          rc = 1;
        } else {
          std::printf("✓ kernel %s: removed\n", n.c_str());
        }
      }
      return rc;
    });
  });
}

}  // namespace banger::cli
