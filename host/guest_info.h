// Host side of `banger ports` and `banger stats`: parses (bounded, validated:
// the guest is untrusted) what the agent's @banger/ports and @banger/stats
// builtins print, and reads the QEMU process's own numbers from /proc.
#pragma once

#include <cstdint>
#include <optional>
#include <string>
#include <string_view>
#include <vector>

#include "base/status.h"
#include "spec/sandbox_spec.h"
#include "state/state_store.h"

namespace banger::host {

inline constexpr size_t kMaxGuestOutput = 1 << 20;  // bytes of builtin output accepted
inline constexpr size_t kMaxGuestSockets = 4096;

struct GuestSocket {
  std::string proto;    // "tcp" | "udp"
  std::string address;  // as the guest bound it ("0.0.0.0", "::", "127.0.0.1")
  uint16_t port = 0;
  int pid = 0;          // 0: unknown
  std::string process;  // printable ASCII, at most 64 characters
};

/// Parses @banger/ports output (one JSON object a line). A line that is not
/// a valid socket (bad JSON, unknown protocol, address not an IP literal,
/// port outside 1..65535) is an error naming its line number; more than
/// kMaxGuestSockets lines or kMaxGuestOutput bytes are refused.
Result<std::vector<GuestSocket>> ParseGuestPorts(std::string_view output);

/// Whether a guest address is loopback-only (127.0.0.0/8, ::1).
bool IsLoopbackAddress(std::string_view address);

/// The host endpoint that reaches a guest socket, or "" when none does:
/// a published spec port ("ADDR:PORT"), the bridged address ("ADDR:PORT"),
/// banger's ssh forward for tcp/22 of a user-mode sandbox, nothing for a
/// socket bound to loopback or for network.mode none.
std::string HostEndpointFor(const GuestSocket& s, const SandboxRecord& record, const SandboxSpec& spec,
                            uint16_t ssh_forward_port);

struct GuestStats {
  std::optional<uint64_t> mem_total_bytes, mem_available_bytes;
  std::optional<uint64_t> cpu_busy_ticks, cpu_idle_ticks, ticks_per_second, cpus;
  std::optional<uint64_t> fs_total_bytes, fs_free_bytes, fs_used_bytes;
  std::optional<uint64_t> uptime_seconds;
};

/// Parses @banger/stats output: one JSON object of non-negative integers;
/// unknown members are ignored, a known member of another type is an error.
Result<GuestStats> ParseGuestStats(std::string_view output);

/// utime + stime (clock ticks) from the text of /proc/PID/stat (the command
/// name may hold spaces and parentheses).
Result<uint64_t> ParseProcPidStatCpuTicks(std::string_view stat);
/// VmRSS in bytes from the text of /proc/PID/status.
Result<uint64_t> ParseVmRssBytes(std::string_view status);

}  // namespace banger::host
