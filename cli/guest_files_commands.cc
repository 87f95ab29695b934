#include "cli/guest_files_commands.h"

#include <CLI/CLI.hpp>

#include <cstdio>
#include <nlohmann/json.hpp>

#include "base/files.h"
#include "cli/output.h"
#include "host/vm_runtime.h"
#include "reconciler/engine.h"
#include "spec/names.h"
#include "workspace/guest_tar.h"
#include "workspace/workspace.h"

namespace banger::cli {
namespace {

namespace fs = std::filesystem;

struct GuestRef {
  std::string sandbox;
  std::string path;
};

// "NAME:PATH" with a valid sandbox name and an absolute PATH; nothing for a
// local path (which may itself contain ':' after a '/', e.g. ./a:b).
std::optional<GuestRef> ParseGuestRef(const std::string& arg) {
  size_t colon = arg.find(':');
  if (colon == std::string::npos || colon == 0) return std::nullopt;
  std::string name = arg.substr(0, colon);
  if (name.find('/') != std::string::npos) return std::nullopt;
  return GuestRef{name, arg.substr(colon + 1)};
}

std::string Basename(const std::string& path) {
  std::string p = path;
  while (p.size() > 1 && p.back() == '/') p.pop_back();
  size_t slash = p.rfind('/');
  return slash == std::string::npos ? p : p.substr(slash + 1);
}

std::string Dirname(const std::string& path) {
  std::string p = path;
  while (p.size() > 1 && p.back() == '/') p.pop_back();
  size_t slash = p.rfind('/');
  if (slash == std::string::npos) return ".";
  return slash == 0 ? "/" : p.substr(0, slash);
}

Result<std::unique_ptr<AgentConnection>> ConnectRunning(host::Host& h, const std::string& name) {
  BANGER_ASSIGN_OR_RETURN(SandboxRecord rec, h.FindSandbox(name));
  if (h.runtime() == nullptr || !h.runtime()->Inspect(rec).alive) {
    return FailedPrecondition("sandbox " + name + " is not running");
  }
  auto conn = ConnectAgent(host::AgentEndpointOf(rec), std::chrono::steady_clock::now() + std::chrono::seconds(10));
  if (!conn) return conn.error().WithContext("connecting to the guest agent of " + name);
  return conn;
}

Status CopyIn(AgentConnection& conn, const fs::path& src, const GuestRef& dst) {
  std::error_code ec;
  fs::file_status st = fs::symlink_status(src, ec);
  if (ec || !fs::exists(st)) return NotFound(src.string() + " does not exist");
  BANGER_ASSIGN_OR_RETURN(std::string kind, workspace::GuestPathKind(conn, dst.path));
  std::string dir, name;
  // A trailing '/' names a directory (created when missing): copy into it.
  if (kind == "directory" || (kind == "missing" && dst.path.size() > 1 && dst.path.back() == '/')) {
    dir = dst.path;
    name = Basename(fs::absolute(src).lexically_normal().string());
    if (name.empty() || name == "." || name == "/") return InvalidArgument("cannot copy " + src.string() + " by that name");
  } else if (kind == "missing" || (kind == "file" && !fs::is_directory(st))) {
    dir = Dirname(dst.path);
    name = Basename(dst.path);
  } else {
    return FailedPrecondition(dst.sandbox + ":" + dst.path + " is a " + kind + "; cannot replace it with directory " +
                              src.string());
  }
  return workspace::PushArchive(conn, dir, [&](struct archive* a) { return workspace::AddLocalPath(a, src, name); });
}

Status CopyOut(AgentConnection& conn, const GuestRef& src, const fs::path& dst) {
  BANGER_ASSIGN_OR_RETURN(std::string kind, workspace::GuestPathKind(conn, src.path));
  if (kind == "missing") return NotFound(src.sandbox + ":" + src.path + " does not exist");
  std::error_code ec;
  fs::path final_path = dst;
  if (fs::is_directory(dst, ec)) final_path = dst / Basename(src.path);
  fs::path parent = final_path.parent_path().empty() ? fs::path(".") : final_path.parent_path();
  if (!fs::is_directory(parent, ec)) return NotFound(parent.string() + " is not a directory");
  if (kind == "directory" && fs::is_directory(final_path, ec)) {
    // Into an existing directory: merged, files replaced (like cp -r).
    return workspace::PullTree(conn, src.path, {"."}, final_path);
  }
  if (kind != "directory" && fs::is_directory(final_path, ec)) {
    return FailedPrecondition(final_path.string() + " is a directory; cannot replace it with a file");
  }
  // Staged next to the destination, then renamed: nothing half copied.
  BANGER_ASSIGN_OR_RETURN(fs::path staging, MakeTempDir(".banger-cp", parent));
  ScopedRemove cleanup(staging);
  std::string base = Basename(src.path);
  BANGER_RETURN_IF_ERROR(workspace::PullTree(conn, Dirname(src.path), {base}, staging));
  fs::rename(staging / base, final_path, ec);
  if (ec) return Internal("moving into " + final_path.string() + ": " + ec.message());
  return OkStatus();
}

}  // namespace

void AddGuestFilesCommands(CLI::App& app, HostOpener open_host, int& exit_code) {
  // ---- cp ----
  auto* cp = app.add_subcommand(
      "cp", "Copy files or directories between the host and a running sandbox (NAME:PATH on one side)");
  cp->footer(
      "Examples:\n"
      "  banger cp ./src web:/root/          # to /root/src in the guest\n"
      "  banger cp web:/var/log/app.log .     # to ./app.log\n"
      "  banger cp web:/etc ./etc-copy        # a directory, modes and symlinks kept\n"
      "Like docker cp: into an existing directory (or a guest path ending in '/') the source\n"
      "keeps its name, otherwise it is created under the destination's name. Ownership is not kept (files belong to the\n"
      "receiving side's user); modes, symlinks and modification times are.");
  auto* cp_src = new std::string;
  auto* cp_dst = new std::string;
  cp->add_option("SRC", *cp_src, "local path or NAME:PATH")->required();
  cp->add_option("DST", *cp_dst, "local path or NAME:PATH")->required();
  cp->callback([=, &exit_code] {
    auto src = ParseGuestRef(*cp_src);
    auto dst = ParseGuestRef(*cp_dst);
    if (src.has_value() == dst.has_value()) {
      exit_code = PrintError(InvalidArgument("exactly one of SRC and DST must be NAME:PATH (a sandbox path)"));
      return;
    }
    const GuestRef& remote = src ? *src : *dst;
    if (remote.path.empty() || remote.path.front() != '/') {
      exit_code = PrintError(InvalidArgument(remote.sandbox + ":" + remote.path + ": the guest path must be absolute"));
      return;
    }
    auto h = open_host();
    if (!h) {
      exit_code = PrintError(h.error());
      return;
    }
    auto conn = ConnectRunning(**h, remote.sandbox);
    if (!conn) {
      exit_code = PrintError(conn.error());
      return;
    }
    Status s = src ? CopyOut(**conn, *src, *cp_dst) : CopyIn(**conn, *cp_src, *dst);
    exit_code = s.ok() ? 0 : PrintError(s);
  });

  // ---- workspace ----
  auto* ws = app.add_subcommand("workspace", "Export or re-ship a sandbox's workspace (spec.workspace)");
  ws->require_subcommand(1);
  ws->footer(
      "Examples:\n"
      "  banger workspace export web > changes.patch && git apply changes.patch\n"
      "  banger workspace export web -o guest.mbox   # full mode with commits: git am guest.mbox\n"
      "  banger workspace sync web");

  auto* ex = ws->add_subcommand("export", "Print the guest's changes since shipping as a patch (the guest is not modified)");
  auto* ex_name = new std::string;
  auto* ex_base = new std::string;
  auto* ex_out = new std::string;
  ex->add_option("NAME", *ex_name, "sandbox")->required();
  ex->add_option("--base", *ex_base, "diff against this host commit instead of what was shipped");
  ex->add_option("-o,--output", *ex_out, "write the patch to FILE instead of stdout");
  ex->callback([=, &exit_code] {
    auto h = open_host();
    if (!h) {
      exit_code = PrintError(h.error());
      return;
    }
    auto rec = workspace::LoadShipRecord((*h)->WorkspacesDir(), *ex_name);
    if (!rec) {
      exit_code = PrintError(rec.error());
      return;
    }
    auto conn = ConnectRunning(**h, *ex_name);
    if (!conn) {
      exit_code = PrintError(conn.error());
      return;
    }
    auto r = workspace::Export(**conn, *rec, {.base = *ex_base});
    if (!r) {
      exit_code = PrintError(r.error());
      return;
    }
    for (const auto& w : r->warnings) std::fprintf(stderr, "warning: %s\n", w.c_str());
    if (ex_out->empty()) {
      std::fwrite(r->patch.data(), 1, r->patch.size(), stdout);
      std::fflush(stdout);
    } else {
      Status s = WriteFileAtomic(*ex_out, r->patch, 0644);
      if (!s.ok()) {
        exit_code = PrintError(s);
        return;
      }
    }
    if (r->mbox) {
      std::fprintf(stderr, "%zu commit(s) from %s; apply with git am\n", r->commits, ex_name->c_str());
    } else {
      std::fprintf(stderr, "%zu file(s) changed in %s; apply with git apply\n", r->files_changed, ex_name->c_str());
    }
    exit_code = 0;
  });

  auto* sync = ws->add_subcommand("sync", "Ship the host repository's current state into the sandbox again");
  auto* sync_name = new std::string;
  sync->add_option("NAME", *sync_name, "sandbox")->required();
  sync->callback([=, &exit_code] {
    auto h = open_host();
    if (!h) {
      exit_code = PrintError(h.error());
      return;
    }
    auto rec = (*h)->FindSandbox(*sync_name);
    if (!rec) {
      exit_code = PrintError(rec.error());
      return;
    }
    auto spec = RecordSpec(*rec);
    if (!spec) {
      exit_code = PrintError(spec.error());
      return;
    }
    if (!spec->workspace) {
      exit_code = PrintError(FailedPrecondition("sandbox " + *sync_name + " has no spec.workspace"));
      return;
    }
    auto conn = ConnectRunning(**h, *sync_name);
    if (!conn) {
      exit_code = PrintError(conn.error());
      return;
    }
    auto shipped = workspace::Ship(**conn, *sync_name, *spec->workspace, (*h)->WorkspacesDir());
    if (!shipped) {
      exit_code = PrintError(shipped.error());
      return;
    }
    std::printf("shipped %llu files (%llu bytes) of %s to %s:%s\n", static_cast<unsigned long long>(shipped->files),
                static_cast<unsigned long long>(shipped->bytes), shipped->repo_root.c_str(), sync_name->c_str(),
                shipped->guest_path.c_str());
    exit_code = 0;
  });

  auto* show = ws->add_subcommand("show", "What was shipped into a sandbox: source, origin, HEAD, baseline");
  auto* show_name = new std::string;
  auto* show_out = new std::string("table");
  show->add_option("NAME", *show_name, "sandbox")->required();
  show->add_option("-o,--output", *show_out, "table|json")->check(CLI::IsMember({"table", "json"}));
  show->callback([=, &exit_code] {
    auto h = open_host();
    if (!h) {
      exit_code = PrintError(h.error());
      return;
    }
    auto rec = workspace::LoadShipRecord((*h)->WorkspacesDir(), *show_name);
    if (!rec) {
      exit_code = PrintError(rec.error());
      return;
    }
    nlohmann::json j = {{"sandbox", rec->sandbox}, {"source", rec->repo_root}, {"path", rec->guest_path},
                        {"mode", rec->mode},       {"origin", rec->origin},     {"head", rec->head},
                        {"baseline", rec->baseline}, {"shippedAt", rec->shipped_at},
                        {"files", rec->files},     {"bytes", rec->bytes}};
    if (*show_out == "json") {
      std::printf("%s\n", j.dump(2).c_str());
    } else {
      for (auto it = j.begin(); it != j.end(); ++it) {
        std::printf("%-10s %s\n", (it.key() + ":").c_str(),
                    it->is_string() ? it->get<std::string>().c_str() : it->dump().c_str());
      }
    }
    exit_code = 0;
  });
}

}  // namespace banger::cli
