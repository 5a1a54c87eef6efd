#pragma once

#include <filesystem>
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

// True when signature (base64) is public_key's signature of message.
bool ed25519_verify(const std::filesystem::path& public_key, std::string_view message,
                    std::string_view signature);

}  // namespace taskhost
