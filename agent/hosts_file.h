// The guest's /etc/hosts: banger owns one block in it, between two marker
// lines, listing the sandbox's peers; every other line is the image's and is
// kept as it is. Written at boot (config.json `hosts`) and replaced while the
// guest runs (SET_HOSTS). See docs/guest-agent.md.
#pragma once

#include <string>
#include <string_view>
#include <vector>

#include "providers/agent_protocol.h"

namespace banger::agent {

inline constexpr std::string_view kHostsBlockBegin = "# banger: peers (managed by banger, do not edit)";
inline constexpr std::string_view kHostsBlockEnd = "# banger: end";

/// `existing` with the banger block replaced by one listing `hosts`
/// ("address<TAB>name name..."), at the place of the old block, or appended
/// when there was none. No hosts: the block is removed. Every other line is
/// kept byte for byte (a missing final newline is added before a block that
/// follows it). A begin marker without an end marker is dropped alone, so
/// the image's lines after it survive. Pure and idempotent.
std::string RewriteHostsBlock(std::string_view existing, const std::vector<agent_protocol::HostsEntry>& hosts);

/// `existing` with a "127.0.1.1<TAB>hostname" line added (before the banger
/// block, else at the end) unless a line outside the block already maps
/// `hostname`. An empty file is first given the usual localhost lines.
std::string EnsureHostnameLine(std::string_view existing, const std::string& hostname);

/// Replaces the file at `path` with `content`, mode 0644: a temporary file in
/// the same directory renamed over it, so readers never see half a file. A
/// symlink is followed (the file it points to is replaced; a dangling one is
/// replaced by a file). Where rename is refused because the target is a mount
/// point (a bind-mounted /etc/hosts: EBUSY), the file is rewritten in place.
/// Returns "" or the error.
std::string WriteHostsFile(const std::string& path, const std::string& content);

/// Reads `path` ("" content when it does not exist). Returns "" or the error.
std::string ReadHostsFile(const std::string& path, std::string* content);

}  // namespace banger::agent
