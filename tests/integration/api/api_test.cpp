// The HTTP API as a client sees it: a real `taskhost serve` process on
// loopback (and on a unix socket), a real database, keys made by the CLI.
#include <curl/curl.h>
#include <gtest/gtest.h>
#include <pwd.h>
#include <signal.h>
#include <strings.h>
#include <sys/wait.h>
#include <unistd.h>

#include <algorithm>
#include <chrono>
#include <filesystem>
#include <fstream>
#include <map>
#include <nlohmann/json.hpp>
#include <regex>
#include <set>
#include <sstream>
#include <thread>

#include "store/audit.hpp"
#include "store/metrics.hpp"
#include "support/fixtures.hpp"
#include "support/openapi.hpp"
#include "support/test_database.hpp"

namespace taskhost {
namespace {

namespace fs = std::filesystem;
using Json = nlohmann::json;

struct Reply {
  long status = 0;
  std::string body, content_type;
  std::string headers;  // as received, lower-cased names kept as sent
  Json json() const { return Json::parse(body); }
};

size_t collect(char* data, size_t size, size_t n, void* out) {
  static_cast<std::string*>(out)->append(data, size * n);
  return size * n;
}

// One request with libcurl; key empty: no Authorization header. Every
// answer is checked against openapi/taskhost.yaml.
Reply request(const std::string& method, const std::string& url, const std::string& key,
              const std::string& body = "", const std::vector<std::string>& headers = {},
              const std::string& unix_socket = "") {
  CURL* c = curl_easy_init();
  Reply r;
  curl_slist* list = nullptr;
  if (!key.empty()) list = curl_slist_append(list, ("Authorization: Bearer " + key).c_str());
  for (const auto& h : headers) list = curl_slist_append(list, h.c_str());
  const bool typed = std::any_of(headers.begin(), headers.end(), [](const std::string& h) {
    return h.rfind("Content-Type:", 0) == 0;
  });
  if (!body.empty() && !typed) list = curl_slist_append(list, "Content-Type: application/json");
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
  curl_easy_setopt(c, CURLOPT_HEADERFUNCTION, collect);
  curl_easy_setopt(c, CURLOPT_HEADERDATA, &r.headers);
  curl_easy_setopt(c, CURLOPT_TIMEOUT, 30L);
  if (curl_easy_perform(c) == CURLE_OK) {
    curl_easy_getinfo(c, CURLINFO_RESPONSE_CODE, &r.status);
    char* type = nullptr;
    curl_easy_getinfo(c, CURLINFO_CONTENT_TYPE, &type);
    if (type) r.content_type = type;
  }
  curl_slist_free_all(list);
  curl_easy_cleanup(c);
  const size_t authority = url.find('/', url.find("//") + 2);
  const std::string path = url.substr(authority, url.find('?', authority) - authority);
  const bool portal_file = path.rfind("/v1/", 0) != 0 && r.status == 200 &&
                           r.content_type.find("json") == std::string::npos;
  if (r.status && !portal_file) {
    if (auto why = test::taskhost_spec().check(method, path, r.status, r.content_type, r.body);
        !why.empty())
      ADD_FAILURE() << "the contract: " << why;
  }
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

  std::string server_log() { return test::slurp(tmp_ / "serve.err"); }

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
  // '+' in a path is itself (build metadata), not a form-encoded space.
  const std::string build = test::bundled_ref("hello.yaml");
  EXPECT_EQ(request("GET", base + "/v1/schemas/" + build, admin).json()["version"],
            build.substr(build.find('@') + 1));

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

// Four eyes through the CLI and the API: a run of a schema requiring
// approval waits until an approver who did not submit it decides; the
// submitter is refused on every path whatever its roles (admin included,
// cli:USER and api:USER being the same person); each step is audited and
// announced; a dry run needs no approval.
TEST_F(Api, FourEyesOnTheCliAndTheApi) {
  std::ifstream in(BUNDLED_SCHEMA_DIR "/hello.yaml");
  std::stringstream yaml;
  yaml << in.rdbuf();
  std::string text = yaml.str();
  text.replace(text.find("name: hello"), 11, "name: four-eyes");
  text +=
      "approval: { required: true, approvers: [admin] }\n"
      "hooks: { url: 'https://hooks.example/taskhost', events: [run.awaiting_approval, "
      "run.approved, run.rejected] }\n";
  std::ofstream(tmp_ / "four-eyes.yaml") << text;
  ASSERT_EQ(cli({"schema", "install", (tmp_ / "four-eyes.yaml").string()}).first, 0);
  const std::string base = serve();
  // The CLI's actor is cli:<OS user>; this key is the same person's.
  const std::string me = ::getpwuid(::geteuid())->pw_name;
  const std::string alice = key("alice", "operator"), bob = key("bob", "admin"),
                    carol = key("carol", "operator"), root = key(me, "admin");
  auto submit = [&](const std::string& who, const std::string& extra = "") {
    auto r = request("POST", base + "/v1/runs", who, R"({"schema":"four-eyes")" + extra + "}");
    EXPECT_EQ(r.status, 201) << r.body;
    return r.json();
  };
  auto decide = [&](const std::string& who, const std::string& id, const std::string& what,
                    const std::string& body = "") {
    return request("POST", base + "/v1/runs/" + id + "/" + what, who, body);
  };

  // The API: the submitter, an operator, then another admin.
  Json run = submit(alice);
  const std::string id = run["id"];
  EXPECT_EQ(run["state"], "awaiting_approval");
  EXPECT_EQ(run["approval"], (Json{{"decision", nullptr}}));
  // What each is offered: the submitter may only withdraw it, an operator
  // who is no approver likewise, another admin may decide.
  auto offered = [&](const std::string& who) {
    return request("GET", base + "/v1/runs/" + id, who).json()["allowed_actions"];
  };
  EXPECT_EQ(offered(alice), Json::array({"cancel"}));
  EXPECT_EQ(offered(carol), Json::array({"cancel"}));
  EXPECT_EQ(offered(bob), Json::array({"approve", "reject", "cancel"}));
  auto own = decide(alice, id, "approve");
  EXPECT_EQ(own.status, 403);
  EXPECT_NE(own.json()["detail"].get<std::string>().find("api:alice submitted run " + id),
            std::string::npos)
      << own.body;
  EXPECT_EQ(decide(carol, id, "approve").status, 403) << "operators are no approvers here";
  EXPECT_EQ(decide(bob, id, "reject").status, 422) << "a rejection needs a reason";
  auto approved = decide(bob, id, "approve", R"({"reason":"checked the batch"})");
  ASSERT_EQ(approved.status, 200) << approved.body;
  EXPECT_EQ(approved.json()["state"], "queued");
  EXPECT_EQ(decide(bob, id, "approve").status, 409) << "decided once";
  EXPECT_EQ(request("GET", base + "/v1/runs/" + id, bob).json()["approval"]["actor"], "api:bob");

  // An admin who submitted, on the API and on the CLI.
  const std::string mine = submit(root)["id"];
  EXPECT_EQ(decide(root, mine, "approve").status, 403);
  auto [code, out] = cli({"runs", "approve", mine});
  EXPECT_EQ(code, 5) << "api:" << me << " submitted it, and cli:" << me << " is the same person";
  auto [submitted_code, submitted] = cli({"run", "four-eyes"});
  ASSERT_EQ(submitted_code, 0);
  EXPECT_NE(submitted.find(" awaits approval by another approver"), std::string::npos) << submitted;
  const std::string by_cli = submitted.substr(4, 36);
  EXPECT_EQ(cli({"runs", "approve", by_cli}).first, 5) << "an admin approving its own run";
  EXPECT_EQ(decide(root, by_cli, "approve").status, 403) << "nor through its key";
  EXPECT_EQ(decide(bob, by_cli, "reject", R"({"reason":"not this month"})").json()["state"],
            "rejected");

  // Withdrawn before anyone approved it: no retry is offered (nor taken).
  const std::string withdrawn = submit(alice)["id"];
  EXPECT_EQ(decide(alice, withdrawn, "cancel").status, 200);
  EXPECT_EQ(request("GET", base + "/v1/runs/" + withdrawn, bob).json()["allowed_actions"],
            Json::array());
  EXPECT_EQ(decide(bob, withdrawn, "retry").status, 409);

  // The CLI deciding on someone else's run: with the roles its config gives.
  std::ofstream(tmp_ / "operator.yml") << "cli: { roles: { '*': [operator] } }\n";
  const std::string alices = submit(alice)["id"];
  EXPECT_EQ(cli({"--config", (tmp_ / "operator.yml").string(), "runs", "approve", alices}).first,
            5);
  EXPECT_EQ(cli({"runs", "reject", alices}).first, 2) << "--reason is required";
  auto [approve_code, approve_out] = cli({"runs", "approve", alices, "--reason", "ok"});
  EXPECT_EQ(approve_code, 0);
  EXPECT_EQ(approve_out, "run " + alices + " queued");

  // A dry run cannot write, so it needs no approval.
  Json dry = submit(alice, R"(,"dry_run":true)");
  EXPECT_EQ(dry["state"], "queued");
  EXPECT_EQ(dry["dry_run"], true);
  EXPECT_EQ(dry["approval"], nullptr);
  EXPECT_EQ(
      request("POST", base + "/v1/runs", alice, R"({"schema":"four-eyes","dry_run":1})").status,
      422);
  auto [dry_code, dry_out] = cli({"run", "four-eyes", "--dry-run", "--json"});
  ASSERT_EQ(dry_code, 0);
  Json dry_cli = Json::parse(dry_out);
  EXPECT_EQ(dry_cli["state"], "queued");
  EXPECT_EQ(dry_cli["dry_run"], true);
  EXPECT_EQ(dry_cli["actor"].get<std::string>().rfind("cli:", 0), 0u);

  // Every step audited with its actor, and announced.
  auto audit = request("GET", base + "/v1/audit?run=" + id + "&action=run", root).json();
  std::vector<std::string> steps;
  for (const auto& e : audit["entries"])
    steps.push_back(e["action"].get<std::string>() + " " + e["actor"].get<std::string>());
  EXPECT_EQ(steps, (std::vector<std::string>{"run.submitted api:alice", "run.approved api:bob"}));
  auto rejected = request("GET", base + "/v1/audit?run=" + by_cli + "&action=run.rejected", root);
  EXPECT_EQ(rejected.json()["entries"].size(), 1u);
  std::vector<std::string> events;
  for (const std::string& run_id : {id, by_cli}) {
    const Json deliveries =
        request("GET", base + "/v1/webhooks/deliveries?run=" + run_id, root).json();
    for (const auto& d : deliveries["deliveries"]) events.push_back(d["event"]);
  }
  std::sort(events.begin(), events.end());
  EXPECT_EQ(events, (std::vector<std::string>{"run.approved", "run.awaiting_approval",
                                              "run.awaiting_approval", "run.rejected"}));
}

// "name{a="x",b="y"}" -> value, labels in name order, from a Prometheus text
// scrape.
std::map<std::string, double> samples(const std::string& text) {
  std::map<std::string, double> out;
  std::istringstream lines(text);
  std::string line;
  while (std::getline(lines, line)) {
    if (line.empty() || line[0] == '#') continue;
    const size_t brace = line.find('{'), space = line.rfind(' ');
    std::string key = line.substr(0, std::min(brace, space));
    if (brace < space) {
      std::set<std::string> labels;
      std::istringstream in(line.substr(brace + 1, line.rfind('}') - brace - 1));
      std::string label;
      while (std::getline(in, label, ',')) labels.insert(label);
      key += "{";
      for (const auto& l : labels) key += (key.back() == '{' ? "" : ",") + l;
      key += "}";
    }
    out[key] = std::stod(line.substr(space + 1));
  }
  return out;
}

TEST_F(Api, MetricsCountRunsQueueServiceCallsAndRequests) {
  const std::string base = serve();
  const std::string ops = key("ops", "operator");
  ASSERT_EQ(cli({"run", "hello", "-p", "count=1", "--inline", "--wait"}).first, 0);
  ASSERT_EQ(cli({"run", "hello", "-p", "count=1", "--inline", "--wait"}).first, 0);
  const std::string body = R"({"schema":"hello","params":{"count":1}})";
  const std::string waiting = request("POST", base + "/v1/runs", ops, body).json()["id"];
  const std::string again = request("POST", base + "/v1/runs", ops, body).json()["id"];
  ASSERT_EQ(request("POST", base + "/v1/runs/" + again + "/cancel", ops).status, 200);
  ASSERT_EQ(request("POST", base + "/v1/runs/" + again + "/retry", ops).status, 200);
  // Service calls as the executor audits them (engine/executor.cpp).
  pg::Connection conn = db_.connect();
  for (const char* outcome : {"ok", "HTTP 404", "denied", "connection refused"})
    append_audit(conn, "plugin:hello", "service.s3.put_object", waiting, "bucket/key",
                 {{"bytes", 3}, {"outcome", outcome}});
  for (int i = 0; i < 3; ++i) request("GET", base + "/v1/runs/" + waiting, ops);
  // A fold takes at most its bound of entries; the scrapes below catch up
  // and count each entry once.
  read_platform_metrics(conn, {1}, 5);
  EXPECT_EQ(conn.exec("SELECT seq FROM taskhost.metric_fold").integer(0, 0), 5);

  const auto scrape = request("GET", base + "/metrics", "");
  ASSERT_EQ(scrape.status, 200);
  EXPECT_EQ(scrape.content_type.rfind("text/plain", 0), 0u) << scrape.content_type;
  auto m = samples(scrape.body);
  EXPECT_EQ(m[R"(taskhost_runs{schema="hello",state="queued"})"], 2) << scrape.body;
  EXPECT_EQ(m[R"(taskhost_runs_finished_total{schema="hello",state="succeeded"})"], 2);
  EXPECT_EQ(m[R"(taskhost_runs_finished_total{schema="hello",state="cancelled"})"], 1);
  EXPECT_EQ(m[R"(taskhost_run_duration_seconds_count{schema="hello"})"], 2)
      << "the cancelled run never started";
  EXPECT_EQ(m[R"(taskhost_run_duration_seconds_bucket{le="+Inf",schema="hello"})"], 2);
  EXPECT_EQ(m[R"(taskhost_run_retries_total{schema="hello"})"], 1);
  EXPECT_EQ(m["taskhost_queue_depth"], 2);
  EXPECT_GT(m["taskhost_queue_oldest_age_seconds"], 0);
  const std::string calls = R"(taskhost_service_calls_total{operation="put_object",outcome=)";
  EXPECT_EQ(m[calls + R"("ok",service="s3"})"], 2) << "ok and HTTP 404: the call was made";
  EXPECT_EQ(m[calls + R"("denied",service="s3"})"], 1);
  EXPECT_EQ(m[calls + R"("error",service="s3"})"], 1);
  const auto head = conn.exec("SELECT max(seq) FROM taskhost.audit_log").integer(0, 0);
  EXPECT_EQ(m["taskhost_audit_appends_total"], head);
  EXPECT_EQ(m[R"(taskhost_api_requests_total{method="GET",route="/v1/runs/{id}",status="200"})"], 3)
      << "by the route, not the raw path";
  EXPECT_EQ(m[R"(taskhost_api_request_duration_seconds_count{method="GET",route="/v1/runs/{id}"})"],
            3);
  EXPECT_EQ(m[R"(taskhost_api_requests_total{method="POST",route="/v1/runs",status="201"})"], 2);

  // A second scrape folds nothing twice.
  auto m2 = samples(request("GET", base + "/metrics", "").body);
  EXPECT_EQ(m2[R"(taskhost_runs_finished_total{schema="hello",state="succeeded"})"], 2);
  EXPECT_EQ(m2[calls + R"("ok",service="s3"})"], 2);

  // Prometheus' own reading of the format.
  const fs::path file = tmp_ / "scrape.txt";
  std::ofstream(file) << scrape.body;
  const std::string check = "promtool check metrics < " + file.string() + " 2>&1";
  FILE* p = ::popen(check.c_str(), "r");
  std::string said;
  char buf[4096];
  while (size_t n = std::fread(buf, 1, sizeof buf, p)) said.append(buf, n);
  EXPECT_EQ(::pclose(p), 0) << said;
  EXPECT_EQ(said, "") << "promtool's lint";
}

// The value of a response header ("" when absent).
std::string header(const Reply& r, const std::string& name) {
  std::istringstream in(r.headers);
  std::string line;
  while (std::getline(in, line)) {
    if (line.size() > name.size() && strncasecmp(line.c_str(), name.c_str(), name.size()) == 0 &&
        line[name.size()] == ':') {
      std::string v = line.substr(name.size() + 1);
      while (!v.empty() && (v.front() == ' ')) v.erase(0, 1);
      while (!v.empty() && (v.back() == '\r' || v.back() == '\n')) v.pop_back();
      return v;
    }
  }
  return "";
}

TEST_F(Api, PortalSessionsAreCookiesWhoseStateChangesNeedTheCsrfToken) {
  const std::string base = serve();
  const std::string ops = key("ops", "operator"), admin = key("root", "admin");
  const std::string json = "Content-Type: application/json";

  // The portal's files, with a strict CSP on them as on every response.
  auto page = request("GET", base + "/", "");
  ASSERT_EQ(page.status, 200) << page.body;
  EXPECT_NE(page.content_type.find("text/html"), std::string::npos);
  EXPECT_NE(page.body.find("<script src=\"/portal.js\""), std::string::npos);
  const std::string csp = header(page, "Content-Security-Policy");
  EXPECT_NE(csp.find("default-src 'self'"), std::string::npos) << csp;
  EXPECT_NE(csp.find("frame-ancestors 'none'"), std::string::npos) << csp;
  EXPECT_EQ(csp.find("unsafe-inline"), std::string::npos) << csp;
  EXPECT_EQ(header(page, "Referrer-Policy"), "no-referrer");
  EXPECT_EQ(header(page, "X-Content-Type-Options"), "nosniff");
  EXPECT_EQ(request("GET", base + "/portal.js", "").content_type, "text/javascript; charset=utf-8");
  EXPECT_EQ(request("GET", base + "/../etc/passwd", "").status, 404);

  // Sign-in: a JSON body only (no login CSRF from a form elsewhere).
  EXPECT_EQ(request("POST", base + "/v1/session", "", R"({"key":")" + ops + "\"}",
                    {"Content-Type: text/plain"})
                .status,
            415);
  EXPECT_EQ(request("POST", base + "/v1/session", "", R"({"key":"th_000000000000_x"})").status,
            401);
  auto signed_in = request("POST", base + "/v1/session", "", R"({"key":")" + ops + "\"}");
  ASSERT_EQ(signed_in.status, 201) << signed_in.body;
  const std::string set_cookie = header(signed_in, "Set-Cookie");
  EXPECT_NE(set_cookie.find("; HttpOnly"), std::string::npos) << set_cookie;
  EXPECT_NE(set_cookie.find("; SameSite=Strict"), std::string::npos) << set_cookie;
  EXPECT_EQ(set_cookie.find("Secure"), std::string::npos) << "plain HTTP: " << set_cookie;
  const std::string cookie = "Cookie: " + set_cookie.substr(0, set_cookie.find(';'));
  const std::string csrf = signed_in.json()["csrf_token"];
  EXPECT_EQ(signed_in.json()["actor"], "api:ops");
  EXPECT_EQ(signed_in.json()["allowed_actions"], Json::array());
  auto over_tls = request("POST", base + "/v1/session", "", R"({"key":")" + ops + "\"}",
                          {"X-Forwarded-Proto: https"});
  EXPECT_NE(header(over_tls, "Set-Cookie").find("; Secure"), std::string::npos);

  auto me = request("GET", base + "/v1/session", "", "", {cookie});
  ASSERT_EQ(me.status, 200) << me.body;
  EXPECT_EQ(me.json()["csrf_token"], csrf);

  // The cookie authenticates; a state change also needs the token.
  const std::string body = R"({"schema":"hello","params":{"count":2}})";
  auto refused = request("POST", base + "/v1/runs", "", body, {cookie});
  EXPECT_EQ(refused.status, 403);
  EXPECT_NE(refused.json()["detail"].get<std::string>().find("X-CSRF-Token"), std::string::npos);
  EXPECT_EQ(
      request("POST", base + "/v1/runs", "", body, {cookie, "X-CSRF-Token: " + csrf + "x"}).status,
      403);
  auto made = request("POST", base + "/v1/runs", "", body, {cookie, "X-CSRF-Token: " + csrf});
  ASSERT_EQ(made.status, 201) << made.body;
  EXPECT_EQ(made.json()["actor"], "api:ops");
  EXPECT_EQ(request("GET", base + "/v1/runs", "", "", {cookie}).status, 200)
      << "reads need no token";

  // Signing out ends the session at the server, not only in the browser.
  EXPECT_EQ(request("DELETE", base + "/v1/session", "", "", {cookie}).status, 403);
  auto out = request("DELETE", base + "/v1/session", "", "", {cookie, "X-CSRF-Token: " + csrf});
  EXPECT_EQ(out.status, 200);
  EXPECT_NE(header(out, "Set-Cookie").find("Max-Age=0"), std::string::npos);
  EXPECT_EQ(request("GET", base + "/v1/session", "", "", {cookie}).status, 401);

  // Revoking the key ends its sessions.
  auto made_key =
      request("POST", base + "/v1/api-keys", admin, R"({"actor":"temp","roles":["viewer"]})");
  const std::string temp = made_key.json()["token"];
  auto temp_session = request("POST", base + "/v1/session", "", R"({"key":")" + temp + "\"}");
  const std::string temp_cookie =
      "Cookie: " +
      header(temp_session, "Set-Cookie").substr(0, header(temp_session, "Set-Cookie").find(';'));
  EXPECT_EQ(request("GET", base + "/v1/runs", "", "", {temp_cookie}).status, 200);
  request("DELETE", base + "/v1/api-keys/" + made_key.json()["id"].get<std::string>(), admin);
  EXPECT_EQ(request("GET", base + "/v1/runs", "", "", {temp_cookie}).status, 401);

  auto audit = request("GET", base + "/v1/audit?action=session", admin).json()["entries"];
  ASSERT_EQ(audit.size(), 4u) << audit.dump();
  EXPECT_EQ(audit[0]["action"], "session.started");
  EXPECT_EQ(audit[0]["actor"], "api:ops");
  EXPECT_EQ(audit[2]["action"], "session.ended");
}

TEST_F(Api, WhatTheActorMayDoAndWhichFieldIsWrong) {
  const std::string base = serve();
  const std::string ops = key("ops", "operator"), viewer = key("auditor", "viewer"),
                    admin = key("root", "admin");
  EXPECT_EQ(request("GET", base + "/v1/schemas/hello", ops).json()["allowed_actions"],
            Json::array({"run"}));
  EXPECT_EQ(request("GET", base + "/v1/schemas", viewer).json()["schemas"][0]["allowed_actions"],
            Json::array());

  auto bad = request("POST", base + "/v1/runs", ops,
                     R"({"schema":"hello","params":{"count":0,"name":"","extra":1}})");
  ASSERT_EQ(bad.status, 422);
  Json fields = Json::object();
  const Json problem = bad.json();
  for (const auto& e : problem["errors"]) fields[e["field"].get<std::string>()] = e["detail"];
  EXPECT_EQ(fields["params.count"], "expected an integer from 1 to 10000, got 0") << bad.body;
  EXPECT_TRUE(fields.contains("params.name")) << bad.body;
  EXPECT_TRUE(fields.contains("params.extra")) << bad.body;

  // A run's actions follow the actor's roles (a viewer may control
  // nothing) and its state, as the store decides them.
  const std::string id =
      request("POST", base + "/v1/runs", ops, R"({"schema":"hello"})").json()["id"];
  auto actions = [&](const std::string& key) {
    return request("GET", base + "/v1/runs/" + id, key).json()["allowed_actions"];
  };
  EXPECT_EQ(actions(viewer), Json::array());
  EXPECT_EQ(actions(ops), Json::array({"cancel", "pause"}));
  EXPECT_EQ(actions(admin), Json::array({"cancel", "pause"}));
  EXPECT_EQ(request("POST", base + "/v1/runs/" + id + "/resume", admin).status, 409);
  EXPECT_EQ(request("POST", base + "/v1/runs/" + id + "/pause", admin).status, 200);
  EXPECT_EQ(actions(admin), Json::array({"cancel", "resume"}));
  EXPECT_EQ(request("POST", base + "/v1/runs/" + id + "/retry", admin).status, 409);
  EXPECT_EQ(request("POST", base + "/v1/runs/" + id + "/cancel", admin).status, 200);
  EXPECT_EQ(actions(admin), Json::array({"retry"}));
  EXPECT_EQ(request("POST", base + "/v1/runs/" + id + "/pause", admin).status, 409);

  // The run's audit trail, for whoever may view the run.
  auto trail = request("GET", base + "/v1/runs/" + id + "/audit", viewer);
  ASSERT_EQ(trail.status, 200) << trail.body;
  ASSERT_GE(trail.json()["entries"].size(), 3u);
  EXPECT_EQ(trail.json()["entries"][0]["action"], "run.submitted");
}

TEST_F(Api, AnUploadLandsInTheSchemasGrantedBucket) {
  std::ifstream in(BUNDLED_SCHEMA_DIR "/hello.yaml");
  std::stringstream yaml;
  yaml << in.rdbuf();
  std::string text = yaml.str();
  text.replace(text.find("name: hello"), 11, "name: hello-upload");
  text.replace(text.find("params:\n"), 8,
               "params:\n  input: { type: string, upload: inbox, description: a CSV of ids }\n");
  text += "capabilities: { s3: [ { bucket: inbox, prefix: portal/, access: read } ] }\n";
  std::ofstream(tmp_ / "hello-upload.yaml") << text;
  ASSERT_EQ(cli({"schema", "install", (tmp_ / "hello-upload.yaml").string()}).first, 0);
  std::string ungranted = text;
  ungranted.replace(ungranted.find("upload: inbox"), 13, "upload: other");
  std::ofstream(tmp_ / "ungranted.yaml") << ungranted;
  EXPECT_EQ(cli({"schema", "install", (tmp_ / "ungranted.yaml").string()}).first, 2)
      << "an upload bucket the schema does not grant";

  const std::string base = serve();
  const std::string ops = key("ops", "operator"), viewer = key("auditor", "viewer"),
                    admin = key("root", "admin");
  const std::string csv = "submission_id\n" + std::string(2 << 20, '7') + "\n";  // over 1 MiB
  auto up =
      request("POST", base + "/v1/schemas/hello-upload/uploads/input?name=..%2Fids%20list.csv", ops,
              csv, {"Content-Type: text/csv"});
  ASSERT_EQ(up.status, 201) << up.body;
  const std::string key = up.json()["key"];
  EXPECT_TRUE(std::regex_match(
      key, std::regex(R"(portal/uploads/\d{4}-\d\d-\d\d/[0-9a-f]{16}/upload\.\._ids_list\.csv)")))
      << key;
  EXPECT_EQ(up.json()["size"], csv.size());
  std::ifstream stored(tmp_ / "objects" / "inbox" / key, std::ios::binary);
  std::stringstream content;
  content << stored.rdbuf();
  EXPECT_EQ(content.str(), csv) << "in the local object store, the embedded default";

  EXPECT_EQ(request("POST", base + "/v1/schemas/hello-upload/uploads/input", viewer, "a\n",
                    {"Content-Type: text/csv"})
                .status,
            403);
  EXPECT_EQ(request("POST", base + "/v1/schemas/hello-upload/uploads/name", ops, "a\n",
                    {"Content-Type: text/csv"})
                .status,
            422);
  EXPECT_EQ(request("POST", base + "/v1/schemas/hello-upload/uploads/input", ops,
                    std::string("a\0b", 3), {"Content-Type: text/csv"})
                .status,
            422);
  auto run = request("POST", base + "/v1/runs", ops,
                     Json{{"schema", "hello-upload"}, {"params", {{"input", key}}}}.dump());
  EXPECT_EQ(run.status, 201) << run.body;
  auto audit = request("GET", base + "/v1/audit?action=upload", admin).json()["entries"];
  ASSERT_EQ(audit.size(), 1u);
  EXPECT_EQ(audit[0]["subject"], "s3:inbox/" + key);
  EXPECT_EQ(audit[0]["detail"]["size"], csv.size());
}

}  // namespace
}  // namespace taskhost
