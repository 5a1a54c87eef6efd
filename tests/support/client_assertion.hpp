#pragma once

#include <openssl/types.h>

#include <filesystem>
#include <memory>
#include <mutex>
#include <set>
#include <string>

namespace taskhost::test {

// The authorization server's side of a private_key_jwt credential (RFC
// 7523): a fresh RSA key whose private half is a PEM file, as a host config
// names it, and a check of token requests signed with it.
class ClientAssertionKey {
 public:
  // Writes a new 2048-bit RSA private key to file (mode 0600).
  explicit ClientAssertionKey(const std::filesystem::path& file);
  const std::filesystem::path& file() const { return file_; }

  // Checks a token request's form body: grant_type client_credentials, the
  // JWT bearer assertion type, an RS256 signature by this key, iss and sub
  // the client_id, aud == audience, iat not in the future, exp in the
  // future and at most 10 minutes after iat, a jti never seen before.
  // Returns "" when every check holds, else the first that fails.
  std::string check(const std::string& form_body, const std::string& client_id,
                    const std::string& audience);

 private:
  std::filesystem::path file_;
  std::shared_ptr<EVP_PKEY> key_;
  std::mutex mutex_;
  std::set<std::string> seen_jti_;
};

// A form field of an application/x-www-form-urlencoded body, decoded ("" if absent).
std::string form_field(const std::string& body, const std::string& name);

}  // namespace taskhost::test
