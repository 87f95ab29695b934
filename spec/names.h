// Grammar checks for the names and strings that appear in sandbox specs.
// Pure functions; used by the loader and by anyone who needs to validate a
// name the same way (for example the CLI's `--image` flag).
#pragma once

#include <string_view>

namespace banger {

/// A catalog image or kernel name: `[a-z0-9][a-z0-9._-]*`, at most 128 chars.
bool IsCatalogName(std::string_view name);

/// An OCI image reference `[registry[:port]/]repo[/repo...][:tag][@sha256:<64 hex>]`
/// following the distribution reference grammar.
bool IsImageReference(std::string_view ref);

/// A Kubernetes-style label key `[prefix/]name`: prefix a DNS subdomain of at
/// most 253 chars, name 1-63 chars of [A-Za-z0-9-_.] starting and ending
/// alphanumeric.
bool IsLabelKey(std::string_view key);

/// A label value: empty, or 1-63 chars like a label name.
bool IsLabelValue(std::string_view value);

/// An environment variable name `[A-Za-z_][A-Za-z0-9_]*`.
bool IsEnvName(std::string_view name);

/// An OpenSSH public key line: `<type> <base64> [comment]` with type
/// ssh-ed25519, ssh-rsa, ecdsa-sha2-* or sk-*, and base64 starting "AAAA".
bool IsSshPublicKey(std::string_view line);

/// True if `s` is well-formed UTF-8 without NUL bytes.
bool IsValidUtf8(std::string_view s);

}  // namespace banger
