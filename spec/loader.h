// Loading sandbox specs from YAML files and directories, validation,
// canonical form and content hash.
#pragma once

#include <filesystem>
#include <string>
#include <string_view>
#include <vector>

#include "base/status.h"
#include "spec/diagnostics.h"
#include "spec/sandbox_spec.h"

namespace banger {

struct LoadResult {
  std::vector<SpecDocument> specs;        // only documents without errors
  std::vector<NetworkDocument> networks;  // `kind: Network` documents without errors
  Diagnostics diagnostics;                // every problem in every file
};

/// Parses one YAML text holding one or more `---`-separated documents.
/// `filename` is used in diagnostics and to resolve relative `files[].source`
/// paths (relative to its directory). Never throws, whatever the input.
LoadResult ParseSpecText(std::string_view text, const std::string& filename);

/// Loads files and directories (every *.yaml / *.yml below a directory, sorted
/// by path). Duplicate sandbox names across documents are errors naming both
/// places. A missing path is an error diagnostic.
LoadResult LoadSpecPaths(const std::vector<std::filesystem::path>& paths);

/// Deterministic JSON of the fully-defaulted spec (sorted keys, no
/// whitespace). Two specs that mean the same thing have the same canonical
/// form: omitted defaults are filled in, sizes are normalised ("1024MiB" and
/// "1GiB" are equal), label and env order does not matter. Shape:
/// {"apiVersion":..,"kind":..,"metadata":{"labels":{..},"name":..},"spec":{..}}
/// with the YAML field names (camelCase).
std::string CanonicalJson(const SandboxSpec& spec);

/// sha256 hex of CanonicalJson(spec).
std::string SpecHash(const SandboxSpec& spec);

/// Canonical JSON of a `kind: Network` document, and the way back.
std::string CanonicalNetworkJson(const NetworkSpecDoc& spec);
Result<NetworkSpecDoc> NetworkSpecFromCanonicalJson(std::string_view json);

/// Inverse of CanonicalJson, for specs stored in the state database.
Result<SandboxSpec> SpecFromCanonicalJson(std::string_view json);

/// Puts order-insensitive lists into their canonical order (ports by host
/// port then protocol, files by guest path) so that specs meaning the same
/// thing compare equal. The loader and SpecFromCanonicalJson both apply it.
void NormalizeSpec(SandboxSpec& spec);

/// JSON Schema (draft 2020-12) of a Sandbox document, for editors.
std::string SpecJsonSchema();

}  // namespace banger
