#pragma once

#include <nlohmann/json.hpp>
#include <string>
#include <string_view>

namespace taskhost {

// JSON from outside (a --params-file, a -p list, what a plugin hands back:
// output, events, checkpoints, service requests) goes through this parser.
constexpr int max_json_depth = 64;

// Parses text, refusing what the host cannot hold safely: nesting deeper than
// max_json_depth (deep values overflow the stack of every recursive walk),
// a NUL character in a string or key (PostgreSQL cannot store it), numbers
// out of range, ill-formed UTF-8 and syntax errors. Throws Error(invalid)
// "WHAT: WHY".
nlohmann::json parse_json_input(std::string_view text, const std::string& what);

}  // namespace taskhost
