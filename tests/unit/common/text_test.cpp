#include "common/text.hpp"

#include <gtest/gtest.h>

#include <chrono>
#include <string>

#include "common/curl.hpp"
#include "common/error.hpp"
#include "common/json_input.hpp"
#include "common/pattern.hpp"

namespace taskhost {
namespace {

TEST(Text, InvalidUtf8IsLocated) {
  EXPECT_EQ(invalid_utf8_at("plain ascii"), std::nullopt);
  EXPECT_EQ(invalid_utf8_at("claim 526+\xC3\xBC.pdf"), std::nullopt);
  EXPECT_EQ(invalid_utf8_at("ab\xFF"), 2u);
  EXPECT_EQ(invalid_utf8_at("a\xC0\xAF"), 1u);         // overlong '/'
  EXPECT_EQ(invalid_utf8_at("\xED\xA0\x80"), 0u);      // a surrogate
  EXPECT_EQ(invalid_utf8_at("\xF4\x90\x80\x80"), 0u);  // above U+10FFFF
  EXPECT_EQ(invalid_utf8_at("ok\xE2\x82"), 2u);        // cut short
}

TEST(Text, StorableIsValidUtf8WithoutNulAndBounded) {
  EXPECT_EQ(storable("fine", 10), "fine");
  EXPECT_EQ(storable("a\xFF"
                     "b",
                     10),
            "a\xEF\xBF\xBD"
            "b");
  EXPECT_EQ(storable(std::string("a\0b", 3), 10),
            "a\xEF\xBF\xBD"
            "b");
  EXPECT_EQ(storable("abcdefghij", 8), "abcde...");
  // Never cuts a character in half.
  std::string cut = storable("\xC3\xBC\xC3\xBC\xC3\xBC\xC3\xBC", 7);
  EXPECT_EQ(cut, "\xC3\xBC\xC3\xBC...");
  EXPECT_EQ(invalid_utf8_at(cut), std::nullopt);
  EXPECT_LE(storable(std::string(100000, 'x'), 8192).size(), 8192u);
}

TEST(Text, PrintableEscapesWhatATerminalWouldObey) {
  EXPECT_EQ(printable("done\n2026-01-01 00:00:00.000 error forged"),
            "done\\n2026-01-01 00:00:00.000 error forged");
  EXPECT_EQ(printable("\x1B]0;owned\x07\x1B[2J"), "\\x1B]0;owned\\x07\\x1B[2J");
  EXPECT_EQ(printable("csi \xC2\x9B"
                      "31m"),
            "csi \\u{9B}31m");  // C1 control
  EXPECT_EQ(printable("bad \xFF byte, tab\t, back\\slash, del\x7F"),
            "bad \\xFF byte, tab\\t, back\\\\slash, del\\x7F");
  EXPECT_EQ(printable("Hello, w\xC3\xB6rld! \xE2\x9C\x93"), "Hello, w\xC3\xB6rld! \xE2\x9C\x93");
}

TEST(Text, DidYouMean) {
  EXPECT_EQ(did_you_mean("nmae", {"name", "count"}), "; did you mean 'name'?");
  EXPECT_EQ(did_you_mean("zzzzzz", {"name", "count"}), "");
  EXPECT_EQ(did_you_mean(std::string(100000, 'a'), {"name"}), "");
}

TEST(Pattern, LinearTimeOnCatastrophicBacktracking) {
  // std::regex took 8.7 s on this; RE2 does not backtrack.
  Pattern p("(a+)+$");
  auto start = std::chrono::steady_clock::now();
  EXPECT_FALSE(p.matches(std::string(29, 'a') + "!"));
  EXPECT_FALSE(Pattern("(x+x+)+y").matches(std::string(5000, 'x')));
  EXPECT_LT(std::chrono::steady_clock::now() - start, std::chrono::seconds(1));
}

TEST(Pattern, LongInputAndDeepNestingDoNotCrash) {
  // std::regex recursed per character and per group: a segfault on each.
  EXPECT_TRUE(Pattern("[a-z]+").matches(std::string(60000, 'a')));
  EXPECT_TRUE(Pattern("(.*)").matches(std::string(100000, 'x')));
  std::string nested = std::string(500, '(') + "a" + std::string(500, ')');
  try {
    EXPECT_TRUE(Pattern(nested).matches("a"));
  } catch (const Error& e) {
    SUCCEED() << e.what();  // refused as too deep is fine too
  }
  EXPECT_THROW(Pattern(std::string(2000, 'a')), Error);  // over max_length
}

TEST(Pattern, InvalidSyntaxIsAnError) {
  try {
    Pattern p("(unclosed");
    FAIL();
  } catch (const Error& e) {
    EXPECT_EQ(e.kind(), ErrorKind::invalid);
    EXPECT_NE(std::string(e.what()).find("is not a valid pattern: missing )"), std::string::npos)
        << e.what();
  }
  EXPECT_THROW(Pattern("(?=lookahead)"), Error);
}

TEST(JsonInput, DeepNestingIsRefusedNotACrash) {
  std::string deep = std::string(100000, '[') + std::string(100000, ']');
  try {
    parse_json_input(deep, "--params-file p.json");
    FAIL();
  } catch (const Error& e) {
    EXPECT_EQ(std::string(e.what()), "--params-file p.json: nested deeper than 64 levels");
  }
  std::string ok = std::string(64, '[') + std::string(64, ']');
  EXPECT_NO_THROW(parse_json_input(ok, "x"));
  EXPECT_THROW(parse_json_input("[" + ok + "]", "x"), Error);
  std::string objects;
  for (int i = 0; i < 1000; ++i) objects += "{\"a\":";
  objects += "1" + std::string(1000, '}');
  EXPECT_THROW(parse_json_input(objects, "x"), Error);
}

TEST(JsonInput, RefusesWhatTheStoreCannotHold) {
  auto why = [](const std::string& text) {
    try {
      parse_json_input(text, "output");
    } catch (const Error& e) {
      return std::string(e.what());
    }
    return std::string("accepted");
  };
  EXPECT_EQ(why(R"({"a":"x\u0000y"})"),
            "output: a string holds a NUL character (\\u0000), which cannot be stored");
  EXPECT_EQ(why(R"({"a\u0000":1})"),
            "output: a string holds a NUL character (\\u0000), which cannot be stored");
  EXPECT_NE(why("{\"a\":\"\xFF\"}").find("output: not valid JSON: "), std::string::npos);
  EXPECT_NE(why("[1e400]").find("number overflow"), std::string::npos) << why("[1e400]");
  EXPECT_NE(why("{").find("output: not valid JSON: "), std::string::npos);
  EXPECT_EQ(why(R"({"ok":[1,"\u00fc",null]})"), "accepted");
}

TEST(HttpUrl, ParsedAsDeliveriesParseIt) {
  EXPECT_NO_THROW(parse_http_url("https://app.example/hook?token=x"));
  EXPECT_NO_THROW(parse_http_url("http://127.0.0.1:18080/hook"));
  EXPECT_NO_THROW(parse_http_url("http://[::1]:8080/"));
  for (const char* bad : {"http://[::1", "http://h:99999/", "http://%31%32%37.0.0.1/", "ftp://h/",
                          "h/path", "http://", "http://a b/", "https://x/\n"})
    EXPECT_THROW(parse_http_url(bad), Error) << bad;
  EXPECT_THROW(parse_http_url("https://x/" + std::string(50000, 'a')), Error);
}

}  // namespace
}  // namespace taskhost
