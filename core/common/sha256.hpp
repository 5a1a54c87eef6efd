#pragma once

#include <memory>
#include <string>
#include <string_view>

struct evp_md_ctx_st;

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

// SHA-256 of bytes fed in pieces: for streams never held whole.
class Sha256 {
 public:
  Sha256();
  ~Sha256();
  Sha256(const Sha256&) = delete;
  Sha256& operator=(const Sha256&) = delete;
  void update(std::string_view bytes);
  // Lower-case hex of everything fed so far; feeding afterwards is an error.
  std::string hex();

 private:
  evp_md_ctx_st* ctx_;
};

// True when a and b are equal, in time independent of where they differ.
bool constant_time_equal(std::string_view a, std::string_view b);

}  // namespace taskhost
