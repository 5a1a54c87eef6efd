#include "schema/semver.hpp"

#include <algorithm>
#include <charconv>
#include <tuple>

namespace taskhost {
namespace {

bool is_numeric(std::string_view s) {
  return !s.empty() && std::all_of(s.begin(), s.end(), [](char c) { return c >= '0' && c <= '9'; });
}

// A numeric identifier: digits, no leading zero unless it is "0".
std::optional<uint64_t> parse_number(std::string_view s) {
  if (!is_numeric(s) || (s.size() > 1 && s[0] == '0')) return std::nullopt;
  uint64_t v = 0;
  auto [ptr, ec] = std::from_chars(s.data(), s.data() + s.size(), v);
  if (ec != std::errc() || ptr != s.data() + s.size()) return std::nullopt;
  return v;
}

std::vector<std::string_view> split(std::string_view s, char sep) {
  std::vector<std::string_view> parts;
  size_t start = 0;
  for (;;) {
    size_t pos = s.find(sep, start);
    parts.push_back(s.substr(start, pos - start));
    if (pos == std::string_view::npos) return parts;
    start = pos + 1;
  }
}

bool valid_identifier(std::string_view id) {
  return !id.empty() && std::all_of(id.begin(), id.end(), [](char c) {
    return (c >= '0' && c <= '9') || (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || c == '-';
  });
}

bool valid_prerelease_identifier(std::string_view id) {
  return valid_identifier(id) && (!is_numeric(id) || parse_number(id).has_value());
}

std::strong_ordering compare_identifier(const std::string& a, const std::string& b) {
  bool an = is_numeric(a), bn = is_numeric(b);
  if (an && bn) {
    if (a.size() != b.size()) return a.size() <=> b.size();  // no leading zeros
    return a.compare(b) <=> 0;
  }
  if (an != bn) return an ? std::strong_ordering::less : std::strong_ordering::greater;
  return a.compare(b) <=> 0;
}

}  // namespace

std::optional<SemVer> SemVer::parse(std::string_view text) {
  SemVer v;
  if (auto plus = text.find('+'); plus != std::string_view::npos) {
    auto ids = split(text.substr(plus + 1), '.');
    if (!std::all_of(ids.begin(), ids.end(), valid_identifier)) return std::nullopt;
    v.build = text.substr(plus + 1);
    text = text.substr(0, plus);
  }
  std::string_view core = text;
  if (auto dash = text.find('-'); dash != std::string_view::npos) {
    core = text.substr(0, dash);
    for (auto id : split(text.substr(dash + 1), '.')) {
      if (!valid_prerelease_identifier(id)) return std::nullopt;
      v.prerelease.emplace_back(id);
    }
  }
  auto parts = split(core, '.');
  if (parts.size() != 3) return std::nullopt;
  auto major = parse_number(parts[0]), minor = parse_number(parts[1]),
       patch = parse_number(parts[2]);
  if (!major || !minor || !patch) return std::nullopt;
  v.major = *major;
  v.minor = *minor;
  v.patch = *patch;
  return v;
}

std::string SemVer::release() const {
  std::string s = std::to_string(major) + "." + std::to_string(minor) + "." + std::to_string(patch);
  for (size_t i = 0; i < prerelease.size(); ++i) s += (i == 0 ? "-" : ".") + prerelease[i];
  return s;
}

std::string SemVer::str() const { return build.empty() ? release() : release() + "+" + build; }

std::weak_ordering operator<=>(const SemVer& a, const SemVer& b) {
  if (auto c = std::tie(a.major, a.minor, a.patch) <=> std::tie(b.major, b.minor, b.patch); c != 0)
    return c;
  // A pre-release has lower precedence than the release itself.
  if (a.prerelease.empty() != b.prerelease.empty())
    return a.prerelease.empty() ? std::weak_ordering::greater : std::weak_ordering::less;
  for (size_t i = 0; i < std::min(a.prerelease.size(), b.prerelease.size()); ++i)
    if (auto c = compare_identifier(a.prerelease[i], b.prerelease[i]); c != 0) return c;
  return a.prerelease.size() <=> b.prerelease.size();
}

}  // namespace taskhost
