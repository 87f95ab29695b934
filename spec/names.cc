#include "spec/names.h"

#include <cstdint>
#include <string>
#include <vector>

#include "base/strings.h"

namespace banger {
namespace {

bool IsLowerAlnum(char c) { return (c >= 'a' && c <= 'z') || (c >= '0' && c <= '9'); }
bool IsAlnum(char c) { return IsLowerAlnum(c) || (c >= 'A' && c <= 'Z'); }
bool HasUpper(std::string_view s) {
  for (char c : s) {
    if (c >= 'A' && c <= 'Z') return true;
  }
  return false;
}
bool IsHex(char c) { return (c >= '0' && c <= '9') || (c >= 'a' && c <= 'f'); }

// [a-z0-9]+((\.|_|__|-+)[a-z0-9]+)*
bool IsRepoComponent(std::string_view s) {
  if (s.empty() || !IsLowerAlnum(s.front()) || !IsLowerAlnum(s.back())) return false;
  size_t i = 0;
  while (i < s.size()) {
    if (IsLowerAlnum(s[i])) {
      ++i;
      continue;
    }
    // A separator run: ".", "_", "__" or "-+".
    size_t start = i;
    if (s[i] == '.') {
      ++i;
    } else if (s[i] == '_') {
      ++i;
      if (i < s.size() && s[i] == '_') ++i;
    } else if (s[i] == '-') {
      while (i < s.size() && s[i] == '-') ++i;
    } else {
      return false;
    }
    if (i == start || i >= s.size() || !IsLowerAlnum(s[i])) return false;
  }
  return true;
}

// A DNS-ish host component: [A-Za-z0-9]([A-Za-z0-9-]*[A-Za-z0-9])?
bool IsHostComponent(std::string_view s) {
  if (s.empty() || s.size() > 63 || !IsAlnum(s.front()) || !IsAlnum(s.back())) return false;
  for (char c : s) {
    if (!IsAlnum(c) && c != '-') return false;
  }
  return true;
}

bool IsRegistryHost(std::string_view s) {
  std::string_view host = s;
  size_t colon = s.rfind(':');
  if (colon != std::string_view::npos) {
    std::string_view port = s.substr(colon + 1);
    if (port.empty() || port.size() > 5) return false;
    uint32_t v = 0;
    for (char c : port) {
      if (c < '0' || c > '9') return false;
      v = v * 10 + static_cast<uint32_t>(c - '0');
    }
    if (v == 0 || v > 65535) return false;
    host = s.substr(0, colon);
  }
  if (host.empty() || host.size() > 253) return false;
  for (const auto& part : Split(host, '.')) {
    if (!IsHostComponent(part)) return false;
  }
  return true;
}

bool IsTag(std::string_view s) {
  if (s.empty() || s.size() > 128) return false;
  if (!(IsAlnum(s.front()) || s.front() == '_')) return false;
  for (char c : s) {
    if (!(IsAlnum(c) || c == '_' || c == '.' || c == '-')) return false;
  }
  return true;
}

// 1-63 chars of [A-Za-z0-9-_.], starting and ending alphanumeric.
bool IsLabelName(std::string_view s) {
  if (s.empty() || s.size() > 63 || !IsAlnum(s.front()) || !IsAlnum(s.back())) return false;
  for (char c : s) {
    if (!(IsAlnum(c) || c == '-' || c == '_' || c == '.')) return false;
  }
  return true;
}

bool IsDnsSubdomain(std::string_view s) {
  if (s.empty() || s.size() > 253) return false;
  for (const auto& part : Split(s, '.')) {
    if (!IsDnsLabel(part)) return false;
  }
  return true;
}

}  // namespace

bool IsCatalogName(std::string_view name) {
  if (name.empty() || name.size() > 128 || !IsLowerAlnum(name.front())) return false;
  for (char c : name) {
    if (!(IsLowerAlnum(c) || c == '.' || c == '_' || c == '-')) return false;
  }
  return true;
}

bool IsImageReference(std::string_view ref) {
  if (ref.empty() || ref.size() > 512) return false;
  std::string_view rest = ref;
  size_t at = rest.find('@');
  if (at != std::string_view::npos) {
    std::string_view digest = rest.substr(at + 1);
    if (!StartsWith(digest, "sha256:") || digest.size() != 7 + 64) return false;
    for (char c : digest.substr(7)) {
      if (!IsHex(c)) return false;
    }
    rest = rest.substr(0, at);
  }
  size_t last_slash = rest.rfind('/');
  size_t last_colon = rest.rfind(':');
  if (last_colon != std::string_view::npos &&
      (last_slash == std::string_view::npos || last_colon > last_slash)) {
    if (!IsTag(rest.substr(last_colon + 1))) return false;
    rest = rest.substr(0, last_colon);
  }
  std::vector<std::string> parts = Split(rest, '/');
  size_t first_repo = 0;
  if (parts.size() > 1 && (parts[0].find_first_of(".:") != std::string::npos ||
                           parts[0] == "localhost" || HasUpper(parts[0]))) {
    if (!IsRegistryHost(parts[0])) return false;
    first_repo = 1;
  }
  if (first_repo >= parts.size()) return false;
  size_t name_len = 0;
  for (size_t i = first_repo; i < parts.size(); ++i) {
    if (!IsRepoComponent(parts[i])) return false;
    name_len += parts[i].size() + 1;
  }
  return name_len <= 256;
}

bool IsLabelKey(std::string_view key) {
  size_t slash = key.find('/');
  if (slash == std::string_view::npos) return IsLabelName(key);
  return IsDnsSubdomain(key.substr(0, slash)) && IsLabelName(key.substr(slash + 1));
}

bool IsLabelValue(std::string_view value) { return value.empty() || IsLabelName(value); }

bool IsEnvName(std::string_view name) {
  if (name.empty()) return false;
  char f = name.front();
  if (!((f >= 'a' && f <= 'z') || (f >= 'A' && f <= 'Z') || f == '_')) return false;
  for (char c : name) {
    if (!(IsAlnum(c) || c == '_')) return false;
  }
  return true;
}

bool IsSshPublicKey(std::string_view line) {
  if (line.find_first_of("\r\n") != std::string_view::npos) return false;
  size_t sp = line.find(' ');
  if (sp == std::string_view::npos) return false;
  std::string_view type = line.substr(0, sp);
  bool type_ok = type == "ssh-ed25519" || type == "ssh-rsa" ||
                 (StartsWith(type, "ecdsa-sha2-") && type.size() > 11) ||
                 (StartsWith(type, "sk-") && type.size() > 3);
  if (!type_ok) return false;
  for (char c : type) {
    if (!(IsAlnum(c) || c == '-' || c == '@' || c == '.')) return false;
  }
  std::string_view rest = line.substr(sp + 1);
  size_t end = rest.find(' ');
  std::string_view b64 = rest.substr(0, end);
  if (b64.size() < 16 || !StartsWith(b64, "AAAA")) return false;
  size_t pad = 0;
  for (char c : b64) {
    if (c == '=') {
      ++pad;
      continue;
    }
    if (pad > 0) return false;  // '=' only at the end
    if (!(IsAlnum(c) || c == '+' || c == '/')) return false;
  }
  return pad <= 2;
}

bool IsValidUtf8(std::string_view s) {
  size_t i = 0;
  while (i < s.size()) {
    auto c = static_cast<unsigned char>(s[i]);
    if (c == 0) return false;
    size_t n;
    uint32_t cp;
    if (c < 0x80) {
      ++i;
      continue;
    } else if ((c & 0xE0) == 0xC0) {
      n = 1;
      cp = c & 0x1F;
    } else if ((c & 0xF0) == 0xE0) {
      n = 2;
      cp = c & 0x0F;
    } else if ((c & 0xF8) == 0xF0) {
      n = 3;
      cp = c & 0x07;
    } else {
      return false;
    }
    if (i + n >= s.size()) return false;
    for (size_t k = 1; k <= n; ++k) {
      auto cc = static_cast<unsigned char>(s[i + k]);
      if ((cc & 0xC0) != 0x80) return false;
      cp = (cp << 6) | (cc & 0x3F);
    }
    if ((n == 1 && cp < 0x80) || (n == 2 && cp < 0x800) || (n == 3 && cp < 0x10000) ||
        cp > 0x10FFFF || (cp >= 0xD800 && cp <= 0xDFFF)) {
      return false;
    }
    i += n + 1;
  }
  return true;
}

}  // namespace banger
