#pragma once

#include <yaml-cpp/yaml.h>

#include <cstddef>
#include <optional>
#include <string>
#include <string_view>

#include "common/diagnostic.hpp"

namespace taskhost {

// Reads one YAML document from outside (a task schema, the host config).
// Every problem goes to errors, located at file:line:column: text larger
// than max_bytes; ill-formed UTF-8 or a NUL, written or escaped (the store
// keeps text, and JSON cannot carry it); a second document (it would be
// ignored silently); a key given twice in a mapping (yaml-cpp keeps the first
// silently); nesting deeper than 64 levels; aliases expanding to more than
// 100,000 nodes; syntax errors. Returns the document (a Null node when
// empty), or std::nullopt when any problem was found.
std::optional<YAML::Node> load_yaml_input(std::string_view text, const std::string& file,
                                          size_t max_bytes, Diagnostics& errors);

}  // namespace taskhost
