#pragma once

#include <sys/socket.h>

#include <optional>
#include <string>
#include <vector>

namespace taskhost {

// The SSRF guard shared by outbound HTTP and webhook delivery: it judges the
// address a connection is about to use (after DNS), so a name that resolves
// to an internal address is refused however it was spelled.

// An address range in CIDR form, "10.0.0.0/8" or "fd00::/8".
class AddressRange {
 public:
  // Throws Error(invalid) naming the text.
  static AddressRange parse(const std::string& cidr);
  bool contains(const sockaddr* addr) const;

 private:
  int family_ = 0;
  unsigned char bytes_[16] = {};
  int bits_ = 0;
};

// Why addr is not a public unicast destination (loopback, private,
// link-local, CGNAT, unique-local, IPv4-mapped, multicast, reserved...), or
// std::nullopt when it is public.
std::optional<std::string> non_public_reason(const sockaddr* addr);

// The verdict for a destination: nullopt when allowed (public, or inside an
// allowlisted range), else the reason it is refused.
std::optional<std::string> refuse_destination(const sockaddr* addr,
                                              const std::vector<AddressRange>& allow);

}  // namespace taskhost
