#include "agent/procfs.h"

#include <arpa/inet.h>

#include <cstdio>
#include <cstring>
#include <vector>

namespace banger::agent {
namespace {

std::vector<std::string_view> Fields(std::string_view line) {
  std::vector<std::string_view> out;
  size_t i = 0;
  while (i < line.size() && out.size() < 32) {
    while (i < line.size() && (line[i] == ' ' || line[i] == '\t')) ++i;
    size_t start = i;
    while (i < line.size() && line[i] != ' ' && line[i] != '\t' && line[i] != '\n') ++i;
    if (i > start) out.push_back(line.substr(start, i - start));
    if (i < line.size() && line[i] == '\n') break;
  }
  return out;
}

std::optional<uint64_t> Hex(std::string_view s, size_t max_digits) {
  if (s.empty() || s.size() > max_digits) return std::nullopt;
  uint64_t v = 0;
  for (char c : s) {
    int d;
    if (c >= '0' && c <= '9') d = c - '0';
    else if (c >= 'A' && c <= 'F') d = c - 'A' + 10;
    else if (c >= 'a' && c <= 'f') d = c - 'a' + 10;
    else return std::nullopt;
    v = v * 16 + static_cast<uint64_t>(d);
  }
  return v;
}

std::optional<uint64_t> Dec(std::string_view s) {
  if (s.empty() || s.size() > 19) return std::nullopt;
  uint64_t v = 0;
  for (char c : s) {
    if (c < '0' || c > '9') return std::nullopt;
    v = v * 10 + static_cast<uint64_t>(c - '0');
  }
  return v;
}

// "HEXADDR:HEXPORT" as the kernel prints it: the address is the raw
// network-order words printed as native 32-bit integers (%08X each).
bool ParseEndpoint(std::string_view s, bool ipv6, std::string* address, uint16_t* port, bool* zero) {
  size_t colon = s.find(':');
  if (colon == std::string_view::npos) return false;
  std::string_view a = s.substr(0, colon);
  auto p = Hex(s.substr(colon + 1), 4);
  size_t words = ipv6 ? 4 : 1;
  if (!p || a.size() != words * 8) return false;
  unsigned char bytes[16];
  for (size_t w = 0; w < words; ++w) {
    auto v = Hex(a.substr(w * 8, 8), 8);
    if (!v) return false;
    uint32_t word = static_cast<uint32_t>(*v);
    std::memcpy(bytes + w * 4, &word, 4);
  }
  char text[INET6_ADDRSTRLEN] = {};
  if (!inet_ntop(ipv6 ? AF_INET6 : AF_INET, bytes, text, sizeof(text))) return false;
  *address = text;
  *port = static_cast<uint16_t>(*p);
  bool all_zero = *p == 0;
  for (size_t i = 0; i < words * 4; ++i) all_zero = all_zero && bytes[i] == 0;
  *zero = all_zero;
  return true;
}

}  // namespace

std::optional<ProcNetSocket> ParseProcNetLine(std::string_view line, bool ipv6) {
  auto f = Fields(line);
  // sl local rem st tx:rx tr:when retrnsmt uid timeout inode ...
  if (f.size() < 10 || f[0].empty() || f[0].back() != ':') return std::nullopt;
  ProcNetSocket s;
  bool local_zero = false;
  if (!ParseEndpoint(f[1], ipv6, &s.address, &s.port, &local_zero)) return std::nullopt;
  std::string remote;
  uint16_t rport = 0;
  if (!ParseEndpoint(f[2], ipv6, &remote, &rport, &s.remote_unset)) return std::nullopt;
  auto st = Hex(f[3], 2);
  auto inode = Dec(f[9]);
  if (!st || !inode) return std::nullopt;
  s.state = static_cast<int>(*st);
  s.inode = *inode;
  return s;
}

bool IsListening(const ProcNetSocket& s, bool udp) {
  if (udp) return s.state == 0x07 && s.remote_unset && s.port != 0;
  return s.state == 0x0A;
}

std::optional<MemInfo> ParseMeminfo(std::string_view text) {
  std::optional<uint64_t> total, available, free, buffers, cached;
  size_t pos = 0;
  int lines = 0;
  while (pos < text.size() && lines++ < 256) {
    size_t nl = text.find('\n', pos);
    std::string_view line = text.substr(pos, nl == std::string_view::npos ? std::string_view::npos : nl - pos);
    pos = nl == std::string_view::npos ? text.size() : nl + 1;
    auto f = Fields(line);
    if (f.size() < 2) continue;
    auto v = Dec(f[1]);
    if (!v || *v > (UINT64_MAX / 1024)) continue;
    uint64_t bytes = *v * (f.size() >= 3 && f[2] == "kB" ? 1024 : 1);
    if (f[0] == "MemTotal:") total = bytes;
    else if (f[0] == "MemAvailable:") available = bytes;
    else if (f[0] == "MemFree:") free = bytes;
    else if (f[0] == "Buffers:") buffers = bytes;
    else if (f[0] == "Cached:") cached = bytes;
  }
  if (!total) return std::nullopt;
  MemInfo m;
  m.total_bytes = *total;
  if (available) {
    m.available_bytes = *available;
  } else {
    m.available_bytes = free.value_or(0) + buffers.value_or(0) + cached.value_or(0);
  }
  if (m.available_bytes > m.total_bytes) m.available_bytes = m.total_bytes;
  return m;
}

std::optional<CpuTimes> ParseProcStatCpu(std::string_view text) {
  size_t nl = text.find('\n');
  std::string_view line = text.substr(0, nl);
  auto f = Fields(line);
  if (f.size() < 5 || f[0] != "cpu") return std::nullopt;
  uint64_t v[8] = {};
  for (size_t i = 1; i < f.size() && i <= 8; ++i) {
    auto d = Dec(f[i]);
    if (!d) return std::nullopt;
    v[i - 1] = *d;
  }
  // user nice system idle iowait irq softirq steal
  CpuTimes c;
  c.busy_ticks = v[0] + v[1] + v[2] + v[5] + v[6] + v[7];
  c.idle_ticks = v[3] + v[4];
  return c;
}

uint64_t SocketInode(std::string_view t) {
  constexpr std::string_view kPrefix = "socket:[";
  if (t.size() <= kPrefix.size() + 1 || t.substr(0, kPrefix.size()) != kPrefix || t.back() != ']') return 0;
  return Dec(t.substr(kPrefix.size(), t.size() - kPrefix.size() - 1)).value_or(0);
}

std::string JsonQuote(std::string_view s) {
  std::string out = "\"";
  for (unsigned char c : s) {
    if (c == '"' || c == '\\') {
      out += '\\';
      out += static_cast<char>(c);
    } else if (c >= 0x80) {
      out += '?';
    } else if (c < 0x20 || c == 0x7f) {
      char buf[8];
      std::snprintf(buf, sizeof(buf), "\\u%04x", c);
      out += buf;
    } else {
      out += static_cast<char>(c);
    }
  }
  return out + "\"";
}

}  // namespace banger::agent
