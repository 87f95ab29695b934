// A tiny JSON reader for the static guest agent (no third-party libraries in
// the guest binary). Parses the whole document into a tree of JsonValue.
#pragma once

#include <cstdint>
#include <map>
#include <memory>
#include <optional>
#include <string>
#include <string_view>
#include <vector>

namespace banger::agent {

class JsonValue {
 public:
  enum class Kind { kNull, kBool, kNumber, kString, kArray, kObject };

  Kind kind() const { return kind_; }
  bool IsNull() const { return kind_ == Kind::kNull; }
  bool IsObject() const { return kind_ == Kind::kObject; }
  bool IsArray() const { return kind_ == Kind::kArray; }
  bool IsString() const { return kind_ == Kind::kString; }

  /// Member lookup; returns a shared null value when absent or not an object.
  const JsonValue& operator[](std::string_view key) const;
  bool Has(std::string_view key) const;

  std::string AsString(std::string_view fallback = "") const;
  int64_t AsInt(int64_t fallback = 0) const;
  bool AsBool(bool fallback = false) const;
  const std::vector<JsonValue>& AsArray() const;
  const std::map<std::string, JsonValue, std::less<>>& AsObject() const;
  /// Array of strings; non-string elements are skipped.
  std::vector<std::string> AsStringList() const;

  static JsonValue MakeNull() { return JsonValue(); }

 private:
  friend class JsonParser;
  Kind kind_ = Kind::kNull;
  bool bool_ = false;
  double number_ = 0;
  std::string string_;
  std::vector<JsonValue> array_;
  std::map<std::string, JsonValue, std::less<>> object_;
};

/// Parses `text`; on failure returns nullopt and sets *error (with byte offset).
std::optional<JsonValue> ParseJson(std::string_view text, std::string* error);

/// Standard base64 (RFC 4648, padding optional, whitespace ignored).
std::optional<std::string> Base64Decode(std::string_view in);

}  // namespace banger::agent
