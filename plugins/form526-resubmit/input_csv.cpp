#include "input_csv.hpp"

#include <optional>
#include <stdexcept>
#include <unordered_set>

namespace form526 {
namespace {

// Splits one line into fields; nullopt (and *why) when its quotes are broken.
std::optional<std::vector<std::string>> split(std::string_view line, std::string* why) {
  std::vector<std::string> fields(1);
  bool quoted = false, was_quoted = false;
  for (size_t i = 0; i < line.size(); ++i) {
    const char c = line[i];
    if (quoted) {
      if (c != '"') {
        fields.back() += c;
      } else if (i + 1 < line.size() && line[i + 1] == '"') {
        fields.back() += '"';
        ++i;
      } else {
        quoted = false;
        was_quoted = true;
      }
    } else if (c == ',') {
      fields.emplace_back();
      was_quoted = false;
    } else if (c == '"' && fields.back().empty() && !was_quoted) {
      quoted = true;
    } else if (was_quoted) {
      *why = "text after a closing quote in field " + std::to_string(fields.size());
      return std::nullopt;
    } else {
      fields.back() += c;
    }
  }
  if (quoted) {
    *why = "a quote is not closed on this line";
    return std::nullopt;
  }
  return fields;
}

std::string_view trim(std::string_view s) {
  while (!s.empty() && (s.front() == ' ' || s.front() == '\t')) s.remove_prefix(1);
  while (!s.empty() && (s.back() == ' ' || s.back() == '\t')) s.remove_suffix(1);
  return s;
}

std::optional<int64_t> positive_id(std::string_view text) {
  if (text.empty() || text.size() > 18) return std::nullopt;
  int64_t v = 0;
  for (char c : text) {
    if (c < '0' || c > '9') return std::nullopt;
    v = v * 10 + (c - '0');
  }
  if (v == 0) return std::nullopt;
  return v;
}

}  // namespace

InputIds parse_input(std::string_view csv) {
  if (csv.substr(0, 3) == "\xEF\xBB\xBF") csv.remove_prefix(3);  // a spreadsheet's BOM
  InputIds out;
  std::unordered_set<int64_t> seen;
  std::optional<size_t> column;
  size_t header_fields = 0;
  uint64_t number = 0;
  while (!csv.empty()) {
    size_t end = csv.find('\n');
    std::string_view line = csv.substr(0, end);
    csv.remove_prefix(end == std::string_view::npos ? csv.size() : end + 1);
    ++number;
    if (!line.empty() && line.back() == '\r') line.remove_suffix(1);
    if (trim(line).empty()) continue;
    std::string why;
    auto fields = split(line, &why);
    if (!column) {
      if (fields)
        for (size_t i = 0; i < fields->size(); ++i)
          if (trim((*fields)[i]) == "submission_id") column = i;
      if (!column)
        throw std::invalid_argument("line " + std::to_string(number) +
                                    ": the header has no submission_id column");
      header_fields = fields->size();
      continue;
    }
    if (!fields) {
      out.malformed.push_back({number, why});
      continue;
    }
    if (fields->size() <= *column) {
      out.malformed.push_back(
          {number, "has " + std::to_string(fields->size()) + " fields; submission_id is field " +
                       std::to_string(*column + 1) + " of " + std::to_string(header_fields)});
      continue;
    }
    const std::string_view text = trim((*fields)[*column]);
    const auto id = positive_id(text);
    if (!id) {
      std::string shown(text.substr(0, 40));
      out.malformed.push_back({number, "submission_id '" + shown + "' is not a positive integer"});
      continue;
    }
    if (seen.insert(*id).second)
      out.ids.push_back(*id);
    else
      ++out.duplicates;
  }
  if (!column) throw std::invalid_argument("the file is empty: no submission_id header");
  return out;
}

std::string csv_field(std::string_view value) {
  if (value.find_first_of(",\"\r\n") == std::string_view::npos) return std::string(value);
  std::string out = "\"";
  for (char c : value) {
    if (c == '"') out += '"';
    out += c;
  }
  return out + "\"";
}

}  // namespace form526
