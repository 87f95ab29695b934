// Rendering helpers for the CLI: tables, colours, progress, record views.
#pragma once

#include <cstdio>
#include <mutex>
#include <string>
#include <vector>

#include "reconciler/ports.h"
#include "state/state_store.h"

namespace banger::cli {

/// True when `stream` is a terminal and NO_COLOR is unset (for colours), or
/// just a terminal (for progress bars and prompts).
bool IsTerminal(FILE* stream);
bool UseColor(FILE* stream);

/// Left-aligned columns separated by three spaces.
std::string RenderTable(const std::vector<std::vector<std::string>>& rows);

/// "[#####.....] 1.2 MiB / 4.0 MiB" when the total is known, else the bytes
/// done so far ("1.2 MiB").
std::string ProgressText(uint64_t done, uint64_t total);

/// A progress line on stderr ("LABEL PHASE [####..] done / total"), redrawn in
/// place when stderr is a terminal and silent otherwise. Thread-safe.
class ProgressLine {
 public:
  explicit ProgressLine(std::string label) : label_(std::move(label)), tty_(IsTerminal(stderr)) {}
  ~ProgressLine() { Done(); }
  ProgressLine(const ProgressLine&) = delete;
  ProgressLine& operator=(const ProgressLine&) = delete;
  void Update(const std::string& phase, uint64_t done, uint64_t total);
  /// Clears the line (also done on destruction).
  void Done();

 private:
  std::mutex mu_;
  std::string label_;
  bool tty_;
  bool shown_ = false;
};

/// Prints "error: MESSAGE" to stderr and returns exit code 1.
int PrintError(const Status& status);

/// "5s ago", "3m ago", "2h ago", "4d ago".
std::string Age(int64_t then_unix, int64_t now_unix);

/// The status word users see: Ready, Booting, Failed, Stopped, ...
std::string StatusWord(const SandboxRecord& r);

/// JSON/YAML views of a record (stable field names, docs/cli.md).
std::string SandboxJson(const std::vector<SandboxRecord>& records, bool single);
std::string SandboxYaml(const std::vector<SandboxRecord>& records);

/// Prints engine progress to stderr: one line per finished step, and a
/// redrawn progress bar for pulls when stderr is a terminal.
class TerminalSink final : public EventSink {
 public:
  explicit TerminalSink(bool verbose) : verbose_(verbose), tty_(IsTerminal(stderr)) {}
  void StepStarted(const std::string& sandbox, const std::string& step) override;
  void StepFinished(const std::string& sandbox, const std::string& step, const Status& status,
                    std::chrono::milliseconds took) override;
  void OnProgress(const Progress& progress) override;
  void Message(const std::string& sandbox, const std::string& text) override;

 private:
  void ClearBar();
  std::mutex mu_;
  bool verbose_;
  bool tty_;
  bool bar_shown_ = false;
};

}  // namespace banger::cli
