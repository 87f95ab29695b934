// A fake `firecracker` (and, when its name contains "jailer", a fake
// `jailer`) for the provider's tests: it parses the real command line, serves
// the API contract server (providers/testing/firecracker_contract.h) on
// --api-sock, and appends every request it got to a record file, so the
// provider's real process path (spawn, socket wait, configure, kill) runs.
//
// Behaviour is set by the JSON file named in $BANGER_FAKE_FIRECRACKER:
//   {"record": PATH,                       every request as one JSON line
//    "fail": {"PUT /drives/rootfs": MSG},  answer that request 400 with MSG
//    "exit_early": MSG,                    print MSG to stderr, exit 1 before listening
//    "never_listen": true,                 run without ever opening the socket
//    "jailer_fail": MSG}                   the fake jailer prints MSG and exits 1
#include <unistd.h>

#include <cstdio>
#include <cstdlib>
#include <fstream>
#include <iostream>
#include <nlohmann/json.hpp>
#include <string>
#include <thread>
#include <vector>

#include "base/files.h"
#include "providers/testing/firecracker_contract.h"

namespace fs = std::filesystem;
using nlohmann::json;
using banger::testing::FakeVmm;
using banger::testing::FakeVmmOptions;
using banger::testing::FakeVmmServer;
using banger::testing::SwaggerContract;

namespace {

json Control() {
  const char* path = std::getenv("BANGER_FAKE_FIRECRACKER");
  if (path == nullptr || *path == '\0') return json::object();
  auto text = banger::ReadFile(path);
  if (!text) return json::object();
  json j = json::parse(*text, nullptr, false);
  return j.is_object() ? j : json::object();
}

std::string Arg(const std::vector<std::string>& args, const std::string& name) {
  for (size_t i = 0; i + 1 < args.size(); ++i) {
    if (args[i] == name) return args[i + 1];
  }
  return "";
}

// jailer --id ID --exec-file F --uid U --gid G --chroot-base-dir B [...] -- ARGS:
// no chroot (tests need not be root): the jail root is prepared like the
// real jailer's and handed to the fake firecracker, which resolves absolute
// paths below it.
int Jailer(const std::vector<std::string>& args, const json& control) {
  if (control.contains("jailer_fail")) {
    std::cerr << "jailer: " << control["jailer_fail"].get<std::string>() << "\n";
    return 1;
  }
  std::string id = Arg(args, "--id"), exec = Arg(args, "--exec-file"), base = Arg(args, "--chroot-base-dir");
  for (const char* required : {"--uid", "--gid"}) {
    std::string v = Arg(args, required);
    if (v.empty() || v.find_first_not_of("0123456789") != std::string::npos) {
      std::cerr << "jailer: " << required << " must be a number\n";
      return 1;
    }
  }
  if (id.empty() || exec.empty() || base.empty() || exec.front() != '/') {
    std::cerr << "jailer: --id, an absolute --exec-file and --chroot-base-dir are required\n";
    return 1;
  }
  if (fs::path(exec).filename().string().find("firecracker") == std::string::npos) {
    std::cerr << "jailer: the exec file name must contain \"firecracker\"\n";
    return 1;
  }
  fs::path root = fs::path(base) / fs::path(exec).filename() / id / "root";
  std::error_code ec;
  fs::create_directories(root, ec);
  std::vector<std::string> argv = {exec, "--id", id, "--fake-root", root.string()};
  bool after = false;
  for (const auto& a : args) {
    if (after) argv.push_back(a);
    if (a == "--") after = true;
  }
  if (::chdir(root.c_str()) != 0) return 1;
  std::vector<char*> cargv;
  for (auto& a : argv) cargv.push_back(a.data());
  cargv.push_back(nullptr);
  ::execv(exec.c_str(), cargv.data());
  std::perror("jailer: exec");
  return 1;
}

}  // namespace

int main(int argc, char** argv) {
  std::vector<std::string> args(argv + 1, argv + argc);
  json control = Control();
  if (fs::path(argv[0]).filename().string().find("jailer") != std::string::npos) return Jailer(args, control);

  std::string socket = Arg(args, "--api-sock");
  if (socket.empty()) {
    std::cerr << "firecracker: --api-sock is required here\n";
    return 1;
  }
  FakeVmmOptions opts;
  opts.root = Arg(args, "--fake-root");
  if (!Arg(args, "--id").empty()) opts.instance_id = Arg(args, "--id");
  opts.record_file = control.value("record", "");
  const json fail = control.value("fail", json::object());
  for (const auto& [k, v] : fail.items()) opts.fail[k] = v.get<std::string>();
  if (control.contains("exit_early")) {
    std::cerr << control["exit_early"].get<std::string>() << "\n";
    return 1;
  }
  if (control.value("never_listen", false)) {
    for (;;) ::pause();
  }
  auto contract = SwaggerContract::Load(banger::testing::FirecrackerSwaggerPath());
  if (!contract) {
    std::cerr << contract.error().message() << "\n";
    return 1;
  }
  std::cout << "fake firecracker " << opts.instance_id << " serving " << socket << std::endl;
  FakeVmm vmm(*contract, opts);
  // Jailed: the working directory is the jail's root (see FakeVmm::Resolve).
  fs::path api = fs::path(socket).is_absolute() && !opts.root.empty() ? fs::path(socket).relative_path()
                                                                       : fs::path(socket);
  auto server = FakeVmmServer::Start(api, vmm);
  if (!server) {
    std::cerr << server.error().message() << "\n";
    return 1;
  }
  (*server)->ServeInBackground();
  while (!vmm.exit_requested()) std::this_thread::sleep_for(std::chrono::milliseconds(5));
  (*server)->Stop();
  std::cout << "fake firecracker: guest rebooted (Ctrl+Alt+Del), exiting" << std::endl;
  return 0;
}
