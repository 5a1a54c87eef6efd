#include "schema/semver.hpp"

#include <gtest/gtest.h>

namespace taskhost {
namespace {

SemVer v(const char* s) {
  auto parsed = SemVer::parse(s);
  EXPECT_TRUE(parsed.has_value()) << s;
  return parsed.value_or(SemVer{});
}

TEST(SemVer, ParsesAndPrintsBack) {
  for (const char* s :
       {"0.0.0", "1.2.3", "10.20.30", "1.0.0-alpha", "1.0.0-alpha.1", "1.0.0-0.3.7",
        "1.0.0-x.7.z.92", "1.0.0-x-y-z.--", "1.0.0+3f2a9c1d0e4b", "1.0.0-rc.1+build.007"})
    EXPECT_EQ(v(s).str(), s);
}

TEST(SemVer, RejectsMalformed) {
  for (const char* s : {"", "1", "1.2", "1.2.3.4", "01.2.3", "1.02.3", "1.2.03", "v1.2.3", "1.2.3-",
                        "1.2.3-01", "1.2.3-a..b", "1.2.3+", "1.2.3+a..b", "1.2.3+a+b", "1.2.-3",
                        "a.b.c", "1.2.3-Ü", " 1.2.3", "99999999999999999999.0.0"})
    EXPECT_FALSE(SemVer::parse(s).has_value()) << s;
}

// The precedence chain given in semver.org §11.
TEST(SemVer, OrdersAsTheSpecSays) {
  const char* chain[] = {"1.0.0-alpha", "1.0.0-alpha.1", "1.0.0-alpha.beta",
                         "1.0.0-beta",  "1.0.0-beta.2",  "1.0.0-beta.11",
                         "1.0.0-rc.1",  "1.0.0",         "1.0.1",
                         "1.1.0",       "2.0.0",         "10.0.0"};
  for (size_t i = 0; i + 1 < std::size(chain); ++i) {
    EXPECT_LT(v(chain[i]), v(chain[i + 1])) << chain[i] << " < " << chain[i + 1];
    EXPECT_GT(v(chain[i + 1]), v(chain[i]));
  }
  EXPECT_EQ(v("1.2.3-rc.1"), v("1.2.3-rc.1"));
  EXPECT_LT(v("1.9.0"), v("1.10.0"));  // numeric, not lexical
}

// §10: builds of one version have the same precedence, yet are not the same.
TEST(SemVer, BuildMetadataNamesABuildOfTheSameVersion) {
  EXPECT_TRUE(v("1.0.0+aaa") <=> v("1.0.0+bbb") == 0);
  EXPECT_NE(v("1.0.0+aaa"), v("1.0.0+bbb"));
  EXPECT_LT(v("1.0.0+fff"), v("1.0.1+000"));
  EXPECT_EQ(v("1.0.0-rc.1+abc").release(), "1.0.0-rc.1");
}

}  // namespace
}  // namespace taskhost
