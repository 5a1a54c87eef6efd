#pragma once

#include <compare>
#include <cstdint>
#include <optional>
#include <string>
#include <string_view>
#include <vector>

namespace taskhost {

// A Semantic Versioning 2.0.0 version. Build metadata ("+3f2a9c1d0e4b")
// names one build of a version: bundled plugins carry their build's digest
// there, so every rebuild is a version of its own. As the spec says, it does
// not take part in precedence; among installed builds of one version the
// newest install wins (see find_schema).
struct SemVer {
  uint64_t major = 0;
  uint64_t minor = 0;
  uint64_t patch = 0;
  std::vector<std::string> prerelease;  // dot-separated identifiers
  std::string build;                    // without the '+'; empty if none

  // Parses "MAJOR.MINOR.PATCH[-PRERELEASE][+BUILD]"; std::nullopt if malformed.
  static std::optional<SemVer> parse(std::string_view text);
  std::string str() const;
  // The version without its build metadata.
  std::string release() const;

  // Precedence as in semver.org §11: builds of one version are equivalent,
  // not equal.
  friend std::weak_ordering operator<=>(const SemVer& a, const SemVer& b);
  friend bool operator==(const SemVer& a, const SemVer& b) = default;
};

}  // namespace taskhost
