// A schema file as `schema install` reads it; when it parses, its defaults
// validated as run parameters and its JSON form, as the store keeps it.
#include <cstddef>
#include <cstdint>
#include <string>

#include "schema/params.hpp"
#include "schema/schema.hpp"

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  using namespace taskhost;
  std::vector<Diagnostic> errors;
  auto schema =
      parse_schema(std::string(reinterpret_cast<const char*>(data), size), "fuzz.yaml", &errors);
  format_diagnostics(errors);
  if (schema) {
    schema->to_json().dump();
    validate_params(*schema, Json::object(), &errors);
  }
  return 0;
}
