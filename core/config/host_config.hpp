#pragma once

#include <filesystem>
#include <vector>

#include "common/address_policy.hpp"

namespace taskhost {

// What this host may reach, from taskhost.yml (README "Host configuration").
// Secret values are never written in it: it names the environment variables
// or files that hold them.
struct HostConfig {
  // Non-public address ranges that webhook deliveries (and outbound HTTP) may
  // connect to; everything non-public outside them is refused.
  std::vector<AddressRange> allow_destinations;
};

// Reads a config file. Throws Error(invalid) naming file:line:column and the
// field, or Error(environment) when the file cannot be read.
HostConfig load_host_config(const std::filesystem::path& path);

}  // namespace taskhost
