#include "sources/known_hosts.h"

#include <openssl/evp.h>
#include <openssl/hmac.h>

#include <cctype>

#include "base/base64.h"
#include "base/files.h"
#include "base/strings.h"

namespace banger {

namespace {

// HMAC-SHA1(salt, name): how OpenSSH hashes known_hosts names (HashKnownHosts).
std::string HmacSha1(std::string_view key, std::string_view data) {
  unsigned char out[EVP_MAX_MD_SIZE];
  unsigned int len = 0;
  if (!HMAC(EVP_sha1(), key.data(), static_cast<int>(key.size()),
            reinterpret_cast<const unsigned char*>(data.data()), data.size(), out, &len)) {
    return "";
  }
  return std::string(reinterpret_cast<char*>(out), len);
}

bool MatchHashed(std::string_view entry, const std::string& name) {
  // |1|base64(salt)|base64(hmac)
  std::vector<std::string> parts = Split(entry.substr(3), '|');
  if (parts.size() != 2) return false;
  Result<std::string> salt = Base64Decode(parts[0]);
  Result<std::string> mac = Base64Decode(parts[1]);
  if (!salt.ok() || !mac.ok()) return false;
  return HmacSha1(*salt, name) == *mac;
}

// OpenSSH's match_pattern: `*` and `?` only (so `[host]:port` is literal),
// case-insensitive.
bool GlobMatch(std::string_view pattern, std::string_view name) {
  size_t p = 0, n = 0, star = std::string_view::npos, resume = 0;
  auto same = [](char a, char b) {
    return std::tolower(static_cast<unsigned char>(a)) == std::tolower(static_cast<unsigned char>(b));
  };
  while (n < name.size()) {
    if (p < pattern.size() && (pattern[p] == '?' || (pattern[p] != '*' && same(pattern[p], name[n])))) {
      ++p;
      ++n;
    } else if (p < pattern.size() && pattern[p] == '*') {
      star = p++;
      resume = n;
    } else if (star != std::string_view::npos) {
      p = star + 1;
      n = ++resume;
    } else {
      return false;
    }
  }
  while (p < pattern.size() && pattern[p] == '*') ++p;
  return p == pattern.size();
}

// OpenSSH semantics: any negated match rejects; otherwise any positive match.
bool MatchHostField(const std::string& field, const std::string& name) {
  if (StartsWith(field, "|1|")) return MatchHashed(field, name);
  bool matched = false;
  for (const std::string& raw : Split(field, ',')) {
    bool negate = StartsWith(raw, "!");
    std::string pattern = negate ? raw.substr(1) : raw;
    if (pattern.empty()) continue;
    if (GlobMatch(pattern, name)) {
      if (negate) return false;
      matched = true;
    }
  }
  return matched;
}

}  // namespace

Status CheckKnownHost(const std::filesystem::path& known_hosts, const std::string& host, int port,
                      std::string_view key_blob) {
  std::string name = port == 22 || port <= 0 ? host : "[" + host + "]:" + std::to_string(port);
  Result<std::string> text = ReadFile(known_hosts);
  if (!text.ok()) {
    return NotFound("cannot verify the SSH host key of " + name + ": " + known_hosts.string() +
                    " is not readable (" + text.error().message() + ")");
  }
  bool host_known = false;
  bool key_ok = false;
  for (const std::string& raw : Split(*text, '\n')) {
    std::string line(Trim(raw));
    if (line.empty() || line[0] == '#') continue;
    std::vector<std::string> f;
    for (const std::string& w : Split(line, ' ')) {
      for (const std::string& x : Split(w, '\t')) {
        if (!x.empty()) f.push_back(x);
      }
    }
    std::string marker;
    if (!f.empty() && f[0][0] == '@') {
      marker = f[0];
      f.erase(f.begin());
    }
    if (f.size() < 3 || marker == "@cert-authority") continue;
    if (!MatchHostField(f[0], name)) continue;
    Result<std::string> blob = Base64Decode(f[2]);
    bool same = blob.ok() && *blob == key_blob;
    if (marker == "@revoked") {
      if (same) {
        return PermissionDenied("the SSH host key of " + name + " is marked @revoked in " +
                                known_hosts.string());
      }
      continue;
    }
    if (!marker.empty()) continue;
    host_known = true;
    if (same) key_ok = true;
  }
  if (key_ok) return OkStatus();
  if (host_known) {
    return PermissionDenied("the SSH host key of " + name + " does not match the one in " +
                            known_hosts.string() +
                            " (the key changed, or someone is intercepting the connection)");
  }
  return PermissionDenied("unknown SSH host " + name + ": no entry in " + known_hosts.string() +
                          " (add one, e.g. with `ssh-keyscan " +
                          (port == 22 || port <= 0 ? host : "-p " + std::to_string(port) + " " + host) +
                          " >> " + known_hosts.string() + "` after checking the fingerprint)");
}

}  // namespace banger
