#include "common/text.hpp"

#include <algorithm>
#include <cstdio>

namespace taskhost {
namespace {

// The length of the well-formed UTF-8 sequence at text[i], or 0 when the
// bytes there are not one (RFC 3629 table 3-7).
size_t utf8_sequence(std::string_view text, size_t i) {
  auto at = [&](size_t k) { return static_cast<unsigned char>(text[k]); };
  const unsigned char c = at(i);
  if (c < 0x80) return 1;
  size_t n = 0;
  unsigned char lo = 0x80, hi = 0xBF;  // the range of the second byte
  if (c >= 0xC2 && c <= 0xDF) {
    n = 2;
  } else if (c >= 0xE0 && c <= 0xEF) {
    n = 3;
    if (c == 0xE0) lo = 0xA0;  // no overlong forms
    if (c == 0xED) hi = 0x9F;  // no surrogates
  } else if (c >= 0xF0 && c <= 0xF4) {
    n = 4;
    if (c == 0xF0) lo = 0x90;  // no overlong forms
    if (c == 0xF4) hi = 0x8F;  // nothing above U+10FFFF
  } else {
    return 0;
  }
  if (i + n > text.size() || at(i + 1) < lo || at(i + 1) > hi) return 0;
  for (size_t k = 2; k < n; ++k)
    if ((at(i + k) & 0xC0) != 0x80) return 0;
  return n;
}

constexpr std::string_view replacement = "\xEF\xBF\xBD";  // U+FFFD

}  // namespace

std::optional<size_t> invalid_utf8_at(std::string_view text) {
  for (size_t i = 0; i < text.size();) {
    size_t n = utf8_sequence(text, i);
    if (n == 0) return i;
    i += n;
  }
  return std::nullopt;
}

std::string storable(std::string_view text, size_t max_bytes) {
  constexpr std::string_view ellipsis = "...";
  const size_t room = max_bytes >= ellipsis.size() ? max_bytes - ellipsis.size() : 0;
  std::string out;
  out.reserve(std::min(text.size(), max_bytes));
  size_t cut = 0;  // the last character boundary after which the ellipsis still fits
  for (size_t i = 0; i < text.size();) {
    size_t n = utf8_sequence(text, i);
    std::string_view piece = n == 0 || text[i] == '\0' ? replacement : text.substr(i, n);
    if (out.size() + piece.size() > max_bytes) {
      out.resize(cut);
      if (max_bytes >= ellipsis.size()) out += ellipsis;
      return out;
    }
    out += piece;
    if (out.size() <= room) cut = out.size();
    i += n == 0 ? 1 : n;
  }
  return out;
}

std::string printable(std::string_view text) {
  std::string out;
  out.reserve(text.size());
  char buf[16];
  for (size_t i = 0; i < text.size();) {
    const auto c = static_cast<unsigned char>(text[i]);
    size_t n = utf8_sequence(text, i);
    if (n == 0) {
      std::snprintf(buf, sizeof buf, "\\x%02X", c);
      out += buf;
      ++i;
      continue;
    }
    if (n == 2 && c == 0xC2 && static_cast<unsigned char>(text[i + 1]) < 0xA0) {
      // A C1 control (U+0080..U+009F): CSI 0x9B starts an escape on some terminals.
      std::snprintf(buf, sizeof buf, "\\u{%02X}", static_cast<unsigned char>(text[i + 1]));
      out += buf;
    } else if (c == '\n') {
      out += "\\n";
    } else if (c == '\r') {
      out += "\\r";
    } else if (c == '\t') {
      out += "\\t";
    } else if (c == '\\') {
      out += "\\\\";
    } else if (c < 0x20 || c == 0x7F) {
      std::snprintf(buf, sizeof buf, "\\x%02X", c);
      out += buf;
    } else {
      out.append(text.substr(i, n));
    }
    i += n;
  }
  return out;
}

std::string did_you_mean(std::string_view word, const std::vector<std::string>& candidates) {
  // Levenshtein distance; words and candidates are short names.
  auto distance = [](std::string_view a, std::string_view b) {
    std::vector<size_t> row(b.size() + 1);
    for (size_t j = 0; j <= b.size(); ++j) row[j] = j;
    for (size_t i = 1; i <= a.size(); ++i) {
      size_t diag = row[0];
      row[0] = i;
      for (size_t j = 1; j <= b.size(); ++j) {
        size_t up = row[j];
        row[j] = std::min({row[j] + 1, row[j - 1] + 1, diag + (a[i - 1] == b[j - 1] ? 0 : 1)});
        diag = up;
      }
    }
    return row[b.size()];
  };
  if (word.size() > 64) return "";  // no name is that long; spare the quadratic work
  const std::string* best = nullptr;
  size_t best_distance = 3;
  for (const auto& c : candidates)
    if (size_t d = distance(word, c); d < best_distance) {
      best = &c;
      best_distance = d;
    }
  return best ? "; did you mean '" + *best + "'?" : "";
}

}  // namespace taskhost
