#include "support/openapi.hpp"

#include <yaml-cpp/yaml.h>

#include <algorithm>
#include <cstdint>
#include <sstream>
#include <valijson/adapters/nlohmann_json_adapter.hpp>
#include <valijson/schema.hpp>
#include <valijson/schema_parser.hpp>
#include <valijson/validator.hpp>

namespace taskhost::test {
namespace {

using Json = nlohmann::json;

// YAML's data model as JSON: a quoted scalar stays a string ('null',
// 'true'), a plain one is read as YAML 1.2's core schema reads it.
Json to_json(const YAML::Node& n) {
  switch (n.Type()) {
    case YAML::NodeType::Map: {
      Json j = Json::object();
      for (const auto& kv : n) j[kv.first.as<std::string>()] = to_json(kv.second);
      return j;
    }
    case YAML::NodeType::Sequence: {
      Json j = Json::array();
      for (const auto& v : n) j.push_back(to_json(v));
      return j;
    }
    case YAML::NodeType::Scalar: {
      const std::string& s = n.Scalar();
      if (n.Tag() == "!") return s;
      if (s == "true" || s == "false") return s == "true";
      if (s == "null" || s == "~") return nullptr;
      if (!s.empty() && s.find_first_not_of("-0123456789") == std::string::npos)
        return std::stoll(s);
      if (!s.empty() && s.find_first_not_of("-0123456789.eE+") == std::string::npos &&
          s.find_first_of("0123456789") != std::string::npos)
        return std::stod(s);
      return s;
    }
    default:
      return nullptr;
  }
}

// "/v1/runs/{id}" against "/v1/runs/0f..."; a template segment is one
// non-empty path segment.
bool matches(const std::string& pattern, const std::string& path) {
  std::istringstream p(pattern), q(path);
  std::string a, b;
  while (true) {
    const bool more_a = static_cast<bool>(std::getline(p, a, '/'));
    const bool more_b = static_cast<bool>(std::getline(q, b, '/'));
    if (!more_a || !more_b) return more_a == more_b;
    if (a.size() > 1 && a.front() == '{' && a.back() == '}') {
      if (b.empty()) return false;
    } else if (a != b) {
      return false;
    }
  }
}

std::string lower(std::string s) {
  for (auto& c : s) c = static_cast<char>(std::tolower(static_cast<unsigned char>(c)));
  return s;
}

}  // namespace

OpenApiSpec::OpenApiSpec(const std::string& file) : spec_(to_json(YAML::LoadFile(file))) {}

const Json* OpenApiSpec::response(const Json& operation, long status) const {
  const Json& responses = operation["responses"];
  auto it = responses.find(std::to_string(status));
  if (it == responses.end()) it = responses.find("default");
  if (it == responses.end()) return nullptr;
  const Json* r = &*it;
  if (r->contains("$ref"))
    r = &spec_.at(Json::json_pointer(r->at("$ref").get<std::string>().substr(1)));
  return r;
}

std::string OpenApiSpec::check_body(const Json& schema, const std::string& media_type,
                                    const std::string& body) const {
  // The schema beside the spec's components, so its $refs resolve.
  const Json root = {{"$ref", "#/target"}, {"target", schema}, {"components", spec_["components"]}};
  valijson::Schema compiled;
  valijson::SchemaParser parser(valijson::SchemaParser::kDraft7);
  valijson::adapters::NlohmannJsonAdapter schema_adapter(root);
  parser.populateSchema(schema_adapter, compiled);

  auto validate = [&](const std::string& text) -> std::string {
    Json value;
    try {
      value = Json::parse(text);
    } catch (const Json::parse_error& e) {
      return std::string("the body is not JSON: ") + e.what();
    }
    valijson::Validator validator;
    valijson::ValidationResults results;
    valijson::adapters::NlohmannJsonAdapter target(value);
    if (validator.validate(compiled, target, &results)) return "";
    std::string why;
    valijson::ValidationResults::Error e;
    while (results.popError(e)) {
      std::string where;
      for (const auto& c : e.context) where += c;
      why += "\n  " + where + ": " + e.description;
    }
    return "the body does not match its schema:" + why + "\nbody: " + text.substr(0, 2000);
  };
  if (media_type == "application/x-ndjson") {  // the schema is each line's
    std::istringstream lines(body);
    std::string line;
    while (std::getline(lines, line))
      if (auto why = validate(line); !why.empty()) return why;
    return "";
  }
  if (media_type == "application/json" || media_type.ends_with("+json")) return validate(body);
  return "";  // bytes or text: the content type was the contract
}

std::string OpenApiSpec::check(const std::string& method, const std::string& path, long status,
                               const std::string& content_type, const std::string& body) const {
  const std::string media_type = lower(content_type.substr(0, content_type.find(';')));
  // The most literal template wins ("/v1/audit/export" over "/v1/audit/{x}").
  const Json* operation = nullptr;
  std::string name;
  size_t params = SIZE_MAX;
  for (const auto& [tpl, item] : spec_["paths"].items()) {
    const size_t n = static_cast<size_t>(std::count(tpl.begin(), tpl.end(), '{'));
    if (n < params && matches(tpl, path) && item.contains(lower(method))) {
      operation = &item[lower(method)];
      name = method + " " + tpl;
      params = n;
    }
  }
  if (!operation) {
    if (media_type != "application/problem+json")
      return method + " " + path + " is not in the spec, and its " + std::to_string(status) +
             " answer is " + content_type + ", not a problem document";
    return check_body(spec_["components"]["schemas"]["Problem"], media_type, body);
  }
  const Json* r = response(*operation, status);
  if (!r) return name + ": status " + std::to_string(status) + " is not documented";
  if (!r->contains("content")) {
    return body.empty() ? ""
                        : name + " " + std::to_string(status) + ": a body the spec does not give";
  }
  const Json& content = r->at("content");
  auto it = content.find(media_type);
  if (it == content.end()) it = content.find("*/*");
  if (it == content.end())
    return name + " " + std::to_string(status) + ": content type '" + content_type +
           "' is not documented";
  if (!it->contains("schema")) return "";
  if (auto why = check_body(it->at("schema"), media_type, body); !why.empty())
    return name + " " + std::to_string(status) + ": " + why;
  return "";
}

const OpenApiSpec& taskhost_spec() {
  static const OpenApiSpec spec(SOURCE_DIR "/openapi/taskhost.yaml");
  return spec;
}

}  // namespace taskhost::test
