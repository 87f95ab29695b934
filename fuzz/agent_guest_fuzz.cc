// The guest agent's side of the channel: the bytes the host sends, cut into
// reads of varying sizes, go through the same FrameDecoder and the same
// payload decoders as agent/server.cc's HandleFrame (EXEC, SIGNAL, RESIZE,
// PING, SET_HOSTS and the /etc/hosts rewrite, IDENTITY). Nothing is executed. Checks:
// no crash, decoded requests survive an encode/decode round trip, the hosts
// rewrite is idempotent and keeps the image's lines.
//
// Input: byte 0 seeds the read sizes; the rest is the host's byte stream.
#include <cstddef>
#include <cstdint>
#include <string>
#include <string_view>

#include "agent/hosts_file.h"
#include "fuzz/fuzz_util.h"
#include "providers/agent_protocol.h"

using namespace banger;
namespace proto = banger::agent_protocol;

namespace {

constexpr std::string_view kImageHosts =
    "127.0.0.1\tlocalhost\n::1\tlocalhost ip6-localhost\n"
    "# banger: peers (managed by banger, do not edit)\n10.0.0.9\told\n# banger: end\n"
    "192.168.1.1\trouter\n";

void Handle(const proto::Frame& f) {
  using proto::MessageType;
  switch (f.type) {
    case MessageType::kPing: (void)proto::DecodeU64(f.payload); break;
    case MessageType::kExec:
      if (auto req = proto::DecodeExec(f.payload)) {
        // What the agent would run survives an encode/decode round trip.
        auto again = proto::DecodeExec(proto::EncodeExec(*req));
        FUZZ_CHECK(again && again->argv == req->argv && again->env == req->env && again->cwd == req->cwd &&
                       again->tty == req->tty && again->rows == req->rows && again->cols == req->cols,
                   "EXEC does not survive a round trip");
        FUZZ_CHECK(!req->argv.empty(), "EXEC accepted without argv");
      }
      break;
    case MessageType::kResize: (void)proto::DecodeResize(f.payload); break;
    case MessageType::kSignal: (void)proto::DecodeU32(f.payload); break;
    case MessageType::kSetHosts: {
      std::string err;
      auto entries = proto::DecodeSetHosts(f.payload, &err);
      if (!entries) {
        FUZZ_CHECK(!err.empty(), "SET_HOSTS refused without a reason");
        break;
      }
      FUZZ_CHECK(proto::EncodeSetHosts(*entries) == f.payload, "SET_HOSTS does not re-encode to its bytes");
      std::string once = agent::RewriteHostsBlock(kImageHosts, *entries);
      FUZZ_CHECK(agent::RewriteHostsBlock(once, *entries) == once, "hosts rewrite is not idempotent");
      FUZZ_CHECK(once.find("192.168.1.1\trouter\n") != std::string::npos, "hosts rewrite lost an image line");
      FUZZ_CHECK(once.find("10.0.0.9\told") == std::string::npos, "hosts rewrite kept the old block");
      (void)agent::EnsureHostnameLine(once, "sandbox");
      break;
    }
    case MessageType::kIdentity: {
      std::string err;
      auto id = proto::DecodeIdentity(f.payload, &err);
      if (!id) {
        FUZZ_CHECK(!err.empty(), "IDENTITY refused without a reason");
        break;
      }
      FUZZ_CHECK(proto::ValidateIdentity(*id).empty(), "IDENTITY decoded but invalid");
      FUZZ_CHECK(proto::EncodeIdentity(*id) == f.payload, "IDENTITY does not re-encode to its bytes");
      FUZZ_CHECK(id->mac.empty() || proto::IsMacAddress(id->mac), "IDENTITY accepted a bad MAC");
      break;
    }
    default: break;  // answered with ERROR "unexpected message type"
  }
}

}  // namespace

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  if (size < 1) return 0;
  uint32_t rng = data[0] * 2654435761u + 1;
  std::string_view stream(reinterpret_cast<const char*>(data) + 1, size - 1);
  proto::FrameDecoder decoder;
  size_t frames = 0;
  while (!stream.empty()) {
    rng = rng * 1103515245u + 12345u;
    size_t n = std::min<size_t>(stream.size(), 1 + (rng >> 16) % 4096);
    decoder.Feed(stream.substr(0, n));
    stream.remove_prefix(n);
    while (auto f = decoder.Next()) {
      ++frames;
      FUZZ_CHECK(proto::EncodeFrame(*f).size() <= proto::kMaxFrameLength + 4, "oversized frame decoded");
      Handle(*f);
    }
    if (!decoder.error().empty()) break;  // the server reports it and drops the connection
  }
  FUZZ_CHECK(decoder.buffered() <= size, "decoder buffers more than it was fed");
  return 0;
}
