// banger's SSH integration (docs/ssh.md): its own key pair, its own
// known_hosts, the endpoint that reaches a sandbox's sshd (the bridged
// address, a published port, or a loopback forward added to QEMU's user-mode
// network on demand), and the block `banger ssh-config --install` puts into
// ~/.ssh/config.
#pragma once

#include <cstdint>
#include <filesystem>
#include <string>
#include <string_view>

#include "base/command_runner.h"
#include "base/status.h"
#include "spec/sandbox_spec.h"
#include "state/layout.h"
#include "state/state_store.h"

namespace banger::host {

/// <state>/ssh (0700): id_ed25519 (0600), id_ed25519.pub, known_hosts, config.
struct SshPaths {
  std::filesystem::path dir, private_key, public_key, known_hosts, config;
};
SshPaths SshPathsFor(const StateLayout& layout);

/// banger's key pair, created on first use (`ssh-keygen -t ed25519`, no
/// passphrase) under <state>/ssh. Returns the public key line. Concurrent
/// first uses converge on one key (generated aside, then renamed in place).
Result<std::string> EnsureSshKey(const StateLayout& layout, CommandRunner& runner);
/// The public key if the pair exists (empty otherwise; no ssh-keygen run).
std::string ReadSshPublicKey(const StateLayout& layout);

/// The name a sandbox's host key is recorded under in banger's known_hosts:
/// "NAME.banger" (what `ssh NAME.banger` records by itself, so both ways of
/// connecting share one entry). It is removed when the sandbox is deleted or
/// replaced, so a new VM of the same name is not refused.
std::string SshHostAlias(std::string_view sandbox_name);

/// known_hosts `text` without the lines naming `host` (a plain host pattern in
/// the comma-separated first field, also as "[host]:port"; markers such as
/// @cert-authority are honoured). Other lines are kept byte for byte.
std::string RemoveKnownHost(std::string_view text, std::string_view host);
/// Removes `host`'s entries from banger's known_hosts (absent file: OK).
Status ForgetSshHost(const StateLayout& layout, std::string_view sandbox_name);

// ---- ~/.ssh/config ----

inline constexpr std::string_view kSshConfigBegin =
    "# >>> banger ssh-config: managed by banger, `banger ssh-config --uninstall` removes it >>>";
inline constexpr std::string_view kSshConfigEnd = "# <<< banger ssh-config <<<";

/// The marked block: the begin marker, `Include "<included>"`, the end marker.
std::string SshConfigBlock(const std::filesystem::path& included);
/// `config` with banger's block at the very top (an Include after a Host line
/// would only apply to that Host). An existing block is replaced where it
/// stands; installing twice gives the same bytes.
std::string InstallSshConfigBlock(std::string_view config, const std::filesystem::path& included);
/// `config` without banger's block (exactly the bytes InstallSshConfigBlock
/// added); unchanged when there is none.
std::string UninstallSshConfigBlock(std::string_view config);
/// Whether `config` holds banger's block.
bool HasSshConfigBlock(std::string_view config);

/// The file banger maintains and ~/.ssh/config includes: `Host *.banger`
/// with a ProxyCommand of `banger_path [--state-dir D] [--config C] ssh-proxy
/// %h %p`, User root, banger's key and known_hosts. InvalidArgument when a
/// path holds a character that ssh_config or the shell running the
/// ProxyCommand would interpret (quotes, $, %, `, \, newlines).
Result<std::string> RenderSshInclude(const std::filesystem::path& banger_path, const StateLayout& layout,
                                     const std::string& config_path);

/// The sandbox name of "NAME.banger" (case-insensitive suffix), else
/// InvalidArgument.
Result<std::string> SandboxNameFromSshHost(std::string_view host);

// ---- reaching a guest port ----

struct GuestEndpoint {
  std::string host;   // address to connect to from this host
  uint16_t port = 0;
  std::string how;    // "bridged address", "published port", "ssh forward"
};

/// The host-side endpoint of guest TCP port `guest_port`: the bridged
/// address (bridged networking), else a spec port publishing it, else, for
/// guest port 22 of a user-mode sandbox, banger's loopback forward (added to
/// the running QEMU through QMP on first use and kept in
/// <runtime_dir>/ssh-forward, so it is reused). FailedPrecondition for
/// network.mode none, a sandbox that is not running, or a port nothing reaches.
Result<GuestEndpoint> ResolveGuestEndpoint(const SandboxRecord& record, const SandboxSpec& spec,
                                           uint16_t guest_port, const std::string& netns);

/// The port of an existing ssh forward of a user-mode sandbox (0 if none).
uint16_t RecordedSshForward(const SandboxRecord& record);

/// Host ports forwarded to guest `guest_port` in QEMU's `info usernet` text
/// (TCP[HOST_FORWARD] rows), for parsing tests.
std::vector<uint16_t> ParseUsernetForwards(std::string_view info_usernet, uint16_t guest_port);

}  // namespace banger::host
