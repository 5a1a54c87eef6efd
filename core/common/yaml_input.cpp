#include "common/yaml_input.hpp"

#include <yaml-cpp/eventhandler.h>
#include <yaml-cpp/parser.h>

#include <optional>
#include <set>
#include <sstream>

#include "common/text.hpp"

namespace taskhost {
namespace {

constexpr int max_depth = 64;
constexpr size_t max_nodes = 100'000;

// Checks what the parser lets through: values, keys and the shape.
class Walk {
 public:
  Walk(const std::string& file, Diagnostics& errors) : file_(file), errors_(errors) {}

  // field: the dotted path of n, for diagnostics ("params.count").
  void node(const YAML::Node& n, int depth, const std::string& field) {
    if (++visited_ > max_nodes) {
      if (visited_ == max_nodes + 1)
        error(n, field,
              "expands to more than " + std::to_string(max_nodes) + " nodes (through aliases?)");
      return;
    }
    if (n.IsScalar()) {
      scalar(n, field);
    } else if (n.IsSequence() || n.IsMap()) {
      if (depth >= max_depth) {
        error(n, field, "nested deeper than " + std::to_string(max_depth) + " levels");
        return;
      }
      if (n.IsSequence()) {
        size_t i = 0;
        for (const auto& item : n) node(item, depth + 1, field + "[" + std::to_string(i++) + "]");
        return;
      }
      std::set<std::string> keys;
      for (const auto& e : n) {
        const std::string key = e.first.IsScalar() ? printable(e.first.Scalar()) : "?";
        const std::string at = field.empty() ? key : field + "." + key;
        node(e.first, depth + 1, at);
        if (e.first.IsScalar() && !keys.insert(e.first.Scalar()).second)
          error(e.first, at, "duplicate key");
        node(e.second, depth + 1, at);
      }
    }
  }

 private:
  void scalar(const YAML::Node& n, const std::string& field) {
    const std::string& s = n.Scalar();
    if (s.find('\0') != std::string::npos)
      error(n, field, "holds a NUL character, which cannot be stored");
    else if (auto at = invalid_utf8_at(s))
      error(n, field, "is not valid UTF-8 (at byte " + std::to_string(*at + 1) + " of the value)");
  }

  void error(const YAML::Node& at, const std::string& field, const std::string& message) {
    errors_.add({file_, at.Mark().line + 1, at.Mark().column + 1, field, message});
  }

  const std::string& file_;
  Diagnostics& errors_;
  size_t visited_ = 0;
};

// Where byte `offset` of text is, 1-based.
std::pair<int, int> line_column(std::string_view text, size_t offset) {
  int line = 1, column = 1;
  for (size_t i = 0; i < offset; ++i) {
    if (text[i] == '\n') {
      ++line;
      column = 1;
    } else if ((static_cast<unsigned char>(text[i]) & 0xC0) != 0x80) {
      ++column;
    }
  }
  return {line, column};
}

// Where a second document starts, if the text holds one. Not YAML::LoadAll:
// yaml-cpp 0.7 loops there for ever (allocating) on some invalid text, such
// as ",'", whose parse keeps yielding empty documents. Two documents at
// most are asked for here, so the parse always ends.
std::optional<YAML::Mark> second_document(std::string_view text) {
  struct FirstMark : YAML::EventHandler {
    std::optional<YAML::Mark> mark;
    void OnDocumentStart(const YAML::Mark& m) override {
      if (!mark) mark = m;
    }
    void OnDocumentEnd() override {}
    void OnNull(const YAML::Mark&, YAML::anchor_t) override {}
    void OnAlias(const YAML::Mark&, YAML::anchor_t) override {}
    void OnScalar(const YAML::Mark&, const std::string&, YAML::anchor_t,
                  const std::string&) override {}
    void OnSequenceStart(const YAML::Mark&, const std::string&, YAML::anchor_t,
                         YAML::EmitterStyle::value) override {}
    void OnSequenceEnd() override {}
    void OnMapStart(const YAML::Mark&, const std::string&, YAML::anchor_t,
                    YAML::EmitterStyle::value) override {}
    void OnMapEnd() override {}
  };
  std::istringstream in{std::string(text)};
  YAML::Parser parser(in);
  FirstMark first, next;
  if (!parser.HandleNextDocument(first) || !parser.HandleNextDocument(next)) return std::nullopt;
  return next.mark.value_or(YAML::Mark());
}

}  // namespace

std::optional<YAML::Node> load_yaml_input(std::string_view text, const std::string& file,
                                          size_t max_bytes, Diagnostics& errors) {
  if (text.size() > max_bytes) {
    errors.add({file, 0, 0, "",
                "is " + std::to_string(text.size()) + " bytes, over the limit of " +
                    std::to_string(max_bytes) + " bytes"});
    return std::nullopt;
  }
  // Raw bytes first: the parser would pass them through into values.
  std::optional<size_t> bad = invalid_utf8_at(text);
  const char* why = "not valid UTF-8";
  if (size_t nul = text.find('\0'); nul != text.npos && (!bad || nul < *bad)) {
    bad = nul;
    why = "a NUL character";
  }
  if (bad) {
    auto [line, column] = line_column(text, *bad);
    errors.add({file, line, column, "", std::string("the text holds ") + why});
    return std::nullopt;
  }
  YAML::Node root;
  std::optional<YAML::Mark> second;
  try {
    root = YAML::Load(std::string(text));
    second = second_document(text);
  } catch (const YAML::Exception& e) {
    errors.add({file, e.mark.line + 1, e.mark.column + 1, "", "invalid YAML: " + e.msg});
    return std::nullopt;
  }
  if (second) {
    errors.add({file, second->line + 1, second->column + 1, "",
                "a second YAML document: the file must hold exactly one"});
    return std::nullopt;
  }
  const size_t before = errors.count();
  Walk(file, errors).node(root, 0, "");
  if (errors.count() != before) return std::nullopt;
  return root;
}

}  // namespace taskhost
