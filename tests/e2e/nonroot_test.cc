// banger run by an ordinary user: a temporary unprivileged account (made with
// useradd, removed with everything it owns at the end, also on failure) runs
// the real banger binary with a clean environment (setpriv --reset-env: no
// sbin on PATH, state under its own home) against an image from the test's
// loopback registry that has root-owned system files, a 1234:5678 file and a
// setuid binary. Inside the guest, `stat` says the same as for the same spec
// applied by root.
#include <pwd.h>
#include <sys/stat.h>

#include "oci/test_layers.h"
#include "tests/e2e/vm_fixture.h"
#include "tests/support/oci_registry.h"

namespace banger::e2e {
namespace {

// A throwaway local account. The destructor deletes its sandboxes (as it),
// kills any QEMU that names its home, and removes the account, its home and
// whatever it left in /tmp and /dev/shm.
class TempUser {
 public:
  ~TempUser() { Remove(); }

  bool Create() {
    name_ = "bngr-e2e-" + std::to_string(::getpid());
    home_ = "/tmp/" + name_ + "-home";
    auto out = runner_->Run(CommandSpec{.argv = {"useradd", "--create-home", "--home-dir", home_,
                                                 "--user-group", "--shell", "/bin/sh", name_}});
    if (!out.ok() || out->exit_code != 0) {
      error_ = out.ok() ? out->stderr_data : out.error().ToString();
      return false;
    }
    created_ = true;
    struct passwd* pw = ::getpwnam(name_.c_str());
    if (pw == nullptr) {
      error_ = "useradd made no passwd entry";
      return false;
    }
    uid_ = pw->pw_uid;
    gid_ = pw->pw_gid;
    return true;
  }

  // banger ARGS as this user, with the environment a login would give it.
  CommandOutput Banger(std::vector<std::string> args,
                       std::chrono::milliseconds timeout = std::chrono::minutes(5)) {
    CommandSpec spec;
    spec.argv = {"setpriv", "--reuid", name_, "--regid", name_, "--init-groups", "--reset-env",
                 "--",      "/usr/bin/env", "NO_COLOR=1", BANGER_EXE};
    spec.argv.insert(spec.argv.end(), args.begin(), args.end());
    spec.timeout = timeout;
    auto out = runner_->Run(spec);
    EXPECT_TRUE(out.ok()) << out.error().ToString();
    return out.ok() ? *out : CommandOutput{-1, "", ""};
  }

  void Track(const std::string& sandbox) { sandboxes_.push_back(sandbox); }
  const std::string& name() const { return name_; }
  const std::string& home() const { return home_; }
  uid_t uid() const { return uid_; }
  const std::string& error() const { return error_; }

 private:
  void Remove() {
    if (!created_) return;
    for (const std::string& s : sandboxes_) (void)Banger({"delete", s, "--yes"}, std::chrono::minutes(2));
    for (int pid : QemuPidsMentioning(home_)) KillByPid(pid);
    (void)runner_->Run(CommandSpec{.argv = {"userdel", "--remove", name_}});
    std::error_code ec;
    fs::remove_all(home_, ec);
    for (const char* dir : {"/tmp", "/dev/shm"}) {
      for (const auto& e : fs::directory_iterator(dir, ec)) {
        struct stat st{};
        if (::lstat(e.path().c_str(), &st) == 0 && st.st_uid == uid_) fs::remove_all(e.path(), ec);
      }
    }
    created_ = false;
  }

  std::string name_, home_, error_;
  uid_t uid_ = 0;
  gid_t gid_ = 0;
  bool created_ = false;
  std::vector<std::string> sandboxes_;
  std::unique_ptr<CommandRunner> runner_ = MakePosixCommandRunner();
};

class NonRootTest : public VmFixture {};

const char* const kStatPaths[] = {"/",          "/etc",         "/etc/passwd",       "/etc/shadow",
                                  "/bin/busybox", "/usr/bin/suidtool", "/srv/app", "/srv/app/data",
                                  "/var/empty", "/tmp"};

std::vector<std::string> StatArgv() {
  std::vector<std::string> argv = {"stat", "-c", "%n %u:%g %a %F"};
  for (const char* p : kStatPaths) argv.push_back(p);
  return argv;
}

TEST_F(NonRootTest, AUserAppliesExecsAndSeesTheSameOwnershipAsRoot) {
  if (::geteuid() != 0) GTEST_SKIP() << "creating a temporary user needs root";
  if (!testing::RegistryProcess::Available()) GTEST_SKIP() << "docker-registry is not installed";
  for (const char* tool : {"useradd", "userdel", "setpriv"}) {
    if (!FindProgram(tool)) GTEST_SKIP() << "needs " << tool << " (passwd, util-linux)";
  }
  auto busybox = ReadFile("/bin/busybox");
  if (!busybox.ok()) GTEST_SKIP() << "no /bin/busybox on the host";

  // The image: root-owned system files, a 1234:5678 file, a setuid binary.
  fs::path reg_root = dir_.path() / "registry";
  fs::create_directories(reg_root);
  testing::RegistryProcess registry;
  ASSERT_TRUE(registry.Start(reg_root).ok());
  oci::testing::TarBuilder layer;
  layer.Dir("bin").Dir("dev").Dir("proc").Dir("sys").Dir("etc").Dir("root", 0700).Dir("run");
  layer.Dir("tmp", 01777).Dir("usr").Dir("usr/bin").Dir("var").Dir("var/empty", 0711);
  layer.File("bin/busybox", *busybox, 0755);
  for (const char* applet : {"sh", "cat", "sleep", "stat", "id", "ls"}) {
    layer.Symlink(std::string("bin/") + applet, "busybox");
  }
  layer.File("etc/passwd", "root:x:0:0:root:/root:/bin/sh\nsvc:x:1234:5678::/srv/app:/bin/sh\n");
  oci::testing::TarEntry shadow;
  shadow.path = "etc/shadow";
  shadow.content = "root:*:19000:0:99999:7:::\n";
  shadow.mode = 0640;
  shadow.gid = 42;
  layer.Add(shadow);
  oci::testing::TarEntry suid;
  suid.path = "usr/bin/suidtool";
  suid.content = *busybox;
  suid.mode = 04755;
  layer.Add(suid);
  oci::testing::TarEntry app;
  app.path = "srv/app";
  app.type = AE_IFDIR;
  app.mode = 0750;
  app.uid = 1234;
  app.gid = 5678;
  layer.Dir("srv").Add(app);
  oci::testing::TarEntry data;
  data.path = "srv/app/data";
  data.content = "service data\n";
  data.mode = 0600;
  data.uid = 1234;
  data.gid = 5678;
  layer.Add(data);
  std::string tar;
  try {
    tar = layer.Build();
  } catch (const std::exception& e) {
    FAIL() << "building the layer: " << e.what();
  }
  json cfg = {{"Entrypoint", {"/bin/sleep", "100000"}}, {"Env", {"PATH=/bin:/usr/bin"}}};
  auto image = testing::OciTestImage::Make({tar}, cfg.dump());
  testing::OciPusher pusher(registry.HostPort());
  ASSERT_TRUE(pusher.PushImage("owners/app", "1", image).ok());

  SpecOptions o;
  o.image = registry.HostPort() + "/owners/app:1";
  o.readiness = R"(["cat", "/etc/passwd"])";

  // As root.
  std::string root_spec = WriteSpec("owners-root", o);
  ASSERT_NO_FATAL_FAILURE(ApplyReady(root_spec, "owners-root"));
  CommandOutput root_stat = Exec("owners-root", StatArgv());
  ASSERT_EQ(root_stat.exit_code, 0) << root_stat.stderr_data;

  // As an ordinary user: same spec, its own state under its home.
  TempUser user;
  ASSERT_TRUE(user.Create()) << "useradd: " << user.error();
  user.Track("owners-user");
  fs::path spec_file = fs::path(user.home()) / "owners-user.yaml";
  ASSERT_TRUE(WriteFileAtomic(spec_file, SpecYaml("owners-user", o)).ok());
  ASSERT_EQ(::chmod(spec_file.c_str(), 0644), 0);

  CommandOutput apply = user.Banger({"apply", "-f", spec_file.string(), "--yes"});
  ASSERT_EQ(apply.exit_code, 0) << "apply as " << user.name() << ":\n"
                                << apply.stdout_data << apply.stderr_data;
  CommandOutput id = user.Banger({"exec", "owners-user", "--", "id", "-u"});
  ASSERT_EQ(id.exit_code, 0) << id.stderr_data;
  EXPECT_EQ(id.stdout_data, "0\n") << "exec runs as the guest's root";
  std::vector<std::string> exec_stat = {"exec", "owners-user", "--"};
  for (const std::string& a : StatArgv()) exec_stat.push_back(a);
  CommandOutput user_stat = user.Banger(exec_stat);
  ASSERT_EQ(user_stat.exit_code, 0) << user_stat.stderr_data;

  EXPECT_EQ(user_stat.stdout_data, root_stat.stdout_data)
      << "the same image applied by " << user.name() << " and by root";
  const std::string& s = user_stat.stdout_data;
  for (const char* line : {"/etc/passwd 0:0 644 regular file", "/etc/shadow 0:42 640 regular file",
                           "/bin/busybox 0:0 755 regular file",
                           "/usr/bin/suidtool 0:0 4755 regular file",
                           "/srv/app 1234:5678 750 directory",
                           "/srv/app/data 1234:5678 600 regular file",
                           "/var/empty 0:0 711 directory", "/tmp 0:0 1777 directory"}) {
    EXPECT_NE(s.find(std::string(line) + "\n"), std::string::npos) << "missing \"" << line
                                                                    << "\" in:\n" << s;
  }

  // Its state is under its own XDG data directory, private to it.
  fs::path state = fs::path(user.home()) / ".local/share/banger";
  struct stat st{};
  ASSERT_EQ(::stat(state.c_str(), &st), 0) << state;
  EXPECT_EQ(st.st_uid, user.uid());
  EXPECT_EQ(st.st_mode & 07777, 0700u);
  EXPECT_TRUE(fs::exists(state / "state.db"));

  // What the user cannot have: bridged networking, said at plan time.
  SpecOptions bridged = o;
  bridged.network = "network:\n    mode: bridged\n";
  fs::path bridged_file = fs::path(user.home()) / "bridged.yaml";
  ASSERT_TRUE(WriteFileAtomic(bridged_file, SpecYaml("owners-bridged", bridged)).ok());
  ASSERT_EQ(::chmod(bridged_file.c_str(), 0644), 0);
  CommandOutput plan = user.Banger({"plan", "-f", bridged_file.string()});
  EXPECT_NE(plan.exit_code, 0) << plan.stdout_data;
  EXPECT_NE((plan.stdout_data + plan.stderr_data).find("CAP_NET_ADMIN"), std::string::npos)
      << plan.stdout_data << plan.stderr_data;

  CommandOutput del = user.Banger({"delete", "owners-user", "--yes"});
  EXPECT_EQ(del.exit_code, 0) << del.stdout_data << del.stderr_data;
  EXPECT_TRUE(QemuPidsMentioning(user.home()).empty());
}

}  // namespace
}  // namespace banger::e2e
