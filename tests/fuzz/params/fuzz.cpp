// Run parameters as `run` takes them: the first byte chooses a --params-file
// (the rest is JSON) or -p assignments (the rest, one per line), checked
// against a schema with every parameter type and constraint.
#include <cstddef>
#include <cstdint>
#include <optional>
#include <sstream>
#include <string>

#include "common/error.hpp"
#include "common/json_input.hpp"
#include "schema/params.hpp"
#include "schema/schema.hpp"

namespace {

const taskhost::TaskSchema& schema() {
  static const taskhost::TaskSchema s = [] {
    std::vector<taskhost::Diagnostic> errors;
    return *taskhost::parse_schema(R"(name: t
version: 1.0.0
plugin: { path: t.so, sha256: any }
params:
  file:  { type: string, pattern: '[a-z/]+\.pgp', max_length: 40 }
  name:  { type: string, min_length: 1 }
  mode:  { type: enum, values: [incremental, fixup], default: incremental }
  limit: { type: integer, min: 1, max: 500, default: 100 }
  ratio: { type: number, min: 0, max: 1 }
  dry:   { type: boolean, default: false }
  files: { type: list, items: string, max_length: 3 }
  ids:   { type: list, items: integer }
  xs:    { type: list, items: number }
)",
                                   "t.yaml", &errors);
  }();
  return s;
}

}  // namespace

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  using namespace taskhost;
  if (size == 0) return 0;
  const std::string text(reinterpret_cast<const char*>(data) + 1, size - 1);
  std::vector<Diagnostic> errors;
  Json given;
  if (data[0] & 1) {
    try {
      given = parse_json_input(text, "fuzz");
    } catch (const Error&) {
      return 0;
    }
  } else {
    std::vector<std::string> assignments;
    std::istringstream lines(text);
    for (std::string line; std::getline(lines, line);) assignments.push_back(line);
    given = params_from_assignments(schema(), assignments, &errors);
  }
  Json valid = validate_params(schema(), given, &errors);
  valid.dump();  // what the store is given: throws on anything but valid UTF-8
  format_diagnostics(errors);
  return 0;
}
