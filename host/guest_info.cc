#include "host/guest_info.h"

#include <arpa/inet.h>

#include <nlohmann/json.hpp>

#include "base/strings.h"

namespace banger::host {
namespace {

std::optional<uint64_t> Digits(std::string_view s) {
  if (s.empty() || s.size() > 19) return std::nullopt;
  uint64_t v = 0;
  for (char c : s) {
    if (c < '0' || c > '9') return std::nullopt;
    v = v * 10 + static_cast<uint64_t>(c - '0');
  }
  return v;
}

bool IsIpLiteral(const std::string& s) {
  unsigned char buf[16];
  return s.size() <= 45 && (inet_pton(AF_INET, s.c_str(), buf) == 1 || inet_pton(AF_INET6, s.c_str(), buf) == 1);
}

std::string Printable(const std::string& s) {
  std::string out;
  for (unsigned char c : s) {
    if (out.size() >= 64) break;
    out += (c >= 0x20 && c < 0x7f) ? static_cast<char>(c) : '?';
  }
  return out;
}

}  // namespace

Result<std::vector<GuestSocket>> ParseGuestPorts(std::string_view output) {
  if (output.size() > kMaxGuestOutput) {
    return DataLoss("the guest's socket list is larger than " + std::to_string(kMaxGuestOutput) + " bytes");
  }
  std::vector<GuestSocket> out;
  size_t line_no = 0;
  for (const std::string& line : Split(output, '\n')) {
    ++line_no;
    if (Trim(line).empty()) continue;
    if (out.size() >= kMaxGuestSockets) {
      return DataLoss("the guest listed more than " + std::to_string(kMaxGuestSockets) + " sockets");
    }
    auto bad = [&](const std::string& why) {
      return DataLoss("@banger/ports line " + std::to_string(line_no) + ": " + why);
    };
    nlohmann::json j = nlohmann::json::parse(line, nullptr, /*allow_exceptions=*/false);
    if (!j.is_object()) return bad("not a JSON object");
    GuestSocket s;
    if (!j["proto"].is_string()) return bad("proto is not a string");
    s.proto = j["proto"].get<std::string>();
    if (s.proto != "tcp" && s.proto != "udp") return bad("unknown protocol");
    if (!j["address"].is_string() || !IsIpLiteral(j["address"].get<std::string>())) {
      return bad("address is not an IP address");
    }
    s.address = j["address"].get<std::string>();
    if (!j["port"].is_number_unsigned() || j["port"].get<uint64_t>() == 0 || j["port"].get<uint64_t>() > 65535) {
      return bad("port is not in 1..65535");
    }
    s.port = static_cast<uint16_t>(j["port"].get<uint64_t>());
    if (j.contains("pid")) {
      if (!j["pid"].is_number_unsigned() || j["pid"].get<uint64_t>() > 0x7fffffff) return bad("pid is not a pid");
      s.pid = static_cast<int>(j["pid"].get<uint64_t>());
    }
    if (j.contains("process")) {
      if (!j["process"].is_string()) return bad("process is not a string");
      s.process = Printable(j["process"].get<std::string>());
    }
    out.push_back(std::move(s));
  }
  return out;
}

bool IsLoopbackAddress(std::string_view address) {
  return address == "::1" || StartsWith(address, "127.") || StartsWith(address, "::ffff:127.");
}

std::string HostEndpointFor(const GuestSocket& s, const SandboxRecord& rec, const SandboxSpec& spec,
                            uint16_t ssh_forward_port) {
  if (spec.network.mode == NetworkMode::kNone || IsLoopbackAddress(s.address)) return "";
  Protocol proto = s.proto == "udp" ? Protocol::kUdp : Protocol::kTcp;
  bool bridged = spec.network.mode == NetworkMode::kBridged;
  for (const auto& p : spec.network.ports) {
    if (p.guest == s.port && p.protocol == proto) {
      return (bridged ? p.address : std::string(kDefaultPortAddress)) + ":" + std::to_string(p.host);
    }
  }
  if (bridged) return rec.address.empty() ? "" : rec.address + ":" + std::to_string(s.port);
  if (proto == Protocol::kTcp && s.port == 22 && ssh_forward_port != 0) {
    return std::string(kDefaultPortAddress) + ":" + std::to_string(ssh_forward_port);
  }
  return "";
}

Result<GuestStats> ParseGuestStats(std::string_view output) {
  if (output.size() > 64 * 1024) return DataLoss("the guest's stats are larger than 64 KiB");
  nlohmann::json j = nlohmann::json::parse(output, nullptr, /*allow_exceptions=*/false);
  if (!j.is_object()) return DataLoss("@banger/stats did not print a JSON object");
  GuestStats g;
  struct Field {
    const char* name;
    std::optional<uint64_t>* out;
  };
  for (const Field& f : {Field{"mem_total_bytes", &g.mem_total_bytes}, Field{"mem_available_bytes", &g.mem_available_bytes},
                         Field{"cpu_busy_ticks", &g.cpu_busy_ticks}, Field{"cpu_idle_ticks", &g.cpu_idle_ticks},
                         Field{"ticks_per_second", &g.ticks_per_second}, Field{"cpus", &g.cpus},
                         Field{"fs_total_bytes", &g.fs_total_bytes}, Field{"fs_free_bytes", &g.fs_free_bytes},
                         Field{"fs_used_bytes", &g.fs_used_bytes}, Field{"uptime_seconds", &g.uptime_seconds}}) {
    if (!j.contains(f.name)) continue;
    if (!j[f.name].is_number_unsigned()) {
      return DataLoss(std::string("@banger/stats: ") + f.name + " is not a non-negative integer");
    }
    *f.out = j[f.name].get<uint64_t>();
  }
  if (g.mem_total_bytes && g.mem_available_bytes && *g.mem_available_bytes > *g.mem_total_bytes) {
    return DataLoss("@banger/stats: more memory available than there is");
  }
  if (g.fs_total_bytes && g.fs_used_bytes && *g.fs_used_bytes > *g.fs_total_bytes) {
    return DataLoss("@banger/stats: more of the file system used than there is");
  }
  if (g.ticks_per_second && *g.ticks_per_second == 0) return DataLoss("@banger/stats: ticks_per_second is 0");
  return g;
}

Result<uint64_t> ParseProcPidStatCpuTicks(std::string_view stat) {
  size_t close = stat.rfind(')');
  if (close == std::string_view::npos) return DataLoss("/proc/PID/stat: no command name");
  std::vector<std::string> f;
  for (const std::string& w : Split(Trim(stat.substr(close + 1)), ' ')) {
    if (!w.empty()) f.push_back(w);
  }
  // After "(comm)": state(3) ... utime(14) stime(15) -> indexes 11 and 12.
  if (f.size() < 13) return DataLoss("/proc/PID/stat: too few fields");
  auto u = Digits(f[11]);
  auto s = Digits(f[12]);
  if (!u || !s) return DataLoss("/proc/PID/stat: utime/stime are not numbers");
  return *u + *s;
}

Result<uint64_t> ParseVmRssBytes(std::string_view status) {
  for (const std::string& line : Split(status, '\n')) {
    if (!StartsWith(line, "VmRSS:")) continue;
    std::vector<std::string> f;
    for (const std::string& w : Split(Trim(std::string_view(line).substr(6)), ' ')) {
      if (!w.empty()) f.push_back(w);
    }
    if (f.size() != 2 || f[1] != "kB") break;
    auto v = Digits(f[0]);
    if (!v || *v > (UINT64_MAX / 1024)) break;
    return *v * 1024;
  }
  return DataLoss("/proc/PID/status: no VmRSS line");
}

}  // namespace banger::host
