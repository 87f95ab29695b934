// Pure parsers of the /proc files the @banger/ports and @banger/stats
// builtins read (unit-tested on the host; the builtins only read the files).
// Every parser is defensive: a malformed line is skipped, never trusted.
#pragma once

#include <cstdint>
#include <optional>
#include <string>
#include <string_view>

namespace banger::agent {

/// One socket line of /proc/net/{tcp,tcp6,udp,udp6}.
struct ProcNetSocket {
  std::string address;  // local address, printable ("0.0.0.0", "::1")
  uint16_t port = 0;    // local port
  bool remote_unset = false;  // remote address all zeros and port 0
  int state = 0;        // kernel socket state (0x0A = TCP LISTEN, 0x07 = CLOSE)
  uint64_t inode = 0;
};

/// Parses one line (not the header). `ipv6` selects the address width.
/// nullopt for the header or a malformed line.
std::optional<ProcNetSocket> ParseProcNetLine(std::string_view line, bool ipv6);

/// Whether a socket line is a listening socket: TCP in LISTEN, or UDP bound
/// with no remote (an unconnected UDP socket is the listening kind).
bool IsListening(const ProcNetSocket& s, bool udp);

/// /proc/meminfo: total and available bytes (MemAvailable; without it,
/// MemFree + Buffers + Cached). nullopt without MemTotal.
struct MemInfo {
  uint64_t total_bytes = 0;
  uint64_t available_bytes = 0;
};
std::optional<MemInfo> ParseMeminfo(std::string_view text);

/// The aggregate "cpu " line of /proc/stat, in USER_HZ ticks: busy (user +
/// nice + system + irq + softirq + steal) and idle (idle + iowait).
struct CpuTimes {
  uint64_t busy_ticks = 0;
  uint64_t idle_ticks = 0;
};
std::optional<CpuTimes> ParseProcStatCpu(std::string_view text);

/// The inode of a "/proc/PID/fd/N" link target "socket:[INODE]", else 0.
uint64_t SocketInode(std::string_view link_target);

/// JSON string literal of `s` (quotes included; control bytes escaped,
/// bytes >= 0x80 become '?', so the output is always ASCII and valid JSON).
std::string JsonQuote(std::string_view s);

}  // namespace banger::agent
