// Internal to the toolkit: located problems of a layout, thrown together.
#pragma once

#include <string>

#include "taskhost/fixedwidth.hpp"

namespace taskhost::fixedwidth::detail {

// Collects every problem, each as "file:line: message", and throws them
// together at the end.
class Problems {
 public:
  explicit Problems(std::string file) : file_(std::move(file)) {}
  void add(int line, const std::string& message) {
    out_ += file_ + ":" + std::to_string(line) + ": " + message + "\n";
  }
  bool any() const { return !out_.empty(); }
  void throw_if_any() const {
    if (any()) throw LayoutError(out_.substr(0, out_.size() - 1));
  }

 private:
  std::string file_;
  std::string out_;
};

// The fields of rt must tile it exactly: bytes 1 .. record_length, without
// overlaps or gaps. Each problem names the line of the field it is about.
void check_tiling(const RecordType& rt, uint32_t record_length, Problems& p);

}  // namespace taskhost::fixedwidth::detail
