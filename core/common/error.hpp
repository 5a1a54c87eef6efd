#pragma once

#include <stdexcept>
#include <string>
#include <vector>

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

// Bad input whose problems each name the field they are about (run
// parameters: "params.count"), so that a form can show each beside its
// field. what() is the whole message, as for any Error(invalid).
class FieldErrors : public Error {
 public:
  struct Field {
    std::string field, detail;
  };
  FieldErrors(const std::string& message, std::vector<Field> fields)
      : Error(ErrorKind::invalid, message), fields_(std::move(fields)) {}
  const std::vector<Field>& fields() const { return fields_; }

 private:
  std::vector<Field> fields_;
};

}  // namespace taskhost
