#include "common/pattern.hpp"

#include <re2/re2.h>

#include <string>

#include "common/error.hpp"

namespace taskhost {

Pattern::Pattern(std::string_view expression) {
  if (expression.size() > max_length)
    throw Error(ErrorKind::invalid, "is longer than " + std::to_string(max_length) + " bytes");
  RE2::Options options;
  options.set_log_errors(false);
  auto re =
      std::make_unique<const RE2>(re2::StringPiece(expression.data(), expression.size()), options);
  if (!re->ok()) throw Error(ErrorKind::invalid, "is not a valid pattern: " + re->error());
  re_ = std::move(re);
}

Pattern::~Pattern() = default;

bool Pattern::matches(std::string_view text) const {
  return RE2::FullMatch(re2::StringPiece(text.data(), text.size()), *re_);
}

}  // namespace taskhost
