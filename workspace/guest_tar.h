// Files into and out of a running guest as tar streams through the agent:
// @banger/untar reads a stream on its stdin, @banger/tar writes one on its
// stdout (agent/builtin_tar.cc). Streams are never held in memory: pushing
// produces the archive in a thread into a socket the agent connection reads
// with flow control; pulling writes to a private temporary file that is then
// extracted with banger's confined extractor (fetch/extract.h).
#pragma once

#include <filesystem>
#include <functional>
#include <string>
#include <vector>

#include "base/status.h"
#include "providers/agent_client.h"

struct archive;

namespace banger::workspace {

/// Writes entries into `a` (an archive opened for writing, pax format).
using ArchiveProducer = std::function<Status(struct archive* a)>;

/// Streams the archive `produce` writes into the guest, extracted under
/// `guest_dir` (created if missing). An entry the guest refuses (outside the
/// directory) or cannot write fails with the guest's message.
Status PushArchive(AgentConnection& conn, const std::string& guest_dir, const ArchiveProducer& produce);

/// Adds the local file, symlink or directory tree `path` to `a` as `name`
/// (and name/... below it). Modes, symlinks and modification times are kept;
/// devices, fifos and sockets are skipped.
Status AddLocalPath(struct archive* a, const std::filesystem::path& path, const std::string& name);

/// Adds one regular file or symlink `path` as `name`.
Status AddLocalFile(struct archive* a, const std::filesystem::path& path, const std::string& name);

/// Adds a regular file with the given content.
Status AddBuffer(struct archive* a, const std::string& name, std::string_view content, unsigned mode);

/// Runs `@banger/tar -C guest_dir names...` in the guest and extracts the
/// stream into the existing local directory `dest` (entries outside it are
/// refused; files belong to the calling user).
Status PullTree(AgentConnection& conn, const std::string& guest_dir, const std::vector<std::string>& names,
                const std::filesystem::path& dest);

/// What `guest_path` is in the guest: "directory", "file", "other",
/// or "missing" (the agent's @banger/stat, which follows symlinks).
Result<std::string> GuestPathKind(AgentConnection& conn, const std::string& guest_path);

}  // namespace banger::workspace
