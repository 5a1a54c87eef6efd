#include "schema/duration.hpp"

#include <gtest/gtest.h>

namespace taskhost {
namespace {

using namespace std::chrono_literals;

TEST(Duration, ParsesUnitsAndCombinations) {
  EXPECT_EQ(parse_duration("500ms"), 500ms);
  EXPECT_EQ(parse_duration("30s"), 30s);
  EXPECT_EQ(parse_duration("5m"), 5min);
  EXPECT_EQ(parse_duration("1h30m"), 90min);
  EXPECT_EQ(parse_duration("2d"), 48h);
  EXPECT_EQ(parse_duration("1h0m5s"), 1h + 5s);
}

TEST(Duration, RejectsMalformed) {
  for (const char* s : {"", "5", "m", "5x", "1m1h", "1s1s", "-5s", "1.5h", "5 s", "5sec"})
    EXPECT_FALSE(parse_duration(s).has_value()) << s;
}

TEST(Duration, FormatsBackToTheShortestText) {
  EXPECT_EQ(format_duration(90min), "1h30m");
  EXPECT_EQ(format_duration(0ms), "0s");
  EXPECT_EQ(format_duration(1500ms), "1s500ms");
  EXPECT_EQ(parse_duration(format_duration(26h + 3s)), 26h + 3s);
}

}  // namespace
}  // namespace taskhost
