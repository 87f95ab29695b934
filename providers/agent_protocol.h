// Wire protocol between banger (host) and banger-agent (guest) over the
// virtio-serial port "banger.agent". Header-only and free of banger/third-party
// dependencies: the static guest agent and the host client both include it.
//
// Frame layout (all integers big-endian):
//   u32 length   number of bytes that follow (type + channel + payload)
//   u8  type     MessageType
//   u32 channel  0 for connection-level messages, else the exec (or SET_HOSTS
//                request) id chosen by the host
//   ... payload  type-specific, built with PayloadWriter / read with PayloadReader
// Strings in payloads are u32 length + bytes. See docs/guest-agent.md.
#pragma once

#include <cstddef>
#include <cstdint>
#include <optional>
#include <string>
#include <string_view>
#include <utility>
#include <vector>

namespace banger::agent_protocol {

inline constexpr uint32_t kProtocolVersion = 1;
inline constexpr std::string_view kDefaultPortName = "banger.agent";
/// Frames larger than this are a protocol error (the stream is out of sync).
inline constexpr uint32_t kMaxFrameLength = 1u << 20;
/// Data chunks (stdin/stdout/stderr) are split to stay well below the limit.
inline constexpr size_t kMaxDataChunk = 32 * 1024;
inline constexpr size_t kHeaderSize = 4 + 1 + 4;

enum class MessageType : uint8_t {
  kHello = 1,      // guest->host, ch 0: u32 protocol, str agent_version, u64 boot_ms, str mode
  kPing = 2,       // host->guest, ch 0: u64 nonce
  kPong = 3,       // guest->host, ch 0: u64 nonce
  kExec = 4,       // host->guest, ch id: ExecRequest
  kStarted = 5,    // guest->host, ch id: u32 pid
  kStdin = 6,      // host->guest, ch id: raw bytes
  kStdinEof = 7,   // host->guest, ch id: empty
  kStdout = 8,     // guest->host, ch id: raw bytes
  kStderr = 9,     // guest->host, ch id: raw bytes
  kExit = 10,      // guest->host, ch id: ExitStatus
  kResize = 11,    // host->guest, ch id: u16 rows, u16 cols
  kSignal = 12,    // host->guest, ch id: u32 signal number
  kPowerOff = 13,  // host->guest, ch 0: empty; guest acks with kPowerOffAck then powers off
  kPowerOffAck = 14,
  kError = 15,     // guest->host, ch 0 or id: str message (exec failed, bad frame, ...)
  kSetHosts = 16,  // host->guest, ch id: HostsEntry list (replaces /etc/hosts' banger block)
  kSetHostsAck = 17,  // guest->host, ch id: u32 number of entries written
  kIdentity = 18,     // host->guest, ch id: Identity (only a held agent accepts it)
  kIdentityAck = 19,  // guest->host, ch id: Hello (the agent as it now serves)
};

inline const char* MessageTypeName(MessageType t) {
  switch (t) {
    case MessageType::kHello: return "HELLO";
    case MessageType::kPing: return "PING";
    case MessageType::kPong: return "PONG";
    case MessageType::kExec: return "EXEC";
    case MessageType::kStarted: return "STARTED";
    case MessageType::kStdin: return "STDIN";
    case MessageType::kStdinEof: return "STDIN_EOF";
    case MessageType::kStdout: return "STDOUT";
    case MessageType::kStderr: return "STDERR";
    case MessageType::kExit: return "EXIT";
    case MessageType::kResize: return "RESIZE";
    case MessageType::kSignal: return "SIGNAL";
    case MessageType::kPowerOff: return "POWEROFF";
    case MessageType::kPowerOffAck: return "POWEROFF_ACK";
    case MessageType::kError: return "ERROR";
    case MessageType::kSetHosts: return "SET_HOSTS";
    case MessageType::kSetHostsAck: return "SET_HOSTS_ACK";
    case MessageType::kIdentity: return "IDENTITY";
    case MessageType::kIdentityAck: return "IDENTITY_ACK";
  }
  return "UNKNOWN";
}

struct Frame {
  MessageType type = MessageType::kError;
  uint32_t channel = 0;
  std::string payload;
};

// ---- payload encoding -------------------------------------------------------

class PayloadWriter {
 public:
  PayloadWriter& U8(uint8_t v) {
    out_.push_back(static_cast<char>(v));
    return *this;
  }
  PayloadWriter& U16(uint16_t v) {
    U8(static_cast<uint8_t>(v >> 8));
    return U8(static_cast<uint8_t>(v & 0xff));
  }
  PayloadWriter& U32(uint32_t v) {
    for (int shift = 24; shift >= 0; shift -= 8) U8(static_cast<uint8_t>((v >> shift) & 0xff));
    return *this;
  }
  PayloadWriter& U64(uint64_t v) {
    U32(static_cast<uint32_t>(v >> 32));
    return U32(static_cast<uint32_t>(v & 0xffffffffu));
  }
  PayloadWriter& I32(int32_t v) { return U32(static_cast<uint32_t>(v)); }
  PayloadWriter& Str(std::string_view s) {
    U32(static_cast<uint32_t>(s.size()));
    out_.append(s.data(), s.size());
    return *this;
  }
  PayloadWriter& StrList(const std::vector<std::string>& v) {
    U32(static_cast<uint32_t>(v.size()));
    for (const auto& s : v) Str(s);
    return *this;
  }
  std::string Take() { return std::move(out_); }

 private:
  std::string out_;
};

/// Reads a payload; any read past the end sets failed() and returns zeros.
class PayloadReader {
 public:
  explicit PayloadReader(std::string_view data) : data_(data) {}
  bool failed() const { return failed_; }
  bool AtEnd() const { return pos_ == data_.size(); }

  uint8_t U8() {
    if (pos_ + 1 > data_.size()) return Fail<uint8_t>();
    return static_cast<uint8_t>(data_[pos_++]);
  }
  uint16_t U16() {
    uint16_t hi = U8();
    return static_cast<uint16_t>((hi << 8) | U8());
  }
  uint32_t U32() {
    if (pos_ + 4 > data_.size()) return Fail<uint32_t>();
    uint32_t v = 0;
    for (int i = 0; i < 4; ++i) v = (v << 8) | static_cast<uint8_t>(data_[pos_++]);
    return v;
  }
  uint64_t U64() {
    uint64_t hi = U32();
    return (hi << 32) | U32();
  }
  int32_t I32() { return static_cast<int32_t>(U32()); }
  std::string Str() {
    uint32_t n = U32();
    if (failed_ || n > data_.size() - pos_) return Fail<std::string>();
    std::string s(data_.substr(pos_, n));
    pos_ += n;
    return s;
  }
  std::vector<std::string> StrList() {
    uint32_t n = U32();
    std::vector<std::string> v;
    // Each string needs at least 4 bytes: bound the count before reserving.
    if (failed_ || n > (data_.size() - pos_) / 4) return Fail<std::vector<std::string>>();
    v.reserve(n);
    for (uint32_t i = 0; i < n && !failed_; ++i) v.push_back(Str());
    return v;
  }

 private:
  template <typename T>
  T Fail() {
    failed_ = true;
    pos_ = data_.size();
    return T{};
  }
  std::string_view data_;
  size_t pos_ = 0;
  bool failed_ = false;
};

// ---- frames -----------------------------------------------------------------

inline std::string EncodeFrame(MessageType type, uint32_t channel, std::string_view payload) {
  PayloadWriter w;
  w.U32(static_cast<uint32_t>(1 + 4 + payload.size()));
  w.U8(static_cast<uint8_t>(type));
  w.U32(channel);
  std::string out = w.Take();
  out.append(payload.data(), payload.size());
  return out;
}

inline std::string EncodeFrame(const Frame& f) { return EncodeFrame(f.type, f.channel, f.payload); }

/// Incremental decoder: feed arbitrary byte chunks, pull complete frames.
class FrameDecoder {
 public:
  void Feed(std::string_view bytes) { buf_.append(bytes.data(), bytes.size()); }

  /// Returns the next complete frame, or nullopt if more bytes are needed or the
  /// stream is corrupt (check error()).
  std::optional<Frame> Next() {
    if (!error_.empty()) return std::nullopt;
    if (buf_.size() - pos_ < 4) return Compact();
    PayloadReader r(std::string_view(buf_).substr(pos_, 4));
    uint32_t len = r.U32();
    if (len < 5 || len > kMaxFrameLength) {
      error_ = "bad frame length " + std::to_string(len);
      return std::nullopt;
    }
    if (buf_.size() - pos_ < 4 + static_cast<size_t>(len)) return Compact();
    std::string_view body = std::string_view(buf_).substr(pos_ + 4, len);
    PayloadReader br(body);
    Frame f;
    f.type = static_cast<MessageType>(br.U8());
    f.channel = br.U32();
    f.payload = std::string(body.substr(5));
    pos_ += 4 + len;
    return f;
  }
  const std::string& error() const { return error_; }
  size_t buffered() const { return buf_.size() - pos_; }

 private:
  std::optional<Frame> Compact() {
    if (pos_ > 0) {
      buf_.erase(0, pos_);
      pos_ = 0;
    }
    return std::nullopt;
  }
  std::string buf_;
  size_t pos_ = 0;
  std::string error_;
};

// ---- typed messages ---------------------------------------------------------

/// HELLO's (and PONG's) mode of an agent that booted with `hold` and waits
/// for IDENTITY: it accepts only PING, POWEROFF and IDENTITY.
inline constexpr std::string_view kModeHeld = "held";

struct Hello {
  uint32_t protocol = kProtocolVersion;
  std::string agent_version;
  uint64_t boot_ms = 0;  // guest CLOCK_BOOTTIME when the hello was sent
  /// "init" (agent is PID 1), "server" (image init is PID 1), "held" (waiting
  /// for IDENTITY, kModeHeld) or "test" (--serve-unix).
  std::string mode;
};

inline bool IsHeld(const Hello& h) { return h.mode == kModeHeld; }

inline std::string EncodeHello(const Hello& h) {
  return PayloadWriter().U32(h.protocol).Str(h.agent_version).U64(h.boot_ms).Str(h.mode).Take();
}
inline std::optional<Hello> DecodeHello(std::string_view p) {
  PayloadReader r(p);
  Hello h;
  h.protocol = r.U32();
  h.agent_version = r.Str();
  h.boot_ms = r.U64();
  h.mode = r.Str();
  if (r.failed()) return std::nullopt;
  return h;
}

struct ExecRequest {
  std::vector<std::string> argv;
  std::vector<std::string> env;  // "KEY=VALUE", added to the guest's base environment
  std::string cwd;               // empty: "/"
  bool tty = false;
  uint16_t rows = 24;
  uint16_t cols = 80;
};

inline std::string EncodeExec(const ExecRequest& e) {
  return PayloadWriter()
      .StrList(e.argv)
      .StrList(e.env)
      .Str(e.cwd)
      .U8(e.tty ? 1 : 0)
      .U16(e.rows)
      .U16(e.cols)
      .Take();
}
inline std::optional<ExecRequest> DecodeExec(std::string_view p) {
  PayloadReader r(p);
  ExecRequest e;
  e.argv = r.StrList();
  e.env = r.StrList();
  e.cwd = r.Str();
  e.tty = r.U8() != 0;
  e.rows = r.U16();
  e.cols = r.U16();
  if (r.failed() || e.argv.empty()) return std::nullopt;
  return e;
}

struct ExitStatus {
  bool signaled = false;  // true: `code` is the signal number that killed the process
  int32_t code = 0;       // 0-255, or a signal 1-64 (DecodeExit refuses other values)
  /// Shell convention: exit code, or 128+signal.
  int ShellCode() const { return signaled ? 128 + code : code; }
};

inline std::string EncodeExit(const ExitStatus& s) {
  return PayloadWriter().U8(s.signaled ? 1 : 0).I32(s.code).Take();
}
/// Decodes and range-checks (the guest is untrusted): an exit code is 0-255,
/// a signal 1-64, so ShellCode() is always 0-255. Anything else (or a
/// truncated payload, or trailing bytes) is nullopt.
inline std::optional<ExitStatus> DecodeExit(std::string_view p) {
  PayloadReader r(p);
  ExitStatus s;
  uint8_t signaled = r.U8();
  s.code = r.I32();
  if (r.failed() || !r.AtEnd() || signaled > 1) return std::nullopt;
  s.signaled = signaled == 1;
  // What a process can report: an exit status 0-255 or a signal 1-64 (SIGRTMAX).
  // Anything else comes from a broken or hostile guest (and 128+code could
  // overflow).
  if (s.signaled ? (s.code < 1 || s.code > 64) : (s.code < 0 || s.code > 255)) return std::nullopt;
  return s;
}

inline std::string EncodeResize(uint16_t rows, uint16_t cols) {
  return PayloadWriter().U16(rows).U16(cols).Take();
}
inline std::optional<std::pair<uint16_t, uint16_t>> DecodeResize(std::string_view p) {
  PayloadReader r(p);
  uint16_t rows = r.U16();
  uint16_t cols = r.U16();
  if (r.failed()) return std::nullopt;
  return std::make_pair(rows, cols);
}

inline std::string EncodeU32(uint32_t v) { return PayloadWriter().U32(v).Take(); }
inline std::optional<uint32_t> DecodeU32(std::string_view p) {
  PayloadReader r(p);
  uint32_t v = r.U32();
  if (r.failed()) return std::nullopt;
  return v;
}
inline std::string EncodeU64(uint64_t v) { return PayloadWriter().U64(v).Take(); }
inline std::optional<uint64_t> DecodeU64(std::string_view p) {
  PayloadReader r(p);
  uint64_t v = r.U64();
  if (r.failed()) return std::nullopt;
  return v;
}
/// PONG: u64 nonce, then (agents that know IDENTITY) str mode, the same word
/// as HELLO's. Older agents send the nonce only: mode is then empty.
struct Pong {
  uint64_t nonce = 0;
  std::string mode;
};
inline std::string EncodePong(uint64_t nonce, std::string_view mode) {
  return PayloadWriter().U64(nonce).Str(mode).Take();
}
inline std::optional<Pong> DecodePong(std::string_view p) {
  PayloadReader r(p);
  Pong pong;
  pong.nonce = r.U64();
  if (r.failed()) return std::nullopt;
  if (r.AtEnd()) return pong;
  pong.mode = r.Str();
  if (r.failed() || !r.AtEnd()) return std::nullopt;
  return pong;
}

inline std::string EncodeString(std::string_view s) { return PayloadWriter().Str(s).Take(); }
inline std::optional<std::string> DecodeString(std::string_view p) {
  PayloadReader r(p);
  std::string s = r.Str();
  if (r.failed()) return std::nullopt;
  return s;
}

// ---- /etc/hosts entries (SET_HOSTS, and config.json's `hosts`) ---------------

/// One line of the banger-managed block of a guest's /etc/hosts.
struct HostsEntry {
  std::string address;             // IPv4 dotted quad
  std::vector<std::string> names;  // "db", "db.banger"
  bool operator==(const HostsEntry&) const = default;
};

inline constexpr size_t kMaxHostsEntries = 4096;
inline constexpr size_t kMaxNamesPerHostsEntry = 32;
inline constexpr size_t kMaxHostName = 253;

/// Strict dotted quad: four decimal octets 0-255, no leading zeros, nothing else.
inline bool IsDottedQuad(std::string_view s) {
  int octets = 0;
  size_t i = 0;
  while (true) {
    size_t start = i;
    unsigned v = 0;
    while (i < s.size() && s[i] >= '0' && s[i] <= '9' && i - start < 3) v = v * 10 + static_cast<unsigned>(s[i++] - '0');
    size_t len = i - start;
    if (len == 0 || v > 255 || (len > 1 && s[start] == '0')) return false;
    if (++octets == 4) return i == s.size();
    if (i >= s.size() || s[i] != '.') return false;
    ++i;
  }
}

/// A DNS-style host name: dot-separated labels of 1-63 letters, digits and
/// hyphens (no leading or trailing hyphen), 253 characters at most, no
/// leading, trailing or doubled dots.
inline bool IsHostName(std::string_view s) {
  if (s.empty() || s.size() > kMaxHostName) return false;
  size_t label = 0;
  for (size_t i = 0; i <= s.size(); ++i) {
    if (i == s.size() || s[i] == '.') {
      if (label == 0 || label > 63 || s[i - 1] == '-') return false;
      label = 0;
      continue;
    }
    char c = s[i];
    bool alnum = (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9');
    if (!alnum && !(c == '-' && label > 0)) return false;
    ++label;
  }
  return true;
}

/// "" if every entry can be written as an /etc/hosts line, else what is wrong
/// (naming the entry). Both ends check: the host before sending, the guest
/// before writing.
inline std::string ValidateHostsEntries(const std::vector<HostsEntry>& entries) {
  if (entries.size() > kMaxHostsEntries) {
    return std::to_string(entries.size()) + " hosts entries (at most " + std::to_string(kMaxHostsEntries) + ")";
  }
  for (size_t i = 0; i < entries.size(); ++i) {
    const HostsEntry& e = entries[i];
    std::string where = "hosts entry " + std::to_string(i) + " (" + e.address.substr(0, 64) + ")";
    if (!IsDottedQuad(e.address)) return where + ": address is not an IPv4 dotted quad";
    if (e.names.empty()) return where + ": no names";
    if (e.names.size() > kMaxNamesPerHostsEntry) {
      return where + ": " + std::to_string(e.names.size()) + " names (at most " +
             std::to_string(kMaxNamesPerHostsEntry) + ")";
    }
    for (const auto& n : e.names) {
      if (!IsHostName(n)) return where + ": invalid host name '" + n.substr(0, 64) + "'";
    }
  }
  return "";
}

/// SET_HOSTS payload: u32 count, then per entry str address + strlist names.
inline std::string EncodeSetHosts(const std::vector<HostsEntry>& entries) {
  PayloadWriter w;
  w.U32(static_cast<uint32_t>(entries.size()));
  for (const auto& e : entries) w.Str(e.address).StrList(e.names);
  return w.Take();
}

/// Decodes and validates; nullopt with *error set when the payload is
/// truncated, has trailing bytes or an entry fails ValidateHostsEntries.
inline std::optional<std::vector<HostsEntry>> DecodeSetHosts(std::string_view p, std::string* error) {
  auto fail = [&](std::string msg) -> std::optional<std::vector<HostsEntry>> {
    if (error) *error = std::move(msg);
    return std::nullopt;
  };
  PayloadReader r(p);
  uint32_t n = r.U32();
  if (r.failed()) return fail("malformed SET_HOSTS: truncated");
  if (n > kMaxHostsEntries) return fail("malformed SET_HOSTS: " + std::to_string(n) + " entries (at most " +
                                        std::to_string(kMaxHostsEntries) + ")");
  std::vector<HostsEntry> out;
  // Each entry needs at least 8 bytes: bound the count before reserving.
  if (n > p.size() / 8) return fail("malformed SET_HOSTS: truncated");
  out.reserve(n);
  for (uint32_t i = 0; i < n && !r.failed(); ++i) {
    HostsEntry e;
    e.address = r.Str();
    e.names = r.StrList();
    out.push_back(std::move(e));
  }
  if (r.failed()) return fail("malformed SET_HOSTS: truncated");
  if (!r.AtEnd()) return fail("malformed SET_HOSTS: trailing bytes");
  if (std::string why = ValidateHostsEntries(out); !why.empty()) return fail("SET_HOSTS: " + why);
  return out;
}

// ---- IDENTITY (a held guest becomes a sandbox) -------------------------------

/// Bytes of host entropy SendIdentity sends; the guest accepts
/// kMinIdentityEntropy..kMaxIdentityEntropy.
inline constexpr size_t kIdentityEntropyBytes = 64;
inline constexpr size_t kMinIdentityEntropy = 32;
inline constexpr size_t kMaxIdentityEntropy = 512;
/// The sandbox's config.json must fit in one frame with the other fields.
inline constexpr size_t kMaxIdentityConfig = kMaxFrameLength - 4096;
/// The wall clock the guest is stepped to must lie between 2000-01-01 and
/// 2200-01-01 (ns since the epoch): anything else is a broken host clock.
inline constexpr uint64_t kMinIdentityTimeNs = 946684800ull * 1000000000ull;
inline constexpr uint64_t kMaxIdentityTimeNs = 7258118400ull * 1000000000ull;

struct Identity {
  uint64_t time_ns = 0;     // host CLOCK_REALTIME, ns since the epoch
  std::string mac;          // "" (keep the NIC's) or "xx:xx:xx:xx:xx:xx", unicast
  std::string entropy;      // raw random bytes, credited to the guest's pool
  std::string config_json;  // the sandbox's config.json (GuestConfigToJson)
  bool operator==(const Identity&) const = default;
};

/// Six colon-separated pairs of hex digits, a unicast address (the low bit of
/// the first octet clear) other than all zeros.
inline bool IsMacAddress(std::string_view s) {
  if (s.size() != 17) return false;
  auto hex = [](char c) {
    if (c >= '0' && c <= '9') return c - '0';
    if (c >= 'a' && c <= 'f') return c - 'a' + 10;
    if (c >= 'A' && c <= 'F') return c - 'A' + 10;
    return -1;
  };
  bool any = false;
  for (size_t i = 0; i < 17; ++i) {
    if (i % 3 == 2) {
      if (s[i] != ':') return false;
      continue;
    }
    int v = hex(s[i]);
    if (v < 0) return false;
    if (v != 0) any = true;
    if (i == 1 && (v & 1)) return false;  // multicast / broadcast
  }
  return any;
}

/// "" if the guest can apply `id`, else what is wrong. Both ends check.
inline std::string ValidateIdentity(const Identity& id) {
  if (id.time_ns < kMinIdentityTimeNs || id.time_ns > kMaxIdentityTimeNs) {
    return "time " + std::to_string(id.time_ns) + " ns is not between 2000 and 2200";
  }
  if (!id.mac.empty() && !IsMacAddress(id.mac)) {
    return "MAC address '" + id.mac.substr(0, 32) + "' is not a unicast xx:xx:xx:xx:xx:xx";
  }
  if (id.entropy.size() < kMinIdentityEntropy || id.entropy.size() > kMaxIdentityEntropy) {
    return std::to_string(id.entropy.size()) + " bytes of entropy (" + std::to_string(kMinIdentityEntropy) + "-" +
           std::to_string(kMaxIdentityEntropy) + " needed)";
  }
  if (id.config_json.empty()) return "empty config";
  if (id.config_json.size() > kMaxIdentityConfig) {
    return "config of " + std::to_string(id.config_json.size()) + " bytes (at most " +
           std::to_string(kMaxIdentityConfig) + ")";
  }
  return "";
}

/// IDENTITY payload: u64 time_ns, str mac, str entropy, str config_json.
inline std::string EncodeIdentity(const Identity& id) {
  return PayloadWriter().U64(id.time_ns).Str(id.mac).Str(id.entropy).Str(id.config_json).Take();
}

/// Decodes and validates; nullopt with *error set when the payload is
/// truncated, has trailing bytes or fails ValidateIdentity.
inline std::optional<Identity> DecodeIdentity(std::string_view p, std::string* error) {
  auto fail = [&](std::string msg) -> std::optional<Identity> {
    if (error) *error = std::move(msg);
    return std::nullopt;
  };
  PayloadReader r(p);
  Identity id;
  id.time_ns = r.U64();
  id.mac = r.Str();
  id.entropy = r.Str();
  id.config_json = r.Str();
  if (r.failed()) return fail("malformed IDENTITY: truncated");
  if (!r.AtEnd()) return fail("malformed IDENTITY: trailing bytes");
  if (std::string why = ValidateIdentity(id); !why.empty()) return fail("IDENTITY: " + why);
  return id;
}

}  // namespace banger::agent_protocol
