// form526-resubmit's input CSV and the names its metadata.json may carry.
#include <gtest/gtest.h>

#include <stdexcept>

#include "claim.hpp"
#include "input_csv.hpp"

namespace form526 {
namespace {

TEST(Form526Input, ReadsTheColumnSkipsBlanksAndDuplicatesAndReportsBadLines) {
  const InputIds in = parse_input(
      "\xEF\xBB\xBFnote,submission_id,other\r\n"
      "x,101,y\r\n"
      "\r\n"
      "   \n"
      "\"quoted, with comma\",\"102\",z\n"
      "x,101,again\n"
      "x,abc\n"
      "only-one-field\n"
      "\"unclosed,103\n"
      "\"a\"b,104\n"
      "x, 105 ,y\n"
      "x,0\n"
      "x,1234567890123456789\n");
  EXPECT_EQ(in.ids, (std::vector<int64_t>{101, 102, 105}));
  EXPECT_EQ(in.duplicates, 1u);
  std::vector<std::pair<uint64_t, std::string>> bad;
  for (const auto& m : in.malformed) bad.emplace_back(m.line, m.error);
  EXPECT_EQ(bad, (std::vector<std::pair<uint64_t, std::string>>{
                     {7, "submission_id 'abc' is not a positive integer"},
                     {8, "has 1 fields; submission_id is field 2 of 3"},
                     {9, "a quote is not closed on this line"},
                     {10, "text after a closing quote in field 1"},
                     {12, "submission_id '0' is not a positive integer"},
                     {13, "submission_id '1234567890123456789' is not a positive integer"}}));
}

TEST(Form526Input, AFileWithoutTheColumnIsRefusedNamingTheHeaderLine) {
  try {
    parse_input("\n\nid,note\n1,x\n");
    FAIL() << "accepted";
  } catch (const std::invalid_argument& e) {
    EXPECT_STREQ(e.what(), "line 3: the header has no submission_id column");
  }
  EXPECT_THROW(parse_input(""), std::invalid_argument);
  EXPECT_TRUE(parse_input("submission_id\n").ids.empty());
}

TEST(Form526Input, CsvFieldsAreQuotedOnlyWhenTheyMustBe) {
  EXPECT_EQ(csv_field("plain"), "plain");
  EXPECT_EQ(csv_field("a,b"), "\"a,b\"");
  EXPECT_EQ(csv_field("say \"hi\"\n"), "\"say \"\"hi\"\"\n\"");
}

TEST(Form526Metadata, NamesAreRomanisedToTheLettersTheIntakeApiAccepts) {
  EXPECT_EQ(intake_name("Zoë Brontë-Müller"), "Zoe Bronte-Muller");
  EXPECT_EQ(intake_name("Łukasz  Wróbel"), "Lukasz Wrobel");
  EXPECT_EQ(intake_name("O'Brien"), "OBrien");
  EXPECT_EQ(intake_name("Ngọc Anh Trần"), "Ngoc Anh Tran");
  EXPECT_EQ(intake_name("Ольга Щукина"), "Olga Shchukina");
  EXPECT_EQ(intake_name("Σοφία"), "Sofia");
  EXPECT_EQ(intake_name("Æsa Þór"), "AEsa THor");
  EXPECT_EQ(intake_name("李"), "");
  EXPECT_EQ(intake_name(std::string(60, 'a')), std::string(50, 'a'));
}

}  // namespace
}  // namespace form526
