// Small string and unit helpers shared by every module.
#pragma once

#include <chrono>
#include <cstdint>
#include <string>
#include <string_view>
#include <vector>

#include "base/status.h"

namespace banger {

std::vector<std::string> Split(std::string_view s, char sep);
std::string Join(const std::vector<std::string>& parts, std::string_view sep);
std::string_view Trim(std::string_view s);
bool StartsWith(std::string_view s, std::string_view prefix);
bool EndsWith(std::string_view s, std::string_view suffix);

/// Parses "512MiB", "2GiB", "1G", "1048576" into bytes. Binary (KiB, MiB, GiB,
/// TiB) and decimal (K/KB, M/MB, G/GB, T/TB) suffixes; a bare number is bytes.
Result<uint64_t> ParseByteSize(std::string_view text);

/// Renders bytes the way users write them: exact binary units when they divide
/// evenly ("2GiB", "512MiB"), else bytes.
std::string FormatByteSize(uint64_t bytes);

/// Human-friendly approximate size ("1.5 GiB") for progress and tables.
std::string HumanBytes(uint64_t bytes);

/// Parses "60s", "500ms", "2m", "1h30m" into a duration.
Result<std::chrono::milliseconds> ParseDuration(std::string_view text);
std::string FormatDuration(std::chrono::milliseconds d);

/// True if `name` is an RFC 1123 DNS label: 1-63 chars of [a-z0-9-], starting
/// and ending alphanumeric.
bool IsDnsLabel(std::string_view name);

/// Levenshtein distance, used for did-you-mean suggestions.
size_t EditDistance(std::string_view a, std::string_view b);

/// Returns the closest candidate within distance 2 (or 1/3 of the length), or "".
std::string ClosestMatch(std::string_view word, const std::vector<std::string>& candidates);

/// Decodes the `\NNN` octal escapes of /proc/self/mountinfo fields (`\040`
/// for a space); anything else is kept as is.
std::string UnescapeMountInfo(std::string_view field);

/// Lower-case hex of bytes.
std::string HexEncode(std::string_view bytes);

}  // namespace banger
