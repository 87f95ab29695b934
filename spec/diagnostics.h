// Diagnostics: problems found in user input, reported all at once as
// `file:line:col: error: summary`.
#pragma once

#include <string>
#include <vector>

#include "spec/sandbox_spec.h"

namespace banger {

enum class Severity { kError, kWarning };

struct Diagnostic {
  Severity severity = Severity::kError;
  SourceLocation where;
  std::string message;   // "spec.cpus: must be between 1 and 64"
  /// file:line:col: error: message
  std::string ToString() const;
};

class Diagnostics {
 public:
  void AddError(SourceLocation where, std::string message);
  void AddWarning(SourceLocation where, std::string message);
  void Append(const Diagnostics& other);
  bool HasErrors() const;
  const std::vector<Diagnostic>& items() const { return items_; }
  /// All diagnostics, one per line, sorted by file, line, column.
  std::string ToString() const;

 private:
  std::vector<Diagnostic> items_;
};

}  // namespace banger
