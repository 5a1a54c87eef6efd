#pragma once

#include <cstddef>
#include <string>
#include <vector>

namespace taskhost {

// A problem found in a schema file, the host config or run parameters,
// located precisely.
struct Diagnostic {
  std::string file;   // empty for parameters
  int line = 0;       // 1-based; 0 when unknown
  int column = 0;     // 1-based
  std::string field;  // dotted path, e.g. "params.count.min"
  std::string message;
  std::string str() const;  // "file:line:col: field: message"
};

// Joins diagnostics into one message, one per line.
std::string format_diagnostics(const std::vector<Diagnostic>& errors);

// Appends diagnostics to a list, the first `max` of them; past that it only
// counts, in one last line ("... and 1999900 more problems"), so that an
// input made of mistakes cannot make its own error report huge.
class Diagnostics {
 public:
  static constexpr size_t max = 100;

  explicit Diagnostics(std::vector<Diagnostic>* out) : out_(out) {}
  void add(Diagnostic d);
  // How many problems were added through this collector, listed or not.
  size_t count() const { return total_; }

 private:
  std::vector<Diagnostic>* out_;
  size_t total_ = 0;
};

}  // namespace taskhost
