#pragma once

#include <optional>
#include <string>
#include <string_view>
#include <vector>

#include "schema/schema.hpp"

namespace taskhost {

// The longest string parameter accepted, in bytes.
constexpr size_t max_param_string_bytes = 64 * 1024;

// A decimal number ("3", "-2.5", "1e3"); std::nullopt if text is anything
// else, or beyond a double's range (then *out_of_range, when given, is set).
std::optional<double> parse_number(std::string_view text, bool* out_of_range = nullptr);

// Why value is not acceptable for p ("expected an integer from 1 to 100, got
// 0"), or std::nullopt when it is.
std::optional<std::string> check_param_value(const ParamSpec& p, const Json& value);

// Validates the parameters given to a run: every key must be declared,
// required ones present, values of the declared type and within bounds.
// Returns the parameters with defaults filled in; problems go to *errors
// with field "params.NAME".
Json validate_params(const TaskSchema& schema, const Json& given, std::vector<Diagnostic>* errors);

// Turns command-line assignments "key=value" into typed JSON using the
// schema's types (a list takes a JSON array or comma-separated values).
Json params_from_assignments(const TaskSchema& schema, const std::vector<std::string>& assignments,
                             std::vector<Diagnostic>* errors);

}  // namespace taskhost
