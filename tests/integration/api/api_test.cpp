// The HTTP API as a client sees it: a real `taskhost serve` process on
// loopback (and on a unix socket), a real database, keys made by the CLI.
#include <curl/curl.h>
#include <gtest/gtest.h>
#include <signal.h>
#include <sys/wait.h>
#include <unistd.h>

#include <chrono>
#include <filesystem>
#include <fstream>
#include <nlohmann/json.hpp>
#include <sstream>
#include <thread>

#include "support/test_database.hpp"

namespace taskhost {
namespace {

namespace fs = std::filesystem;
using Json = nlohmann::json;

struct Reply {
  long status = 0;
  std::string body, content_type;
  Json json() const { return Json::parse(body); }
};

size_t collect(char* data, size_t size, size_t n, void* out) {
  static_cast<std::string*>(out)->append(data, size * n);
  return size * n;
}

// One request with libcurl; key empty: no Authorization header.
Reply request(const std::string& method, const std::string& url, const std::string& key,
              const std::string& body = "", const std::vector<std::string>& headers = {},
              const std::string& unix_socket = "") {
  CURL* c = curl_easy_init();
  Reply r;
  curl_slist* list = nullptr;
  if (!key.empty()) list = curl_slist_append(list, ("Authorization: Bearer " + key).c_str());
  for (const auto& h : headers) list = curl_slist_append(list, h.c_str());
  if (!body.empty()) list = curl_slist_append(list, "Content-Type: application/json");
  curl_easy_setopt(c, CURLOPT_URL, url.c_str());
  curl_easy_setopt(c, CURLOPT_CUSTOMREQUEST, method.c_str());
  if (!body.empty() || method == "POST") {
    curl_easy_setopt(c, CURLOPT_POSTFIELDS, body.c_str());
    curl_easy_setopt(c, CURLOPT_POSTFIELDSIZE, static_cast<long>(body.size()));
  }
  if (!unix_socket.empty()) curl_easy_setopt(c, CURLOPT_UNIX_SOCKET_PATH, unix_socket.c_str());
  curl_easy_setopt(c, CURLOPT_HTTPHEADER, list);
  curl_easy_setopt(c, CURLOPT_WRITEFUNCTION, collect);
  curl_easy_setopt(c, CURLOPT_WRITEDATA, &r.body);
  curl_easy_setopt(c, CURLOPT_TIMEOUT, 30L);
  if (curl_easy_perform(c) == CURLE_OK) {
    curl_easy_getinfo(c, CURLINFO_RESPONSE_CODE, &r.status);
    char* type = nullptr;
    curl_easy_getinfo(c, CURLINFO_CONTENT_TYPE, &type);
    if (type) r.content_type = type;
  }
  curl_slist_free_all(list);
  curl_easy_cleanup(c);
  return r;
}

class Api : public ::testing::Test {
 protected:
  void SetUp() override {
    fs::create_directories(tmp_);
    ASSERT_EQ(cli({"schema", "install", BUNDLED_SCHEMA_DIR "/hello.yaml"}).first, 0);
  }
  void TearDown() override {
    if (server_ > 0) {
      ::kill(server_, SIGTERM);
      int status = 0;
      ::waitpid(server_, &status, 0);
      EXPECT_TRUE(WIFEXITED(status) && WEXITSTATUS(status) == 0) << "serve stops on SIGTERM";
    }
    fs::remove_all(tmp_);
  }

  // Runs the CLI; returns its exit code and stdout.
  std::pair<int, std::string> cli(const std::vector<std::string>& args) {
    std::string cmd = std::string(TASKHOST_BIN) + " --home " + tmp_.string() + " --database-url '" +
                      db_.conninfo() + "' --plugin-dir " BUNDLED_PLUGIN_DIR;
    for (const auto& a : args) cmd += " '" + a + "'";
    cmd += " 2>>" + (tmp_ / "cli.err").string();
    FILE* p = ::popen(cmd.c_str(), "r");
    std::string out;
    char buf[4096];
    while (size_t n = std::fread(buf, 1, sizeof buf, p)) out.append(buf, n);
    int status = ::pclose(p);
    while (!out.empty() && out.back() == '\n') out.pop_back();
    return {WEXITSTATUS(status), out};
  }

  std::string key(const std::string& actor, const std::string& role) {
    auto [code, token] = cli({"api-key", "create", "--actor", actor, "--role", role});
    EXPECT_EQ(code, 0);
    return token;
  }

  // Starts `taskhost serve` with these arguments; returns its base URL.
  std::string serve(const std::vector<std::string>& args = {"--listen", "127.0.0.1:0"}) {
    const fs::path out = tmp_ / "serve.out";
    server_ = ::fork();
    if (server_ == 0) {
      std::vector<std::string> argv{TASKHOST_BIN,       "--home",       tmp_.string(),
                                    "--database-url",   db_.conninfo(), "--plugin-dir",
                                    BUNDLED_PLUGIN_DIR, "serve"};
      argv.insert(argv.end(), args.begin(), args.end());
      std::vector<char*> raw;
      for (auto& a : argv) raw.push_back(a.data());
      raw.push_back(nullptr);
      std::freopen(out.c_str(), "w", stdout);
      std::freopen((tmp_ / "serve.err").c_str(), "w", stderr);
      ::execv(TASKHOST_BIN, raw.data());
      ::_exit(127);
    }
    const std::string prefix = "taskhost serve: listening on ";
    for (int i = 0; i < 300; ++i) {
      std::ifstream in(out);
      std::string line;
      if (std::getline(in, line) && line.rfind(prefix, 0) == 0) return line.substr(prefix.size());
      std::this_thread::sleep_for(std::chrono::milliseconds(100));
    }
    ADD_FAILURE() << "serve did not start";
    return "";
  }

  std::string server_log() {
    std::ifstream in(tmp_ / "serve.err");
    std::stringstream s;
    s << in.rdbuf();
    return s.str();
  }

  test::TestDatabase db_;
  fs::path tmp_ =
      fs::temp_directory_path() / ("taskhost-api-" + std::to_string(::getpid()) + "-" +
                                   ::testing::UnitTest::GetInstance()->current_test_info()->name());
  pid_t server_ = -1;
};

TEST_F(Api, HealthReadinessAndKeysRequired) {
  const std::string base = serve();
  EXPECT_EQ(request("GET", base + "/healthz", "").status, 200);
  EXPECT_EQ(request("GET", base + "/readyz", "").json()["status"], "ready");
  auto r = request("GET", base + "/v1/runs", "");
  EXPECT_EQ(r.status, 401);
  EXPECT_EQ(r.content_type, "application/problem+json");
  EXPECT_EQ(r.json()["status"], 401);
  const std::string good = key("ops", "operator");
  std::string forged = good;
  forged.back() = forged.back() == 'A' ? 'B' : 'A';
  EXPECT_EQ(request("GET", base + "/v1/runs", forged).status, 401) << "one character off";
  EXPECT_EQ(request("GET", base + "/v1/runs", good).status, 200);
  EXPECT_EQ(request("GET", base + "/v1/nothing", good).status, 404);
  EXPECT_EQ(request("DELETE", base + "/v1/runs", good).status, 405);
  const std::string log = server_log();
  EXPECT_NE(log.find("API key " + good.substr(3, 12) + " refused"), std::string::npos) << log;
  EXPECT_EQ(log.find(forged.substr(16)), std::string::npos) << "the secret is never logged";
}

TEST_F(Api, SubmitIdempotentlyListWithACursorAndControlByRole) {
  const std::string base = serve();
  const std::string ops = key("ops", "operator"), viewer = key("auditor", "viewer");
  const std::string body = R"({"schema":"hello","params":{"count":2}})";
  auto first = request("POST", base + "/v1/runs", ops, body, {"Idempotency-Key: batch-7"});
  ASSERT_EQ(first.status, 201) << first.body;
  EXPECT_EQ(first.json()["actor"], "api:ops");
  EXPECT_EQ(first.json()["params"]["name"], "world") << "defaults filled";
  auto again = request("POST", base + "/v1/runs", ops, body, {"Idempotency-Key: batch-7"});
  EXPECT_EQ(again.status, 200);
  EXPECT_EQ(again.json()["id"], first.json()["id"]);
  auto other = request("POST", base + "/v1/runs", ops, body);
  ASSERT_EQ(other.status, 201);

  auto bad = request("POST", base + "/v1/runs", ops, R"({"schema":"hello","params":{"count":0}})");
  EXPECT_EQ(bad.status, 422);
  EXPECT_NE(bad.json()["detail"].get<std::string>().find("params.count"), std::string::npos);
  EXPECT_EQ(request("POST", base + "/v1/runs", ops, "{not json").status, 422);
  EXPECT_EQ(request("POST", base + "/v1/runs", ops, R"({"schema":"nope"})").status, 404);
  EXPECT_EQ(request("POST", base + "/v1/runs", viewer, body).status, 403);

  // Newest first, a page at a time.
  auto page = request("GET", base + "/v1/runs?limit=1", viewer).json();
  ASSERT_EQ(page["runs"].size(), 1u);
  EXPECT_EQ(page["runs"][0]["id"], other.json()["id"]);
  auto next =
      request("GET", base + "/v1/runs?limit=1&after=" + page["next"].get<std::string>(), viewer)
          .json();
  ASSERT_EQ(next["runs"].size(), 1u);
  EXPECT_EQ(next["runs"][0]["id"], first.json()["id"]);
  EXPECT_EQ(request("GET", base + "/v1/runs?state=running", viewer).json()["runs"].size(), 0u);
  EXPECT_EQ(request("GET", base + "/v1/runs?limit=0", viewer).status, 422);

  const std::string id = first.json()["id"];
  auto shown = request("GET", base + "/v1/runs/" + id, viewer);
  EXPECT_EQ(shown.status, 200);
  EXPECT_EQ(shown.json()["transitions"][0]["to"], "queued");
  EXPECT_EQ(request("POST", base + "/v1/runs/" + id + "/cancel", viewer).status, 403);
  auto cancelled =
      request("POST", base + "/v1/runs/" + id + "/cancel", ops, R"({"reason":"wrong batch"})");
  EXPECT_EQ(cancelled.status, 200) << cancelled.body;
  EXPECT_EQ(cancelled.json()["state"], "cancelled");
  EXPECT_EQ(request("POST", base + "/v1/runs/" + id + "/cancel", ops).status, 409)
      << "a final run cannot be cancelled again";
  EXPECT_EQ(request("GET", base + "/v1/runs/" + std::string(36, '0'), viewer).status, 404);
  EXPECT_EQ(request("GET", base + "/v1/runs/%27;drop", viewer).status, 422);

  auto transitions = request("GET", base + "/v1/runs/" + id, viewer).json()["transitions"];
  EXPECT_EQ(transitions.back()["actor"], "api:ops");
  EXPECT_EQ(transitions.back()["reason"], "wrong batch");
}

TEST_F(Api, AdminsManageKeysAndSchemasAndReadTheAudit) {
  const std::string base = serve();
  const std::string admin = key("root", "admin");
  auto made = request("POST", base + "/v1/api-keys", admin,
                      R"({"actor":"deploy-bot","roles":["operator"],"expires_in_seconds":3600})");
  ASSERT_EQ(made.status, 201) << made.body;
  const std::string token = made.json()["token"];
  EXPECT_EQ(request("GET", base + "/v1/runs", token).status, 200);
  EXPECT_EQ(request("GET", base + "/v1/api-keys", token).status, 403);
  auto keys = request("GET", base + "/v1/api-keys", admin);
  EXPECT_EQ(keys.body.find(token.substr(16)), std::string::npos) << "never the secret";
  EXPECT_EQ(keys.json()["keys"].size(), 2u);
  EXPECT_EQ(
      request("POST", base + "/v1/api-keys", admin, R"({"actor":"x","roles":["root"]})").status,
      422);

  const std::string id = made.json()["id"];
  EXPECT_EQ(request("DELETE", base + "/v1/api-keys/" + id, admin).status, 200);
  EXPECT_EQ(request("GET", base + "/v1/runs", token).status, 401) << "revoked";
  EXPECT_EQ(request("DELETE", base + "/v1/api-keys/" + id, admin).status, 404);

  std::ifstream in(BUNDLED_SCHEMA_DIR "/hello.yaml");
  std::stringstream yaml;
  yaml << in.rdbuf();
  std::string v2 = yaml.str();
  const auto version_line = v2.find("version: 1.0.0+");
  v2.replace(version_line, v2.find('\n', version_line) - version_line, "version: 1.0.1");
  auto installed = request("POST", base + "/v1/schemas", admin,
                           Json{{"yaml", v2}, {"file", "hello-1.0.1.yaml"}}.dump());
  EXPECT_EQ(installed.status, 201) << installed.body;
  EXPECT_EQ(installed.json()["outcome"], "installed");
  auto broken = request("POST", base + "/v1/schemas", admin,
                        Json{{"yaml", "name: x\nversion: one\n"}, {"file", "x.yaml"}}.dump());
  EXPECT_EQ(broken.status, 422);
  EXPECT_NE(broken.json()["detail"].get<std::string>().find("x.yaml:2:"), std::string::npos)
      << broken.body;
  EXPECT_EQ(request("GET", base + "/v1/schemas/hello", admin).json()["version"], "1.0.1");

  auto audit = request("GET", base + "/v1/audit?action=api_key", admin).json()["entries"];
  ASSERT_EQ(audit.size(), 3u) << audit.dump();
  EXPECT_EQ(audit[1]["action"], "api_key.created");
  EXPECT_EQ(audit[1]["actor"], "api:root");
  EXPECT_EQ(audit[2]["action"], "api_key.revoked");
  EXPECT_EQ(request("GET", base + "/v1/audit/verify", admin).json()["intact"], true);
  auto exported = request("GET", base + "/v1/audit/export?action=schema", admin);
  EXPECT_EQ(exported.content_type, "application/x-ndjson");
  EXPECT_NE(exported.body.find("api:root"), std::string::npos);
}

TEST_F(Api, LimitsRateLimitsAndAUnixSocket) {
  const std::string socket = (tmp_ / "api.sock").string();
  serve({"--unix-socket", socket});
  const std::string ops = key("ops", "operator");
  const std::string base = "http://localhost";
  EXPECT_EQ(request("GET", base + "/v1/runs", ops, "", {}, socket).status, 200);
  EXPECT_EQ(request("POST", base + "/v1/runs", ops, std::string(2 << 20, ' '), {}, socket).status,
            413);
  int refused = 0;
  for (int i = 0; i < 25; ++i)
    refused += request("GET", base + "/v1/runs", "th_000000000000_x", "", {}, socket).status == 429;
  EXPECT_EQ(refused, 5) << "20 failures a minute, then 429";
  EXPECT_EQ(request("GET", base + "/v1/runs", ops, "", {}, socket).status, 429)
      << "the address is throttled, whatever key it brings next";
}

}  // namespace
}  // namespace taskhost
