#include "spec/yaml_tree.h"

#include <yaml-cpp/eventhandler.h>
#include <yaml-cpp/mark.h>
#include <yaml-cpp/yaml.h>

#include <exception>
#include <map>
#include <sstream>

namespace banger {

std::vector<YamlNode> YamlNode::items() const {
  std::vector<YamlNode> out;
  out.reserve(d_->items.size());
  for (const YamlData* d : d_->items) out.emplace_back(d);
  return out;
}

std::vector<std::pair<YamlNode, YamlNode>> YamlNode::entries() const {
  std::vector<std::pair<YamlNode, YamlNode>> out;
  out.reserve(d_->entries.size());
  for (const auto& [k, v] : d_->entries) out.emplace_back(YamlNode(k), YamlNode(v));
  return out;
}

namespace {

struct TooLarge : std::exception {
  const char* what() const noexcept override { return "document too large"; }
};

/// Builds YamlData trees from parser events.
class TreeBuilder : public YAML::EventHandler {
 public:
  explicit TreeBuilder(YamlDocuments* out) : out_(out) {}

  void OnDocumentStart(const YAML::Mark&) override {
    stack_.clear();
    pending_keys_.clear();
    root_ = nullptr;
  }
  void OnDocumentEnd() override {
    if (root_ && root_->type != YamlType::kNull) out_->roots.emplace_back(root_);
    root_ = nullptr;
  }
  void OnNull(const YAML::Mark& mark, YAML::anchor_t anchor) override {
    Add(New(YamlType::kNull, mark, anchor));
  }
  void OnAlias(const YAML::Mark&, YAML::anchor_t anchor) override {
    auto it = anchors_.find(anchor);
    // yaml-cpp rejects unknown aliases itself; be defensive anyway.
    Add(it != anchors_.end() ? it->second : New(YamlType::kNull, YAML::Mark::null_mark(), 0));
  }
  void OnScalar(const YAML::Mark& mark, const std::string&, YAML::anchor_t anchor,
                const std::string& value) override {
    YamlData* d = New(YamlType::kScalar, mark, anchor);
    d->scalar = value;
    Add(d);
  }
  void OnSequenceStart(const YAML::Mark& mark, const std::string&, YAML::anchor_t anchor,
                       YAML::EmitterStyle::value) override {
    Open(New(YamlType::kSequence, mark, anchor));
  }
  void OnSequenceEnd() override { Close(); }
  void OnMapStart(const YAML::Mark& mark, const std::string&, YAML::anchor_t anchor,
                  YAML::EmitterStyle::value) override {
    Open(New(YamlType::kMap, mark, anchor));
  }
  void OnMapEnd() override { Close(); }

 private:
  YamlData* New(YamlType type, const YAML::Mark& mark, YAML::anchor_t anchor) {
    if (out_->arena.size() >= kMaxYamlNodes) throw TooLarge();
    auto d = std::make_unique<YamlData>();
    d->type = type;
    if (!mark.is_null()) {
      d->line = mark.line;
      d->column = mark.column;
    }
    YamlData* raw = d.get();
    out_->arena.push_back(std::move(d));
    if (anchor != YAML::NullAnchor) anchors_[anchor] = raw;
    return raw;
  }

  void Open(YamlData* d) {
    stack_.push_back(d);
    pending_keys_.push_back(nullptr);
  }

  void Close() {
    if (stack_.empty()) return;
    YamlData* d = stack_.back();
    stack_.pop_back();
    pending_keys_.pop_back();
    Add(d);
  }

  void Add(const YamlData* d) {
    if (stack_.empty()) {
      root_ = d;
      return;
    }
    YamlData* parent = stack_.back();
    if (parent->type == YamlType::kSequence) {
      parent->items.push_back(d);
    } else if (pending_keys_.back() == nullptr) {
      pending_keys_.back() = d;
    } else {
      parent->entries.emplace_back(pending_keys_.back(), d);
      pending_keys_.back() = nullptr;
    }
  }

  YamlDocuments* out_;
  std::vector<YamlData*> stack_;
  std::vector<const YamlData*> pending_keys_;
  std::map<YAML::anchor_t, const YamlData*> anchors_;
  const YamlData* root_ = nullptr;
};

/// Detects documents that consume no input (yaml-cpp's LoadAll loop).
class ProgressProbe : public YAML::EventHandler {
 public:
  int first_pos = -1;
  YAML::Mark first_mark = YAML::Mark::null_mark();
  void Note(const YAML::Mark& m) {
    if (first_pos < 0 && !m.is_null()) {
      first_pos = m.pos;
      first_mark = m;
    }
  }
  void OnDocumentStart(const YAML::Mark& m) override { Note(m); }
  void OnDocumentEnd() override {}
  void OnNull(const YAML::Mark& m, YAML::anchor_t) override { Note(m); }
  void OnAlias(const YAML::Mark& m, YAML::anchor_t) override { Note(m); }
  void OnScalar(const YAML::Mark& m, const std::string&, YAML::anchor_t,
                const std::string&) override {
    Note(m);
  }
  void OnSequenceStart(const YAML::Mark& m, const std::string&, YAML::anchor_t,
                       YAML::EmitterStyle::value) override {
    Note(m);
  }
  void OnSequenceEnd() override {}
  void OnMapStart(const YAML::Mark& m, const std::string&, YAML::anchor_t,
                  YAML::EmitterStyle::value) override {
    Note(m);
  }
  void OnMapEnd() override {}
};

/// Forwards events to the builder and the probe.
class Tee : public YAML::EventHandler {
 public:
  Tee(YAML::EventHandler* a, YAML::EventHandler* b) : a_(a), b_(b) {}
  void OnDocumentStart(const YAML::Mark& m) override {
    a_->OnDocumentStart(m);
    b_->OnDocumentStart(m);
  }
  void OnDocumentEnd() override {
    a_->OnDocumentEnd();
    b_->OnDocumentEnd();
  }
  void OnNull(const YAML::Mark& m, YAML::anchor_t x) override {
    a_->OnNull(m, x);
    b_->OnNull(m, x);
  }
  void OnAlias(const YAML::Mark& m, YAML::anchor_t x) override {
    a_->OnAlias(m, x);
    b_->OnAlias(m, x);
  }
  void OnScalar(const YAML::Mark& m, const std::string& t, YAML::anchor_t x,
                const std::string& v) override {
    a_->OnScalar(m, t, x, v);
    b_->OnScalar(m, t, x, v);
  }
  void OnSequenceStart(const YAML::Mark& m, const std::string& t, YAML::anchor_t x,
                       YAML::EmitterStyle::value s) override {
    a_->OnSequenceStart(m, t, x, s);
    b_->OnSequenceStart(m, t, x, s);
  }
  void OnSequenceEnd() override {
    a_->OnSequenceEnd();
    b_->OnSequenceEnd();
  }
  void OnMapStart(const YAML::Mark& m, const std::string& t, YAML::anchor_t x,
                  YAML::EmitterStyle::value s) override {
    a_->OnMapStart(m, t, x, s);
    b_->OnMapStart(m, t, x, s);
  }
  void OnMapEnd() override {
    a_->OnMapEnd();
    b_->OnMapEnd();
  }

 private:
  YAML::EventHandler* a_;
  YAML::EventHandler* b_;
};

}  // namespace

YamlDocuments ParseYamlDocuments(std::string_view text) {
  YamlDocuments out;
  try {
    std::istringstream in{std::string(text)};
    YAML::Parser parser(in);
    TreeBuilder builder(&out);
    int last_pos = -1;
    for (size_t docs = 0;; ++docs) {
      if (docs >= kMaxYamlDocuments) {
        out.error = YamlError{"too many documents", -1, -1};
        break;
      }
      ProgressProbe probe;
      Tee tee(&builder, &probe);
      if (!parser.HandleNextDocument(tee)) break;
      if (probe.first_pos >= 0 && probe.first_pos == last_pos) {
        // The parser is stuck on a token it cannot use; yaml-cpp would
        // produce empty documents forever. Drop the bogus empty document.
        if (!out.roots.empty() && out.roots.back().line() == probe.first_mark.line &&
            out.roots.back().column() == probe.first_mark.column) {
          out.roots.pop_back();
        }
        out.error = YamlError{"unexpected content", probe.first_mark.line,
                              probe.first_mark.column};
        break;
      }
      if (probe.first_pos >= 0) last_pos = probe.first_pos;
    }
  } catch (const YAML::Exception& e) {
    out.error = YamlError{e.msg, e.mark.is_null() ? -1 : e.mark.line,
                          e.mark.is_null() ? -1 : e.mark.column};
  } catch (const TooLarge& e) {
    out.error = YamlError{e.what(), -1, -1};
  } catch (const std::exception& e) {
    out.error = YamlError{e.what(), -1, -1};
  }
  return out;
}

}  // namespace banger
