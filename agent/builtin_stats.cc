// @banger/stats: one JSON object with the guest's own view of itself:
// {"mem_total_bytes":..,"mem_available_bytes":..,"cpu_busy_ticks":..,
//  "cpu_idle_ticks":..,"ticks_per_second":..,"cpus":..,"fs_total_bytes":..,
//  "fs_free_bytes":..,"fs_used_bytes":..,"uptime_seconds":..}
// from /proc/meminfo, /proc/stat, statfs("/") and /proc/uptime.
#include <sys/statfs.h>
#include <unistd.h>

#include <cstdio>
#include <fstream>
#include <sstream>
#include <string>
#include <vector>

#include "agent/builtins.h"
#include "agent/procfs.h"

namespace banger::agent {
namespace {

std::string ReadSmall(const char* path) {
  std::ifstream in(path);
  std::string out;
  char buf[4096];
  while (out.size() < (1u << 20) && in.read(buf, sizeof(buf)).gcount() > 0) out.append(buf, in.gcount());
  return out;
}

}  // namespace

int BuiltinStats(const std::vector<std::string>&) {
  std::ostringstream o;
  o << "{";
  const char* sep = "";
  auto field = [&](const char* name, uint64_t v) {
    o << sep << "\"" << name << "\":" << v;
    sep = ",";
  };
  if (auto m = ParseMeminfo(ReadSmall("/proc/meminfo"))) {
    field("mem_total_bytes", m->total_bytes);
    field("mem_available_bytes", m->available_bytes);
  }
  if (auto c = ParseProcStatCpu(ReadSmall("/proc/stat"))) {
    field("cpu_busy_ticks", c->busy_ticks);
    field("cpu_idle_ticks", c->idle_ticks);
  }
  long hz = ::sysconf(_SC_CLK_TCK);
  if (hz > 0) field("ticks_per_second", static_cast<uint64_t>(hz));
  long cpus = ::sysconf(_SC_NPROCESSORS_ONLN);
  if (cpus > 0) field("cpus", static_cast<uint64_t>(cpus));
  struct statfs fs {};
  if (::statfs("/", &fs) == 0 && fs.f_bsize > 0) {
    uint64_t bs = static_cast<uint64_t>(fs.f_frsize > 0 ? fs.f_frsize : fs.f_bsize);
    field("fs_total_bytes", fs.f_blocks * bs);
    field("fs_free_bytes", fs.f_bavail * bs);
    field("fs_used_bytes", (fs.f_blocks - fs.f_bfree) * bs);
  }
  std::string up = ReadSmall("/proc/uptime");
  double seconds = 0;
  if (std::sscanf(up.c_str(), "%lf", &seconds) == 1 && seconds >= 0) field("uptime_seconds", static_cast<uint64_t>(seconds));
  o << "}\n";
  std::fputs(o.str().c_str(), stdout);
  return std::fflush(stdout) == 0 ? 0 : 1;
}

}  // namespace banger::agent
