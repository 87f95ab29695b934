// The VMM state of a QEMU template travels through a socket QEMU is handed
// (QMP getfd + migrate "fd:NAME"); banger compresses it into the template's
// state file with libzstd, and decompresses it into the socket on a restore
// (docs/snapshots.md). No program and no shell is involved, so this works
// under QEMU's seccomp sandbox (spawn=deny) and the confined QEMU never
// needs access to the state file.
#pragma once

#include <cstdint>
#include <filesystem>

#include "base/status.h"

namespace banger {

/// Reads `in_fd` to EOF and writes it zstd-compressed (level `level`, with
/// `workers` threads when libzstd has them) to a new file `out` (mode 0600,
/// must not exist). Returns the number of uncompressed bytes.
Result<uint64_t> CompressStreamToFile(int in_fd, const std::filesystem::path& out, int level, int workers);

/// Decompresses the zstd file `in` into `out_fd` (a stream socket: a peer
/// that goes away is an error, never a SIGPIPE). A truncated or corrupt file
/// is DataLoss.
Status DecompressFileToStream(const std::filesystem::path& in, int out_fd);

}  // namespace banger
