// form526-resubmit's input: a CSV an operator exported, read line by line.
// Whatever the bytes, the reader either refuses the file (no header naming
// submission_id) or returns positive ids, each once, and malformed lines
// numbered within the file; and one field written by csv_field reads back
// as itself.
#include <algorithm>
#include <cstddef>
#include <cstdint>
#include <cstdlib>
#include <set>
#include <stdexcept>
#include <string>
#include <string_view>

#include "input_csv.hpp"

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  const std::string_view csv(reinterpret_cast<const char*>(data), size);
  try {
    const form526::InputIds in = form526::parse_input(csv);
    const uint64_t lines = std::count(csv.begin(), csv.end(), '\n') + 1;
    std::set<int64_t> seen;
    for (int64_t id : in.ids)
      if (id <= 0 || !seen.insert(id).second) std::abort();
    for (const auto& m : in.malformed)
      if (m.line < 1 || m.line > lines || m.error.empty()) std::abort();
  } catch (const std::invalid_argument&) {
  }

  // A value without line breaks, written as the only other column of a row.
  std::string value(csv.substr(0, std::min<size_t>(csv.size(), 64)));
  value.erase(
      std::remove_if(value.begin(), value.end(), [](char c) { return c == '\n' || c == '\r'; }),
      value.end());
  const std::string row = "submission_id,note\n7," + form526::csv_field(value) + "\n";
  const form526::InputIds back = form526::parse_input(row);
  if (back.ids.size() != 1 || back.ids[0] != 7 || !back.malformed.empty()) std::abort();
  return 0;
}
