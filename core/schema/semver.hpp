#pragma once

#include <compare>
#include <cstdint>
#include <optional>
#include <string>
#include <string_view>
#include <vector>

namespace taskhost {

// A Semantic Versioning 2.0.0 version without build metadata: task schema
// versions must be totally ordered, and "+build" would make two different
// strings equal in precedence.
struct SemVer {
  uint64_t major = 0;
  uint64_t minor = 0;
  uint64_t patch = 0;
  std::vector<std::string> prerelease;  // dot-separated identifiers

  // Parses "MAJOR.MINOR.PATCH[-PRERELEASE]"; std::nullopt if malformed.
  static std::optional<SemVer> parse(std::string_view text);
  std::string str() const;

  // Precedence as in semver.org §11.
  friend std::strong_ordering operator<=>(const SemVer& a, const SemVer& b);
  friend bool operator==(const SemVer& a, const SemVer& b) = default;
};

}  // namespace taskhost
