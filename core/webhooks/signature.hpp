#pragma once

#include <cstdint>
#include <string>
#include <string_view>

namespace taskhost {

// Signing per the Standard Webhooks specification (standardwebhooks.com).

// A new secret: "whsec_" + base64 of 32 random bytes.
std::string new_webhook_secret();

// The webhook-signature entry for one secret: "v1," + base64 of
// HMAC-SHA256(key, "{id}.{timestamp}.{body}"), key being the base64-decoded
// part of the secret after "whsec_". Throws Error(invalid) for a malformed
// secret.
std::string webhook_signature(std::string_view secret, std::string_view id, int64_t timestamp,
                              std::string_view body);

}  // namespace taskhost
