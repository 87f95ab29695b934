// Workspaces (docs/workspaces.md): a host git repository shipped into a
// sandbox (spec.workspace, `banger workspace sync`) and the guest's changes
// exported back as a patch (`banger workspace export`).
//
// Shipping builds the "baseline": a git tree of exactly what was shipped
// (HEAD plus uncommitted changes, plus untracked files when asked), written
// into the host repository's object database and kept alive by the ref
// refs/banger/workspaces/<sandbox>. Export reads the guest tree back, builds
// its tree the same way and diffs the two with libgit2, so the guest needs no
// git. In full mode, commits made in the guest's .git since the shipped HEAD
// come back as an mbox for `git am`.
#pragma once

#include <cstdint>
#include <filesystem>
#include <functional>
#include <memory>
#include <string>
#include <vector>

#include "base/status.h"
#include "providers/agent_client.h"
#include "reconciler/ports.h"
#include "spec/sandbox_spec.h"

namespace banger::workspace {

/// The name of the file shipped at the top of the guest directory (JSON:
/// source, origin, head, baseline, mode, shippedAt). Never exported.
inline constexpr char kGuestMarker[] = ".banger-workspace.json";

/// What was shipped, kept on the host in <state>/workspaces/<sandbox>.json.
struct ShipRecord {
  std::string sandbox;
  std::string repo_root;      // the working tree shipped (top level of the repository)
  std::string guest_path;
  std::string mode;           // tracked | full
  bool include_untracked = false;
  std::string origin;         // remote "origin" URL, "" when none
  std::string head;           // HEAD commit id, "" for a repository without commits
  std::string baseline;       // tree id of what was shipped
  std::string shipped_at;     // RFC 3339 UTC
  uint64_t files = 0;
  uint64_t bytes = 0;
};

/// The spec.workspace a PATH argument (e.g. of `banger run`) stands for:
/// `source` made absolute, checked to be a directory inside a git working
/// tree; the other fields keep their defaults unless given.
Result<WorkspaceSpec> WorkspaceSpecForPath(const std::filesystem::path& source,
                                           WorkspaceMode mode = WorkspaceMode::kTracked,
                                           bool include_untracked = false);

/// Ships `ws` into the guest behind `conn` and records it under
/// `records_dir`. Files already in the guest directory are overwritten;
/// files the guest has and the shipment lacks are left alone.
Result<ShipRecord> Ship(AgentConnection& conn, const std::string& sandbox, const WorkspaceSpec& ws,
                        const std::filesystem::path& records_dir);

/// The record of the last shipment into `sandbox`.
Result<ShipRecord> LoadShipRecord(const std::filesystem::path& records_dir, const std::string& sandbox);

struct ExportOptions {
  std::string base;  // commit-ish in the host repository; "" = what was shipped
};

struct ExportResult {
  std::string patch;        // a diff for `git apply`, or an mbox for `git am`
  bool mbox = false;        // commits (full mode, new commits in the guest)
  size_t commits = 0;
  size_t files_changed = 0;
  std::vector<std::string> warnings;  // for the user's stderr
};

/// Everything changed in the guest since the shipment (the guest is only read).
Result<ExportResult> Export(AgentConnection& conn, const ShipRecord& record, const ExportOptions& options);

/// The engine's ship_workspace step: connects to the sandbox's agent and Ships.
class AgentWorkspaceShipper : public WorkspaceShipper {
 public:
  using SocketOf = std::function<AgentEndpoint(const SandboxRecord&)>;
  AgentWorkspaceShipper(std::filesystem::path records_dir, SocketOf socket_of)
      : records_dir_(std::move(records_dir)), socket_of_(std::move(socket_of)) {}
  Status Ship(const SandboxRecord& record, const SandboxSpec& spec) override;
  /// Removes <records_dir>/<sandbox>.json (the host repository's ref stays).
  void Forget(const std::string& sandbox) override;

 private:
  std::filesystem::path records_dir_;
  SocketOf socket_of_;
};

}  // namespace banger::workspace
