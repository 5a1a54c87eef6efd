// The route table against openapi/taskhost.yaml, both ways: every route the
// server answers is documented, every documented operation is served, and
// the spec says which need no key exactly where the table does.
#include <gtest/gtest.h>
#include <yaml-cpp/yaml.h>

#include <map>
#include <string>

#include "api/routes.hpp"

namespace taskhost::api {
namespace {

const char* const methods[] = {"get", "put", "post", "delete", "options", "head", "patch", "trace"};

// "get /v1/runs/{id}" -> whether the operation needs no key.
std::map<std::string, bool> documented() {
  const YAML::Node spec = YAML::LoadFile(SOURCE_DIR "/openapi/taskhost.yaml");
  std::map<std::string, bool> out;
  for (const auto& path : spec["paths"])
    for (const char* m : methods)
      if (const YAML::Node op = path.second[m]) {
        const YAML::Node security = op["security"];
        out[std::string(m) + " " + path.first.as<std::string>()] =
            security && security.IsSequence() && security.size() == 0;
      }
  return out;
}

std::map<std::string, bool> served() {
  std::map<std::string, bool> out;
  for (const auto& r : routes()) {
    std::string method(http::to_string(r.method));
    for (auto& ch : method) ch = static_cast<char>(std::tolower(static_cast<unsigned char>(ch)));
    out[method + " " + r.path] = r.open;
  }
  return out;
}

TEST(OpenApiRoutes, EveryRouteIsDocumented) {
  const auto spec = documented();
  for (const auto& [route, open] : served()) {
    auto it = spec.find(route);
    if (it == spec.end()) {
      ADD_FAILURE() << route << " is served but not in openapi/taskhost.yaml";
      continue;
    }
    EXPECT_EQ(it->second, open) << route << ": the spec's `security: []` (no key) must match the "
                                << "route's `open`";
  }
}

TEST(OpenApiRoutes, EveryDocumentedOperationIsServed) {
  const auto table = served();
  for (const auto& [operation, open] : documented())
    EXPECT_TRUE(table.count(operation))
        << operation << " is in openapi/taskhost.yaml but core/api/routes.cpp does not serve it";
}

}  // namespace
}  // namespace taskhost::api
