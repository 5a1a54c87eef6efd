#include "schema/cron.hpp"

#include <gtest/gtest.h>

namespace taskhost {
namespace {

CronSpec parse(const char* text) {
  std::string error;
  auto spec = CronSpec::parse(text, &error);
  EXPECT_TRUE(spec.has_value()) << text << ": " << error;
  return spec.value_or(CronSpec{});
}

std::string error_of(const char* text) {
  std::string error;
  EXPECT_FALSE(CronSpec::parse(text, &error).has_value()) << text;
  return error;
}

TEST(Cron, ExpandsFields) {
  auto s = parse("15 * * * *");
  EXPECT_EQ(s.minutes.count(), 1u);
  EXPECT_TRUE(s.minutes.test(15));
  EXPECT_EQ(s.hours.count(), 24u);
  EXPECT_FALSE(s.dom_restricted);

  s = parse("*/15 9-17 1,15 JAN-mar mon-fri");
  EXPECT_EQ(s.minutes.count(), 4u);
  EXPECT_TRUE(s.minutes.test(45));
  EXPECT_EQ(s.hours.count(), 9u);
  EXPECT_TRUE(s.days_of_month.test(1) && s.days_of_month.test(15));
  EXPECT_EQ(s.days_of_month.count(), 2u);
  EXPECT_EQ(s.months.count(), 3u);
  EXPECT_TRUE(s.months.test(3));
  EXPECT_EQ(s.days_of_week.count(), 5u);
  EXPECT_FALSE(s.days_of_week.test(0));
  EXPECT_TRUE(s.dom_restricted && s.dow_restricted);

  s = parse("5/20 0 * * 7");  // from 5 every 20; 7 is Sunday
  EXPECT_TRUE(s.minutes.test(5) && s.minutes.test(25) && s.minutes.test(45));
  EXPECT_EQ(s.minutes.count(), 3u);
  EXPECT_TRUE(s.days_of_week.test(0));
}

TEST(Cron, AcceptsMacros) {
  auto s = parse("@daily");
  EXPECT_TRUE(s.minutes.test(0) && s.hours.test(0));
  EXPECT_EQ(s.hours.count(), 1u);
  EXPECT_EQ(parse("@hourly").hours.count(), 24u);
}

TEST(Cron, SaysWhichFieldIsWrong) {
  EXPECT_EQ(error_of("* * * *"),
            "expected 5 fields (minute hour day-of-month month day-of-week), got 4");
  EXPECT_EQ(error_of("60 * * * *"), "minute field: '60' is not a value or range within 0-59");
  EXPECT_EQ(error_of("* 5-2 * * *"), "hour field: range '5-2' runs backwards");
  EXPECT_EQ(error_of("* * 0 * *"), "day-of-month field: '0' is not a value or range within 1-31");
  EXPECT_EQ(error_of("* * * * */0"), "day-of-week field: bad step '0'");
  EXPECT_EQ(error_of("* * * FOO *"), "month field: 'FOO' is not a value or range within 1-12");
}

}  // namespace
}  // namespace taskhost
