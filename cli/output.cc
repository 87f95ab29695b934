#include "cli/output.h"

#include <filesystem>
#include <fstream>

#include <unistd.h>

#include <algorithm>
#include <cstdlib>
#include <nlohmann/json.hpp>
#include <yaml-cpp/yaml.h>

#include "base/strings.h"
#include "host/templates.h"

namespace banger::cli {

bool IsTerminal(FILE* stream) { return ::isatty(::fileno(stream)) == 1; }

bool UseColor(FILE* stream) {
  const char* no = std::getenv("NO_COLOR");
  if (no && *no) return false;
  const char* term = std::getenv("TERM");
  if (term && std::string(term) == "dumb") return false;
  return IsTerminal(stream);
}

std::string RenderTable(const std::vector<std::vector<std::string>>& rows) {
  std::vector<size_t> width;
  for (const auto& r : rows) {
    if (width.size() < r.size()) width.resize(r.size(), 0);
    for (size_t i = 0; i < r.size(); ++i) width[i] = std::max(width[i], r[i].size());
  }
  std::string out;
  for (const auto& r : rows) {
    std::string line;
    for (size_t i = 0; i < r.size(); ++i) {
      line += r[i];
      if (i + 1 < r.size()) line.append(width[i] - r[i].size() + 3, ' ');
    }
    out += line + "\n";
  }
  return out;
}

std::string ProgressText(uint64_t done, uint64_t total) {
  if (total == 0) return HumanBytes(done);
  constexpr int kWidth = 30;
  int filled = static_cast<int>(static_cast<double>(std::min(done, total)) / static_cast<double>(total) * kWidth);
  return "[" + std::string(static_cast<size_t>(filled), '#') +
         std::string(static_cast<size_t>(kWidth - filled), '.') + "] " + HumanBytes(done) + " / " +
         HumanBytes(total);
}

int PrintError(const Status& status) {
  std::fprintf(stderr, "error: %s\n", status.message().c_str());
  return 1;
}

std::string Age(int64_t then_unix, int64_t now_unix) {
  if (then_unix <= 0) return "-";
  int64_t d = std::max<int64_t>(0, now_unix - then_unix);
  if (d < 60) return std::to_string(d) + "s";
  if (d < 3600) return std::to_string(d / 60) + "m";
  if (d < 86400) return std::to_string(d / 3600) + "h";
  return std::to_string(d / 86400) + "d";
}

std::string StatusWord(const SandboxRecord& r) {
  std::string s(ToString(r.phase));
  return s;
}

void ProgressLine::Update(const std::string& phase, uint64_t done, uint64_t total) {
  if (!tty_) return;
  std::lock_guard<std::mutex> l(mu_);
  std::string line = label_ + " " + phase + " ";
  if (total > 0 || done > 0) line += ProgressText(done, total);
  std::fprintf(stderr, "\r\033[2K%s", line.c_str());
  shown_ = true;
}

void ProgressLine::Done() {
  std::lock_guard<std::mutex> l(mu_);
  if (shown_) std::fputs("\r\033[2K", stderr);
  shown_ = false;
}

namespace {
// The template a sandbox was restored from (its disk is layered on it,
// docs/snapshots.md): the first 12 hex digits, or "" when it booted.
std::string TemplateOf(const SandboxRecord& r) {
  if (r.runtime_dir.empty()) return "";
  return host::ShortHash(host::TemplateOfRuntimeDir(r.runtime_dir));
}

nlohmann::json RecordJson(const SandboxRecord& r) {
  nlohmann::json spec = nlohmann::json::parse(r.spec_json, nullptr, false);
  return {
      {"name", r.name},
      {"id", r.id},
      {"owner", r.owner},
      {"status",
       {{"phase", std::string(ToString(r.phase))},
        {"error", r.last_error},
        {"hypervisor", r.hypervisor},
        {"pid", r.pid},
        {"address", r.address},
        {"image", r.image_ref},
        {"kernel", r.kernel_ref},
        {"runtimeDir", r.runtime_dir},
        {"disk", r.disk_path},
        {"stoppedByUser", r.stopped_by_user},
        {"provisioned", r.provisioned},
        {"restartCount", r.restart_count},
        {"readyAt", r.ready_at},
        {"template", TemplateOf(r)}}},
      {"specHash", r.spec_hash},
      {"generation", r.generation},
      {"createdAt", r.created_at},
      {"updatedAt", r.updated_at},
      {"spec", spec.is_discarded() ? nlohmann::json(nullptr) : spec},
  };
}

void EmitJson(YAML::Emitter& e, const nlohmann::json& j) {
  if (j.is_object()) {
    e << YAML::BeginMap;
    for (auto it = j.begin(); it != j.end(); ++it) {
      e << YAML::Key << it.key() << YAML::Value;
      EmitJson(e, *it);
    }
    e << YAML::EndMap;
  } else if (j.is_array()) {
    e << YAML::BeginSeq;
    for (const auto& v : j) EmitJson(e, v);
    e << YAML::EndSeq;
  } else if (j.is_string()) {
    e << j.get<std::string>();
  } else if (j.is_null()) {
    e << YAML::Null;
  } else {
    e << j.dump();
  }
}
}  // namespace

std::string SandboxJson(const std::vector<SandboxRecord>& records, bool single) {
  if (single && records.size() == 1) return RecordJson(records[0]).dump(2) + "\n";
  nlohmann::json items = nlohmann::json::array();
  for (const auto& r : records) items.push_back(RecordJson(r));
  return nlohmann::json{{"items", items}}.dump(2) + "\n";
}

std::string SandboxYaml(const std::vector<SandboxRecord>& records) {
  std::string out;
  for (size_t i = 0; i < records.size(); ++i) {
    YAML::Emitter e;
    EmitJson(e, RecordJson(records[i]));
    if (i) out += "---\n";
    out += std::string(e.c_str()) + "\n";
  }
  return out;
}

void TerminalSink::ClearBar() {
  if (bar_shown_) {
    std::fputs("\r\033[2K", stderr);
    bar_shown_ = false;
  }
}

void TerminalSink::StepStarted(const std::string& sandbox, const std::string& step) {
  if (!verbose_) return;
  std::lock_guard<std::mutex> l(mu_);
  ClearBar();
  std::fprintf(stderr, "%s: %s ...\n", sandbox.c_str(), step.c_str());
}

void TerminalSink::StepFinished(const std::string& sandbox, const std::string& step,
                                const Status& status, std::chrono::milliseconds took) {
  std::lock_guard<std::mutex> l(mu_);
  ClearBar();
  char secs[32];
  std::snprintf(secs, sizeof(secs), "%.1fs", static_cast<double>(took.count()) / 1000.0);
  if (status.ok()) {
    std::fprintf(stderr, "%s: %s done (%s)\n", sandbox.c_str(), step.c_str(), secs);
  } else {
    std::fprintf(stderr, "%s: %s failed after %s: %s\n", sandbox.c_str(), step.c_str(), secs,
                 status.message().c_str());
  }
}

void TerminalSink::OnProgress(const Progress& p) {
  if (!tty_) return;
  std::lock_guard<std::mutex> l(mu_);
  std::string line = p.sandbox + ": " + p.what + " " + ProgressText(p.done, p.total);
  std::fprintf(stderr, "\r\033[2K%s", line.c_str());
  bar_shown_ = true;
}

void TerminalSink::Message(const std::string& sandbox, const std::string& text) {
  if (!verbose_) return;
  std::lock_guard<std::mutex> l(mu_);
  ClearBar();
  std::fprintf(stderr, "%s: %s\n", sandbox.c_str(), text.c_str());
}

}  // namespace banger::cli
