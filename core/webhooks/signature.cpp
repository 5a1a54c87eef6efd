#include "webhooks/signature.hpp"

#include <openssl/rand.h>

#include "common/base64.hpp"
#include "common/error.hpp"
#include "common/sha256.hpp"

namespace taskhost {

namespace {
constexpr std::string_view prefix = "whsec_";
}

std::string new_webhook_secret() {
  unsigned char key[32];
  if (RAND_bytes(key, sizeof key) != 1)
    throw Error(ErrorKind::environment, "OpenSSL: no random bytes for a webhook secret");
  return std::string(prefix) + base64_encode(std::string_view(reinterpret_cast<char*>(key), 32));
}

std::string webhook_signature(std::string_view secret, std::string_view id, int64_t timestamp,
                              std::string_view body) {
  auto key = secret.substr(0, prefix.size()) == prefix ? base64_decode(secret.substr(prefix.size()))
                                                       : std::nullopt;
  if (!key || key->empty())
    throw Error(ErrorKind::invalid, "a webhook secret is whsec_ followed by base64");
  const std::string content =
      std::string(id) + "." + std::to_string(timestamp) + "." + std::string(body);
  return "v1," + base64_encode(hmac_sha256(*key, content));
}

}  // namespace taskhost
