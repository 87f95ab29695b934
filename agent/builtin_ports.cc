// @banger/ports: the guest's listening TCP and UDP sockets, one JSON object a
// line: {"proto":"tcp","address":"0.0.0.0","port":22,"pid":41,"process":"sshd"}
// (pid/process only when a /proc/PID/fd link names the socket's inode).
// Read from /proc/net/{tcp,tcp6,udp,udp6}; no ss or netstat needed.
#include <dirent.h>
#include <unistd.h>

#include <cstdio>
#include <fstream>
#include <map>
#include <sstream>
#include <string>
#include <vector>

#include "agent/builtins.h"
#include "agent/procfs.h"

namespace banger::agent {
namespace {

constexpr size_t kMaxSockets = 4096;

struct Owner {
  int pid = 0;
  std::string comm;
};

bool AllDigits(const char* s) {
  if (!*s) return false;
  for (; *s; ++s) {
    if (*s < '0' || *s > '9') return false;
  }
  return true;
}

// inode -> owning process, for the inodes asked about (bounded scan of /proc).
std::map<uint64_t, Owner> Owners(const std::map<uint64_t, bool>& wanted) {
  std::map<uint64_t, Owner> out;
  DIR* proc = ::opendir("/proc");
  if (!proc) return out;
  int procs = 0;
  while (dirent* e = ::readdir(proc)) {
    if (!AllDigits(e->d_name) || ++procs > 65536) continue;
    std::string fd_dir = std::string("/proc/") + e->d_name + "/fd";
    DIR* fds = ::opendir(fd_dir.c_str());
    if (!fds) continue;
    int n = 0;
    while (dirent* f = ::readdir(fds)) {
      if (!AllDigits(f->d_name) || ++n > 65536) continue;
      char target[128];
      ssize_t len = ::readlink((fd_dir + "/" + f->d_name).c_str(), target, sizeof(target) - 1);
      if (len <= 0) continue;
      uint64_t inode = SocketInode(std::string_view(target, static_cast<size_t>(len)));
      if (inode == 0 || !wanted.count(inode) || out.count(inode)) continue;
      Owner o;
      o.pid = std::atoi(e->d_name);
      std::ifstream comm(std::string("/proc/") + e->d_name + "/comm");
      std::getline(comm, o.comm);
      if (o.comm.size() > 64) o.comm.resize(64);
      out[inode] = o;
    }
    ::closedir(fds);
  }
  ::closedir(proc);
  return out;
}

struct Listening {
  std::string proto;
  ProcNetSocket s;
};

int Ports(const std::vector<std::string>&) {
  std::vector<Listening> found;
  struct Table {
    const char* path;
    const char* proto;
    bool ipv6;
    bool udp;
  };
  for (const Table& t : {Table{"/proc/net/tcp", "tcp", false, false}, Table{"/proc/net/tcp6", "tcp", true, false},
                         Table{"/proc/net/udp", "udp", false, true}, Table{"/proc/net/udp6", "udp", true, true}}) {
    std::ifstream in(t.path);
    std::string line;
    while (found.size() < kMaxSockets && std::getline(in, line)) {
      auto s = ParseProcNetLine(line, t.ipv6);
      if (!s || !IsListening(*s, t.udp)) continue;
      found.push_back({t.proto, *s});
    }
  }
  std::map<uint64_t, bool> wanted;
  for (const auto& l : found) {
    if (l.s.inode != 0) wanted[l.s.inode] = true;
  }
  std::map<uint64_t, Owner> owners = Owners(wanted);
  for (const auto& l : found) {
    std::ostringstream o;
    o << "{\"proto\":\"" << l.proto << "\",\"address\":" << JsonQuote(l.s.address) << ",\"port\":" << l.s.port;
    auto it = owners.find(l.s.inode);
    if (it != owners.end()) o << ",\"pid\":" << it->second.pid << ",\"process\":" << JsonQuote(it->second.comm);
    o << "}\n";
    std::fputs(o.str().c_str(), stdout);
  }
  return std::fflush(stdout) == 0 ? 0 : 1;
}

}  // namespace

int BuiltinPorts(const std::vector<std::string>& argv) { return Ports(argv); }

}  // namespace banger::agent
