#pragma once

#include <bitset>
#include <optional>
#include <string>
#include <string_view>

namespace taskhost {

// A standard 5-field cron expression: minute hour day-of-month month
// day-of-week. Fields take *, N, A-B, */S, A-B/S and comma lists; months and
// weekdays also take names (JAN, MON); weekday 7 is Sunday. The macros
// @hourly @daily @weekly @monthly @yearly (@annually) are accepted.
struct CronSpec {
  std::bitset<60> minutes;
  std::bitset<24> hours;
  std::bitset<32> days_of_month;  // bit 0 unused
  std::bitset<13> months;         // bit 0 unused
  std::bitset<7> days_of_week;    // 0 = Sunday
  // Vixie cron: when both day fields are restricted, either may match.
  bool dom_restricted = false;
  bool dow_restricted = false;

  // Parses text; on failure returns std::nullopt and sets *error to say which
  // field is wrong and why.
  static std::optional<CronSpec> parse(std::string_view text, std::string* error);
};

}  // namespace taskhost
