// Test helpers for kernels/ tests: synthetic ELF kernels and bzImages.
// Header-only so both the unit and the integration test binaries can use it.
#pragma once

#include <cstdint>
#include <cstring>
#include <string>
#include <vector>

#include <gtest/gtest.h>

#include "base/command_runner.h"

namespace banger::kernels::testing {

inline void PutLe16(std::string& b, size_t off, uint16_t v) {
  b[off] = static_cast<char>(v & 0xff);
  b[off + 1] = static_cast<char>(v >> 8);
}
inline void PutLe32(std::string& b, size_t off, uint32_t v) {
  for (int i = 0; i < 4; ++i) b[off + static_cast<size_t>(i)] = static_cast<char>((v >> (8 * i)) & 0xff);
}
inline void PutLe64(std::string& b, size_t off, uint64_t v) {
  for (int i = 0; i < 8; ++i) b[off + static_cast<size_t>(i)] = static_cast<char>((v >> (8 * i)) & 0xff);
}
inline std::string Le32String(uint32_t v) {
  std::string s(4, '\0');
  PutLe32(s, 0, v);
  return s;
}

/// A small x86-64 ELF (header, one PT_NOTE segment, filler). With `pvh`, the
/// note is Xen's PHYS32_ENTRY; otherwise a GNU build-id note. `version`
/// appears in a "Linux version" banner in the filler. `machine` lets a test
/// build a non-x86 ELF.
inline std::string MakeTinyElf(bool pvh, const std::string& version = "6.9.0-test",
                               uint16_t machine = 62, size_t filler_bytes = 120000) {
  std::string elf(64 + 56, '\0');
  std::memcpy(elf.data(), "\x7f" "ELF", 4);
  elf[4] = 2;  // ELFCLASS64
  elf[5] = 1;  // little endian
  elf[6] = 1;  // EV_CURRENT
  PutLe16(elf, 16, 2);  // ET_EXEC
  PutLe16(elf, 18, machine);
  PutLe32(elf, 20, 1);
  PutLe64(elf, 32, 64);  // e_phoff
  PutLe16(elf, 52, 64);  // e_ehsize
  PutLe16(elf, 54, 56);  // e_phentsize
  PutLe16(elf, 56, 1);   // e_phnum
  std::string note;
  note += Le32String(4);                 // namesz ("Xen\0" / "GNU\0")
  note += Le32String(4);                 // descsz
  note += Le32String(pvh ? 18u : 3u);    // type
  note += pvh ? std::string("Xen\0", 4) : std::string("GNU\0", 4);
  note += Le32String(0x1000000);
  size_t note_off = elf.size();
  // program header
  PutLe32(elf, 64, 4);  // PT_NOTE
  PutLe64(elf, 64 + 8, note_off);
  PutLe64(elf, 64 + 32, note.size());
  PutLe64(elf, 64 + 40, note.size());
  elf += note;
  std::string banner = "Linux version " + version + " (test@banger) #1 SMP";
  elf += banner;
  elf.push_back('\0');
  // Deterministic, mildly compressible filler.
  uint32_t x = 12345;
  for (size_t i = 0; i < filler_bytes; ++i) {
    x = x * 1103515245u + 12345u;
    elf.push_back(static_cast<char>((i % 7 == 0) ? (x >> 16) & 0xff : 'k'));
  }
  return elf;
}

/// A bzImage-shaped file: a setup header with "HdrS", boot protocol 2.15,
/// a version string, and `payload` as the protected-mode payload.
inline std::string MakeBzImage(const std::string& payload, const std::string& version = "6.9.0-test") {
  const uint8_t setup_sects = 1;
  const size_t pm_start = (setup_sects + 1) * 512;
  std::string img(pm_start, '\0');
  img[0x1f1] = static_cast<char>(setup_sects);
  std::memcpy(img.data() + 0x202, "HdrS", 4);
  PutLe16(img, 0x206, 0x020f);
  const size_t version_at = 0x300;
  std::string vs = version + " (test@banger) #1 SMP";
  std::memcpy(img.data() + version_at, vs.data(), vs.size());
  PutLe16(img, 0x20e, static_cast<uint16_t>(version_at - 0x200));
  const uint32_t payload_rel = 64;  // some decompressor code would sit here
  PutLe32(img, 0x248, payload_rel);
  PutLe32(img, 0x24c, static_cast<uint32_t>(payload.size()));
  img += std::string(payload_rel, '\x90');
  img += payload;
  img += std::string(32, '\0');  // trailing padding like a real image
  return img;
}

/// Compresses `data` with a CLI (gzip, xz, zstd, lz4, bzip2, lzma) the way the
/// kernel build does: lz4 in legacy format, and the uncompressed size appended
/// to every format except gzip (whose own trailer carries it).
inline std::string CompressLikeKbuild(CommandRunner& runner, const std::string& tool,
                                      const std::string& data) {
  CommandSpec spec;
  if (tool == "gzip") spec.argv = {"gzip", "-n", "-c"};
  else if (tool == "xz") spec.argv = {"xz", "--check=crc32", "-c"};
  else if (tool == "zstd") spec.argv = {"zstd", "-q", "-c"};
  else if (tool == "lz4") spec.argv = {"lz4", "-l", "-9", "-c"};
  else if (tool == "bzip2") spec.argv = {"bzip2", "-9", "-c"};
  else if (tool == "lzma") spec.argv = {"lzma", "-9", "-c"};
  spec.stdin_data = data;
  auto out = RunChecked(runner, spec);
  EXPECT_TRUE(out.ok()) << out.status().ToString();
  if (!out.ok()) return {};
  std::string compressed = out->stdout_data;
  if (tool != "gzip") compressed += Le32String(static_cast<uint32_t>(data.size()));
  return compressed;
}

}  // namespace banger::kernels::testing
