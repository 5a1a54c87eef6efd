#pragma once

#include <cstddef>
#include <optional>
#include <string>
#include <string_view>
#include <vector>

namespace taskhost {

// Text that comes from outside (a plugin, a schema, an operator) passes
// through these before it reaches a terminal, a log line or the database.

// The byte offset of the first byte that is not part of well-formed UTF-8
// (overlong forms, surrogates and code points above U+10FFFF included), or
// std::nullopt when all of text is.
std::optional<size_t> invalid_utf8_at(std::string_view text);

// text as the store keeps it: ill-formed UTF-8 replaced by U+FFFD, NUL bytes
// (which PostgreSQL text cannot hold) too, and cut to at most max_bytes at a
// character boundary, ending in "..." when cut.
std::string storable(std::string_view text, size_t max_bytes);

// text safe to print to a terminal or a text log: control characters (C0,
// DEL and C1, so newlines cannot forge lines and ANSI/OSC escapes never
// reach the terminal) and ill-formed bytes are written as \n, \t, \xNN or
// \u{NN}; a backslash itself as \\. Printable UTF-8 passes unchanged.
std::string printable(std::string_view text);

// "; did you mean 'x'?" for the candidate closest to word within two edits,
// or "" when none is.
std::string did_you_mean(std::string_view word, const std::vector<std::string>& candidates);

}  // namespace taskhost
