// Turning a compressed x86 Linux kernel (bzImage) into the uncompressed ELF
// vmlinux inside it. Firecracker only boots an ELF vmlinux, and QEMU boots one
// (through its PVH entry note) about twice as fast as a bzImage under TCG,
// because the guest no longer decompresses itself on an emulated CPU.
#pragma once

#include <cstdint>
#include <filesystem>
#include <string>

#include "base/status.h"

namespace banger::kernels {

/// How the protected-mode payload of a bzImage is compressed.
enum class KernelCompression { kNone, kGzip, kXz, kZstd, kLz4, kBzip2, kLzma };
std::string_view ToString(KernelCompression c);

/// Facts read from a bzImage's x86 boot setup header.
struct BzImageInfo {
  uint8_t setup_sects = 0;
  uint16_t boot_protocol = 0;      // e.g. 0x020f
  uint64_t payload_offset = 0;     // absolute file offset of the compressed payload
  uint64_t payload_length = 0;
  KernelCompression compression = KernelCompression::kNone;
  std::string version;             // first word of the version string ("6.1.0-56-amd64"), may be empty
};

/// Parses the setup header of `bzimage` (magic "HdrS" at 0x202). InvalidArgument
/// naming the file when it is not a bzImage or its fields point outside it.
Result<BzImageInfo> ReadBzImageInfo(const std::filesystem::path& bzimage);

/// True if the file starts with the ELF magic.
Result<bool> IsElfFile(const std::filesystem::path& path);

/// Writes the uncompressed ELF kernel held by `bzimage` to `out_elf`
/// atomically (a temporary file beside it, then rename). An input that is
/// already an x86-64 ELF is copied. The result must be an x86-64 ELF; on any
/// error nothing is left at `out_elf` (and no temporary file either).
Status ExtractVmlinux(const std::filesystem::path& bzimage, const std::filesystem::path& out_elf);

/// True if the x86-64 ELF `elf` carries a PVH entry point: an ELF note named
/// "Xen" of type XEN_ELFNOTE_PHYS32_ENTRY (18) in a PT_NOTE segment.
Result<bool> HasPvhEntry(const std::filesystem::path& elf);

/// The kernel release ("uname -r") found in an ELF vmlinux's "Linux version "
/// banner; NotFound when there is none.
Result<std::string> ElfKernelVersion(const std::filesystem::path& elf);

}  // namespace banger::kernels
