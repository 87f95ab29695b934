// Kernel images from a registry or a URL (untrusted): a bzImage (setup header,
// gzip/xz/zstd/lz4/bzip2/lzma payload) or an ELF vmlinux. Extraction never
// crashes, leaves either a valid x86-64 ELF or nothing (no temporary file),
// and the ELF readers (PVH note, version banner) are safe on any file.
#include <cstddef>
#include <cstdint>
#include <set>
#include <string>

#include "fuzz/fuzz_util.h"
#include "kernels/vmlinux.h"

using namespace banger;
namespace fs = std::filesystem;

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  static const fs::path dir = [] {
    fs::path d = fuzz::ScratchDir() / "k";
    fs::create_directories(d);
    return d;
  }();
  const fs::path in = dir / "bzImage";
  const fs::path out = dir / "out" / "vmlinux";
  fs::create_directories(out.parent_path());
  fuzz::WriteFileOrDie(in, std::string_view(reinterpret_cast<const char*>(data), size));

  (void)kernels::ReadBzImageInfo(in);
  (void)kernels::HasPvhEntry(in);
  (void)kernels::ElfKernelVersion(in);
  Status s = kernels::ExtractVmlinux(in, out);
  std::set<std::string> left;
  std::error_code ec;
  for (const auto& e : fs::directory_iterator(out.parent_path(), ec)) left.insert(e.path().filename().string());
  if (s.ok()) {
    FUZZ_CHECK(left == std::set<std::string>{"vmlinux"}, "extraction left more than the kernel");
    Result<bool> elf = kernels::IsElfFile(out);
    FUZZ_CHECK(elf.ok() && *elf, "extraction succeeded but the result is not an ELF");
    (void)kernels::HasPvhEntry(out);
    (void)kernels::ElfKernelVersion(out);
  } else {
    FUZZ_CHECK(!s.message().empty(), "refused without a message");
    FUZZ_CHECK(left.empty(), "a failed extraction left " + *left.begin());
  }
  fs::remove_all(out.parent_path(), ec);
  return 0;
}
