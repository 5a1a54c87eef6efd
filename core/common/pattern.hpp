#pragma once

#include <cstddef>
#include <memory>
#include <string_view>

namespace re2 {
class RE2;
}

namespace taskhost {

// A regular expression matched in linear time (RE2): neither the expression
// (a schema's `pattern`) nor the text (a parameter, a URL, an event name a
// plugin chose) can make matching slow, deep or crash. RE2 syntax: no
// backreferences or lookaround.
class Pattern {
 public:
  static constexpr size_t max_length = 1024;  // bytes of expression

  // Throws Error(invalid) "is not a valid pattern: WHY" or when expression is
  // longer than max_length.
  explicit Pattern(std::string_view expression);
  ~Pattern();
  Pattern(const Pattern&) = delete;
  Pattern& operator=(const Pattern&) = delete;

  // Whether all of text matches. Thread-safe.
  bool matches(std::string_view text) const;

 private:
  std::unique_ptr<const re2::RE2> re_;
};

}  // namespace taskhost
