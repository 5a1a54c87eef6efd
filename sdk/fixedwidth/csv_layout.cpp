// The YAML layout generated from a vendor's CSV field list.
#include <yaml-cpp/yaml.h>

#include <algorithm>
#include <charconv>
#include <map>

#include "problems.hpp"
#include "taskhost/fixedwidth.hpp"

namespace taskhost::fixedwidth {
namespace {

struct CsvField {
  std::string record, name, type, notes;
  uint32_t start = 0, end = 0;
  int line = 0;
  bool sign = false;
};

// RFC 4180 rows: quoted cells may hold commas, doubled quotes and newlines.
std::vector<std::pair<int, std::vector<std::string>>> csv_rows(std::string_view text,
                                                               const std::string& file) {
  std::vector<std::pair<int, std::vector<std::string>>> rows;
  std::vector<std::string> row;
  std::string cell;
  int line = 1, row_line = 1;
  bool quoted = false, any = false;
  for (size_t i = 0; i < text.size(); ++i) {
    const char c = text[i];
    if (quoted) {
      if (c == '"' && i + 1 < text.size() && text[i + 1] == '"') {
        cell += '"';
        ++i;
      } else if (c == '"') {
        quoted = false;
      } else {
        if (c == '\n') ++line;
        cell += c;
      }
      continue;
    }
    if (c == '"' && cell.empty()) {
      quoted = any = true;
    } else if (c == ',') {
      row.push_back(std::move(cell));
      cell.clear();
      any = true;
    } else if (c == '\n' || c == '\r') {
      if (c == '\r' && i + 1 < text.size() && text[i + 1] == '\n') ++i;
      if (any || !cell.empty()) {
        row.push_back(std::move(cell));
        rows.emplace_back(row_line, std::move(row));
      }
      cell.clear();
      row.clear();
      any = false;
      row_line = ++line;
    } else {
      cell += c;
      any = true;
    }
  }
  if (quoted) throw LayoutError(file + ":" + std::to_string(row_line) + ": a quote is not closed");
  if (any || !cell.empty()) {
    row.push_back(std::move(cell));
    rows.emplace_back(row_line, std::move(row));
  }
  return rows;
}

std::string trim(std::string s) {
  const auto b = s.find_first_not_of(" \t"), e = s.find_last_not_of(" \t");
  return b == std::string::npos ? std::string() : s.substr(b, e - b + 1);
}

std::optional<uint32_t> number(const std::string& s) {
  uint32_t v = 0;
  auto [p, ec] = std::from_chars(s.data(), s.data() + s.size(), v);
  if (ec != std::errc() || p != s.data() + s.size()) return std::nullopt;
  return v;
}

}  // namespace

std::string layout_yaml_from_csv(std::string_view csv, const std::string& file) {
  auto rows = csv_rows(csv, file);
  std::string problems;
  auto problem = [&](int line, const std::string& m) {
    problems += file + ":" + std::to_string(line) + ": " + m + "\n";
  };
  if (rows.empty()) throw LayoutError(file + ":1: no rows");
  const std::vector<std::string> expected = {"record", "field", "start", "end", "type", "notes"};
  if (rows.front().second != expected)
    throw LayoutError(file + ":1: the header must be record,field,start,end,type,notes");

  std::vector<std::string> order;  // record types as the CSV lists them
  std::map<std::string, std::vector<CsvField>> records;
  for (size_t r = 1; r < rows.size(); ++r) {
    auto& [line, cells] = rows[r];
    if (cells.size() != 6) {
      problem(line, "expected 6 cells, found " + std::to_string(cells.size()));
      continue;
    }
    CsvField f{trim(cells[0]), trim(cells[1]), trim(cells[4]), trim(cells[5]), 0, 0, line};
    auto s = number(trim(cells[2])), e = number(trim(cells[3]));
    if (!s || !e) {
      problem(line, "start and end must be whole numbers");
      continue;
    }
    f.start = *s;
    f.end = *e;
    if (!records.count(f.record)) order.push_back(f.record);
    records[f.record].push_back(std::move(f));
  }
  if (!problems.empty()) throw LayoutError(problems.substr(0, problems.size() - 1));

  // The discriminator: a field at one place in every record type whose notes
  // are the record's own code.
  std::optional<std::pair<uint32_t, uint32_t>> disc;
  for (const auto& f : records[order.front()]) {
    const bool everywhere = std::all_of(order.begin(), order.end(), [&](const std::string& code) {
      const auto& fs = records[code];
      return std::any_of(fs.begin(), fs.end(), [&](const CsvField& g) {
        return g.start == f.start && g.end == f.end && g.notes == code;
      });
    });
    if (everywhere) disc = std::pair{f.start, f.end};
  }
  if (!disc)
    throw LayoutError(file +
                      ":1: no discriminator: no field lies at the same place in every record "
                      "type with the record's code as its notes");

  uint32_t length = 0;
  for (auto& [code, fs] : records)
    for (size_t i = 0; i < fs.size(); ++i) {
      length = std::max(length, fs[i].end);
      const bool numeric = fs[i].type == "N" || fs[i].type == "D2" || fs[i].type == "D3";
      if (numeric && i + 1 < fs.size() && fs[i + 1].name == fs[i].name + "_action" &&
          fs[i + 1].notes == "+ or -")
        fs[i + 1].sign = true;
    }
  // The same checks as a YAML layout's, naming the CSV's lines.
  detail::Problems checks(file);
  for (const auto& code : order) {
    RecordType rt;
    rt.code = code;
    rt.line = records[code].front().line;
    for (const auto& f : records[code]) {
      static const char* types[] = {"AN", "N", "D2", "D3", "DATE", "TIME"};
      if (std::find(std::begin(types), std::end(types), f.type) == std::end(types))
        checks.add(f.line, "record " + code + " field " + f.name + ": type '" + f.type +
                               "' is unknown (expected AN, N, D2, D3, DATE, TIME)");
      else if (f.start < 1 || f.start > f.end)
        checks.add(f.line, "record " + code + " field " + f.name + ": start " +
                               std::to_string(f.start) + " must be from 1 to its end " +
                               std::to_string(f.end));
      Field field;
      field.name = f.name;
      field.start = f.start;
      field.end = f.end;
      field.line = f.line;
      rt.fields.push_back(std::move(field));
    }
    detail::check_tiling(rt, length, checks);
  }
  checks.throw_if_any();

  YAML::Emitter out;
  out << YAML::Comment("Generated by `taskhost fixedwidth gen` from " + file) << YAML::BeginMap;
  std::string name = file.substr(file.find_last_of('/') + 1);
  name = name.substr(0, name.find('.'));
  out << YAML::Key << "name" << YAML::Value << name;
  out << YAML::Key << "record_length" << YAML::Value << length;
  out << YAML::Key << "discriminator" << YAML::Value << YAML::Flow << YAML::BeginMap << YAML::Key
      << "start" << YAML::Value << disc->first << YAML::Key << "end" << YAML::Value << disc->second
      << YAML::EndMap;
  if (order.size() >= 3) {
    const std::string& trailer = order.back();
    out << YAML::Key << "header" << YAML::Value << order.front();
    out << YAML::Key << "trailer" << YAML::Value << trailer;
    const auto& tr = records[trailer];
    if (std::any_of(tr.begin(), tr.end(),
                    [](const CsvField& f) { return f.name == "record_count"; })) {
      out << YAML::Key << "trailer_count" << YAML::Value << YAML::Flow << YAML::BeginMap
          << YAML::Key << "field" << YAML::Value << "record_count" << YAML::Key << "counts"
          << YAML::Value << YAML::BeginSeq;
      for (size_t i = 1; i + 1 < order.size(); ++i) out << order[i];
      out << YAML::EndSeq << YAML::EndMap;
    }
  }
  out << YAML::Key << "records" << YAML::Value << YAML::BeginMap;
  for (const auto& code : order) {
    out << YAML::Key << code << YAML::Value << YAML::BeginSeq;
    const auto& fs = records[code];
    for (size_t i = 0; i < fs.size(); ++i) {
      const CsvField& f = fs[i];
      out << YAML::Flow << YAML::BeginMap << YAML::Key << "name" << YAML::Value << f.name
          << YAML::Key << "start" << YAML::Value << f.start << YAML::Key << "end" << YAML::Value
          << f.end << YAML::Key << "type" << YAML::Value << (f.sign ? "SIGN" : f.type);
      if (f.sign) out << YAML::Key << "sign_of" << YAML::Value << fs[i - 1].name;
      if (!f.notes.empty()) out << YAML::Key << "note" << YAML::Value << f.notes;
      out << YAML::EndMap;
    }
    out << YAML::EndSeq;
  }
  out << YAML::EndMap << YAML::EndMap;
  const std::string yaml = std::string(out.c_str()) + "\n";
  load_layout(yaml, file + " (as YAML)");  // cannot fail after the checks above; asserts so
  return yaml;
}

}  // namespace taskhost::fixedwidth
