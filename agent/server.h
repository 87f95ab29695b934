// The agent's channel server: serves exec/ping/poweroff/set-hosts requests
// from the host over one byte stream (the virtio-serial port in a VM, or a
// unix socket when run on a host for tests). Single-threaded, poll-based.
#pragma once

#include <sys/types.h>

#include <functional>
#include <string>
#include <vector>

#include "providers/agent_protocol.h"

namespace banger::agent {

struct ServerOptions {
  std::string agent_version;
  std::string mode;                    // "init" or "server" (reported in HELLO)
  std::vector<std::string> base_env;   // "K=V" given to every exec (request env overrides)
  pid_t entrypoint_pid = 0;            // logged when reaped (PID-1 mode)
  /// The file SET_HOSTS rewrites ("/etc/hosts" in a VM). Empty: SET_HOSTS is
  /// refused (host test mode without --hosts-file must not touch the host's).
  std::string hosts_path;
  /// Called after POWEROFF was acknowledged. In a VM it powers off and does not
  /// return; in host test mode it returns and the server loop ends.
  std::function<void()> power_off;
  /// Held (booted with `hold`, docs/guest-agent.md "Held boot"): HELLO and
  /// PONG say "held"; only PING, POWEROFF and IDENTITY are served, every other
  /// request gets ERROR "waiting for identity".
  bool held = false;
  /// Applies a decoded, validated IDENTITY while held. Returns "" once the
  /// sandbox is set up, with *next the options to serve with from then on
  /// (the server answers IDENTITY_ACK with its new HELLO); else the reason,
  /// and the agent stays held (nothing irreversible was done). Runs inside
  /// the server loop: it may fork, and only the child returns (the parent
  /// becomes the image's init).
  std::function<std::string(const agent_protocol::Identity&, ServerOptions* next)> apply_identity;
};

/// Serves a virtio-serial port fd: the host is "connected" while the port does
/// not report POLLHUP. Runs until power-off; returns an exit code.
int ServeVirtioPort(int port_fd, const ServerOptions& options);

/// Test mode: listens on a unix socket path and serves one connection at a
/// time, like QEMU's chardev does for the host. Runs until POWEROFF.
int ServeUnixSocket(const std::string& path, const ServerOptions& options);

/// Default PATH and HOME for processes the agent starts.
std::vector<std::string> DefaultEnv();

/// Merges "K=V" lists; later entries override earlier ones with the same key.
std::vector<std::string> MergeEnv(const std::vector<std::string>& base,
                                  const std::vector<std::string>& overrides);

}  // namespace banger::agent
