// GitSource against real repositories made here with the git CLI.
#include "sources/git_source.h"

#include <gtest/gtest.h>

#include <map>
#include <regex>

#include "base/command_runner.h"
#include "sources/git_testing.h"
#include "base/files.h"
#include "base/strings.h"
#include "tests/support/test_util.h"

namespace banger {
namespace {

namespace fs = std::filesystem;
using testing::TempDir;

std::string SpecYaml(const std::string& name, const std::string& extra = "") {
  return "apiVersion: banger.dev/v1\nkind: Sandbox\nmetadata:\n  name: " + name +
         "\nspec:\n  image: busybox\n" + extra;
}

std::vector<std::string> Names(const SourceSnapshot& snap) {
  std::vector<std::string> out;
  for (const SpecDocument& d : snap.specs.specs) out.push_back(d.spec.name);
  return out;
}

class GitSourceTest : public ::testing::Test {
 protected:
  void SetUp() override {
    runner_ = MakePosixCommandRunner();
    remote_ = dir_.path() / "remote.git";
    work_ = dir_.path() / "work";
    cache_ = dir_.path() / "cache";
    // A default branch other than master, to prove it is resolved.
    Git({"init", "--bare", "--initial-branch=trunk", remote_.string()});
    Git({"init", "--initial-branch=trunk", work_.string()});
    Git({"-C", work_.string(), "remote", "add", "origin", remote_.string()});
  }

  std::string Git(const std::vector<std::string>& args) { return testing::RunGit(*runner_, dir_.path(), args); }

  std::string WorkGit(std::vector<std::string> args) {
    args.insert(args.begin(), {"-C", work_.string()});
    return Git(args);
  }

  // Writes `files` into the work tree, commits everything, pushes to the
  // remote's `branch` and returns the new commit id.
  std::string Commit(const std::map<std::string, std::string>& files, const std::string& message,
                     const std::string& branch = "trunk") {
    for (const auto& [name, text] : files) {
      fs::path p = work_ / name;
      EXPECT_TRUE(MakeDirs(p.parent_path()).ok());
      EXPECT_TRUE(WriteFileAtomic(p, text).ok());
    }
    WorkGit({"add", "-A"});
    WorkGit({"commit", "-q", "-m", message});
    WorkGit({"push", "-q", "origin", "HEAD:refs/heads/" + branch});
    return WorkGit({"rev-parse", "HEAD"});
  }

  GitSourceOptions Options(const std::string& ref = "trunk", const std::string& path = "specs") {
    GitSourceOptions o;
    o.url = remote_.string();
    o.ref = ref;
    o.path = path;
    o.cache_dir = cache_;
    o.ssh_dir = dir_.path() / "no-ssh";
    return o;
  }

  SourceSnapshot MustFetch(GitSource& source) {
    Result<SourceSnapshot> snap = source.Fetch();
    EXPECT_TRUE(snap.ok()) << snap.status().ToString();
    return snap.ok() ? *snap : SourceSnapshot{};
  }

  TempDir dir_;
  std::unique_ptr<CommandRunner> runner_;
  fs::path remote_, work_, cache_;
};

TEST_F(GitSourceTest, FetchReturnsTheCommitAndTheSpecsOfItsDirectory) {
  // Given specs in specs/ and elsewhere, Fetch reports the pushed commit and
  // only the specs below `path`, named repository-relative.
  std::string sha = Commit({{"specs/web.yaml", SpecYaml("web")},
                            {"other/db.yaml", SpecYaml("db")},
                            {"README.md", "hello"}},
                           "first commit\n\nwith a body");
  GitSource source(Options());
  SourceSnapshot snap = MustFetch(source);
  EXPECT_EQ(snap.revision, sha);
  EXPECT_EQ(snap.revision, Git({"-C", remote_.string(), "rev-parse", "trunk"}));
  EXPECT_EQ(snap.summary, "first commit");
  EXPECT_EQ(Names(snap), std::vector<std::string>{"web"});
  EXPECT_FALSE(snap.specs.diagnostics.HasErrors()) << snap.specs.diagnostics.ToString();
  ASSERT_EQ(snap.specs.specs.size(), 1u);
  EXPECT_EQ(snap.specs.specs[0].location.file, "specs/web.yaml");
  // The mirror and the tree are private to the source.
  EXPECT_EQ(fs::status(cache_).permissions() & fs::perms::all, fs::perms::owner_all);
  EXPECT_TRUE(fs::exists(cache_ / "repo.git/HEAD"));
  EXPECT_EQ(fs::read_symlink(cache_ / "current"), fs::path("trees") / sha);
  EXPECT_FALSE(fs::exists(cache_ / "current/other"));
}

TEST_F(GitSourceTest, NewCommitChangesRevisionAndSpecs) {
  std::string first = Commit({{"specs/web.yaml", SpecYaml("web")}}, "one");
  GitSource source(Options());
  EXPECT_EQ(MustFetch(source).revision, first);
  EXPECT_EQ(MustFetch(source).revision, first);  // nothing new: same revision

  std::string second = Commit({{"specs/db.yaml", SpecYaml("db")}}, "two");
  ASSERT_NE(first, second);
  SourceSnapshot snap = MustFetch(source);
  EXPECT_EQ(snap.revision, second);
  EXPECT_EQ(snap.summary, "two");
  EXPECT_EQ(Names(snap), (std::vector<std::string>{"db", "web"}));
  // Older trees are removed; `current` points at the new one.
  std::vector<std::string> trees;
  for (const auto& e : fs::directory_iterator(cache_ / "trees")) trees.push_back(e.path().filename());
  EXPECT_EQ(trees, std::vector<std::string>{second});
  EXPECT_EQ(fs::read_symlink(cache_ / "current"), fs::path("trees") / second);
}

TEST_F(GitSourceTest, EmptyRefFollowsTheRemotesDefaultBranch) {
  // Given a remote whose HEAD is trunk and which also has a master branch,
  // an empty ref follows trunk.
  std::string on_master = Commit({{"specs/web.yaml", SpecYaml("master-web")}}, "on master", "master");
  std::string on_trunk = Commit({{"specs/web.yaml", SpecYaml("web")}}, "on trunk", "trunk");
  ASSERT_NE(on_master, on_trunk);
  GitSource source(Options(""));
  SourceSnapshot snap = MustFetch(source);
  EXPECT_EQ(snap.revision, on_trunk);
  EXPECT_EQ(Names(snap), std::vector<std::string>{"web"});
  EXPECT_EQ(source.Key(), "git:" + remote_.string() + "#:specs");
}

TEST_F(GitSourceTest, TagsFullRefsAndCommitIds) {
  std::string tagged = Commit({{"specs/web.yaml", SpecYaml("web")}}, "tagged");
  WorkGit({"tag", "-a", "v1", "-m", "release 1"});
  WorkGit({"tag", "light", tagged});
  WorkGit({"push", "-q", "origin", "v1", "light"});
  std::string later = Commit({{"specs/db.yaml", SpecYaml("db")}}, "later");

  int n = 0;
  for (const std::string& ref : {std::string("v1"), std::string("light"), std::string("refs/tags/v1"), tagged}) {
    GitSourceOptions o = Options(ref);
    o.cache_dir = cache_ / std::to_string(n++);
    GitSource source(o);
    SourceSnapshot snap = MustFetch(source);
    EXPECT_EQ(snap.revision, tagged) << ref;
    EXPECT_EQ(Names(snap), std::vector<std::string>{"web"}) << ref;
  }
  GitSourceOptions o = Options("refs/heads/trunk");
  o.cache_dir = cache_ / "branch";
  GitSource branch(o);
  EXPECT_EQ(MustFetch(branch).revision, later);

  // A ref that disappears is an error, not a stale commit.
  WorkGit({"push", "-q", "origin", "HEAD:refs/heads/gone"});
  GitSourceOptions g = Options("refs/heads/gone");
  g.cache_dir = cache_ / "gone";
  GitSource gone(g);
  EXPECT_EQ(MustFetch(gone).revision, later);
  WorkGit({"push", "-q", "origin", ":refs/heads/gone"});
  Result<SourceSnapshot> after = gone.Fetch();
  ASSERT_FALSE(after.ok());
  EXPECT_EQ(after.error().code(), StatusCode::kNotFound) << after.error().ToString();

  GitSourceOptions missing = Options("no-such-branch");
  missing.cache_dir = cache_ / "missing";
  GitSource none(missing);
  Result<SourceSnapshot> r = none.Fetch();
  ASSERT_FALSE(r.ok());
  EXPECT_NE(r.error().message().find("no-such-branch"), std::string::npos) << r.error().ToString();
}

TEST_F(GitSourceTest, BadSpecIsReportedWithTheRepositoryRelativeName) {
  Commit({{"specs/web.yaml", SpecYaml("web")}, {"specs/bad.yaml", SpecYaml("bad", "  cpus: 0\n")}}, "bad");
  GitSource source(Options());
  SourceSnapshot snap = MustFetch(source);
  EXPECT_EQ(Names(snap), std::vector<std::string>{"web"});
  ASSERT_TRUE(snap.specs.diagnostics.HasErrors());
  std::string text = snap.specs.diagnostics.ToString();
  EXPECT_TRUE(std::regex_search(text, std::regex("^specs/bad\\.yaml:7:[0-9]+: error: spec\\.cpus"))) << text;
  EXPECT_EQ(text.find(cache_.string()), std::string::npos) << text;
  EXPECT_EQ(snap.specs.diagnostics.items()[0].where.file, "specs/bad.yaml");
}

TEST_F(GitSourceTest, FileSourcesMustStayInsideTheRepository) {
  // Given a host file outside the repository, specs reaching it through a
  // committed symlink or through `..` are refused; one inside is loaded.
  ASSERT_TRUE(WriteFileAtomic(dir_.path() / "secret.txt", "host secret").ok());
  std::string file = "  files:\n    - path: /etc/app.conf\n      source: ";
  Commit({{"specs/ok.yaml", SpecYaml("ok", file + "files/app.conf\n")},
          {"specs/files/app.conf", "setting=1\n"},
          {"specs/via-link.yaml", SpecYaml("via-link", file + "link\n")},
          // cache/current/specs/../../.. is the test's directory.
          {"specs/via-dotdot.yaml", SpecYaml("via-dotdot", file + "../../../secret.txt\n")}},
         "setup");
  fs::create_symlink(dir_.path() / "secret.txt", work_ / "specs/link");
  Commit({}, "add a symlink");
  GitSource source(Options());
  SourceSnapshot snap = MustFetch(source);
  EXPECT_EQ(Names(snap), std::vector<std::string>{"ok"});
  ASSERT_EQ(snap.specs.specs.size(), 1u);
  ASSERT_EQ(snap.specs.specs[0].spec.files.size(), 1u);
  // Recorded through `current`, so the path stays valid across commits.
  EXPECT_EQ(*snap.specs.specs[0].spec.files[0].source, (cache_ / "current/specs/files/app.conf").string());
  std::string text = snap.specs.diagnostics.ToString();
  EXPECT_NE(text.find("specs/via-link.yaml:1:1: error: spec.files[0].source: must be a file inside the repository"),
            std::string::npos)
      << text;
  EXPECT_NE(text.find("specs/via-dotdot.yaml:1:1: error: spec.files[0].source: must be a file inside the repository"),
            std::string::npos)
      << text;
  // The symlink was materialized as a symlink, not a copy.
  EXPECT_TRUE(fs::is_symlink(cache_ / "current/specs/link"));
}

TEST_F(GitSourceTest, SpecSymlinksLeavingTheRepositoryAreNotLoaded) {
  // Given host specs outside the repository, neither a committed *.yaml
  // symlink nor a `path` that is a symlink makes banger load them.
  ASSERT_TRUE(MakeDirs(dir_.path() / "host").ok());
  ASSERT_TRUE(WriteFileAtomic(dir_.path() / "host/host.yaml", SpecYaml("host")).ok());
  Commit({{"specs/web.yaml", SpecYaml("web")}}, "one");
  fs::create_symlink(dir_.path() / "host/host.yaml", work_ / "specs/evil.yaml");
  fs::create_symlink(dir_.path() / "host", work_ / "specs/hostdir");
  fs::create_symlink(dir_.path() / "host", work_ / "linked");
  Commit({}, "symlinks");

  GitSource source(Options());
  SourceSnapshot snap = MustFetch(source);
  EXPECT_EQ(Names(snap), std::vector<std::string>{"web"});
  std::string text = snap.specs.diagnostics.ToString();
  EXPECT_NE(text.find("specs/evil.yaml: error: a symlink leading outside the repository"), std::string::npos)
      << text;

  GitSourceOptions o = Options("trunk", "linked");
  o.cache_dir = cache_ / "linked";
  GitSource linked(o);
  SourceSnapshot l = MustFetch(linked);
  EXPECT_TRUE(l.specs.specs.empty());
  EXPECT_TRUE(l.specs.diagnostics.HasErrors()) << l.specs.diagnostics.ToString();
}

TEST_F(GitSourceTest, TreeEntriesThatWouldEscapeAreRefused) {
  // Given commits whose trees (crafted with --literally, as git itself
  // refuses them) hold entries named ".." or "a/b", Fetch fails instead of
  // writing outside its tree.
  Commit({{"specs/web.yaml", SpecYaml("web")}}, "one");
  std::string blob = WorkGit({"hash-object", "-w", "--", "specs/web.yaml"});
  ASSERT_EQ(blob.size(), 40u);
  std::string raw_sha;
  for (size_t i = 0; i < 40; i += 2) raw_sha.push_back(static_cast<char>(std::stoi(blob.substr(i, 2), nullptr, 16)));
  for (const std::string& name : {std::string(".."), std::string("a/b")}) {
    fs::path tree_file = dir_.path() / "tree.bin";
    ASSERT_TRUE(WriteFileAtomic(tree_file, "100644 " + name + std::string(1, '\0') + raw_sha).ok());
    std::string tree = WorkGit({"hash-object", "-w", "-t", "tree", "--literally", tree_file.string()});
    std::string commit = WorkGit({"commit-tree", tree, "-m", "evil"});
    ASSERT_EQ(commit.size(), 40u);
    WorkGit({"push", "-q", "-f", "origin", commit + ":refs/heads/evil"});

    GitSourceOptions o = Options("evil", ".");
    o.cache_dir = cache_ / "evil";
    GitSource source(o);
    Result<SourceSnapshot> r = source.Fetch();
    ASSERT_FALSE(r.ok()) << name;
    EXPECT_NE(r.error().message().find("refusing tree entry"), std::string::npos) << r.error().ToString();
    EXPECT_FALSE(fs::exists(cache_ / "evil/current")) << name;
    EXPECT_FALSE(fs::exists(cache_ / "evil/trees/web.yaml")) << name;
    EXPECT_FALSE(fs::exists(cache_ / "evil/web.yaml")) << name;
    // The staging directory is gone too.
    EXPECT_TRUE(fs::is_empty(cache_ / "evil/trees")) << name;
  }
}

TEST_F(GitSourceTest, MirrorIsRecreatedWhenPacksPileUp) {
  // Given a source fetching many times, the mirror never holds much more
  // than max_mirror_packs pack files, and fetches stay correct.
  auto packs = [&] {
    int n = 0;
    std::error_code ec;
    for (fs::directory_iterator it(cache_ / "repo.git/objects/pack", ec), end; !ec && it != end; it.increment(ec)) {
      if (it->path().extension() == ".pack") ++n;
    }
    return n;
  };
  GitSourceOptions o = Options();
  o.max_mirror_packs = 2;
  GitSource source(o);
  // Without the limit, every fetch of new commits adds a pack.
  GitSourceOptions unlimited_opts = Options();
  unlimited_opts.cache_dir = cache_ / "unlimited";
  GitSource unlimited(unlimited_opts);
  int most = 0;
  for (int i = 0; i < 5; ++i) {
    std::string sha = Commit({{"specs/web.yaml", SpecYaml("web", "  cpus: " + std::to_string(i + 1) + "\n")}},
                             "commit " + std::to_string(i));
    SourceSnapshot snap = MustFetch(source);
    EXPECT_EQ(snap.revision, sha);
    ASSERT_EQ(snap.specs.specs.size(), 1u);
    EXPECT_EQ(snap.specs.specs[0].spec.cpus, static_cast<uint32_t>(i + 1));
    most = std::max(most, packs());
    EXPECT_EQ(MustFetch(unlimited).revision, sha);
  }
  int unlimited_packs = 0;
  for (const auto& e : fs::directory_iterator(cache_ / "unlimited/repo.git/objects/pack")) {
    if (e.path().extension() == ".pack") ++unlimited_packs;
  }
  EXPECT_EQ(unlimited_packs, 5);
  EXPECT_GE(most, 1);
  EXPECT_LE(most, 3);
}

TEST_F(GitSourceTest, MissingRepositoryIsAnErrorNamingTheUrl) {
  GitSourceOptions o = Options();
  o.url = (dir_.path() / "nope.git").string();
  GitSource source(o);
  Result<SourceSnapshot> r = source.Fetch();
  ASSERT_FALSE(r.ok());
  EXPECT_NE(r.error().message().find("fetching " + o.url + " trunk"), std::string::npos) << r.error().ToString();
}

TEST_F(GitSourceTest, TheRemoteIsNeverWritten) {
  Commit({{"specs/web.yaml", SpecYaml("web")}}, "one");
  WorkGit({"tag", "v1"});
  WorkGit({"push", "-q", "origin", "v1"});
  auto refs = [&] {
    return Git({"-C", remote_.string(), "for-each-ref", "--format=%(refname) %(objectname)"}) + "\nHEAD " +
           ReadFile(remote_ / "HEAD").value_or("?");
  };
  std::string before = refs();
  for (const std::string& ref : {std::string("trunk"), std::string(""), std::string("v1")}) {
    GitSourceOptions o = Options(ref);
    o.cache_dir = cache_ / ("c" + ref);
    GitSource source(o);
    MustFetch(source);
  }
  EXPECT_EQ(refs(), before);
  EXPECT_EQ(Git({"-C", remote_.string(), "fsck", "--no-progress"}), "");
}

TEST_F(GitSourceTest, PlainPathsAndFileUrlsBothWork) {
  std::string sha = Commit({{"specs/web.yaml", SpecYaml("web")}}, "one");
  for (const std::string& url : {remote_.string(), "file://" + remote_.string()}) {
    GitSourceOptions o = Options("trunk", "./specs/");
    o.url = url;
    o.cache_dir = cache_ / std::to_string(url.size());
    GitSource source(o);
    EXPECT_EQ(source.Key(), "git:" + url + "#trunk:specs");
    SourceSnapshot snap = MustFetch(source);
    EXPECT_EQ(snap.revision, sha) << url;
    EXPECT_EQ(Names(snap), std::vector<std::string>{"web"}) << url;
  }
}

TEST_F(GitSourceTest, PathOutsideTheRepositoryIsRejected) {
  Commit({{"specs/web.yaml", SpecYaml("web")}}, "one");
  GitSource source(Options("trunk", "../elsewhere"));
  Result<SourceSnapshot> r = source.Fetch();
  ASSERT_FALSE(r.ok());
  EXPECT_EQ(r.error().code(), StatusCode::kInvalidArgument);
}

TEST_F(GitSourceTest, MissingPathIsADiagnostic) {
  Commit({{"specs/web.yaml", SpecYaml("web")}}, "one");
  GitSource source(Options("trunk", "deploy"));
  SourceSnapshot snap = MustFetch(source);
  EXPECT_TRUE(snap.specs.specs.empty());
  std::string text = snap.specs.diagnostics.ToString();
  EXPECT_NE(text.find("deploy: error: no such file or directory"), std::string::npos) << text;
}

}  // namespace
}  // namespace banger
