#pragma once

#include <string>
#include <string_view>

namespace taskhost {

// Lower-case hex of bytes.
std::string hex_lower(std::string_view bytes);

// The raw 32-byte HMAC-SHA256 of data under key.
std::string hmac_sha256(std::string_view key, std::string_view data);

// Lower-case hex SHA-256 of bytes.
std::string sha256_hex(std::string_view data);

// Lower-case hex SHA-256 of everything readable from fd (read from its
// current offset to EOF). Throws Error(environment) on a read error.
std::string sha256_hex_fd(int fd);

// True when a and b are equal, in time independent of where they differ.
bool constant_time_equal(std::string_view a, std::string_view b);

}  // namespace taskhost
