// SigV4 against the AWS signing test suite (tests/data/sigv4): the
// canonical request, string to sign and signature of every case, in both
// header and query (presigned) form, byte for byte.
#include "services/sigv4.hpp"

#include <gtest/gtest.h>
#include <nlohmann/json.hpp>

#include "common/error.hpp"
#include "common/process.hpp"
#include "common/sha256.hpp"

#include <filesystem>
#include <fstream>
#include <random>
#include <sstream>

namespace taskhost::sigv4 {
namespace {

namespace fs = std::filesystem;
using Json = nlohmann::json;

const fs::path suite = fs::path(TEST_DATA_DIR) / "sigv4";

std::string slurp(const fs::path& p) {
  std::ifstream in(p, std::ios::binary);
  std::stringstream s;
  s << in.rdbuf();
  return s.str();
}

std::string decode(const std::string& s) {
  std::string out;
  for (size_t i = 0; i < s.size(); ++i)
    if (s[i] == '%' && i + 2 < s.size()) {
      out += static_cast<char>(std::stoi(s.substr(i + 1, 2), nullptr, 16));
      i += 2;
    } else {
      out += s[i];
    }
  return out;
}

std::time_t parse_time(const std::string& iso) {
  std::tm tm{};
  strptime(iso.c_str(), "%Y-%m-%dT%H:%M:%SZ", &tm);
  return timegm(&tm);
}

struct Case {
  Request request;
  Credentials credentials;
  Options options;
  std::time_t now = 0;
  std::chrono::seconds expires{0};
};

// request.txt: "METHOD PATH[?QUERY] HTTP/1.1", headers (a line starting with
// whitespace continues the previous one), a blank line, the body.
Case load(const fs::path& dir) {
  Case c;
  Json ctx = Json::parse(slurp(dir / "context.json"));
  c.credentials = {ctx["credentials"]["access_key_id"], ctx["credentials"]["secret_access_key"],
                   ctx["credentials"].value("token", "")};
  c.options.region = ctx["region"];
  c.options.service = ctx["service"];
  c.options.normalize_path = ctx["normalize"];
  c.options.content_sha256_header = ctx["sign_body"];
  c.options.omit_session_token = ctx.value("omit_session_token", false);
  c.now = parse_time(ctx["timestamp"]);
  c.expires = std::chrono::seconds(ctx["expiration_in_seconds"].get<int>());

  std::string text = slurp(dir / "request.txt");
  size_t blank = text.find("\n\n");
  std::string head = text.substr(0, blank == std::string::npos ? text.size() : blank);
  std::string body = blank == std::string::npos ? "" : text.substr(blank + 2);
  std::istringstream lines(head);
  std::string line;
  std::getline(lines, line);
  c.request.method = line.substr(0, line.find(' '));
  std::string target = line.substr(line.find(' ') + 1, line.rfind(' ') - line.find(' ') - 1);
  c.request.path = target.substr(0, target.find('?'));
  if (auto q = target.find('?'); q != std::string::npos) {
    std::istringstream params(target.substr(q + 1));
    for (std::string p; std::getline(params, p, '&');) {
      auto eq = p.find('=');
      c.request.query.emplace_back(decode(p.substr(0, eq)),
                                   eq == std::string::npos ? "" : decode(p.substr(eq + 1)));
    }
  }
  while (std::getline(lines, line)) {
    if (!line.empty() && (line[0] == ' ' || line[0] == '\t')) {
      c.request.headers.back().second += "\n" + line;
      continue;
    }
    auto colon = line.find(':');
    c.request.headers.emplace_back(line.substr(0, colon), line.substr(colon + 1));
  }
  c.request.payload_sha256 = sha256_hex(body);
  return c;
}

std::string query_param(const std::string& signed_request, const std::string& name) {
  std::string first = signed_request.substr(0, signed_request.find('\n'));
  auto at = first.find(name + "=");
  auto end = first.find_first_of("& ", at);
  return decode(first.substr(at + name.size() + 1, end - at - name.size() - 1));
}

class Suite : public ::testing::TestWithParam<std::string> {};

TEST_P(Suite, HeaderForm) {
  const fs::path dir = suite / GetParam();
  Case c = load(dir);
  Signature s = sign_headers(c.request, c.credentials, c.options, c.now);
  EXPECT_EQ(s.canonical_request, slurp(dir / "header-canonical-request.txt"));
  EXPECT_EQ(s.string_to_sign, slurp(dir / "header-string-to-sign.txt"));
  EXPECT_EQ(s.signature, slurp(dir / "header-signature.txt"));
  std::string authorization = s.add.back().second;
  EXPECT_NE(slurp(dir / "header-signed-request.txt").find("Authorization:" + authorization + "\n"),
            std::string::npos)
      << authorization;
}

TEST_P(Suite, QueryForm) {
  const fs::path dir = suite / GetParam();
  Case c = load(dir);
  Signature s = sign_query(c.request, c.credentials, c.options, c.now, c.expires);
  EXPECT_EQ(s.canonical_request, slurp(dir / "query-canonical-request.txt"));
  EXPECT_EQ(s.string_to_sign, slurp(dir / "query-string-to-sign.txt"));
  EXPECT_EQ(s.signature, slurp(dir / "query-signature.txt"));
  const std::string signed_request = slurp(dir / "query-signed-request.txt");
  for (const auto& [name, value] : s.add)
    EXPECT_EQ(query_param(signed_request, name), value) << name;
}

// The cases present; none when the suite is missing, which SuiteIsThere
// reports (test discovery must not abort).
std::vector<std::string> cases() {
  std::vector<std::string> out;
  std::error_code ec;
  for (const auto& e : fs::directory_iterator(suite, ec))
    if (e.is_directory()) out.push_back(e.path().filename().string());
  std::sort(out.begin(), out.end());
  return out;
}

GTEST_ALLOW_UNINSTANTIATED_PARAMETERIZED_TEST(Suite);
INSTANTIATE_TEST_SUITE_P(Aws, Suite, ::testing::ValuesIn(cases()), [](const auto& info) {
  std::string n = info.param;
  std::replace(n.begin(), n.end(), '-', '_');
  return n;
});

TEST(SigV4, SuiteIsThere) { EXPECT_GE(cases().size(), 38u) << "missing cases in " << suite; }

TEST(SigV4, UriEncodeKeepsOnlyUnreserved) {
  EXPECT_EQ(uri_encode("a b+c/d~e", false), "a%20b%2Bc/d~e");
  EXPECT_EQ(uri_encode("a b+c/d~e", true), "a%20b%2Bc%2Fd~e");
  EXPECT_EQ(uri_encode("ü", true), "%C3%BC");
}

TEST(SigV4, PresignedExpiryIsBounded) {
  Request r{"GET", "/b/k", {}, {{"Host", "s3.example"}}, "UNSIGNED-PAYLOAD"};
  Options o;
  o.region = "us-east-1";
  o.service = "s3";
  const Credentials c{"a", "b", ""};
  EXPECT_THROW(sign_query(r, c, o, 0, std::chrono::seconds(0)), Error);
  EXPECT_THROW(sign_query(r, c, o, 0, std::chrono::hours(169)), Error);
  EXPECT_NO_THROW(sign_query(r, c, o, 0, std::chrono::hours(168)));
}

// Generated S3 requests signed by us and by botocore must agree: keys with
// spaces, '+', unicode and reserved characters, query parameters, extra
// headers, session tokens, header and presigned forms.
TEST(SigV4, AgreesWithBotocore) {
  std::mt19937 rng(526);
  auto pick = [&](const std::vector<std::string>& from) { return from[rng() % from.size()]; };
  const std::vector<std::string> pieces = {"a", "Z9", " ", "+", "ü", "ሴ",   "~", "!",
                                           "(", "*",  "'", "=", "&", "%41", "/", "claims"};
  Json input = Json::array();
  std::vector<Signature> ours;
  for (int i = 0; i < 200; ++i) {
    std::string key;
    for (int n = 1 + rng() % 8; n > 0; --n) key += pick(pieces);
    const int expires = rng() % 2 ? 0 : 1 + static_cast<int>(rng() % 604800);
    Request r;
    r.method = expires ? "GET" : pick({"GET", "PUT", "HEAD", "DELETE", "POST"});
    r.path = "/bucket-" + std::to_string(i % 3) + "/" + key;
    if (rng() % 2) r.query = {{"list-type", "2"}, {"prefix", pick(pieces) + key}};
    if (rng() % 3 == 0) r.query.emplace_back("uploads", "");
    r.headers = {{"Host", "127.0.0.1:4568"}};
    if (rng() % 2) r.headers.emplace_back("Content-Type", "application/pdf");
    if (rng() % 3 == 0) r.headers.emplace_back("x-amz-meta-claim", "  526  EZ ");
    std::string body = r.method == "PUT" || r.method == "POST" ? "body of " + key : "";
    const std::time_t now = 1700000000 + static_cast<std::time_t>(rng() % 100000000);
    const Credentials c{"AKID" + std::to_string(i), "secret/" + key,
                        rng() % 4 == 0 ? "token+" + std::to_string(i) : ""};
    Options o;
    o.region = pick({"us-east-1", "us-gov-west-1", "eu-central-1"});
    o.service = "s3";
    std::string url = "http://127.0.0.1:4568" + uri_encode(r.path, false);
    std::string q;
    for (const auto& [k, v] : r.query)
      q += (q.empty() ? "" : "&") + uri_encode(k, true) + "=" + uri_encode(v, true);
    if (!q.empty()) url += "?" + q;
    Json headers = Json::object();
    for (const auto& [k, v] : r.headers)
      if (k != "Host") headers[k] = v;
    if (expires) {
      r.payload_sha256 = "UNSIGNED-PAYLOAD";
      r.headers = {{"Host", "127.0.0.1:4568"}};  // presigned URLs sign the host alone
      headers = Json::object();
      ours.push_back(sign_query(r, c, o, now, std::chrono::seconds(expires)));
    } else {
      r.payload_sha256 = sha256_hex(body);
      o.content_sha256_header = true;
      ours.push_back(sign_headers(r, c, o, now));
    }
    input.push_back({{"method", r.method},
                     {"url", url},
                     {"headers", headers},
                     {"body", body},
                     {"region", o.region},
                     {"access_key", c.access_key_id},
                     {"secret_key", c.secret_access_key},
                     {"token", c.session_token},
                     {"time", now},
                     {"expires", expires}});
  }
  const fs::path file =
      fs::temp_directory_path() / ("sigv4-botocore-" + std::to_string(::getpid()));
  std::ofstream(file) << input.dump();
  ProcessResult p = run_process(
      {"/usr/bin/python3", SOURCE_DIR "/tests/unit/services/botocore_sign.py", file.string()});
  fs::remove(file);
  ASSERT_EQ(p.exit_code, 0) << p.output;
  Json theirs = Json::parse(p.output);
  ASSERT_EQ(theirs.size(), ours.size());
  for (size_t i = 0; i < ours.size(); ++i)
    EXPECT_EQ(ours[i].signature, theirs[i]["signature"]) << input[i].dump() << "\n"
                                                         << ours[i].canonical_request;
}

}  // namespace
}  // namespace taskhost::sigv4
