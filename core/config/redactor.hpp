#pragma once

#include <string>
#include <string_view>
#include <vector>

#include "config/host_config.hpp"

namespace taskhost {

// Replaces every secret value the host config names (S3 keys, HTTP
// credentials, OpenPGP keys and passphrases, database URLs and the password
// inside each, host keys, the API pepper) with "[redacted]" in text the host
// stores or logs on a plugin's behalf. A plugin never receives these, but it
// may have found one (in a file, a row, an error) and logged it. Values are
// read when the Redactor is made (a rotated file is seen by the next one);
// one that cannot be read is skipped, and values under 8 bytes are too,
// since they would blank ordinary words. Thread-safe once made.
class Redactor {
 public:
  Redactor() = default;
  explicit Redactor(const HostConfig& config);
  std::string redact(std::string_view text) const;

 private:
  std::vector<std::string> secrets_;  // longest first: a secret inside another goes with it
};

}  // namespace taskhost
