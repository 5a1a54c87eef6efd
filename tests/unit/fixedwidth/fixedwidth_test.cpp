#include <gtest/gtest.h>
#include <taskhost/fixedwidth.hpp>

#include <array>
#include <cstdio>
#include <fstream>
#include <map>
#include <nlohmann/json.hpp>
#include <sstream>

#include "support/esi_synth.hpp"

namespace fw = taskhost::fixedwidth;
using taskhost::testing::esi_synth_file;
using taskhost::testing::EsiExpected;
using taskhost::testing::EsiSynthOptions;

namespace {

std::string read(const std::string& path) {
  std::ifstream in(path, std::ios::binary);
  std::ostringstream s;
  s << in.rdbuf();
  return s.str();
}

const fw::Layout& esi() {
  static const fw::Layout l =
      fw::load_layout_file(SOURCE_DIR "/schemas/layouts/esi_rxaccum_v10.yaml");
  return l;
}

std::string layout_error(const std::string& yaml) {
  try {
    fw::load_layout(yaml, "l.yaml");
  } catch (const fw::LayoutError& e) {
    return e.what();
  }
  return "";
}

// A tiny layout: 10-byte records, H header, D details, T trailer.
const char* tiny_yaml = R"(name: tiny
record_length: 10
discriminator: { start: 1, end: 1 }
header: H
trailer: T
trailer_count: { field: count, counts: [D] }
records:
  H:
    - { name: code, start: 1, end: 1, type: AN }
    - { name: date, start: 2, end: 9, type: DATE }
    - { name: pad, start: 10, end: 10, type: AN }
  D:
    - { name: code, start: 1, end: 1, type: AN }
    - { name: text, start: 2, end: 5, type: AN }
    - { name: cents, start: 6, end: 9, type: D2 }
    - { name: sign, start: 10, end: 10, type: SIGN, sign_of: cents }
  T:
    - { name: code, start: 1, end: 1, type: AN }
    - { name: count, start: 2, end: 10, type: N }
)";

struct Parsed {
  std::vector<std::string> rows;  // "line:code:values|..."
  std::vector<std::string> problems;
};

Parsed parse(const fw::Layout& l, std::string_view bytes, size_t chunk = 0) {
  Parsed out;
  fw::FileParser p(
      l, [&](uint64_t line, const fw::RecordType& t, const std::vector<fw::Value>& v, bool ok) {
        std::string row = std::to_string(line) + ":" + t.code + (ok ? "" : "!");
        for (size_t i = 0; i < v.size(); ++i)
          row += "|" + (v[i].null                          ? std::string("null")
                        : t.fields[i].type == fw::Type::AN ? std::string(v[i].text)
                                                           : std::to_string(v[i].number));
        out.rows.push_back(row);
      });
  if (chunk == 0) {
    p.feed(bytes);
  } else {
    for (size_t i = 0; i < bytes.size(); i += chunk) p.feed(bytes.substr(i, chunk));
  }
  p.finish();
  for (const auto& pr : p.problems()) out.problems.push_back(pr.str());
  return out;
}

}  // namespace

TEST(FixedWidthLayout, TheEsiLayoutLoadsWithItsSignFields) {
  const fw::Layout& l = esi();
  EXPECT_EQ(l.name, "esi_rxaccum");
  EXPECT_EQ(l.record_length, 1700u);
  const fw::RecordType* dt = l.find("DT");
  ASSERT_NE(dt, nullptr);
  const int amount = dt->index("accumulator_12_applied_amount");
  ASSERT_GE(amount, 0);
  EXPECT_EQ(dt->fields[amount].type, fw::Type::D2);
  EXPECT_EQ(dt->fields[dt->fields[amount].sign].name, "accumulator_12_applied_amount_action");
  EXPECT_EQ(l.trailer_counts, std::vector<std::string>{"DT"});
}

TEST(FixedWidthLayout, GeneratedFromTheVendorCsvItIsTheCommittedLayout) {
  const std::string yaml =
      fw::layout_yaml_from_csv(read(TEST_DATA_DIR "/esi/rxaccum_1700_layout.csv"), "x.csv");
  const std::string committed = read(SOURCE_DIR "/schemas/layouts/esi_rxaccum_v10.yaml");
  // Everything from record_length on is generated, unchanged.
  EXPECT_EQ(yaml.substr(yaml.find("record_length")),
            committed.substr(committed.find("record_length")));
}

TEST(FixedWidthLayout, EveryProblemNamesItsLine) {
  const std::string e = layout_error(R"(name: bad
record_length: 10
discriminator: { start: 1, end: 1 }
records:
  A:
    - { name: a, start: 1, end: 3, type: AN }
    - { name: b, start: 3, end: 5, type: N }
    - { name: c, start: 7, end: 9, type: D9 }
  B:
    - { name: a, start: 1, end: 1, type: AN }
    - { name: s, start: 2, end: 2, type: SIGN, sign_of: a }
    - { name: z, start: 3, end: 8, type: N, colour: red }
)");
  EXPECT_NE(e.find("l.yaml:7: record A: field b (3-5) overlaps a (1-3)"), std::string::npos) << e;
  EXPECT_NE(e.find("l.yaml:8: record A field c: type 'D9' is unknown"), std::string::npos) << e;
  EXPECT_NE(e.find("l.yaml:5: record A: its fields end at byte 5, but record_length is 10"),
            std::string::npos)
      << e;
  EXPECT_NE(e.find("l.yaml:11: record B field s: sign_of names a, which is not N, D2 or D3"),
            std::string::npos)
      << e;
  EXPECT_NE(e.find("l.yaml:12: field: unknown key 'colour'"), std::string::npos) << e;
  EXPECT_NE(e.find("l.yaml:9: record B: its fields end at byte 8"), std::string::npos) << e;
}

TEST(FixedWidthLayout, AGapNamesTheBytesAndTheLine) {
  const std::string e = layout_error(R"(name: gap
record_length: 6
discriminator: { start: 1, end: 1 }
records:
  A:
    - { name: a, start: 1, end: 2, type: AN }
    - { name: b, start: 4, end: 6, type: AN }
)");
  EXPECT_NE(e.find("l.yaml:7: record A: bytes 3-3 before field b (4-6) belong to no field"),
            std::string::npos)
      << e;
}

// Found by fuzz_fixedwidth: a key that is a mapping, or a trailer_count that
// is no mapping, threw a yaml-cpp exception instead of a LayoutError.
TEST(FixedWidthLayout, NonScalarKeysAndShapesAreProblemsNotCrashes) {
  const std::string e = layout_error(R"(name: odd
record_length: 1
discriminator: { start: 1, end: 1, [x]: 1 }
trailer_count: 3
records:
  ? { a: b }
  : - { name: a, start: 1, end: 1, type: AN }
  B:
    - { name: a, start: 1, end: 1, type: AN }
)");
  EXPECT_NE(e.find("l.yaml:3: discriminator: a key must be a plain name"), std::string::npos) << e;
  EXPECT_NE(e.find("l.yaml:4: trailer_count: must be a mapping {field, counts}"), std::string::npos)
      << e;
  EXPECT_NE(e.find("l.yaml:6: records: a record type's code must be a plain string"),
            std::string::npos)
      << e;
}

TEST(FixedWidthLayout, CsvProblemsNameTheCsvLine) {
  try {
    fw::layout_yaml_from_csv(
        "record,field,start,end,type,notes\nA,code,1,1,AN,A\nA,x,2,4,N,\nA,y,4,6,ZZ,\n"
        "B,code,1,1,AN,B\nB,y,2,6,N,\n",
        "v.csv");
    FAIL() << "no error";
  } catch (const fw::LayoutError& e) {
    const std::string m = e.what();
    EXPECT_NE(m.find("v.csv:4: record A field y: type 'ZZ' is unknown"), std::string::npos) << m;
    EXPECT_NE(m.find("v.csv:4: record A: field y (4-6) overlaps x (2-4)"), std::string::npos) << m;
  }
}

TEST(FixedWidthParser, DecodesEachTypeAppliesSignsAndReadsLatin1AsUtf8) {
  const fw::Layout l = fw::load_layout(tiny_yaml, "tiny.yaml");
  const std::string file = std::string("H20240229 \n") +
                           "DJos\xE9"
                           "0150-\n" +
                           "Dab  0007+\n" + "D    00   \n" + "T000000003\n";
  Parsed p = parse(l, file);
  EXPECT_TRUE(p.problems.empty()) << p.problems.front();
  ASSERT_EQ(p.rows.size(), 5u);
  EXPECT_EQ(p.rows[0], "1:H|H|20240229|null");
  EXPECT_EQ(p.rows[1], "2:D|D|Jos\xC3\xA9|-150|-1");
  EXPECT_EQ(p.rows[2], "3:D|D|ab|7|1");
  EXPECT_EQ(p.rows[3], "4:D|D|null|0|null");
  EXPECT_EQ(p.rows[4], "5:T|T|3");
}

// The parser trims eight bytes at a time: every length of text and padding
// in a wide field, and numbers with spaces on either side.
TEST(FixedWidthParser, TrailingSpacesAreTrimmedAtEveryLength) {
  const fw::Layout l = fw::load_layout(R"(name: wide
record_length: 35
discriminator: { start: 1, end: 1 }
records:
  W:
    - { name: code, start: 1, end: 1, type: AN }
    - { name: sign, start: 2, end: 2, type: SIGN, sign_of: n }
    - { name: text, start: 3, end: 23, type: AN }
    - { name: n, start: 24, end: 35, type: N }
)",
                                       "wide.yaml");
  for (size_t len = 0; len <= 21; ++len) {
    for (const char* fill : {"x", "x y"}) {
      std::string text;
      while (text.size() < len) text += fill;
      text.resize(len);
      if (len > 0 && text.back() == ' ') text.back() = 'z';
      for (const std::string n : {"12", " 12 ", "      123456", "123456789012"}) {
        std::string record = "W-" + text + std::string(21 - len, ' ') + n;
        record += std::string(35 - record.size(), ' ');
        Parsed p = parse(l, record + "\n");
        ASSERT_TRUE(p.problems.empty()) << record << ": " << p.problems.front();
        const std::string want_text = len == 0 ? "null" : text;
        EXPECT_EQ(p.rows.at(0), "1:W|W|-1|" + want_text + "|-" + std::to_string(std::stoll(n)))
            << record;
      }
    }
  }
}

TEST(FixedWidthParser, CrlfAndAnyChunkingReadTheSame) {
  EsiExpected ex;
  EsiSynthOptions o;
  o.records = 20;
  const std::string lf = esi_synth_file(esi(), o);
  o.crlf = true;
  const std::string crlf = esi_synth_file(esi(), o, &ex);
  Parsed a = parse(esi(), lf), b = parse(esi(), crlf, 1), c = parse(esi(), crlf, 4093);
  EXPECT_TRUE(a.problems.empty()) << a.problems.front();
  EXPECT_EQ(a.rows.size(), 22u);
  EXPECT_EQ(a.rows, b.rows);
  EXPECT_EQ(a.rows, c.rows);
  EXPECT_TRUE(b.problems.empty());
}

TEST(FixedWidthParser, StructuralProblemsNameTheLine) {
  const fw::Layout l = fw::load_layout(tiny_yaml, "tiny.yaml");
  auto problems = [&](const std::string& file) { return parse(l, file).problems; };
  EXPECT_EQ(
      problems("H20240229 \nDab  0007+\nT000000002\n"),
      std::vector<std::string>{"line 3 T: the trailer's count is 2 but the file has 1 D records"});
  EXPECT_EQ(
      problems("H20240229 \nDab  0007+\nDab  00"),
      (std::vector<std::string>{"line 3 'Dab  00': the record is 7 bytes, the layout's are 10",
                                "line 3: no T trailer record: the file may be truncated"}));
  EXPECT_EQ(problems("H20240229 \nXab  0007+\nT000000000\n"),
            std::vector<std::string>{"line 2 'X': unknown record type"});
  EXPECT_EQ(
      problems("Dab  0007+\nH20240229 \nT000000001\n"),
      (std::vector<std::string>{"line 1 D 'Dab  0007+': the file must begin with a H header",
                                "line 2 H 'H20240229 ': the header must be the first record"}));
  EXPECT_EQ(
      problems("H20240229 \nH20240229 \nT000000000\n"),
      std::vector<std::string>{"line 2 H 'H20240229 ': a second header (the first is line 1)"});
  EXPECT_EQ(problems("H20240229 \nT000000000\nDab  0007+\n"),
            std::vector<std::string>{"line 3 D 'Dab  0007+': a record after the trailer (line 2)"});
  EXPECT_EQ(problems(""), std::vector<std::string>{"line 0: the file is empty"});
}

TEST(FixedWidthParser, FieldProblemsNameLineRecordFieldAndBytes) {
  const fw::Layout l = fw::load_layout(tiny_yaml, "tiny.yaml");
  Parsed p = parse(l, "H20241301 \nDa\x01  0007+\nDab  00x7*\nT000000002\n");
  EXPECT_EQ(p.problems,
            (std::vector<std::string>{"line 1 H date '20241301': not a date (CCYYMMDD)",
                                      "line 2 D text 'a\\x01  ': a control byte in text",
                                      "line 3 D cents '00x7': not an amount",
                                      "line 3 D sign '*': not a sign (+, - or a space)"}));
  EXPECT_EQ(p.rows[2].substr(0, 4), "3:D!");
}

TEST(FixedWidthParser, TheSynthesizedFileCountsAsItsGeneratorSays) {
  EsiExpected ex;
  EsiSynthOptions o;
  o.records = 500;
  const std::string file = esi_synth_file(esi(), o, &ex);
  const fw::RecordType& dt = *esi().find("DT");
  const int kind = dt.index("transmission_file_type"),
            status = dt.index("transaction_response_status"),
            policy = dt.index("cardholder_id_alternate");
  std::map<std::string, std::pair<int64_t, int64_t>> totals;
  uint64_t dq = 0, accepted = 0;
  fw::FileParser p(
      esi(), [&](uint64_t, const fw::RecordType& t, const std::vector<fw::Value>& v, bool ok) {
        ASSERT_TRUE(ok);
        if (t.code != "DT") return;
        const bool is_dq = v[kind].text == "DQ", is_a = !v[status].null && v[status].text == "A";
        dq += is_dq;
        accepted += is_a;
        auto& total = totals[std::string(v[policy].text)];
        if (!is_dq && !is_a) return;
        for (int b = 1; b <= 12; ++b) {
          const std::string n = "accumulator_" + std::to_string(b) + "_";
          const fw::Value& q = v[t.index(n + "qualifier")];
          const fw::Value& amount = v[t.index(n + "applied_amount")];
          if (q.null) continue;
          if (q.text == "04") total.first += amount.number;
          if (q.text == "05") total.second += amount.number;
        }
      });
  p.feed(file);
  p.finish();
  EXPECT_EQ(p.problem_count(), 0u);
  EXPECT_EQ(p.counts()[1], 500u);
  EXPECT_EQ(dq, ex.dq);
  EXPECT_EQ(accepted, ex.dr_accepted);
  EXPECT_EQ(totals, ex.totals);
}

TEST(FixedWidthParser, DecimalText) {
  EXPECT_EQ(fw::decimal_text(-150, 2), "-1.50");
  EXPECT_EQ(fw::decimal_text(7, 3), "0.007");
  EXPECT_EQ(fw::decimal_text(0, 2), "0.00");
  EXPECT_EQ(fw::decimal_text(123456, 0), "123456");
}

TEST(FixedWidthCli, CheckPrintsEveryProblemAndExitsOne) {
  EsiSynthOptions o;
  o.records = 3;
  std::string file = esi_synth_file(esi(), o);
  file.replace(1700 + 1 + 315, 8, "20241340");  // line 2's date_of_service
  const std::string path = ::testing::TempDir() + "fw_check.txt";
  std::ofstream(path, std::ios::binary) << file.substr(0, file.size() - 600);  // truncated trailer
  auto run = [](const std::string& cmd, int* rc) {
    std::string out;
    FILE* f = popen(cmd.c_str(), "r");
    std::array<char, 4096> buf;
    for (size_t n; (n = fread(buf.data(), 1, buf.size(), f)) > 0;) out.append(buf.data(), n);
    *rc = WEXITSTATUS(pclose(f));
    return out;
  };
  int rc = 0;
  const std::string layout = SOURCE_DIR "/schemas/layouts/esi_rxaccum_v10.yaml";
  std::string out =
      run(std::string(TASKHOST_BIN) + " fixedwidth check " + path + " --layout " + layout, &rc);
  EXPECT_EQ(rc, 1) << out;
  EXPECT_NE(out.find("line 2 DT date_of_service '20241340': not a date (CCYYMMDD)"),
            std::string::npos)
      << out;
  EXPECT_NE(out.find("line 5 '                ': the record is 1101 bytes"), std::string::npos)
      << out;
  EXPECT_NE(out.find("5 lines (HD 1, DT 3, TR 0); 3 problems (2 structural, 1 records with field "
                     "problems)"),
            std::string::npos)
      << out;
  out = run(
      std::string(TASKHOST_BIN) + " fixedwidth check " + path + " --layout " + layout + " --json",
      &rc);
  EXPECT_EQ(rc, 1);
  const auto j = nlohmann::json::parse(out);
  EXPECT_EQ(j["problem_count"], 3);
  EXPECT_EQ(j["problems"][0]["field"], "date_of_service");
  EXPECT_EQ(j["records"]["DT"], 3);
  out = run(std::string(TASKHOST_BIN) + " fixedwidth gen " + TEST_DATA_DIR +
                "/esi/rxaccum_1700_layout.csv",
            &rc);
  EXPECT_EQ(rc, 0);
  EXPECT_NE(out.find("trailer_count: {field: record_count, counts: [DT]}"), std::string::npos);
}
