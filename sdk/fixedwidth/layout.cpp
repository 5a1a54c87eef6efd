// Layouts: loading and validating the YAML form.
#include <yaml-cpp/yaml.h>

#include <algorithm>
#include <fstream>
#include <limits>
#include <set>
#include <sstream>

#include "problems.hpp"
#include "taskhost/fixedwidth.hpp"

namespace taskhost::fixedwidth {
namespace {

using detail::Problems;

void add(Problems& p, const YAML::Node& at, const std::string& message) {
  p.add(at.Mark().is_null() ? 0 : at.Mark().line + 1, message);
}

int line_of(const YAML::Node& n) { return n.Mark().is_null() ? 0 : n.Mark().line + 1; }

std::optional<Type> parse_type(const std::string& s) {
  static const std::pair<const char*, Type> types[] = {
      {"AN", Type::AN},     {"N", Type::N},       {"D2", Type::D2},    {"D3", Type::D3},
      {"DATE", Type::DATE}, {"TIME", Type::TIME}, {"SIGN", Type::SIGN}};
  for (const auto& [name, t] : types)
    if (s == name) return t;
  return std::nullopt;
}

std::string scalar(const YAML::Node& n) { return n && n.IsScalar() ? n.Scalar() : std::string(); }

// Only the keys listed; anything else is a typo worth naming.
void check_keys(const YAML::Node& map, std::initializer_list<const char*> keys, const char* what,
                Problems& p) {
  for (const auto& kv : map) {
    const std::string key = scalar(kv.first);
    if (key.empty()) {
      add(p, kv.first, std::string(what) + ": a key must be a plain name");
      continue;
    }
    if (std::none_of(keys.begin(), keys.end(), [&](const char* k) { return key == k; })) {
      std::string expected;
      for (const char* k : keys) expected += std::string(expected.empty() ? "" : ", ") + k;
      add(p, kv.first,
          std::string(what) + ": unknown key '" + key + "' (expected " + expected + ")");
    }
  }
}

std::optional<uint32_t> position(const YAML::Node& map, const char* key, const std::string& what,
                                 Problems& p) {
  const YAML::Node n = map[key];
  if (!n) {
    add(p, map, what + ": '" + key + "' is missing");
    return std::nullopt;
  }
  try {
    const auto v = n.as<int64_t>();
    if (v >= 1 && v <= 1'000'000) return static_cast<uint32_t>(v);
  } catch (const YAML::Exception&) {
  }
  add(p, n, what + ": '" + key + "' must be a whole number from 1 to 1000000");
  return std::nullopt;
}

void load_fields(const YAML::Node& list, RecordType& rt, Problems& p) {
  if (!list.IsSequence() || list.size() == 0) {
    add(p, list, "record " + rt.code + ": must be a list of fields");
    return;
  }
  std::vector<std::pair<size_t, std::string>> sign_of;  // resolved once every field is known
  for (const auto& f : list) {
    const int line = line_of(f);
    if (!f.IsMap()) {
      p.add(line, "record " + rt.code + ": a field must be a mapping {name, start, end, type}");
      continue;
    }
    check_keys(f, {"name", "start", "end", "type", "sign_of", "note"}, "field", p);
    Field field;
    field.line = line;
    field.name = scalar(f["name"]);
    field.note = scalar(f["note"]);
    const std::string what =
        "record " + rt.code + " field " + (field.name.empty() ? std::string("#") : field.name);
    if (field.name.empty()) p.add(line, what + ": 'name' is missing");
    auto start = position(f, "start", what, p), end = position(f, "end", what, p);
    const std::string type = scalar(f["type"]);
    auto t = parse_type(type);
    if (!t)
      p.add(f["type"] ? line_of(f["type"]) : line,
            what + ": type '" + type + "' is unknown (expected AN, N, D2, D3, DATE, TIME, SIGN)");
    if (!start || !end || !t) continue;
    if (*start > *end) {
      p.add(line,
            what + ": start " + std::to_string(*start) + " is after end " + std::to_string(*end));
      continue;
    }
    if (rt.index(field.name) >= 0) p.add(line, what + ": a second field of that name");
    field.start = *start;
    field.end = *end;
    field.type = *t;
    if (field.type == Type::SIGN) {
      if (field.width() != 1) p.add(line, what + ": a SIGN field is one byte");
      sign_of.emplace_back(rt.fields.size(), scalar(f["sign_of"]));
    } else if (f["sign_of"]) {
      add(p, f["sign_of"], what + ": only a SIGN field has sign_of");
    }
    rt.fields.push_back(std::move(field));
  }
  for (const auto& [i, of] : sign_of) {
    Field& f = rt.fields[i];
    const int j = rt.index(of);
    const std::string what = "record " + rt.code + " field " + f.name;
    if (of.empty()) {
      p.add(f.line, what + ": a SIGN field needs sign_of naming its amount");
    } else if (j < 0) {
      p.add(f.line, what + ": sign_of names no field of this record: " + of);
    } else if (Field& amount = rt.fields[j];
               amount.type != Type::N && amount.type != Type::D2 && amount.type != Type::D3) {
      p.add(f.line, what + ": sign_of names " + of + ", which is not N, D2 or D3");
    } else if (amount.sign >= 0) {
      p.add(f.line, what + ": " + of + " already has a SIGN field");
    } else {
      amount.sign = static_cast<int>(i);
      f.sign = j;
    }
  }
}

}  // namespace

// The fields must tile the record: 1 .. record_length, no overlap, no gap.
void detail::check_tiling(const RecordType& rt, uint32_t record_length, Problems& p) {
  std::vector<const Field*> sorted;
  for (const auto& f : rt.fields)
    if (f.start > 0) sorted.push_back(&f);
  std::stable_sort(sorted.begin(), sorted.end(),
                   [](const Field* a, const Field* b) { return a->start < b->start; });
  auto span = [](const Field& f) {
    return f.name + " (" + std::to_string(f.start) + "-" + std::to_string(f.end) + ")";
  };
  uint32_t next = 1;
  const Field* prev = nullptr;
  for (const Field* f : sorted) {
    if (f->start < next && prev)
      p.add(f->line, "record " + rt.code + ": field " + span(*f) + " overlaps " + span(*prev));
    else if (f->start > next)
      p.add(f->line, "record " + rt.code + ": bytes " + std::to_string(next) + "-" +
                         std::to_string(f->start - 1) + " before field " + span(*f) +
                         " belong to no field");
    if (f->end + 1 > next) {
      next = f->end + 1;
      prev = f;
    }
  }
  if (record_length > 0 && next - 1 != record_length)
    p.add(rt.line, "record " + rt.code + ": its fields end at byte " + std::to_string(next - 1) +
                       ", but record_length is " + std::to_string(record_length));
}

const char* type_name(Type t) {
  static const char* names[] = {"AN", "N", "D2", "D3", "DATE", "TIME", "SIGN"};
  return names[static_cast<int>(t)];
}

int RecordType::index(std::string_view name) const {
  for (size_t i = 0; i < fields.size(); ++i)
    if (fields[i].name == name) return static_cast<int>(i);
  return -1;
}

const RecordType* Layout::find(std::string_view code) const {
  for (const auto& r : records)
    if (r.code == code) return &r;
  return nullptr;
}

Layout load_layout(std::string_view yaml, const std::string& file) {
  Problems p(file);
  YAML::Node root;
  try {
    root = YAML::Load(std::string(yaml));
  } catch (const YAML::Exception& e) {
    p.add(e.mark.is_null() ? 0 : e.mark.line + 1, e.msg);
    p.throw_if_any();
  }
  if (!root.IsMap()) {
    add(p, root, "a layout is a mapping (name, version, record_length, discriminator, records)");
    p.throw_if_any();
  }
  check_keys(root,
             {"name", "version", "record_length", "discriminator", "header", "trailer",
              "trailer_count", "records"},
             "layout", p);
  Layout l;
  l.name = scalar(root["name"]);
  l.version = scalar(root["version"]);
  if (l.name.empty()) add(p, root, "layout: 'name' is missing");
  if (auto n = position(root, "record_length", "layout", p)) l.record_length = *n;
  const YAML::Node disc = root["discriminator"];
  if (!disc || !disc.IsMap()) {
    add(p, root, "layout: 'discriminator' must be a mapping {start, end}");
  } else {
    check_keys(disc, {"start", "end"}, "discriminator", p);
    auto s = position(disc, "start", "discriminator", p);
    auto e = position(disc, "end", "discriminator", p);
    if (s && e) {
      l.discriminator_start = *s;
      l.discriminator_end = *e;
      if (*s > *e || *e > l.record_length)
        add(p, disc,
            "discriminator: bytes " + std::to_string(*s) + "-" + std::to_string(*e) +
                " do not lie within the record");
    }
  }
  const YAML::Node records = root["records"];
  if (!records || !records.IsMap() || records.size() == 0) {
    add(p, root, "layout: 'records' must map each record type's code to its fields");
  } else {
    for (const auto& kv : records) {
      RecordType rt;
      rt.code = scalar(kv.first);
      rt.line = line_of(kv.first);
      if (rt.code.empty()) {
        add(p, kv.first, "records: a record type's code must be a plain string");
        continue;
      }
      if (l.find(rt.code)) add(p, kv.first, "record " + rt.code + ": defined twice");
      if (l.discriminator_end > 0 &&
          rt.code.size() != l.discriminator_end - l.discriminator_start + 1)
        add(p, kv.first, "record " + rt.code + ": its code is not as wide as the discriminator");
      load_fields(kv.second, rt, p);
      check_tiling(rt, l.record_length, p);
      l.records.push_back(std::move(rt));
    }
  }
  auto record_ref = [&](const char* key) -> std::optional<std::string> {
    const YAML::Node n = root[key];
    if (!n) return std::nullopt;
    const std::string code = scalar(n);
    if (!l.find(code)) add(p, n, std::string("layout: ") + key + " names no record type: " + code);
    return code;
  };
  l.header = record_ref("header");
  l.trailer = record_ref("trailer");
  if (const YAML::Node tc = root["trailer_count"]; tc && !tc.IsMap()) {
    add(p, tc, "trailer_count: must be a mapping {field, counts}");
  } else if (tc) {
    check_keys(tc, {"field", "counts"}, "trailer_count", p);
    const RecordType* tr = l.trailer ? l.find(*l.trailer) : nullptr;
    l.trailer_count_field = scalar(tc["field"]);
    const int i = tr ? tr->index(l.trailer_count_field) : -1;
    if (!tr)
      add(p, tc, "trailer_count: needs a trailer");
    else if (i < 0 || tr->fields[i].type != Type::N)
      add(p, tc,
          "trailer_count: field '" + l.trailer_count_field + "' is no N field of " + tr->code);
    if (!tc["counts"] || !tc["counts"].IsSequence() || tc["counts"].size() == 0)
      add(p, tc, "trailer_count: 'counts' must list the record types it counts");
    else
      for (const auto& c : tc["counts"]) {
        l.trailer_counts.push_back(scalar(c));
        if (!l.find(l.trailer_counts.back()))
          add(p, c, "trailer_count: counts names no record type: " + l.trailer_counts.back());
      }
  }
  p.throw_if_any();
  return l;
}

Layout load_layout_file(const std::string& path) {
  std::ifstream in(path, std::ios::binary);
  if (!in) throw LayoutError(path + ": cannot be read");
  std::ostringstream text;
  text << in.rdbuf();
  return load_layout(text.str(), path);
}

}  // namespace taskhost::fixedwidth
