// Which column of esi_accumulators each DT field becomes (esi.sql follows
// the same rules): every field the layout names except reserved_* and the
// record type; D2 amounts as signed integer cents (NAME_cents), SIGN bytes
// applied to their amount rather than stored; the twelve accumulator blocks
// as arrays of the blocks in use (accumulator_qualifier[1] is block 1's).
#pragma once

#include <taskhost/fixedwidth.hpp>

#include <charconv>
#include <string>
#include <vector>

namespace esi {

namespace fw = taskhost::fixedwidth;

struct Column {
  std::string name;
  int field = -1;                 // a plain field: its index
  std::vector<int> block_fields;  // an accumulator array: block 1's field, block 2's ...
  fw::Type type = fw::Type::AN;
};

inline std::vector<Column> columns(const fw::RecordType& dt) {
  std::vector<Column> out;
  for (size_t i = 0; i < dt.fields.size(); ++i) {
    const fw::Field& f = dt.fields[i];
    if (f.type == fw::Type::SIGN || f.name == "record_type" || f.name.rfind("reserved", 0) == 0)
      continue;
    const std::string suffix = f.type == fw::Type::D2 ? "_cents" : "";
    if (f.name.rfind("accumulator_", 0) == 0 && f.name.size() > 12 && f.name[12] >= '0' &&
        f.name[12] <= '9') {
      const size_t cut = f.name.find('_', 12);
      const int block = std::stoi(f.name.substr(12, cut - 12));
      const std::string name = "accumulator_" + f.name.substr(cut + 1) + suffix;
      Column* c = nullptr;
      for (auto& existing : out)
        if (existing.name == name) c = &existing;
      if (!c) {
        out.push_back({name, -1, {}, f.type});
        c = &out.back();
      }
      if (static_cast<int>(c->block_fields.size()) != block - 1) throw std::logic_error(name);
      c->block_fields.push_back(static_cast<int>(i));
      continue;
    }
    out.push_back({f.name + suffix, static_cast<int>(i), {}, f.type});
  }
  return out;
}

inline const char* sql_type(fw::Type t) {
  switch (t) {
    case fw::Type::N:
    case fw::Type::D2:
      return "bigint";
    case fw::Type::D3:
      return "numeric(18,3)";
    case fw::Type::DATE:
      return "date";
    case fw::Type::TIME:
      return "time";
    default:
      return "text";
  }
}

// One value in COPY's text format (into out), as its column's type reads it.
inline void append_value(std::string& out, const fw::Field& f, const fw::Value& v, bool in_array) {
  if (v.null) {
    out += in_array ? "NULL" : "\\N";
    return;
  }
  char buf[24];
  auto number = [&](int64_t n) { out.append(buf, std::to_chars(buf, buf + sizeof buf, n).ptr); };
  auto two = [&](int64_t n) {
    out += static_cast<char>('0' + n / 10);
    out += static_cast<char>('0' + n % 10);
  };
  switch (f.type) {
    case fw::Type::AN: {
      if (in_array) out += '"';
      // COPY escapes a backslash; an array element also a quote, whose own
      // backslash COPY escapes in turn. Runs without either are copied whole.
      size_t from = 0;
      for (size_t i = 0; i < v.text.size(); ++i) {
        const char c = v.text[i];
        if (c != '\\' && (c != '"' || !in_array)) continue;
        out.append(v.text, from, i - from);
        out += c == '"' ? "\\\\\"" : in_array ? "\\\\\\\\" : "\\\\";
        from = i + 1;
      }
      out.append(v.text.substr(from));
      if (in_array) out += '"';
      break;
    }
    case fw::Type::D3:
      out += fw::decimal_text(v.number, 3);
      break;
    case fw::Type::DATE:
      number(v.number / 10000);
      out += '-';
      two(v.number / 100 % 100);
      out += '-';
      two(v.number % 100);
      break;
    case fw::Type::TIME:
      two(v.number / 10000);
      out += ':';
      two(v.number / 100 % 100);
      out += ':';
      two(v.number % 100);
      break;
    default:
      number(v.number);
  }
}

// One detail record as a row of esi_accumulators_staging in COPY's text
// format: load_id, source_line, then the columns.
inline void append_row(std::string& out, std::string_view load_id, uint64_t line,
                       const fw::RecordType& dt, const std::vector<Column>& columns,
                       int balance_count, const std::vector<fw::Value>& v) {
  out += load_id;
  out += '\t';
  char buf[24];
  out.append(buf, std::to_chars(buf, buf + sizeof buf, line).ptr);
  const fw::Value& count = v[balance_count];
  const int64_t in_use = count.null ? 0 : count.number < 12 ? count.number : 12;
  for (const auto& c : columns) {
    out += '\t';
    if (c.field >= 0) {
      append_value(out, dt.fields[c.field], v[c.field], false);
      continue;
    }
    out += '{';
    for (int64_t b = 0; b < in_use; ++b) {
      if (b) out += ',';
      const int f = c.block_fields[b];
      append_value(out, dt.fields[f], v[f], true);
    }
    out += '}';
  }
  out += '\n';
}

}  // namespace esi
