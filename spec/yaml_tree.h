// A small YAML document tree with source positions, built from yaml-cpp's
// event stream. Used instead of YAML::LoadAll, which loops forever (eating
// memory) on some malformed inputs, and whose nodes cannot be bounded in size.
// Private to spec/; keeps yaml-cpp out of every header.
#pragma once

#include <memory>
#include <optional>
#include <string>
#include <string_view>
#include <utility>
#include <vector>

namespace banger {

enum class YamlType { kNull, kScalar, kSequence, kMap };

struct YamlData {
  YamlType type = YamlType::kNull;
  std::string scalar;
  int line = -1;    // 0-based; -1 when unknown
  int column = -1;  // 0-based
  std::vector<const YamlData*> items;                                // kSequence
  std::vector<std::pair<const YamlData*, const YamlData*>> entries;  // kMap, in file order
};

/// A cheap handle to a node owned by a YamlDocuments arena.
class YamlNode {
 public:
  explicit YamlNode(const YamlData* d) : d_(d) {}
  YamlType type() const { return d_->type; }
  bool IsNull() const { return d_->type == YamlType::kNull; }
  bool IsScalar() const { return d_->type == YamlType::kScalar; }
  bool IsSequence() const { return d_->type == YamlType::kSequence; }
  bool IsMap() const { return d_->type == YamlType::kMap; }
  const std::string& Scalar() const { return d_->scalar; }
  int line() const { return d_->line; }
  int column() const { return d_->column; }
  std::vector<YamlNode> items() const;
  std::vector<std::pair<YamlNode, YamlNode>> entries() const;

 private:
  const YamlData* d_;
};

struct YamlError {
  std::string message;
  int line = -1;  // 0-based
  int column = -1;
};

struct YamlDocuments {
  std::vector<YamlNode> roots;       // one per complete non-empty document
  std::optional<YamlError> error;    // the first syntax error; later documents are lost
  std::vector<std::unique_ptr<YamlData>> arena;
};

/// Limits that keep hostile input from exhausting memory.
inline constexpr size_t kMaxYamlNodes = 1'000'000;
inline constexpr size_t kMaxYamlDocuments = 10'000;

/// Parses every `---`-separated document. Never throws. Aliases share the
/// anchored node (never copied), so alias bombs cost nothing.
YamlDocuments ParseYamlDocuments(std::string_view text);

}  // namespace banger
