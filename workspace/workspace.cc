#include "workspace/workspace.h"

#include <sys/stat.h>

#include <algorithm>
#include <chrono>
#include <ctime>
#include <map>
#include <mutex>
#include <nlohmann/json.hpp>

#include "base/files.h"
#include "base/libgit2.h"
#include "base/strings.h"
#include "workspace/guest_tar.h"

namespace banger::workspace {
namespace {

namespace fs = std::filesystem;
using Json = nlohmann::json;

void InitGit() { git::Init(); }

Status GitError(const std::string& what) { return Internal(what + ": " + git::LastError()); }

using Repo = git::Ptr<git_repository, git_repository_free>;
using Index = git::Ptr<git_index, git_index_free>;
using Tree = git::Ptr<git_tree, git_tree_free>;
using Commit = git::Ptr<git_commit, git_commit_free>;
using Diff = git::Ptr<git_diff, git_diff_free>;
using StatusList = git::Ptr<git_status_list, git_status_list_free>;
using Remote = git::Ptr<git_remote, git_remote_free>;
using Reference = git::Ptr<git_reference, git_reference_free>;
using Object = git::Ptr<git_object, git_object_free>;
using Walk = git::Ptr<git_revwalk, git_revwalk_free>;

struct Buf {
  git_buf b = GIT_BUF_INIT;
  ~Buf() { git_buf_dispose(&b); }
  std::string str() const { return std::string(b.ptr ? b.ptr : "", b.size); }
};

std::string OidText(const git_oid& oid) {
  char s[GIT_OID_HEXSZ + 1];
  git_oid_tostr(s, sizeof(s), &oid);
  return s;
}

std::string NowRfc3339() {
  std::time_t t = std::time(nullptr);
  std::tm tm{};
  ::gmtime_r(&t, &tm);
  char buf[32];
  std::strftime(buf, sizeof(buf), "%Y-%m-%dT%H:%M:%SZ", &tm);
  return buf;
}

Result<fs::path> OpenWorkingTree(const fs::path& source, Repo& repo) {
  InitGit();
  if (git::Fill(repo, git_repository_open_ext, source.c_str(), 0, nullptr) != 0) {
    return FailedPrecondition(source.string() + " is not inside a git repository");
  }
  const char* wd = git_repository_workdir(repo.get());
  if (wd == nullptr) return FailedPrecondition(source.string() + " is a bare repository (no working tree to ship)");
  fs::path root = fs::path(wd).lexically_normal();
  if (!root.has_filename()) root = root.parent_path();
  return root;
}

struct ShipEntry {
  uint32_t mode = GIT_FILEMODE_BLOB;
  git_oid id{};
};

uint32_t ModeOf(const struct stat& st) {
  if (S_ISLNK(st.st_mode)) return GIT_FILEMODE_LINK;
  return (st.st_mode & 0111) ? GIT_FILEMODE_BLOB_EXECUTABLE : GIT_FILEMODE_BLOB;
}

// The shipped set: the index (HEAD plus staged changes) with the working
// tree's uncommitted state on top (modified files re-hashed, deleted files
// dropped), plus untracked non-ignored files when asked. Submodules are left
// out. Blobs of changed files are written to the repository's object store.
Result<std::map<std::string, ShipEntry>> CollectTracked(git_repository* repo, const fs::path& root,
                                                      bool include_untracked) {
  Index index;
  if (git::Fill(index, git_repository_index, repo) != 0) return GitError("reading the index");
  std::map<std::string, ShipEntry> files;
  size_t n = git_index_entrycount(index.get());
  for (size_t i = 0; i < n; ++i) {
    const git_index_entry* e = git_index_get_byindex(index.get(), i);
    if (e->mode == GIT_FILEMODE_COMMIT) continue;  // submodule
    ShipEntry s;
    s.mode = e->mode;
    s.id = e->id;
    files[e->path] = s;
  }
  git_status_options opts = GIT_STATUS_OPTIONS_INIT;
  opts.show = GIT_STATUS_SHOW_WORKDIR_ONLY;
  opts.flags = GIT_STATUS_OPT_EXCLUDE_SUBMODULES;
  if (include_untracked) opts.flags |= GIT_STATUS_OPT_INCLUDE_UNTRACKED | GIT_STATUS_OPT_RECURSE_UNTRACKED_DIRS;
  StatusList status;
  if (git::Fill(status, git_status_list_new, repo, &opts) != 0) return GitError("reading the status");
  size_t count = git_status_list_entrycount(status.get());
  for (size_t i = 0; i < count; ++i) {
    const git_status_entry* e = git_status_byindex(status.get(), i);
    const git_diff_delta* d = e->index_to_workdir;
    if (d == nullptr) continue;
    std::string path = d->new_file.path ? d->new_file.path : d->old_file.path;
    if (e->status & GIT_STATUS_WT_DELETED) {
      files.erase(path);
      continue;
    }
    if (!(e->status & (GIT_STATUS_WT_MODIFIED | GIT_STATUS_WT_TYPECHANGE | GIT_STATUS_WT_NEW))) continue;
    struct stat st;
    if (::lstat((root / path).c_str(), &st) != 0) {
      files.erase(path);
      continue;
    }
    if (!S_ISREG(st.st_mode) && !S_ISLNK(st.st_mode)) continue;
    ShipEntry s;
    s.mode = ModeOf(st);
    if (git_blob_create_from_workdir(&s.id, repo, path.c_str()) != 0) return GitError("hashing " + path);
    files[path] = s;
  }
  return files;
}

// Writes a tree of `files` into the repository's object store.
Result<git_oid> WriteTree(git_repository* repo, const std::map<std::string, ShipEntry>& files) {
  Index mem;
  if (git::Fill(mem, git_index_new) != 0) return GitError("creating an index");
  for (const auto& [path, f] : files) {
    git_index_entry e{};
    e.mode = f.mode;
    e.id = f.id;
    e.path = path.c_str();
    if (git_index_add(mem.get(), &e) != 0) return GitError("adding " + path);
  }
  git_oid tree;
  if (git_index_write_tree_to(&tree, mem.get(), repo) != 0) return GitError("writing the shipped tree");
  return tree;
}

std::string RefName(const std::string& sandbox) { return "refs/banger/workspaces/" + sandbox; }

Json ToJson(const ShipRecord& r) {
  return {{"sandbox", r.sandbox}, {"source", r.repo_root},  {"path", r.guest_path},
          {"mode", r.mode},       {"includeUntracked", r.include_untracked},
          {"origin", r.origin},   {"head", r.head},         {"baseline", r.baseline},
          {"shippedAt", r.shipped_at}, {"files", r.files},  {"bytes", r.bytes}};
}

// The guest tree read back into `dir`, as a tree in the host repository:
// everything except the marker and .git; new files the host repository
// ignores are left out, like `git add -A` would.
Result<git_oid> GuestTree(git_repository* repo, const fs::path& dir, git_tree* base, size_t* ignored) {
  std::map<std::string, ShipEntry> files;
  std::error_code ec;
  for (auto it = fs::recursive_directory_iterator(dir, ec); !ec && it != fs::recursive_directory_iterator();
       it.increment(ec)) {
    std::string rel = it->path().lexically_relative(dir).generic_string();
    if (it.depth() == 0 && (rel == ".git" || rel == kGuestMarker)) {
      if (rel == ".git") it.disable_recursion_pending();
      continue;
    }
    struct stat st;
    if (::lstat(it->path().c_str(), &st) != 0) continue;
    if (!S_ISREG(st.st_mode) && !S_ISLNK(st.st_mode)) continue;
    git_tree_entry* existing = nullptr;
    bool known = base != nullptr && git_tree_entry_bypath(&existing, base, rel.c_str()) == 0;
    if (existing) git_tree_entry_free(existing);
    if (!known) {
      int is_ignored = 0;
      if (git_ignore_path_is_ignored(&is_ignored, repo, rel.c_str()) == 0 && is_ignored) {
        ++*ignored;
        continue;
      }
    }
    ShipEntry s;
    s.mode = ModeOf(st);
    if (S_ISLNK(st.st_mode)) {
      std::string target = fs::read_symlink(it->path(), ec).string();
      if (git_blob_create_from_buffer(&s.id, repo, target.data(), target.size()) != 0) {
        return GitError("storing " + rel);
      }
    } else if (git_blob_create_from_disk(&s.id, repo, it->path().c_str()) != 0) {
      return GitError("storing " + rel);
    }
    files[rel] = s;
  }
  if (ec) return Internal("reading the guest tree back: " + ec.message());
  return WriteTree(repo, files);
}

Result<std::string> DiffTrees(git_repository* repo, git_tree* from, git_tree* to, size_t* changed) {
  git_diff_options opts = GIT_DIFF_OPTIONS_INIT;
  opts.flags = GIT_DIFF_SHOW_BINARY;
  Diff diff;
  if (git::Fill(diff, git_diff_tree_to_tree, repo, from, to, &opts) != 0) return GitError("diffing");
  git_diff_find_options find = GIT_DIFF_FIND_OPTIONS_INIT;
  find.flags = GIT_DIFF_FIND_RENAMES;
  (void)git_diff_find_similar(diff.get(), &find);
  *changed = git_diff_num_deltas(diff.get());
  Buf out;
  if (git_diff_to_buf(&out.b, diff.get(), GIT_DIFF_FORMAT_PATCH) != 0) return GitError("formatting the patch");
  return out.str();
}

}  // namespace

Result<WorkspaceSpec> WorkspaceSpecForPath(const fs::path& source, WorkspaceMode mode, bool include_untracked) {
  std::error_code ec;
  fs::path abs = fs::absolute(source, ec).lexically_normal();
  if (ec || !fs::is_directory(abs, ec)) return InvalidArgument(source.string() + " is not a directory");
  if (!abs.has_filename() && abs != abs.root_path()) abs = abs.parent_path();
  Repo repo;
  BANGER_RETURN_IF_ERROR(OpenWorkingTree(abs, repo).status());
  WorkspaceSpec ws;
  ws.source = abs.string();
  ws.mode = mode;
  ws.include_untracked = include_untracked;
  return ws;
}

Result<ShipRecord> Ship(AgentConnection& conn, const std::string& sandbox, const WorkspaceSpec& ws,
                        const fs::path& records_dir) {
  Repo repo;
  BANGER_ASSIGN_OR_RETURN(fs::path root, OpenWorkingTree(ws.source, repo));
  const bool full = ws.mode == WorkspaceMode::kFull;
  if (full && !fs::is_directory(root / ".git")) {
    return FailedPrecondition("mode full ships " + (root / ".git").string() +
                              ", which is not a directory (a linked worktree or submodule); use mode tracked");
  }
  ShipRecord rec;
  rec.sandbox = sandbox;
  rec.repo_root = root.string();
  rec.guest_path = ws.path;
  rec.mode = std::string(ToString(ws.mode));
  rec.include_untracked = ws.include_untracked;
  {
    Remote origin;
    if (git::Fill(origin, git_remote_lookup, repo.get(), "origin") == 0 && git_remote_url(origin.get())) {
      rec.origin = git_remote_url(origin.get());
    }
    git_oid head;
    if (git_reference_name_to_id(&head, repo.get(), "HEAD") == 0) rec.head = OidText(head);
  }
  BANGER_ASSIGN_OR_RETURN(auto files, CollectTracked(repo.get(), root, ws.include_untracked));
  BANGER_ASSIGN_OR_RETURN(git_oid baseline, WriteTree(repo.get(), files));
  rec.baseline = OidText(baseline);
  rec.shipped_at = NowRfc3339();
  // The baseline's objects stay alive (gc) while the sandbox's ref names them.
  {
    Reference ref;
    if (git::Fill(ref, git_reference_create, repo.get(), RefName(sandbox).c_str(), &baseline, 1,
                             "banger workspace ship") != 0) {
      return GitError("recording " + RefName(sandbox));
    }
  }
  for (const auto& [path, f] : files) {
    struct stat st;
    if (::lstat((root / path).c_str(), &st) == 0 && S_ISREG(st.st_mode)) rec.bytes += static_cast<uint64_t>(st.st_size);
  }
  rec.files = files.size();
  Json marker = ToJson(rec);
  marker.erase("sandbox");
  Status s = PushArchive(conn, ws.path, [&](struct archive* a) -> Status {
    for (const auto& [path, f] : files) {
      Status added = AddLocalFile(a, root / path, path);
      if (!added.ok()) {
        // A file deleted between listing and archiving: ship without it.
        if (!fs::exists(fs::symlink_status(root / path))) continue;
        return added;
      }
    }
    if (full) BANGER_RETURN_IF_ERROR(AddLocalPath(a, root / ".git", ".git"));
    return AddBuffer(a, kGuestMarker, marker.dump(2) + "\n", 0644);
  });
  if (!s.ok()) return s.WithContext("shipping workspace " + root.string() + " into " + sandbox + ":" + ws.path);
  BANGER_RETURN_IF_ERROR(MakeDirs(records_dir, 0700));
  BANGER_RETURN_IF_ERROR(WriteFileAtomic(records_dir / (sandbox + ".json"), ToJson(rec).dump(2) + "\n", 0600));
  return rec;
}

Result<ShipRecord> LoadShipRecord(const fs::path& records_dir, const std::string& sandbox) {
  fs::path file = records_dir / (sandbox + ".json");
  if (!fs::exists(file)) {
    return NotFound("sandbox " + sandbox + " has no shipped workspace (spec.workspace, or `banger workspace sync`)");
  }
  BANGER_ASSIGN_OR_RETURN(std::string text, ReadFile(file));
  try {
    Json j = Json::parse(text);
    ShipRecord r;
    r.sandbox = j.value("sandbox", sandbox);
    r.repo_root = j.at("source").get<std::string>();
    r.guest_path = j.at("path").get<std::string>();
    r.mode = j.value("mode", "tracked");
    r.include_untracked = j.value("includeUntracked", false);
    r.origin = j.value("origin", "");
    r.head = j.value("head", "");
    r.baseline = j.at("baseline").get<std::string>();
    r.shipped_at = j.value("shippedAt", "");
    r.files = j.value("files", uint64_t{0});
    r.bytes = j.value("bytes", uint64_t{0});
    return r;
  } catch (const std::exception& e) {
    return DataLoss(file.string() + ": " + e.what());
  }
}

Result<ExportResult> Export(AgentConnection& conn, const ShipRecord& record, const ExportOptions& options) {
  Repo repo;
  BANGER_ASSIGN_OR_RETURN(fs::path root, OpenWorkingTree(record.repo_root, repo));
  (void)root;
  BANGER_ASSIGN_OR_RETURN(fs::path tmp, MakeTempDir("banger-export"));
  ScopedRemove cleanup(tmp);
  BANGER_RETURN_IF_ERROR(PullTree(conn, record.guest_path, {"."}, tmp));
  ExportResult result;

  // Full mode: commits made in the guest since the shipped HEAD (or --base).
  if (record.mode == "full" && fs::is_directory(tmp / ".git")) {
    Repo guest;
    if (git::Fill(guest, git_repository_open, tmp.c_str()) != 0) return GitError("opening the guest's .git");
    git_oid guest_head;
    std::string base = options.base.empty() ? record.head : options.base;
    git_oid base_id{};
    bool have_base = false;
    if (!base.empty()) {
      Object obj;
      if (git::Fill(obj, git_revparse_single, guest.get(), base.c_str()) != 0) {
        return InvalidArgument("--base " + base + " is not a commit of the guest's repository");
      }
      base_id = *git_object_id(obj.get());
      have_base = true;
    }
    if (git_reference_name_to_id(&guest_head, guest.get(), "HEAD") == 0 &&
        (!have_base || !git_oid_equal(&guest_head, &base_id))) {
      Walk walk;
      if (git::Fill(walk, git_revwalk_new, guest.get()) != 0) return GitError("walking the guest's commits");
      git_revwalk_sorting(walk.get(), GIT_SORT_TOPOLOGICAL | GIT_SORT_REVERSE);
      git_revwalk_push(walk.get(), &guest_head);
      if (have_base) git_revwalk_hide(walk.get(), &base_id);
      std::vector<git_oid> commits;
      git_oid id;
      while (git_revwalk_next(&id, walk.get()) == 0) commits.push_back(id);
      for (size_t i = 0; i < commits.size(); ++i) {
        Commit c;
        if (git::Fill(c, git_commit_lookup, guest.get(), &commits[i]) != 0) return GitError("reading a guest commit");
        if (git_commit_parentcount(c.get()) > 1) {
          result.warnings.push_back("merge commit " + OidText(commits[i]) + " skipped (git am takes no merges)");
          continue;
        }
        git_email_create_options eo = GIT_EMAIL_CREATE_OPTIONS_INIT;
        eo.flags = GIT_EMAIL_CREATE_ALWAYS_NUMBER;
        eo.diff_opts.flags |= GIT_DIFF_SHOW_BINARY;
        Buf mail;
        if (git_email_create_from_commit(&mail.b, c.get(), &eo) != 0) return GitError("formatting a guest commit");
        result.patch += mail.str();
        ++result.commits;
      }
      if (result.commits > 0) {
        result.mbox = true;
        // Uncommitted guest changes are not in the mbox: say so.
        git_status_options so = GIT_STATUS_OPTIONS_INIT;
        so.flags = GIT_STATUS_OPT_INCLUDE_UNTRACKED;
        StatusList st;
        if (git::Fill(st, git_status_list_new, guest.get(), &so) == 0) {
          size_t dirty = 0;
          for (size_t i = 0; i < git_status_list_entrycount(st.get()); ++i) {
            const git_status_entry* e = git_status_byindex(st.get(), i);
            const git_diff_delta* d = e->index_to_workdir ? e->index_to_workdir : e->head_to_index;
            if (d && std::string_view(d->new_file.path ? d->new_file.path : "") == kGuestMarker) continue;
            ++dirty;
          }
          if (dirty > 0) {
            result.warnings.push_back(std::to_string(dirty) +
                                      " uncommitted change(s) in the guest are not in the mbox; commit them in "
                                      "the guest and export again");
          }
        }
        return result;
      }
    }
  }

  // The guest tree against the baseline (or --base's tree).
  Tree base_tree;
  git_oid base_id;
  if (!options.base.empty()) {
    Object obj;
    if (git::Fill(obj, git_revparse_single, repo.get(), (options.base + "^{tree}").c_str()) != 0) {
      return InvalidArgument("--base " + options.base + " is not a commit of " + record.repo_root);
    }
    base_id = *git_object_id(obj.get());
  } else if (git_oid_fromstr(&base_id, record.baseline.c_str()) != 0) {
    return DataLoss("workspace record of " + record.sandbox + " has a bad baseline id");
  }
  if (git::Fill(base_tree, git_tree_lookup, repo.get(), &base_id) != 0) {
    return FailedPrecondition("the shipped tree " + record.baseline + " is gone from " + record.repo_root +
                              " (was " + RefName(record.sandbox) + " deleted?); use --base COMMIT");
  }
  size_t ignored = 0;
  BANGER_ASSIGN_OR_RETURN(git_oid guest_id, GuestTree(repo.get(), tmp, base_tree.get(), &ignored));
  Tree guest_tree;
  if (git::Fill(guest_tree, git_tree_lookup, repo.get(), &guest_id) != 0) return GitError("reading the guest tree");
  BANGER_ASSIGN_OR_RETURN(result.patch, DiffTrees(repo.get(), base_tree.get(), guest_tree.get(), &result.files_changed));
  if (ignored > 0) {
    result.warnings.push_back(std::to_string(ignored) + " new file(s) in the guest match the repository's ignore rules and are left out");
  }
  return result;
}

Status AgentWorkspaceShipper::Ship(const SandboxRecord& record, const SandboxSpec& spec) {
  if (!spec.workspace) return OkStatus();
  BANGER_ASSIGN_OR_RETURN(auto conn,
                          ConnectAgent(socket_of_(record), std::chrono::steady_clock::now() + std::chrono::seconds(10)));
  auto shipped = workspace::Ship(*conn, record.name, *spec.workspace, records_dir_);
  if (!shipped) return shipped.error();
  return OkStatus();
}

void AgentWorkspaceShipper::Forget(const std::string& sandbox) {
  std::error_code ec;
  fs::remove(records_dir_ / (sandbox + ".json"), ec);
}

}  // namespace banger::workspace
