#include "config/host_config.hpp"

#include <yaml-cpp/yaml.h>

#include <fstream>
#include <sstream>

#include "common/error.hpp"

namespace taskhost {

namespace {

[[noreturn]] void fail(const std::filesystem::path& path, const YAML::Node& at,
                       const std::string& field, const std::string& message) {
  auto m = at.Mark();
  throw Error(ErrorKind::invalid, path.string() + ":" + std::to_string(m.line + 1) + ":" +
                                      std::to_string(m.column + 1) + ": " + field + ": " + message);
}

}  // namespace

HostConfig load_host_config(const std::filesystem::path& path) {
  std::ifstream in(path);
  if (!in) throw Error(ErrorKind::environment, "cannot read host config " + path.string());
  std::stringstream text;
  text << in.rdbuf();
  YAML::Node root;
  try {
    root = YAML::Load(text.str());
  } catch (const YAML::Exception& e) {
    throw Error(ErrorKind::invalid, path.string() + ":" + std::to_string(e.mark.line + 1) + ":" +
                                        std::to_string(e.mark.column + 1) + ": " + e.msg);
  }
  HostConfig config;
  if (root.IsNull()) return config;
  if (!root.IsMap()) fail(path, root, "(top level)", "expected a mapping");
  for (const auto& entry : root) {
    const std::string key = entry.first.Scalar();
    const YAML::Node& value = entry.second;
    if (key == "allow_destinations") {
      if (!value.IsSequence()) fail(path, value, key, "expected a list of CIDR ranges");
      for (size_t i = 0; i < value.size(); ++i) {
        std::string field = key + "[" + std::to_string(i) + "]";
        if (!value[i].IsScalar()) fail(path, value[i], field, "expected a CIDR range");
        try {
          config.allow_destinations.push_back(AddressRange::parse(value[i].Scalar()));
        } catch (const Error& e) {
          fail(path, value[i], field, e.what());
        }
      }
    } else {
      fail(path, entry.first, key, "unknown setting (known: allow_destinations)");
    }
  }
  return config;
}

}  // namespace taskhost
