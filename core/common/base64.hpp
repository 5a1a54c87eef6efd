#pragma once

#include <optional>
#include <string>
#include <string_view>

namespace taskhost {

// Standard base64 (RFC 4648, with padding).
std::string base64_encode(std::string_view bytes);
// std::nullopt unless text is well-formed padded base64.
std::optional<std::string> base64_decode(std::string_view text);
// base64url without padding (RFC 4648 section 5), as JWTs write it (RFC 7515).
std::string base64url_encode(std::string_view bytes);
// std::nullopt unless text is unpadded base64url.
std::optional<std::string> base64url_decode(std::string_view text);

}  // namespace taskhost
