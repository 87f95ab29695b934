#include "oci/reference.h"

#include <cctype>

#include "base/strings.h"

namespace banger::oci {
namespace {

bool IsLowerAlnum(char c) { return (c >= 'a' && c <= 'z') || (c >= '0' && c <= '9'); }

// One path component of a repository: [a-z0-9]+ separated by '.', '_', '__' or '-'+.
bool IsValidComponent(std::string_view c) {
  if (c.empty() || !IsLowerAlnum(c.front()) || !IsLowerAlnum(c.back())) return false;
  for (size_t i = 0; i < c.size(); ++i) {
    char ch = c[i];
    if (IsLowerAlnum(ch)) continue;
    if (ch == '.' || ch == '_' || ch == '-') {
      // "__" is allowed, "_." or ".." is not.
      if (ch == '.' && !IsLowerAlnum(c[i + 1])) return false;
      if (ch == '_' && c[i + 1] != '_' && !IsLowerAlnum(c[i + 1])) return false;
      if (ch == '_' && c[i + 1] == '_' && i + 2 < c.size() && !IsLowerAlnum(c[i + 2])) {
        return false;
      }
      continue;
    }
    return false;
  }
  return true;
}

bool IsValidTag(std::string_view t) {
  if (t.empty() || t.size() > 128) return false;
  if (!(std::isalnum(static_cast<unsigned char>(t[0])) || t[0] == '_')) return false;
  for (char c : t) {
    if (!(std::isalnum(static_cast<unsigned char>(c)) || c == '_' || c == '.' || c == '-')) {
      return false;
    }
  }
  return true;
}

bool IsValidRegistry(std::string_view r) {
  if (r.empty()) return false;
  size_t colon = r.rfind(':');
  size_t bracket = r.rfind(']');
  if (colon != std::string_view::npos && (bracket == std::string_view::npos || colon > bracket)) {
    std::string_view port = r.substr(colon + 1);
    if (port.empty() || port.size() > 5) return false;
    for (char c : port) {
      if (c < '0' || c > '9') return false;
    }
  }
  for (char c : r) {
    if (!(std::isalnum(static_cast<unsigned char>(c)) || c == '.' || c == '-' || c == ':' ||
          c == '[' || c == ']')) {
      return false;
    }
  }
  return true;
}

}  // namespace

bool IsValidDigest(std::string_view digest) {
  if (!StartsWith(digest, "sha256:") || digest.size() != 7 + 64) return false;
  for (char c : digest.substr(7)) {
    if (!((c >= '0' && c <= '9') || (c >= 'a' && c <= 'f'))) return false;
  }
  return true;
}

std::string Reference::ToString() const {
  std::string out = registry + "/" + repository;
  if (!tag.empty()) out += ":" + tag;
  if (!digest.empty()) out += "@" + digest;
  return out;
}

std::string Reference::ApiHost() const {
  if (registry == "docker.io" || registry == "index.docker.io") return "registry-1.docker.io";
  return registry;
}

bool Reference::IsLoopback() const {
  std::string_view host = registry;
  if (StartsWith(host, "[")) {
    return StartsWith(host, "[::1]");
  }
  size_t colon = host.find(':');
  if (colon != std::string_view::npos) host = host.substr(0, colon);
  return host == "localhost" || StartsWith(host, "127.");
}

Result<Reference> ParseReference(std::string_view text) {
  auto bad = [&](std::string_view why) {
    return InvalidArgument("invalid image reference \"" + std::string(text) + "\": " +
                           std::string(why));
  };
  if (text.empty()) return bad("empty");
  if (text.size() > 512) return bad("too long");
  Reference ref;
  std::string_view rest = text;

  size_t at = rest.find('@');
  if (at != std::string_view::npos) {
    ref.digest = std::string(rest.substr(at + 1));
    rest = rest.substr(0, at);
    if (!IsValidDigest(ref.digest)) return bad("digest must be sha256: and 64 lower-case hex");
  }

  // Registry: the first component if it looks like a host.
  size_t slash = rest.find('/');
  if (slash != std::string_view::npos) {
    std::string_view first = rest.substr(0, slash);
    if (first.find('.') != std::string_view::npos || first.find(':') != std::string_view::npos ||
        first == "localhost" || StartsWith(first, "[")) {
      ref.registry = std::string(first);
      rest = rest.substr(slash + 1);
      if (!IsValidRegistry(ref.registry)) return bad("invalid registry host");
    }
  }
  if (ref.registry.empty()) ref.registry = "docker.io";
  if (ref.registry == "index.docker.io") ref.registry = "docker.io";

  // Tag: after the last ':' that follows the last '/'.
  size_t last_slash = rest.rfind('/');
  size_t colon = rest.rfind(':');
  if (colon != std::string_view::npos &&
      (last_slash == std::string_view::npos || colon > last_slash)) {
    ref.tag = std::string(rest.substr(colon + 1));
    rest = rest.substr(0, colon);
    if (!IsValidTag(ref.tag)) return bad("invalid tag \"" + ref.tag + "\"");
  }
  if (rest.empty()) return bad("missing repository");
  for (const std::string& comp : Split(rest, '/')) {
    if (!IsValidComponent(comp)) {
      return bad("invalid repository component \"" + comp +
                 "\" (lower-case letters, digits and . _ - separators)");
    }
  }
  ref.repository = std::string(rest);
  if (ref.registry == "docker.io" && ref.repository.find('/') == std::string::npos) {
    ref.repository = "library/" + ref.repository;
  }
  // The distribution spec bounds a name (registry host and repository) at 255
  // characters; checked after normalisation so that every accepted reference
  // also prints (ToString) to one that parses back.
  if (ref.registry.size() + 1 + ref.repository.size() > kMaxNameLength) {
    return bad("name " + ref.registry + "/" + ref.repository.substr(0, 32) + "... is longer than " +
               std::to_string(kMaxNameLength) + " characters");
  }
  if (ref.tag.empty() && ref.digest.empty()) ref.tag = "latest";
  return ref;
}

}  // namespace banger::oci
