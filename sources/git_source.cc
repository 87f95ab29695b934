#include "sources/git_source.h"

#include <fcntl.h>
#include <sys/stat.h>
#include <unistd.h>

#include <algorithm>
#include <cctype>
#include <cerrno>
#include <cstdlib>
#include <cstring>
#include <mutex>
#include <system_error>
#include <vector>

#include "base/files.h"
#include "base/libgit2.h"
#include "base/strings.h"
#include "sources/known_hosts.h"

namespace banger {

namespace fs = std::filesystem;

namespace {

constexpr int kMaxSshAttempts = 8;
constexpr int kMaxTreeDepth = 256;
constexpr char kFetchedRef[] = "refs/banger/fetched";

template <typename T, void (*Free)(T*)>
using GitPtr = git::Ptr<T, Free>;

using RepoPtr = GitPtr<git_repository, git_repository_free>;
using RemotePtr = GitPtr<git_remote, git_remote_free>;
using CommitPtr = GitPtr<git_commit, git_commit_free>;
using TreePtr = GitPtr<git_tree, git_tree_free>;
using TreeEntryPtr = GitPtr<git_tree_entry, git_tree_entry_free>;
using BlobPtr = GitPtr<git_blob, git_blob_free>;
using ObjectPtr = GitPtr<git_object, git_object_free>;

std::string LastGitError() { return git::LastError(); }

// A libgit2 failure as a Status. Network-ish failures are retryable.
Status GitError(int rc, const std::string& what) {
  std::string msg = what + ": " + LastGitError();
  switch (rc) {
    case GIT_ENOTFOUND: return NotFound(msg);
    case GIT_EAUTH:
    case GIT_ECERTIFICATE: return PermissionDenied(msg);
    case GIT_EINVALIDSPEC:
    case GIT_EINVALID: return InvalidArgument(msg);
    default: return Unavailable(msg);
  }
}

bool IsCommitId(const std::string& s) {
  return s.size() == GIT_OID_HEXSZ &&
         std::all_of(s.begin(), s.end(), [](char c) { return std::isxdigit(static_cast<unsigned char>(c)); });
}

Result<std::string> NormalizeRepoPath(const std::string& p) {
  fs::path n = fs::path(p.empty() ? "." : p).lexically_normal();
  std::string s = n.generic_string();
  while (s.size() > 1 && s.back() == '/') s.pop_back();
  if (s.empty()) s = ".";
  if (n.is_absolute() || s == ".." || StartsWith(s, "../")) {
    return InvalidArgument("path " + p + " must be a directory inside the repository");
  }
  return s;
}

// A tree entry name that can be written safely below its directory.
bool SafeName(std::string_view name) {
  return !name.empty() && name != "." && name != ".." && name.find('/') == std::string_view::npos &&
         name.find('\0') == std::string_view::npos;
}

bool IsWithin(const fs::path& p, const fs::path& root) {
  auto [r, q] = std::mismatch(root.begin(), root.end(), p.begin(), p.end());
  return r == root.end();
}

// The SSH port named by an ssh:// URL (22 for scp-like and other forms).
int SshPort(const std::string& url) {
  if (!StartsWith(url, "ssh://") && !StartsWith(url, "git+ssh://") && !StartsWith(url, "ssh+git://")) {
    return 22;
  }
  std::string rest = url.substr(url.find("://") + 3);
  rest = rest.substr(0, rest.find('/'));
  if (size_t at = rest.rfind('@'); at != std::string::npos) rest = rest.substr(at + 1);
  size_t colon = rest.rfind(':');
  if (colon == std::string::npos || rest.find(']', colon) != std::string::npos) return 22;
  int port = std::atoi(rest.c_str() + colon + 1);
  return port > 0 ? port : 22;
}

// State shared with libgit2's callbacks for one fetch.
struct CallbackState {
  const GitSourceOptions* options = nullptr;
  fs::path ssh_dir;
  int port = 22;
  std::vector<std::string> ssh_candidates;  // "" = ssh-agent, else a private key file
  bool https = false;  // the token is only ever sent over https://
  int ssh_attempts = 0;
  int token_attempts = 0;
  std::string error;  // our own explanation, preferred over libgit2's
};

int AcquireCredential(git_credential** out, const char* url, const char* username_from_url,
                      unsigned int allowed, void* payload) {
  (void)url;
  auto* st = static_cast<CallbackState*>(payload);
  std::string user = username_from_url && *username_from_url ? username_from_url : "git";
  if (allowed & GIT_CREDENTIAL_SSH_KEY) {
    // libgit2 calls back after each rejected credential: walk the candidates
    // once, then give up instead of looping forever.
    while (st->ssh_attempts < static_cast<int>(st->ssh_candidates.size()) &&
           st->ssh_attempts < kMaxSshAttempts) {
      const std::string& c = st->ssh_candidates[st->ssh_attempts++];
      if (c.empty()) return git_credential_ssh_key_from_agent(out, user.c_str());
      std::string pub = c + ".pub";
      std::error_code ec;
      bool has_pub = fs::exists(pub, ec);
      int rc = git_credential_ssh_key_new(out, user.c_str(), has_pub ? pub.c_str() : nullptr, c.c_str(),
                                          nullptr);
      if (rc == 0) return 0;
    }
    // Name what was actually offered: "tried the keys ..." when the directory
    // holds none of them sends people looking in the wrong place.
    std::string tried;
    for (const std::string& c : st->ssh_candidates) {
      tried += (tried.empty() ? "" : ", ") + (c.empty() ? std::string("ssh-agent") : c);
    }
    st->error = "SSH authentication as " + user + " failed";
    if (tried.empty()) {
      st->error += ": no ssh-agent (SSH_AUTH_SOCK is unset) and no key file (id_ed25519, id_ecdsa, id_rsa) in " +
                   st->ssh_dir.string();
    } else {
      st->error += " (tried " + tried + ")";
    }
    git_error_set_str(GIT_ERROR_SSH, st->error.c_str());
    return GIT_EAUTH;
  }
  if (allowed & GIT_CREDENTIAL_USERPASS_PLAINTEXT) {
    const std::string& env = st->options->token_env;
    if (!st->https) {
      // SSH password prompts and plain http: the token is not for them.
      st->error = "the server asks for a password; banger sends tokens only over https://";
      git_error_set_str(GIT_ERROR_NET, st->error.c_str());
      return GIT_EAUTH;
    }
    const char* token = env.empty() ? nullptr : getenv(env.c_str());
    if (!token || !*token) {
      st->error = env.empty() ? "the server asks for credentials; pass a token with --token-env"
                              : "the server asks for credentials and $" + env + " is empty or unset";
      git_error_set_str(GIT_ERROR_HTTP, st->error.c_str());
      return GIT_EAUTH;
    }
    if (st->token_attempts++ > 0) {
      st->error = "the server rejected the token from $" + env + " (user " + user + ")";
      git_error_set_str(GIT_ERROR_HTTP, st->error.c_str());
      return GIT_EAUTH;
    }
    return git_credential_userpass_plaintext_new(out, user.c_str(), token);
  }
  if (allowed & GIT_CREDENTIAL_USERNAME) return git_credential_username_new(out, user.c_str());
  return GIT_PASSTHROUGH;
}

int CheckCertificate(git_cert* cert, int valid, const char* host, void* payload) {
  (void)valid;
  auto* st = static_cast<CallbackState*>(payload);
  // HTTPS: libgit2's own validation against the system CA store stands.
  if (cert->cert_type != GIT_CERT_HOSTKEY_LIBSSH2) return GIT_PASSTHROUGH;
  auto* hk = reinterpret_cast<git_cert_hostkey*>(cert);
  fs::path known_hosts = st->ssh_dir / "known_hosts";
  if (!(hk->type & GIT_CERT_SSH_RAW) || hk->hostkey == nullptr) {
    st->error = std::string("cannot check the SSH host key of ") + (host ? host : "?") +
                " against " + known_hosts.string() + ": libgit2 did not provide the raw key";
    git_error_set_str(GIT_ERROR_SSH, st->error.c_str());
    return GIT_ECERTIFICATE;
  }
  Status s = CheckKnownHost(known_hosts, host ? host : "", st->port,
                            std::string_view(hk->hostkey, hk->hostkey_len));
  if (!s.ok()) {
    st->error = s.message();
    git_error_set_str(GIT_ERROR_SSH, st->error.c_str());
    return GIT_ECERTIFICATE;
  }
  return 0;
}

Status WriteBlob(git_repository* repo, const git_tree_entry* entry, const fs::path& dest) {
  git_blob* raw = nullptr;
  if (int rc = git_blob_lookup(&raw, repo, git_tree_entry_id(entry)); rc < 0) {
    return GitError(rc, "reading " + dest.filename().string());
  }
  BlobPtr blob(raw);
  const char* data = static_cast<const char*>(git_blob_rawcontent(blob.get()));
  size_t size = static_cast<size_t>(git_blob_rawsize(blob.get()));
  git_filemode_t mode = git_tree_entry_filemode(entry);
  if (mode == GIT_FILEMODE_LINK) {
    std::string target(data, size);
    if (target.find('\0') != std::string::npos) return DataLoss("symlink " + dest.string() + " has a NUL byte");
    if (symlink(target.c_str(), dest.c_str()) != 0) return ErrnoStatus(errno, "symlink " + dest.string());
    return OkStatus();
  }
  // O_EXCL | O_NOFOLLOW: the staging directory is fresh, so anything already
  // there (a symlink planted by an earlier entry) is refused, not followed.
  int fd = open(dest.c_str(), O_WRONLY | O_CREAT | O_EXCL | O_NOFOLLOW | O_CLOEXEC,
                mode == GIT_FILEMODE_BLOB_EXECUTABLE ? 0755 : 0644);
  if (fd < 0) return ErrnoStatus(errno, "create " + dest.string());
  size_t done = 0;
  while (done < size) {
    ssize_t n = write(fd, data + done, size - done);
    if (n < 0) {
      if (errno == EINTR) continue;
      int err = errno;
      close(fd);
      return ErrnoStatus(err, "write " + dest.string());
    }
    done += static_cast<size_t>(n);
  }
  if (close(fd) != 0) return ErrnoStatus(errno, "close " + dest.string());
  return OkStatus();
}

Status WriteTree(git_repository* repo, const git_tree* tree, const fs::path& dir, int depth) {
  if (depth > kMaxTreeDepth) return DataLoss("tree nested deeper than " + std::to_string(kMaxTreeDepth));
  size_t n = git_tree_entrycount(tree);
  for (size_t i = 0; i < n; ++i) {
    const git_tree_entry* entry = git_tree_entry_byindex(tree, i);
    std::string name = git_tree_entry_name(entry);
    if (!SafeName(name)) return DataLoss("refusing tree entry named \"" + name + "\" in " + dir.string());
    fs::path dest = dir / name;
    switch (git_tree_entry_filemode(entry)) {
      case GIT_FILEMODE_TREE: {
        if (mkdir(dest.c_str(), 0755) != 0) return ErrnoStatus(errno, "mkdir " + dest.string());
        git_tree* raw = nullptr;
        if (int rc = git_tree_lookup(&raw, repo, git_tree_entry_id(entry)); rc < 0) {
          return GitError(rc, "reading tree " + name);
        }
        TreePtr sub(raw);
        BANGER_RETURN_IF_ERROR(WriteTree(repo, sub.get(), dest, depth + 1));
        break;
      }
      case GIT_FILEMODE_BLOB:
      case GIT_FILEMODE_BLOB_EXECUTABLE:
      case GIT_FILEMODE_LINK:
        BANGER_RETURN_IF_ERROR(WriteBlob(repo, entry, dest));
        break;
      default:  // submodules (GIT_FILEMODE_COMMIT): not followed
        break;
    }
  }
  return OkStatus();
}

// Spec files below `dir` (or `dir` itself if a file) that resolve inside
// `root`. Directory symlinks below `dir` are not followed, so a repository
// cannot make banger read the host's files as specs; `dir` itself and file
// symlinks are used only if they stay inside the tree (else a diagnostic).
std::vector<fs::path> SpecFilesInside(const fs::path& dir, const fs::path& root, Diagnostics& diags) {
  std::vector<fs::path> out;
  auto inside = [&](const fs::path& p) {
    std::error_code ec;
    fs::path c = fs::weakly_canonical(p, ec);
    return !ec && IsWithin(c, root);
  };
  auto refuse = [&](const fs::path& p) {
    diags.AddError({p.string(), 0, 0}, "a symlink leading outside the repository; not loaded");
  };
  std::error_code ec;
  fs::file_status st = fs::status(dir, ec);  // follows `current`
  if (ec || !fs::exists(st)) {
    out.push_back(dir);  // the loader reports it as missing
    return out;
  }
  if (!inside(dir)) {
    refuse(dir);
    return out;
  }
  if (!fs::is_directory(st)) {
    out.push_back(dir);
    return out;
  }
  fs::recursive_directory_iterator it(dir, ec);
  for (; !ec && it != fs::recursive_directory_iterator(); it.increment(ec)) {
    std::string ext = it->path().extension().string();
    if (ext != ".yaml" && ext != ".yml") continue;
    std::error_code sec;
    if (!it->is_regular_file(sec)) continue;  // follows file symlinks
    if (inside(it->path())) {
      out.push_back(it->path());
    } else {
      refuse(it->path());
    }
  }
  std::sort(out.begin(), out.end());
  return out;
}

int CountPacks(const fs::path& repo_dir) {
  int n = 0;
  std::error_code ec;
  for (fs::directory_iterator it(repo_dir / "objects/pack", ec), end; !ec && it != end; it.increment(ec)) {
    if (it->path().extension() == ".pack") ++n;
  }
  return n;
}

void ReplaceAll(std::string& s, const std::string& from, const std::string& to) {
  for (size_t pos = 0; (pos = s.find(from, pos)) != std::string::npos; pos += to.size()) {
    s.replace(pos, from.size(), to);
  }
}

}  // namespace

struct GitSource::Impl {
  RepoPtr repo;
};

GitSource::GitSource(GitSourceOptions options) : options_(std::move(options)), impl_(std::make_unique<Impl>()) {
  Result<std::string> p = NormalizeRepoPath(options_.path);
  path_ = p.ok() ? *p : options_.path;
  if (options_.ssh_dir.empty()) {
    const char* home = getenv("HOME");
    options_.ssh_dir = fs::path(home && *home ? home : "/root") / ".ssh";
  }
}

GitSource::~GitSource() = default;

std::string GitSource::Key() const { return "git:" + options_.url + "#" + options_.ref + ":" + path_; }
std::string GitSource::Url() const { return options_.url; }
std::string GitSource::Ref() const { return options_.ref; }

Result<SourceSnapshot> GitSource::Fetch() {
  git::Init();
  const std::string what =
      "fetching " + options_.url + " " + (options_.ref.empty() ? std::string("(default branch)") : options_.ref);
  BANGER_ASSIGN_OR_RETURN(std::string path, NormalizeRepoPath(options_.path));
  if (options_.cache_dir.empty()) return InvalidArgument(what + ": no cache directory");
  // A local repository (a plain path or file://) that is not there: say so,
  // rather than libgit2's "unsupported URL protocol".
  {
    std::string local;
    if (StartsWith(options_.url, "file://")) {
      local = options_.url.substr(7);
    } else if (options_.url.find("://") == std::string::npos && !options_.url.empty() &&
               (options_.url[0] == '/' || options_.url[0] == '.')) {
      local = options_.url;
    }
    std::error_code ec;
    if (!local.empty() && !fs::exists(local, ec)) {
      return NotFound(what + ": no git repository at " + local);
    }
  }
  const fs::path cache = options_.cache_dir;
  BANGER_RETURN_IF_ERROR(MakeDirs(cache, 0700).WithContext(what));

  // The mirror: a bare repository only banger writes to.
  const fs::path repo_dir = cache / "repo.git";
  if (CountPacks(repo_dir) > options_.max_mirror_packs) {
    impl_->repo.reset();
    BANGER_RETURN_IF_ERROR(RemoveAll(repo_dir).WithContext(what + ": re-creating the mirror"));
  }
  if (!impl_->repo) {
    git_repository* raw = nullptr;
    std::error_code ec;
    int rc = fs::exists(repo_dir / "HEAD", ec) ? git_repository_open_bare(&raw, repo_dir.c_str())
                                               : git_repository_init(&raw, repo_dir.c_str(), 1);
    if (rc < 0) return GitError(rc, what + ": opening the mirror " + repo_dir.string());
    impl_->repo.reset(raw);
  }
  git_repository* repo = impl_->repo.get();

  CallbackState state;
  state.options = &options_;
  state.ssh_dir = options_.ssh_dir;
  state.port = SshPort(options_.url);
  state.https = StartsWith(options_.url, "https://");
  if (getenv("SSH_AUTH_SOCK")) state.ssh_candidates.push_back("");
  for (const char* key : {"id_ed25519", "id_ecdsa", "id_rsa"}) {
    std::error_code ec;
    if (fs::exists(state.ssh_dir / key, ec)) state.ssh_candidates.push_back((state.ssh_dir / key).string());
  }
  auto fail = [&](int rc, const std::string& step) -> Status {
    Status s = GitError(rc, what + step);
    if (!state.error.empty()) s = Status(s.code(), what + step + ": " + state.error);
    return s;
  };

  // An anonymous remote (nothing written to the mirror's config). The URL is
  // used as given: url.*.insteadOf rewriting is skipped, which also avoids a
  // per-call leak in libgit2 1.5's config regex matching (fixed upstream by
  // libgit2#6382), since a watcher fetches for as long as it runs.
  git_remote_create_options create_opts = GIT_REMOTE_CREATE_OPTIONS_INIT;
  create_opts.repository = repo;
  create_opts.flags = GIT_REMOTE_CREATE_SKIP_INSTEADOF | GIT_REMOTE_CREATE_SKIP_DEFAULT_FETCHSPEC;
  git_remote* raw_remote = nullptr;
  if (int rc = git_remote_create_with_opts(&raw_remote, options_.url.c_str(), &create_opts); rc < 0) {
    return fail(rc, "");
  }
  RemotePtr remote(raw_remote);
  git_remote_callbacks callbacks = GIT_REMOTE_CALLBACKS_INIT;
  callbacks.credentials = AcquireCredential;
  callbacks.certificate_check = CheckCertificate;
  callbacks.payload = &state;

  // Proxies as git uses them (http.proxy, HTTPS_PROXY and friends).
  git_proxy_options proxy = GIT_PROXY_OPTIONS_INIT;
  proxy.type = GIT_PROXY_AUTO;

  const bool by_commit = IsCommitId(options_.ref);
  std::vector<std::string> refspecs;
  if (by_commit) {
    // A commit id cannot be asked for by name everywhere: fetch every branch
    // and tag, then look the commit up.
    refspecs = {"+refs/heads/*:refs/banger/heads/*", "+refs/tags/*:refs/banger/tags/*"};
  } else {
    if (int rc = git_remote_connect(remote.get(), GIT_DIRECTION_FETCH, &callbacks, &proxy, nullptr); rc < 0) {
      return fail(rc, "");
    }
    const git_remote_head** heads = nullptr;
    size_t count = 0;
    if (int rc = git_remote_ls(&heads, &count, remote.get()); rc < 0) return fail(rc, ": listing refs");
    auto advertised = [&](const std::string& name) {
      for (size_t i = 0; i < count; ++i) {
        if (name == heads[i]->name) return true;
      }
      return false;
    };
    std::string full;
    if (options_.ref.empty()) {
      git_buf buf = GIT_BUF_INIT;
      int rc = git_remote_default_branch(&buf, remote.get());
      if (rc == 0) full.assign(buf.ptr, buf.size);
      git_buf_dispose(&buf);
      if (rc < 0) return fail(rc, ": resolving the default branch");
    } else if (StartsWith(options_.ref, "refs/")) {
      full = options_.ref;
    } else if (advertised("refs/heads/" + options_.ref)) {
      full = "refs/heads/" + options_.ref;
    } else if (advertised("refs/tags/" + options_.ref)) {
      full = "refs/tags/" + options_.ref;
    }
    // A ref the remote does not have would fetch nothing and leave the
    // previous commit in place: say so instead.
    if (full.empty() || !advertised(full)) {
      return NotFound(what + ": the remote has no branch or tag named " + options_.ref);
    }
    refspecs = {"+" + full + ":" + kFetchedRef};
  }

  std::vector<char*> specs_c;
  for (std::string& s : refspecs) specs_c.push_back(s.data());
  git_strarray specs_arr{specs_c.data(), specs_c.size()};
  git_fetch_options fetch_opts = GIT_FETCH_OPTIONS_INIT;
  fetch_opts.callbacks = callbacks;
  fetch_opts.proxy_opts = proxy;
  fetch_opts.download_tags = GIT_REMOTE_DOWNLOAD_TAGS_NONE;
  fetch_opts.update_fetchhead = 0;
  fetch_opts.prune = GIT_FETCH_NO_PRUNE;
  if (int rc = git_remote_fetch(remote.get(), &specs_arr, &fetch_opts, "banger: fetch"); rc < 0) {
    return fail(rc, "");
  }

  // The commit: peel the fetched ref (annotated tags point at tag objects).
  git_object* raw_obj = nullptr;
  std::string spec = by_commit ? options_.ref + "^{commit}" : std::string(kFetchedRef) + "^{commit}";
  if (int rc = git_revparse_single(&raw_obj, repo, spec.c_str()); rc < 0) {
    return fail(rc, by_commit ? ": commit " + options_.ref + " is not on any branch or tag" : ": resolving");
  }
  ObjectPtr obj(raw_obj);
  git_commit* commit = reinterpret_cast<git_commit*>(obj.get());
  char hex[GIT_OID_HEXSZ + 1] = {};
  git_oid_tostr(hex, sizeof(hex), git_commit_id(commit));
  const std::string sha = hex;

  SourceSnapshot snap;
  snap.revision = sha;
  if (const char* summary = git_commit_summary(commit)) snap.summary = summary;

  // Materialize the subtree at `path` once per commit.
  const fs::path trees = cache / "trees";
  const fs::path tree_dir = trees / sha;
  BANGER_RETURN_IF_ERROR(MakeDirs(trees, 0700).WithContext(what));
  std::error_code ec;
  if (!fs::exists(tree_dir, ec)) {
    fs::path staging = trees / (".staging-" + sha);
    BANGER_RETURN_IF_ERROR(RemoveAll(staging));
    if (mkdir(staging.c_str(), 0755) != 0) return ErrnoStatus(errno, "mkdir " + staging.string());
    ScopedRemove cleanup(staging);
    git_tree* raw_tree = nullptr;
    if (int rc = git_commit_tree(&raw_tree, commit); rc < 0) return fail(rc, ": reading commit " + sha);
    TreePtr root(raw_tree);
    if (path == ".") {
      BANGER_RETURN_IF_ERROR(WriteTree(repo, root.get(), staging, 0).WithContext(what));
    } else {
      git_tree_entry* raw_entry = nullptr;
      int rc = git_tree_entry_bypath(&raw_entry, root.get(), path.c_str());
      if (rc < 0 && rc != GIT_ENOTFOUND) return fail(rc, ": looking up " + path);
      // A missing path is left out; the loader reports it as a diagnostic.
      if (rc == 0) {
        TreeEntryPtr entry(raw_entry);
        fs::path dest = staging / path;
        BANGER_RETURN_IF_ERROR(MakeDirs(dest.parent_path(), 0755));
        if (git_tree_entry_type(entry.get()) == GIT_OBJECT_TREE) {
          if (mkdir(dest.c_str(), 0755) != 0) return ErrnoStatus(errno, "mkdir " + dest.string());
          git_tree* raw_sub = nullptr;
          if (int trc = git_tree_lookup(&raw_sub, repo, git_tree_entry_id(entry.get())); trc < 0) {
            return fail(trc, ": reading " + path);
          }
          TreePtr sub(raw_sub);
          BANGER_RETURN_IF_ERROR(WriteTree(repo, sub.get(), dest, 0).WithContext(what));
        } else if (git_tree_entry_filemode(entry.get()) != GIT_FILEMODE_COMMIT) {
          BANGER_RETURN_IF_ERROR(WriteBlob(repo, entry.get(), dest).WithContext(what));
        }
      }
    }
    if (rename(staging.c_str(), tree_dir.c_str()) != 0) return ErrnoStatus(errno, "rename " + tree_dir.string());
    cleanup.Release();
  }

  // Repoint `current` atomically (a relative link, so the cache can move).
  const fs::path current = cache / "current";
  const fs::path tmp_link = cache / ".current.tmp";
  (void)unlink(tmp_link.c_str());
  if (symlink(("trees/" + sha).c_str(), tmp_link.c_str()) != 0) {
    return ErrnoStatus(errno, "symlink " + tmp_link.string());
  }
  if (rename(tmp_link.c_str(), current.c_str()) != 0) return ErrnoStatus(errno, "rename " + current.string());
  for (fs::directory_iterator it(trees, ec), end; !ec && it != end; it.increment(ec)) {
    if (it->path().filename() != sha) (void)RemoveAll(it->path());
  }

  // Load through `current`, so recorded files[].source paths stay valid
  // across commits (their content digest is part of the spec hash anyway).
  const fs::path root = fs::weakly_canonical(tree_dir, ec);
  const fs::path spec_dir = path == "." ? current : current / path;
  Diagnostics refused;
  std::vector<fs::path> files = SpecFilesInside(spec_dir, root, refused);
  snap.specs = files.empty() ? LoadResult{} : LoadSpecPaths(files);
  snap.specs.diagnostics.Append(refused);

  // files[].source must stay inside the repository: `..` or a symlink could
  // otherwise make a commit ship any host file into a sandbox.
  LoadResult& loaded = snap.specs;
  std::vector<SpecDocument> kept;
  for (SpecDocument& doc : loaded.specs) {
    bool ok = true;
    for (size_t i = 0; i < doc.spec.files.size(); ++i) {
      const FileSpec& f = doc.spec.files[i];
      if (!f.source) continue;
      std::error_code fec;
      fs::path resolved = fs::weakly_canonical(*f.source, fec);
      if (fec || !IsWithin(resolved, root) || !fs::is_regular_file(resolved, fec)) {
        loaded.diagnostics.AddError(doc.location, "spec.files[" + std::to_string(i) +
                                                      "].source: must be a file inside the repository");
        ok = false;
      }
    }
    if (ok) kept.push_back(std::move(doc));
  }
  loaded.specs = std::move(kept);

  // Name files as the repository does: "specs/web.yaml".
  const std::string prefix = current.string() + "/";
  auto relative = [&](std::string& file) {
    if (StartsWith(file, prefix)) {
      file = file.substr(prefix.size());
    } else if (file == current.string()) {
      file = ".";
    }
  };
  Diagnostics rewritten;
  for (Diagnostic d : loaded.diagnostics.items()) {
    relative(d.where.file);
    ReplaceAll(d.message, prefix, "");
    if (d.severity == Severity::kError) {
      rewritten.AddError(d.where, d.message);
    } else {
      rewritten.AddWarning(d.where, d.message);
    }
  }
  loaded.diagnostics = std::move(rewritten);
  for (SpecDocument& doc : loaded.specs) relative(doc.location.file);
  return snap;
}

}  // namespace banger
