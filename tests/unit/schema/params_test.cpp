#include "schema/params.hpp"

#include <gtest/gtest.h>

namespace taskhost {
namespace {

TaskSchema schema() {
  std::vector<Diagnostic> errors;
  auto s = parse_schema(R"(name: t
version: 1.0.0
plugin: { path: t.so, sha256: any }
params:
  file:  { type: string, required: true, pattern: '[a-z/]+\.pgp', max_length: 40 }
  mode:  { type: enum, values: [incremental, fixup], default: incremental }
  limit: { type: integer, min: 1, max: 500, default: 100 }
  ratio: { type: number, min: 0, max: 1 }
  dry:   { type: boolean, default: false }
  files: { type: list, items: string, max_length: 3 }
  ids:   { type: list, items: integer }
)",
                        "t.yaml", &errors);
  EXPECT_TRUE(s.has_value()) << format_diagnostics(errors);
  return *s;
}

TEST(Params, FillsDefaults) {
  std::vector<Diagnostic> errors;
  Json out = validate_params(schema(), {{"file", "in/a.pgp"}}, &errors);
  EXPECT_TRUE(errors.empty()) << format_diagnostics(errors);
  EXPECT_EQ(out,
            (Json{{"file", "in/a.pgp"}, {"mode", "incremental"}, {"limit", 100}, {"dry", false}}));
}

TEST(Params, ReportsEveryProblem) {
  std::vector<Diagnostic> errors;
  validate_params(schema(),
                  {{"mode", "full"},
                   {"limit", 0},
                   {"ratio", "high"},
                   {"dry", 1},
                   {"files", {"a", "b", "c", "d"}},
                   {"ids", {1, "x"}},
                   {"lmit", 5}},
                  &errors);
  std::vector<std::string> got;
  for (const auto& e : errors) got.push_back(e.str());
  EXPECT_EQ(got, (std::vector<std::string>{
                     "params.lmit: unknown parameter for t@1.0.0; did you mean 'limit'? "
                     "(declared: file, mode, limit, ratio, dry, files, ids)",
                     "params.file: is required",
                     "params.mode: expected one of incremental, fixup, got \"full\"",
                     "params.limit: expected an integer from 1 to 500, got 0",
                     "params.ratio: expected a number from 0 to 1, got \"high\"",
                     "params.dry: expected true or false, got 1",
                     "params.files: expected a list with a length of at most 3, got 4 items",
                     "params.ids: item 1: expected an integer, got \"x\"",
                 }));
}

TEST(Params, StringConstraints) {
  std::vector<Diagnostic> errors;
  validate_params(schema(), {{"file", "A.pgp"}}, &errors);
  ASSERT_EQ(errors.size(), 1u);
  EXPECT_EQ(errors[0].str(),
            "params.file: expected a string matching /[a-z/]+\\.pgp/, got \"A.pgp\"");
  errors.clear();
  validate_params(schema(), {{"file", std::string(41, 'a')}}, &errors);
  EXPECT_EQ(errors[0].str(),
            "params.file: expected a string with a length of at most 40, got 41 characters");
}

TEST(Params, FromAssignmentsUsesSchemaTypes) {
  std::vector<Diagnostic> errors;
  Json p = params_from_assignments(
      schema(), {"file=x/y.pgp", "limit=7", "ratio=0.5", "dry=true", "files=a,b", "ids=[1,2]"},
      &errors);
  EXPECT_TRUE(errors.empty()) << format_diagnostics(errors);
  EXPECT_EQ(p, (Json{{"file", "x/y.pgp"},
                     {"limit", 7},
                     {"ratio", 0.5},
                     {"dry", true},
                     {"files", {"a", "b"}},
                     {"ids", {1, 2}}}));
  // A value of the wrong type stays a string, so validation names the type.
  p = params_from_assignments(schema(), {"limit=lots"}, &errors);
  validate_params(schema(), p, &errors);
  EXPECT_EQ(errors.back().str(), "params.limit: expected an integer from 1 to 500, got \"lots\"");
  errors.clear();
  params_from_assignments(schema(), {"novalue"}, &errors);
  EXPECT_EQ(errors[0].str(), "-p novalue: expected key=value");
}

TEST(Params, NumberParsing) {
  EXPECT_EQ(parse_number("-2.5e3"), -2500.0);
  EXPECT_FALSE(parse_number("0x10"));
  EXPECT_FALSE(parse_number("1."));
  EXPECT_FALSE(parse_number("01"));
}

}  // namespace
}  // namespace taskhost
