#pragma once

#include <optional>
#include <string>
#include <string_view>

namespace taskhost {

// Standard base64 (RFC 4648, with padding).
std::string base64_encode(std::string_view bytes);
// std::nullopt unless text is well-formed padded base64.
std::optional<std::string> base64_decode(std::string_view text);

}  // namespace taskhost
