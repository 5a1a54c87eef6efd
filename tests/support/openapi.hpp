#pragma once

// Checks HTTP responses against openapi/taskhost.yaml: the operation, the
// status and the content type must be documented, and the body must match
// the schema given for them (Debian's valijson, JSON Schema draft 7: the
// spec keeps to the part of OpenAPI 3.1's dialect draft 7 shares).
#include <nlohmann/json.hpp>
#include <string>

namespace taskhost::test {

class OpenApiSpec {
 public:
  explicit OpenApiSpec(const std::string& file);

  // Empty when the response keeps the contract, else what it breaks. A
  // request outside the spec (an unknown path or method) must be answered
  // with a problem document.
  std::string check(const std::string& method, const std::string& path, long status,
                    const std::string& content_type, const std::string& body) const;

 private:
  const nlohmann::json* response(const nlohmann::json& operation, long status) const;
  std::string check_body(const nlohmann::json& schema, const std::string& media_type,
                         const std::string& body) const;
  nlohmann::json spec_;
};

// The spec at SOURCE_DIR/openapi/taskhost.yaml, read once.
const OpenApiSpec& taskhost_spec();

}  // namespace taskhost::test
