#include "schema/params.hpp"

#include <cmath>
#include <cstdlib>

#include "common/error.hpp"
#include "common/json_input.hpp"
#include "common/pattern.hpp"
#include "common/text.hpp"

namespace taskhost {
namespace {

// A value as an error message shows it: escaped, and cut when long.
std::string show(const Json& v) {
  return printable(storable(v.dump(-1, ' ', false, Json::error_handler_t::replace), 100));
}

std::string trim_number(double d) {
  if (std::floor(d) == d && std::fabs(d) < 9e15) return std::to_string(static_cast<int64_t>(d));
  return Json(d).dump();
}

std::string range_text(const std::optional<double>& min, const std::optional<double>& max) {
  if (min && max) return " from " + trim_number(*min) + " to " + trim_number(*max);
  if (min) return " of at least " + trim_number(*min);
  if (max) return " of at most " + trim_number(*max);
  return "";
}

std::optional<double> as_double(const std::optional<uint64_t>& v) {
  return v ? std::optional<double>(static_cast<double>(*v)) : std::nullopt;
}

size_t utf8_length(const std::string& s) {
  size_t n = 0;
  for (unsigned char c : s) n += (c & 0xC0) != 0x80;
  return n;
}

// Why a string cannot be a parameter value (the store keeps valid UTF-8
// without NUL, of bounded size), or std::nullopt.
std::optional<std::string> text_problem(const std::string& s) {
  if (s.size() > max_param_string_bytes)
    return "is " + std::to_string(s.size()) + " bytes, over the limit of " +
           std::to_string(max_param_string_bytes) + " bytes for a string parameter";
  if (auto at = invalid_utf8_at(s))
    return "is not valid UTF-8 (at byte " + std::to_string(*at + 1) + ")";
  if (s.find('\0') != std::string::npos) return "holds a NUL character, which cannot be stored";
  return std::nullopt;
}

std::optional<std::string> check_scalar(ParamType type, const ParamSpec& p, const Json& v) {
  switch (type) {
    case ParamType::string: {
      if (!v.is_string()) return "expected a string, got " + show(v);
      const auto& s = v.get_ref<const std::string&>();
      if (auto problem = text_problem(s)) return *problem;
      size_t len = utf8_length(s);
      if ((p.min_length && len < *p.min_length) || (p.max_length && len > *p.max_length))
        return "expected a string with a length" +
               range_text(as_double(p.min_length), as_double(p.max_length)) + ", got " +
               std::to_string(len) + " characters";
      if (p.pattern.empty()) return std::nullopt;
      try {
        if (!Pattern(p.pattern).matches(s))
          return "expected a string matching /" + p.pattern + "/, got " + show(v);
      } catch (const Error& e) {  // installed before patterns were RE2's
        return "the schema's pattern /" + p.pattern + "/ " + e.what();
      }
      return std::nullopt;
    }
    case ParamType::integer:
    case ParamType::number: {
      bool is_int = type == ParamType::integer;
      const char* what = is_int ? "an integer" : "a number";
      bool ok = is_int ? v.is_number_integer() : v.is_number();
      double d = ok ? v.get<double>() : 0;
      if (!ok || (p.min && d < *p.min) || (p.max && d > *p.max))
        return std::string("expected ") + what + range_text(p.min, p.max) + ", got " + show(v);
      return std::nullopt;
    }
    case ParamType::boolean:
      if (!v.is_boolean()) return "expected true or false, got " + show(v);
      return std::nullopt;
    case ParamType::enumeration: {
      if (v.is_string())
        if (auto problem = text_problem(v.get_ref<const std::string&>())) return *problem;
      for (const auto& allowed : p.values)
        if (v.is_string() && v.get_ref<const std::string&>() == allowed) return std::nullopt;
      std::string list;
      for (const auto& a : p.values) list += (list.empty() ? "" : ", ") + a;
      return "expected one of " + list + ", got " + show(v);
    }
    case ParamType::list:
      break;
  }
  return "unsupported type";
}

}  // namespace

std::optional<double> parse_number(std::string_view text, bool* out_of_range) {
  static const Pattern number_re("-?(0|[1-9][0-9]{0,400})(\\.[0-9]{1,400})?([eE][-+]?[0-9]{1,9})?");
  if (out_of_range) *out_of_range = false;
  if (!number_re.matches(text)) return std::nullopt;
  double d = std::strtod(std::string(text).c_str(), nullptr);
  if (std::isfinite(d)) return d;
  if (out_of_range) *out_of_range = true;
  return std::nullopt;
}

std::optional<std::string> check_param_value(const ParamSpec& p, const Json& value) {
  if (p.type != ParamType::list) return check_scalar(p.type, p, value);
  if (!value.is_array()) return "expected a list, got " + show(value);
  if ((p.min_length && value.size() < *p.min_length) ||
      (p.max_length && value.size() > *p.max_length))
    return "expected a list with a length" +
           range_text(as_double(p.min_length), as_double(p.max_length)) + ", got " +
           std::to_string(value.size()) + " items";
  ParamSpec item_spec;  // list bounds apply to the list, not to its items
  for (size_t i = 0; i < value.size(); ++i)
    if (auto problem = check_scalar(p.items, item_spec, value[i]))
      return "item " + std::to_string(i) + ": " + *problem;
  return std::nullopt;
}

Json validate_params(const TaskSchema& schema, const Json& given, std::vector<Diagnostic>* errors) {
  Diagnostics collected(errors);
  Json out = Json::object();
  if (!given.is_object()) {
    collected.add({"", 0, 0, "params", "expected a JSON object, got " + show(given)});
    return out;
  }
  std::vector<std::string> names;
  for (const auto& p : schema.params) names.push_back(p.name);
  for (const auto& [key, value] : given.items()) {
    if (schema.param(key) == nullptr) {
      std::string declared;
      for (const auto& n : names) declared += (declared.empty() ? "" : ", ") + n;
      collected.add({"", 0, 0, "params." + printable(storable(key, 100)),
                     "unknown parameter for " + schema.ref() + did_you_mean(key, names) +
                         " (declared: " + (declared.empty() ? "none" : declared) + ")"});
    }
  }
  for (const auto& p : schema.params) {
    auto it = given.find(p.name);
    if (it == given.end() || it->is_null()) {
      if (p.default_value)
        out[p.name] = *p.default_value;
      else if (p.required)
        collected.add({"", 0, 0, "params." + p.name, "is required"});
      continue;
    }
    if (auto problem = check_param_value(p, *it))
      collected.add({"", 0, 0, "params." + p.name, *problem});
    else
      out[p.name] = *it;
  }
  return out;
}

Json params_from_assignments(const TaskSchema& schema, const std::vector<std::string>& assignments,
                             std::vector<Diagnostic>* errors) {
  Diagnostics collected(errors);
  Json out = Json::object();
  for (const auto& a : assignments) {
    auto eq = a.find('=');
    if (eq == std::string::npos || eq == 0) {
      collected.add({"", 0, 0, "-p " + printable(storable(a, 100)), "expected key=value"});
      continue;
    }
    const std::string key = a.substr(0, eq), text = a.substr(eq + 1);
    // Json holds only valid UTF-8: name the parameter here, before it is one.
    if (auto at = invalid_utf8_at(a)) {
      collected.add({"", 0, 0, "-p " + printable(storable(key, 100)),
                     "is not valid UTF-8 (at byte " + std::to_string(*at + 1) + ")"});
      continue;
    }
    const ParamSpec* p = schema.param(key);
    if (p == nullptr) {
      out[key] = text;  // reported as unknown by validate_params
      continue;
    }
    auto scalar = [&](ParamType type, const std::string& s) -> std::optional<Json> {
      switch (type) {
        case ParamType::integer:
        case ParamType::number: {
          bool out_of_range = false;
          auto d = parse_number(s, &out_of_range);
          if (out_of_range)
            collected.add({"", 0, 0, "params." + key,
                           "'" + printable(storable(s, 100)) +
                               "' is out of range (a number is at most about 1.8e308)"});
          if (!d) return std::nullopt;
          if (type == ParamType::integer) {
            if (std::floor(*d) != *d || std::fabs(*d) > 9.2e18) return std::nullopt;
            return Json(static_cast<int64_t>(*d));
          }
          return Json(*d);
        }
        case ParamType::boolean:
          if (s == "true" || s == "false") return Json(s == "true");
          return std::nullopt;
        default:
          return Json(s);
      }
    };
    if (p->type == ParamType::list) {
      if (!text.empty() && text[0] == '[') {
        try {
          out[key] = parse_json_input(text, "the JSON array");
        } catch (const Error& e) {
          collected.add({"", 0, 0, "params." + key, e.what()});
        }
        continue;
      }
      Json list = Json::array();
      size_t start = 0;
      while (!text.empty()) {
        size_t comma = text.find(',', start);
        std::string item = text.substr(start, comma - start);
        auto v = scalar(p->items, item);
        list.push_back(v ? *v : Json(item));  // a bad item is reported by validation
        if (comma == std::string::npos) break;
        start = comma + 1;
      }
      out[key] = list;
    } else if (auto v = scalar(p->type, text)) {
      out[key] = *v;
    } else {
      out[key] = text;  // validate_params names the expected type
    }
  }
  return out;
}

}  // namespace taskhost
