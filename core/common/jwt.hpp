#pragma once

#include <string>
#include <string_view>

#include <nlohmann/json.hpp>

namespace taskhost {

// A compact JWS (RFC 7515) of claims signed with RS256 (RSASSA-PKCS1-v1_5
// with SHA-256) by private_key_pem (PKCS#8 or PKCS#1, unencrypted), as an
// RFC 7523 client assertion is made. Throws Error(environment) when the key
// cannot be read or is not an RSA key of at least 2048 bits; the message
// never holds the key.
std::string jwt_rs256(const nlohmann::json& claims, std::string_view private_key_pem);

// 128 random bits as 32 hex digits, from OpenSSL's CSPRNG: a JWT's jti.
std::string random_hex_id();

}  // namespace taskhost
