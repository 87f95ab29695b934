#include "base/strings.h"

#include <algorithm>
#include <cctype>
#include <charconv>
#include <cmath>
#include <cstdio>

namespace banger {

std::vector<std::string> Split(std::string_view s, char sep) {
  std::vector<std::string> out;
  size_t start = 0;
  while (true) {
    size_t pos = s.find(sep, start);
    if (pos == std::string_view::npos) {
      out.emplace_back(s.substr(start));
      return out;
    }
    out.emplace_back(s.substr(start, pos - start));
    start = pos + 1;
  }
}

std::string Join(const std::vector<std::string>& parts, std::string_view sep) {
  std::string out;
  for (size_t i = 0; i < parts.size(); ++i) {
    if (i) out.append(sep);
    out.append(parts[i]);
  }
  return out;
}

std::string_view Trim(std::string_view s) {
  while (!s.empty() && std::isspace(static_cast<unsigned char>(s.front()))) s.remove_prefix(1);
  while (!s.empty() && std::isspace(static_cast<unsigned char>(s.back()))) s.remove_suffix(1);
  return s;
}

bool StartsWith(std::string_view s, std::string_view prefix) {
  return s.substr(0, prefix.size()) == prefix;
}

bool EndsWith(std::string_view s, std::string_view suffix) {
  return s.size() >= suffix.size() && s.substr(s.size() - suffix.size()) == suffix;
}

namespace {

struct Unit {
  std::string_view suffix;
  uint64_t factor;
};

constexpr uint64_t kKi = 1024;
constexpr Unit kSizeUnits[] = {
    {"KiB", kKi},           {"MiB", kKi * kKi},     {"GiB", kKi * kKi * kKi},
    {"TiB", kKi * kKi * kKi * kKi},
    {"Ki", kKi},            {"Mi", kKi * kKi},      {"Gi", kKi * kKi * kKi},
    {"Ti", kKi * kKi * kKi * kKi},
    {"KB", 1000},           {"MB", 1000000},        {"GB", 1000000000},
    {"TB", 1000000000000},
    {"K", 1000},            {"M", 1000000},         {"G", 1000000000},
    {"T", 1000000000000},   {"B", 1},
};

}  // namespace

Result<uint64_t> ParseByteSize(std::string_view text) {
  std::string_view t = Trim(text);
  if (t.empty()) return InvalidArgument("empty size");
  size_t digits = 0;
  while (digits < t.size() && (std::isdigit(static_cast<unsigned char>(t[digits])) || t[digits] == '.')) {
    ++digits;
  }
  if (digits == 0) {
    return InvalidArgument("size \"" + std::string(text) + "\" must start with a number (e.g. 512MiB, 2GiB)");
  }
  std::string_view num = t.substr(0, digits);
  std::string_view suffix = Trim(t.substr(digits));
  uint64_t factor = 1;
  if (!suffix.empty()) {
    bool found = false;
    for (const Unit& u : kSizeUnits) {
      if (suffix == u.suffix) {
        factor = u.factor;
        found = true;
        break;
      }
    }
    if (!found) {
      return InvalidArgument("unknown size unit \"" + std::string(suffix) +
                             "\" (use KiB, MiB, GiB, TiB, or K, M, G, T)");
    }
  }
  if (num.find('.') != std::string_view::npos) {
    double v = 0;
    auto [p, ec] = std::from_chars(num.data(), num.data() + num.size(), v);
    if (ec != std::errc() || p != num.data() + num.size()) {
      return InvalidArgument("invalid size \"" + std::string(text) + "\"");
    }
    double bytes = v * static_cast<double>(factor);
    if (bytes > 1.8e19) return InvalidArgument("size \"" + std::string(text) + "\" is too large");
    return static_cast<uint64_t>(std::llround(bytes));
  }
  uint64_t v = 0;
  auto [p, ec] = std::from_chars(num.data(), num.data() + num.size(), v);
  if (ec != std::errc() || p != num.data() + num.size()) {
    return InvalidArgument("invalid size \"" + std::string(text) + "\"");
  }
  if (factor != 0 && v > UINT64_MAX / factor) {
    return InvalidArgument("size \"" + std::string(text) + "\" is too large");
  }
  return v * factor;
}

std::string FormatByteSize(uint64_t bytes) {
  static constexpr std::pair<std::string_view, uint64_t> kUnits[] = {
      {"TiB", kKi * kKi * kKi * kKi}, {"GiB", kKi * kKi * kKi}, {"MiB", kKi * kKi}, {"KiB", kKi}};
  if (bytes == 0) return "0";
  for (const auto& [name, factor] : kUnits) {
    if (bytes % factor == 0) return std::to_string(bytes / factor) + std::string(name);
  }
  return std::to_string(bytes);
}

std::string HumanBytes(uint64_t bytes) {
  static constexpr std::string_view kNames[] = {"B", "KiB", "MiB", "GiB", "TiB"};
  double v = static_cast<double>(bytes);
  size_t i = 0;
  while (v >= 1024 && i + 1 < std::size(kNames)) {
    v /= 1024;
    ++i;
  }
  char buf[32];
  if (i == 0) {
    std::snprintf(buf, sizeof(buf), "%llu B", static_cast<unsigned long long>(bytes));
  } else {
    std::snprintf(buf, sizeof(buf), "%.1f %s", v, std::string(kNames[i]).c_str());
  }
  return buf;
}

Result<std::chrono::milliseconds> ParseDuration(std::string_view text) {
  std::string_view t = Trim(text);
  if (t.empty()) return InvalidArgument("empty duration");
  int64_t total_ms = 0;
  size_t i = 0;
  while (i < t.size()) {
    size_t start = i;
    while (i < t.size() && std::isdigit(static_cast<unsigned char>(t[i]))) ++i;
    if (start == i) {
      return InvalidArgument("invalid duration \"" + std::string(text) + "\" (use e.g. 30s, 500ms, 2m, 1h)");
    }
    int64_t v = 0;
    std::from_chars(t.data() + start, t.data() + i, v);
    size_t ustart = i;
    while (i < t.size() && std::isalpha(static_cast<unsigned char>(t[i]))) ++i;
    std::string_view unit = t.substr(ustart, i - ustart);
    int64_t factor;
    if (unit == "ms") factor = 1;
    else if (unit == "s") factor = 1000;
    else if (unit == "m") factor = 60 * 1000;
    else if (unit == "h") factor = 3600 * 1000;
    else {
      return InvalidArgument("invalid duration \"" + std::string(text) +
                             "\": unit must be ms, s, m or h");
    }
    if (v > INT64_MAX / factor / 2) return InvalidArgument("duration \"" + std::string(text) + "\" is too large");
    total_ms += v * factor;
  }
  return std::chrono::milliseconds(total_ms);
}

std::string FormatDuration(std::chrono::milliseconds d) {
  int64_t ms = d.count();
  if (ms == 0) return "0s";
  std::string out;
  if (ms % 1000 != 0) return std::to_string(ms) + "ms";
  int64_t s = ms / 1000;
  if (s >= 3600) {
    out += std::to_string(s / 3600) + "h";
    s %= 3600;
  }
  if (s >= 60) {
    out += std::to_string(s / 60) + "m";
    s %= 60;
  }
  if (s > 0) out += std::to_string(s) + "s";
  return out;
}

bool IsDnsLabel(std::string_view name) {
  if (name.empty() || name.size() > 63) return false;
  for (char c : name) {
    if (!((c >= 'a' && c <= 'z') || (c >= '0' && c <= '9') || c == '-')) return false;
  }
  return name.front() != '-' && name.back() != '-';
}

size_t EditDistance(std::string_view a, std::string_view b) {
  std::vector<size_t> prev(b.size() + 1), cur(b.size() + 1);
  for (size_t j = 0; j <= b.size(); ++j) prev[j] = j;
  for (size_t i = 1; i <= a.size(); ++i) {
    cur[0] = i;
    for (size_t j = 1; j <= b.size(); ++j) {
      size_t cost = std::tolower(static_cast<unsigned char>(a[i - 1])) ==
                            std::tolower(static_cast<unsigned char>(b[j - 1]))
                        ? 0
                        : 1;
      cur[j] = std::min({prev[j] + 1, cur[j - 1] + 1, prev[j - 1] + cost});
    }
    std::swap(prev, cur);
  }
  return prev[b.size()];
}

std::string ClosestMatch(std::string_view word, const std::vector<std::string>& candidates) {
  std::string best;
  size_t best_d = SIZE_MAX;
  size_t limit = std::max<size_t>(2, word.size() / 3);
  for (const auto& c : candidates) {
    size_t d = EditDistance(word, c);
    if (d < best_d) {
      best_d = d;
      best = c;
    }
  }
  return best_d <= limit ? best : std::string();
}

std::string HexEncode(std::string_view bytes) {
  static constexpr char kHex[] = "0123456789abcdef";
  std::string out;
  out.reserve(bytes.size() * 2);
  for (unsigned char c : bytes) {
    out.push_back(kHex[c >> 4]);
    out.push_back(kHex[c & 0xf]);
  }
  return out;
}

std::string UnescapeMountInfo(std::string_view s) {
  std::string out;
  for (size_t i = 0; i < s.size(); ++i) {
    if (s[i] == '\\' && i + 3 < s.size()) {
      int v = 0;
      bool ok = true;
      for (size_t j = 1; j <= 3; ++j) {
        char c = s[i + j];
        ok = ok && c >= '0' && c <= '7';
        v = v * 8 + (c - '0');
      }
      if (ok) {
        out.push_back(static_cast<char>(v));
        i += 3;
        continue;
      }
    }
    out.push_back(s[i]);
  }
  return out;
}

}  // namespace banger
