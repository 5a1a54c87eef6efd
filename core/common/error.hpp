#pragma once

#include <stdexcept>
#include <string>

namespace taskhost {

// Why an operation failed, in the terms a caller acts on. Each maps to one
// documented CLI exit code (see cli/exit_codes in README).
enum class ErrorKind {
  invalid,      // bad input: schema, parameters, arguments          -> 2
  not_found,    // no such schema, version or run                     -> 3
  conflict,     // refused by state: version taken, schema in use      -> 4
  refused,      // plugin refused: digest, ABI, missing symbol         -> 5
  environment,  // database, filesystem, child process unavailable    -> 6
};

class Error : public std::runtime_error {
 public:
  Error(ErrorKind kind, const std::string& message) : std::runtime_error(message), kind_(kind) {}
  ErrorKind kind() const { return kind_; }

 private:
  ErrorKind kind_;
};

}  // namespace taskhost
