#include "common/address_policy.hpp"

#include <arpa/inet.h>
#include <netinet/in.h>

#include <cstring>

#include "common/error.hpp"

namespace taskhost {
namespace {

struct Special {
  const char* cidr;
  const char* reason;
};

// IANA special-purpose registries (RFC 6890 and successors): none of these
// is a public destination.
constexpr Special special[] = {
    {"0.0.0.0/8", "this-network"},
    {"10.0.0.0/8", "private"},
    {"100.64.0.0/10", "CGNAT (shared address space)"},
    {"127.0.0.0/8", "loopback"},
    {"169.254.0.0/16", "link-local"},
    {"172.16.0.0/12", "private"},
    {"192.0.0.0/24", "IETF protocol assignments"},
    {"192.0.2.0/24", "documentation"},
    {"192.88.99.0/24", "6to4 relay anycast"},
    {"192.168.0.0/16", "private"},
    {"198.18.0.0/15", "benchmarking"},
    {"198.51.100.0/24", "documentation"},
    {"203.0.113.0/24", "documentation"},
    {"224.0.0.0/4", "multicast"},
    {"240.0.0.0/4", "reserved"},
    {"::/128", "unspecified"},
    {"::1/128", "loopback"},
    {"::ffff:0:0/96", "IPv4-mapped"},
    {"::/96", "IPv4-compatible"},
    {"64:ff9b::/96", "NAT64 (embeds an IPv4 address)"},
    {"64:ff9b:1::/48", "local NAT64"},
    {"100::/64", "discard-only"},
    {"2001::/23", "IETF protocol assignments"},
    {"2001:db8::/32", "documentation"},
    {"2002::/16", "6to4 (embeds an IPv4 address)"},
    {"fc00::/7", "unique-local"},
    {"fe80::/10", "link-local"},
    {"fec0::/10", "site-local"},
    {"ff00::/8", "multicast"},
};

const std::vector<std::pair<AddressRange, const char*>>& special_ranges() {
  static const auto ranges = [] {
    std::vector<std::pair<AddressRange, const char*>> out;
    for (const auto& s : special) out.emplace_back(AddressRange::parse(s.cidr), s.reason);
    return out;
  }();
  return ranges;
}

}  // namespace

AddressRange AddressRange::parse(const std::string& cidr) {
  AddressRange r;
  const auto slash = cidr.find('/');
  const std::string host = cidr.substr(0, slash);
  if (inet_pton(AF_INET, host.c_str(), r.bytes_) == 1)
    r.family_ = AF_INET;
  else if (inet_pton(AF_INET6, host.c_str(), r.bytes_) == 1)
    r.family_ = AF_INET6;
  else
    throw Error(ErrorKind::invalid, "'" + cidr + "' is not an address range like 10.0.0.0/8");
  const int max = r.family_ == AF_INET ? 32 : 128;
  r.bits_ = max;
  if (slash != std::string::npos) {
    const std::string bits = cidr.substr(slash + 1);
    if (bits.empty() || bits.size() > 3 ||
        bits.find_first_not_of("0123456789") != std::string::npos || std::stoi(bits) > max)
      throw Error(ErrorKind::invalid,
                  "'" + cidr + "': the prefix length must be 0 to " + std::to_string(max));
    r.bits_ = std::stoi(bits);
  }
  return r;
}

bool AddressRange::contains(const sockaddr* addr) const {
  const unsigned char* bytes = nullptr;
  if (addr->sa_family == AF_INET && family_ == AF_INET)
    bytes = reinterpret_cast<const unsigned char*>(
        &reinterpret_cast<const sockaddr_in*>(addr)->sin_addr);
  else if (addr->sa_family == AF_INET6 && family_ == AF_INET6)
    bytes = reinterpret_cast<const sockaddr_in6*>(addr)->sin6_addr.s6_addr;
  else
    return false;
  const int whole = bits_ / 8, rest = bits_ % 8;
  if (std::memcmp(bytes, bytes_, static_cast<size_t>(whole)) != 0) return false;
  if (rest == 0) return true;
  const unsigned char mask = static_cast<unsigned char>(0xff << (8 - rest));
  return (bytes[whole] & mask) == (bytes_[whole] & mask);
}

std::optional<std::string> non_public_reason(const sockaddr* addr) {
  if (addr->sa_family != AF_INET && addr->sa_family != AF_INET6) return "not an IP address";
  for (const auto& [range, reason] : special_ranges())
    if (range.contains(addr)) return std::string(reason);
  return std::nullopt;
}

std::optional<std::string> refuse_destination(const sockaddr* addr,
                                              const std::vector<AddressRange>& allow) {
  for (const auto& r : allow)
    if (r.contains(addr)) return std::nullopt;
  return non_public_reason(addr);
}

}  // namespace taskhost
