// The input: a CSV of submission ids, as operators export it from a report.
#pragma once

#include <cstdint>
#include <string>
#include <string_view>
#include <vector>

namespace form526 {

struct MalformedLine {
  uint64_t line = 0;  // 1-based
  std::string error;
};

struct InputIds {
  std::vector<int64_t> ids;  // in file order, each once
  std::vector<MalformedLine> malformed;
  uint64_t duplicates = 0;
};

// Reads the CSV's `submission_id` column (RFC 4180 quoting within a line;
// other columns are ignored). The first non-blank line is the header. Blank
// lines and repeated ids are skipped; a line that cannot be read or whose id
// is not a positive integer is reported with its line number and the rest
// are read. Throws std::invalid_argument when there is no header naming the
// column: then nothing in the file can be trusted.
InputIds parse_input(std::string_view csv);

// One CSV field, quoted when it needs to be.
std::string csv_field(std::string_view value);

}  // namespace form526
