#include "common/address_policy.hpp"

#include <arpa/inet.h>
#include <gtest/gtest.h>
#include <netinet/in.h>

#include "common/error.hpp"

namespace taskhost {
namespace {

// A sockaddr for a literal address, as connect() would see it.
sockaddr_storage address(const std::string& text) {
  sockaddr_storage s{};
  auto* v4 = reinterpret_cast<sockaddr_in*>(&s);
  auto* v6 = reinterpret_cast<sockaddr_in6*>(&s);
  if (inet_pton(AF_INET, text.c_str(), &v4->sin_addr) == 1)
    v4->sin_family = AF_INET;
  else if (inet_pton(AF_INET6, text.c_str(), &v6->sin6_addr) == 1)
    v6->sin6_family = AF_INET6;
  else
    ADD_FAILURE() << text;
  return s;
}

std::optional<std::string> reason(const std::string& text) {
  auto s = address(text);
  return non_public_reason(reinterpret_cast<sockaddr*>(&s));
}

TEST(AddressPolicy, RefusesEveryNonPublicRange) {
  const std::pair<const char*, const char*> cases[] = {
      {"127.0.0.1", "loopback"},
      {"127.255.255.254", "loopback"},
      {"10.1.2.3", "private"},
      {"172.16.0.1", "private"},
      {"172.31.255.255", "private"},
      {"192.168.1.1", "private"},
      {"169.254.169.254", "link-local"},  // cloud metadata
      {"100.64.0.1", "CGNAT (shared address space)"},
      {"100.127.255.255", "CGNAT (shared address space)"},
      {"0.0.0.0", "this-network"},
      {"224.0.0.1", "multicast"},
      {"255.255.255.255", "reserved"},
      {"::1", "loopback"},
      {"::", "unspecified"},
      {"::ffff:127.0.0.1", "IPv4-mapped"},
      {"::ffff:8.8.8.8", "IPv4-mapped"},
      {"64:ff9b::a9fe:a9fe", "NAT64 (embeds an IPv4 address)"},
      {"2002:7f00:1::", "6to4 (embeds an IPv4 address)"},
      {"fd12:3456::1", "unique-local"},
      {"fc00::1", "unique-local"},
      {"fe80::1", "link-local"},
      {"ff02::1", "multicast"},
      {"2001:db8::1", "documentation"},
  };
  for (const auto& [addr, why] : cases) EXPECT_EQ(reason(addr), std::string(why)) << addr;
}

TEST(AddressPolicy, AllowsPublicAddressesAtTheEdgesOfRanges) {
  for (const char* addr :
       {"8.8.8.8", "1.1.1.1", "172.15.255.255", "172.32.0.0", "100.63.255.255", "100.128.0.0",
        "11.0.0.0", "169.253.255.255", "2606:4700::1111", "2a00:1450:4001::200e"})
    EXPECT_EQ(reason(addr), std::nullopt) << addr;
}

TEST(AddressPolicy, AnAllowlistOpensOnlyItsRange) {
  const std::vector<AddressRange> allow = {AddressRange::parse("127.0.0.0/8"),
                                           AddressRange::parse("::1")};
  auto check = [&](const std::string& a) {
    auto s = address(a);
    return refuse_destination(reinterpret_cast<sockaddr*>(&s), allow);
  };
  EXPECT_EQ(check("127.0.0.1"), std::nullopt);
  EXPECT_EQ(check("::1"), std::nullopt);
  EXPECT_EQ(check("10.0.0.1"), "private");
  EXPECT_EQ(check("::ffff:127.0.0.1"), "IPv4-mapped")
      << "the mapped form is not the loopback range";
  EXPECT_EQ(check("8.8.8.8"), std::nullopt);
}

TEST(AddressPolicy, RangesAreParsedStrictly) {
  EXPECT_THROW(AddressRange::parse("10.0.0.0/33"), Error);
  EXPECT_THROW(AddressRange::parse("fd00::/129"), Error);
  EXPECT_THROW(AddressRange::parse("10.0.0/8"), Error);
  EXPECT_THROW(AddressRange::parse("10.0.0.0/"), Error);
  EXPECT_THROW(AddressRange::parse("10.0.0.0/-1"), Error);
  EXPECT_THROW(AddressRange::parse("example.com/8"), Error);
  auto r = AddressRange::parse("10.128.0.0/9");
  auto in = address("10.200.0.1"), out = address("10.1.0.1");
  EXPECT_TRUE(r.contains(reinterpret_cast<sockaddr*>(&in)));
  EXPECT_FALSE(r.contains(reinterpret_cast<sockaddr*>(&out)));
}

}  // namespace
}  // namespace taskhost
