// Schemas and parameters an attacker wrote: each must be refused with a
// located error, quickly, without crashing the host.
#include <gtest/gtest.h>

#include <chrono>

#include "schema/params.hpp"
#include "schema/schema.hpp"

namespace taskhost {
namespace {

std::string minimal(const std::string& extra) {
  return "name: t\nversion: 1.0.0\nplugin: { path: t.so, sha256: any }\n" + extra;
}

std::vector<Diagnostic> errors_of(const std::string& yaml) {
  std::vector<Diagnostic> errors;
  EXPECT_FALSE(parse_schema(yaml, "bad.yaml", &errors).has_value());
  EXPECT_FALSE(errors.empty());
  return errors;
}

std::string first_error(const std::string& yaml) {
  auto errors = errors_of(yaml);
  return errors.empty() ? "" : errors.front().str();
}

TEST(HostileSchema, LongHookUrlIsRefusedNotACrash) {
  auto e = first_error(minimal("hooks: { url: 'https://x/" + std::string(50000, 'a') +
                               "', events: [run.failed] }\n"));
  EXPECT_EQ(e.substr(0, 60), "bad.yaml:4:15: hooks.url: expected an http(s) URL, got 'http");
  EXPECT_NE(e.find("longer than 4096 bytes"), std::string::npos);
  EXPECT_LT(e.size(), 300u) << "the value is cut in the message";
}

TEST(HostileSchema, HookUrlsCurlWouldRefuseAreRefusedAtInstall) {
  for (const char* url : {"http://[::1", "http://h:99999/", "http://%31%32%37.0.0.1/"}) {
    auto e =
        first_error(minimal(std::string("hooks: { url: '") + url + "', events: [run.failed] }\n"));
    EXPECT_NE(e.find("hooks.url: expected an http(s) URL"), std::string::npos) << url << ": " << e;
  }
}

TEST(HostileSchema, PatternsAreLinearTime) {
  auto start = std::chrono::steady_clock::now();
  std::vector<Diagnostic> errors;
  auto s = parse_schema(minimal("params:\n  p: { type: string, pattern: '(a+)+$', default: '" +
                                std::string(29, 'a') + "!' }\n"),
                        "t.yaml", &errors);
  EXPECT_FALSE(s.has_value());
  EXPECT_NE(format_diagnostics(errors).find("expected a string matching /(a+)+$/"),
            std::string::npos);
  EXPECT_LT(std::chrono::steady_clock::now() - start, std::chrono::seconds(1));
}

TEST(HostileSchema, DeepOrInvalidPatternsAreLocatedErrors) {
  auto e = first_error(
      minimal("params:\n  p: { type: string, pattern: '" + std::string(3000, '(') + "' }\n"));
  EXPECT_EQ(e, "bad.yaml:5:31: params.p.pattern: is longer than 1024 bytes");
  e = first_error(minimal("params:\n  p: { type: string, pattern: '(?=x)' }\n"));
  EXPECT_EQ(e.substr(0, 62), "bad.yaml:5:31: params.p.pattern: is not a valid pattern: inval");
}

TEST(HostileSchema, InvalidUtf8AndNulAreLocated) {
  EXPECT_EQ(first_error(minimal("description: \"caf\xE9\"\n")),
            "bad.yaml:4:18: the text holds not valid UTF-8");
  EXPECT_EQ(first_error(minimal(std::string("description: x\0y\n", 17))),
            "bad.yaml:4:15: the text holds a NUL character");
  // Written as YAML escapes, they reach the value only after parsing.
  EXPECT_EQ(first_error(minimal("description: \"a\\0b\"\n")),
            "bad.yaml:4:14: description: holds a NUL character, which cannot be stored");
  // yaml-cpp refuses a lone surrogate itself.
  EXPECT_EQ(first_error(minimal("description: \"\\uD800\"\n")).substr(0, 28),
            "bad.yaml:4:21: invalid YAML:");
}

TEST(HostileSchema, SecondDocumentIsRefused) {
  EXPECT_EQ(first_error(minimal("---\nname: other\n")),
            "bad.yaml:4:1: a second YAML document: the file must hold exactly one");
  std::vector<Diagnostic> errors;
  EXPECT_TRUE(parse_schema("---\n" + minimal("") + "...\n", "t.yaml", &errors).has_value())
      << format_diagnostics(errors);
}

// yaml-cpp's LoadAll loops for ever (allocating) on this text.
TEST(HostileSchema, TextThatHangsLoadAllEnds) {
  for (const std::string text : {",'", ",\"", ",\n", "- !+(.,.)"}) {
    std::vector<Diagnostic> errors;
    EXPECT_FALSE(parse_schema(text, "bad.yaml", &errors).has_value()) << text;
    EXPECT_FALSE(errors.empty()) << text;
  }
}

TEST(HostileSchema, SizeAndNestingAreCapped) {
  EXPECT_EQ(first_error(minimal("description: '" + std::string(max_schema_bytes, 'x') + "'\n")),
            "bad.yaml: is " + std::to_string(max_schema_bytes + 75) +
                " bytes, over the limit of 1048576 bytes");
  auto e = first_error(minimal("x: " + std::string(100, '[') + std::string(100, ']') + "\n"));
  EXPECT_EQ(e.substr(0, 14), "bad.yaml:4:67:");
  EXPECT_NE(e.find("nested deeper than 64 levels"), std::string::npos) << e;
  // Deeper still, yaml-cpp's own guard stops it: still a located error.
  e = first_error(minimal("x: " + std::string(100000, '[') + std::string(100000, ']') + "\n"));
  EXPECT_EQ(e.substr(0, 9), "bad.yaml:") << e;
}

TEST(HostileSchema, DiagnosticsAreCapped) {
  std::string yaml = minimal("");
  for (int i = 0; i < 20000; ++i) yaml += "k" + std::to_string(i) + ": 1\n";
  auto errors = errors_of(yaml);
  ASSERT_EQ(errors.size(), Diagnostics::max + 1);
  EXPECT_EQ(errors.back().str(),
            "bad.yaml: ... and 19900 more problems (the first 100 are listed)");
}

TEST(HostileSchema, AliasBombIsRefused) {
  std::string yaml = minimal("a0: &a0 [x, x, x, x, x, x, x, x, x, x]\n");
  for (int i = 1; i < 9; ++i) {
    std::string prev = "*a" + std::to_string(i - 1);
    yaml += "a" + std::to_string(i) + ": &a" + std::to_string(i) + " [";
    for (int k = 0; k < 10; ++k) yaml += (k ? ", " : "") + prev;
    yaml += "]\n";
  }
  auto start = std::chrono::steady_clock::now();
  auto e = format_diagnostics(errors_of(yaml));
  EXPECT_NE(e.find("expands to more than 100000 nodes"), std::string::npos) << e;
  EXPECT_LT(std::chrono::steady_clock::now() - start, std::chrono::seconds(5));
}

TaskSchema params_schema() {
  std::vector<Diagnostic> errors;
  auto s = parse_schema(minimal(R"(params:
  name:  { type: string, pattern: '[a-z]+' }
  ratio: { type: number }
  count: { type: integer }
  ids:   { type: list, items: integer }
)"),
                        "t.yaml", &errors);
  EXPECT_TRUE(s.has_value()) << format_diagnostics(errors);
  return *s;
}

TEST(HostileParams, LongValueAgainstAPatternIsFast) {
  std::vector<Diagnostic> errors;
  auto start = std::chrono::steady_clock::now();
  validate_params(params_schema(), {{"name", std::string(60000, 'a')}}, &errors);
  EXPECT_TRUE(errors.empty()) << format_diagnostics(errors);
  validate_params(params_schema(), {{"name", std::string(70000, 'a')}}, &errors);
  EXPECT_EQ(format_diagnostics(errors),
            "params.name: is 70000 bytes, over the limit of 65536 bytes for a string parameter");
  EXPECT_LT(std::chrono::steady_clock::now() - start, std::chrono::seconds(1));
}

TEST(HostileParams, OutOfRangeNumberIsRefused) {
  std::vector<Diagnostic> errors;
  params_from_assignments(params_schema(), {"ratio=1e400"}, &errors);
  EXPECT_EQ(format_diagnostics(errors),
            "params.ratio: '1e400' is out of range (a number is at most about 1.8e308)");
  errors.clear();
  Json p = params_from_assignments(params_schema(), {"ratio=-1.5e300"}, &errors);
  EXPECT_TRUE(errors.empty());
  EXPECT_EQ(p["ratio"], -1.5e300);
}

TEST(HostileParams, InvalidUtf8AndNulNameTheParameter) {
  std::vector<Diagnostic> errors;
  params_from_assignments(params_schema(), {"name=caf\xE9"}, &errors);
  EXPECT_EQ(format_diagnostics(errors), "-p name: is not valid UTF-8 (at byte 9)");
  errors.clear();
  validate_params(params_schema(), {{"name", std::string("a\0b", 3)}}, &errors);
  EXPECT_EQ(format_diagnostics(errors),
            "params.name: holds a NUL character, which cannot be stored");
  errors.clear();
  validate_params(params_schema(), {{"name", "caf\xE9"}}, &errors);
  EXPECT_EQ(format_diagnostics(errors), "params.name: is not valid UTF-8 (at byte 4)");
}

TEST(HostileParams, DeepListValueIsRefused) {
  std::vector<Diagnostic> errors;
  params_from_assignments(params_schema(),
                          {"ids=" + std::string(100000, '[') + std::string(100000, ']')}, &errors);
  EXPECT_EQ(format_diagnostics(errors), "params.ids: the JSON array: nested deeper than 64 levels");
}

TEST(HostileParams, UnknownParametersSuggestAndAreCapped) {
  std::vector<Diagnostic> errors;
  validate_params(params_schema(), {{"nmae", "x"}}, &errors);
  EXPECT_EQ(format_diagnostics(errors),
            "params.nmae: unknown parameter for t@1.0.0; did you mean 'name'? (declared: name, "
            "ratio, count, ids)");
  errors.clear();
  Json many = Json::object();
  for (int i = 0; i < 5000; ++i) many["x" + std::to_string(i)] = i;
  validate_params(params_schema(), many, &errors);
  ASSERT_EQ(errors.size(), Diagnostics::max + 1);
  EXPECT_EQ(errors.back().message, "... and 4900 more problems (the first 100 are listed)");
}

}  // namespace
}  // namespace taskhost
