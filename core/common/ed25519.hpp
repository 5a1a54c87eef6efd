#pragma once

#include <openssl/types.h>

#include <filesystem>
#include <memory>
#include <string>
#include <string_view>

namespace taskhost {

// Ed25519 keys in PEM files (OpenSSL), for signatures made outside the
// database: the audit log's checkpoints.

// Writes a new private key (mode 0600) and its public key beside it
// (private_key + ".pub"). Throws Error(environment).
void ed25519_generate(const std::filesystem::path& private_key);

// Base64 signature of message. Throws Error(environment) for an unreadable key.
std::string ed25519_sign(const std::filesystem::path& private_key, std::string_view message);

// A public key read once, for checking many signatures.
class Ed25519PublicKey {
 public:
  // Throws Error(environment) for an unreadable or non-Ed25519 key.
  explicit Ed25519PublicKey(const std::filesystem::path& pem);
  // True when signature (base64) is this key's signature of message.
  bool verify(std::string_view message, std::string_view signature) const;

 private:
  std::shared_ptr<EVP_PKEY> key_;
};

}  // namespace taskhost
