// A run's log and live streams as a client sees them: a real `taskhost serve`
// and a real `taskhost worker` running the probe plugin, keys made by the
// CLI, server-sent events read off a plain socket.
#include <arpa/inet.h>
#include <curl/curl.h>
#include <gtest/gtest.h>
#include <netinet/in.h>
#include <poll.h>
#include <signal.h>
#include <sys/socket.h>
#include <sys/wait.h>
#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <chrono>
#include <filesystem>
#include <fstream>
#include <functional>
#include <nlohmann/json.hpp>
#include <sstream>
#include <thread>

#include "support/fixtures.hpp"
#include "support/test_database.hpp"

namespace taskhost {
namespace {

namespace fs = std::filesystem;
using Json = nlohmann::json;
using Clock = std::chrono::steady_clock;

size_t collect(char* data, size_t size, size_t n, void* out) {
  static_cast<std::string*>(out)->append(data, size * n);
  return size * n;
}

struct Reply {
  long status = 0;
  std::string body;
  Json json() const { return Json::parse(body); }
};

Reply request(const std::string& method, const std::string& url, const std::string& key,
              const std::string& body = "") {
  CURL* c = curl_easy_init();
  Reply r;
  curl_slist* list = curl_slist_append(nullptr, ("Authorization: Bearer " + key).c_str());
  if (!body.empty()) list = curl_slist_append(list, "Content-Type: application/json");
  curl_easy_setopt(c, CURLOPT_URL, url.c_str());
  curl_easy_setopt(c, CURLOPT_CUSTOMREQUEST, method.c_str());
  if (!body.empty()) curl_easy_setopt(c, CURLOPT_POSTFIELDS, body.c_str());
  curl_easy_setopt(c, CURLOPT_HTTPHEADER, list);
  curl_easy_setopt(c, CURLOPT_WRITEFUNCTION, collect);
  curl_easy_setopt(c, CURLOPT_WRITEDATA, &r.body);
  curl_easy_setopt(c, CURLOPT_TIMEOUT, 30L);
  if (curl_easy_perform(c) == CURLE_OK) curl_easy_getinfo(c, CURLINFO_RESPONSE_CODE, &r.status);
  curl_slist_free_all(list);
  curl_easy_cleanup(c);
  return r;
}

struct Event {
  std::optional<int64_t> id;
  std::string name;
  Json data;
};

// One text/event-stream response read off a socket, parsed as EventSource
// would (comment lines counted apart).
class SseClient {
 public:
  // base: http://127.0.0.1:PORT. receive_buffer: a small one makes a slow client.
  SseClient(const std::string& base, const std::string& path, const std::string& key,
            const std::string& last_event_id = "", int receive_buffer = 0) {
    const auto colon = base.rfind(':');
    const int port = std::stoi(base.substr(colon + 1));
    fd_ = ::socket(AF_INET, SOCK_STREAM, 0);
    if (receive_buffer > 0)
      ::setsockopt(fd_, SOL_SOCKET, SO_RCVBUF, &receive_buffer, sizeof receive_buffer);
    sockaddr_in a{};
    a.sin_family = AF_INET;
    a.sin_port = htons(static_cast<uint16_t>(port));
    a.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    if (::connect(fd_, reinterpret_cast<sockaddr*>(&a), sizeof a) != 0) {
      ADD_FAILURE() << "connect to " << base;
      return;
    }
    std::string req = "GET " + path +
                      " HTTP/1.1\r\nHost: 127.0.0.1\r\nAccept: text/event-stream\r\n" +
                      "Authorization: Bearer " + key + "\r\n";
    if (!last_event_id.empty()) req += "Last-Event-ID: " + last_event_id + "\r\n";
    req += "\r\n";
    (void)::send(fd_, req.data(), req.size(), MSG_NOSIGNAL);
  }
  ~SseClient() {
    if (fd_ >= 0) ::close(fd_);
  }

  // Reads until pred(this) holds, the stream ends or timeout; returns pred's last answer.
  bool read_until(const std::function<bool(const SseClient&)>& pred,
                  std::chrono::milliseconds timeout = std::chrono::seconds(60)) {
    const auto until = Clock::now() + timeout;
    while (!pred(*this)) {
      if (ended_ || Clock::now() >= until) return false;
      pollfd p{fd_, POLLIN, 0};
      const auto left = std::chrono::ceil<std::chrono::milliseconds>(until - Clock::now());
      ::poll(&p, 1, static_cast<int>(std::clamp<int64_t>(left.count(), 0, 100)));
      char buf[65536];
      ssize_t n = ::recv(fd_, buf, sizeof buf, MSG_DONTWAIT);
      if (n == 0 || (n < 0 && errno != EAGAIN && errno != EWOULDBLOCK)) ended_ = true;
      if (n > 0) take(std::string_view(buf, static_cast<size_t>(n)));
    }
    return true;
  }
  bool read_head() {
    return read_until([](const SseClient& c) { return !c.head().empty(); });
  }
  bool read_to_end(std::chrono::milliseconds timeout = std::chrono::seconds(60)) {
    return read_until([](const SseClient& c) { return c.ended(); }, timeout) || ended_;
  }
  void close() {
    ::close(fd_);
    fd_ = -1;
  }

  const std::string& head() const { return head_; }
  const std::vector<Event>& events() const { return events_; }
  int comments() const { return comments_; }
  bool ended() const { return ended_; }
  bool has(const std::string& name) const {
    for (const auto& e : events_)
      if (e.name == name) return true;
    return false;
  }
  std::vector<Event> named(const std::string& name) const {
    std::vector<Event> out;
    for (const auto& e : events_)
      if (e.name == name) out.push_back(e);
    return out;
  }

 private:
  void take(std::string_view bytes) {
    raw_ += bytes;
    if (head_.empty()) {
      auto end = raw_.find("\r\n\r\n");
      if (end == std::string::npos) return;
      head_ = raw_.substr(0, end + 4);
      raw_.erase(0, end + 4);
    }
    for (size_t end; (end = raw_.find("\n\n")) != std::string::npos;) {
      std::string block = raw_.substr(0, end);
      raw_.erase(0, end + 2);
      Event e;
      std::istringstream lines(block);
      bool any = false;
      for (std::string line; std::getline(lines, line);) {
        if (line.rfind(":", 0) == 0) {
          ++comments_;
        } else if (line.rfind("id: ", 0) == 0) {
          e.id = std::stoll(line.substr(4));
        } else if (line.rfind("event: ", 0) == 0) {
          e.name = line.substr(7);
          any = true;
        } else if (line.rfind("data: ", 0) == 0) {
          e.data = Json::parse(line.substr(6));
        }
      }
      if (any) events_.push_back(std::move(e));
    }
  }

  int fd_ = -1;
  std::string raw_, head_;
  std::vector<Event> events_;
  int comments_ = 0;
  bool ended_ = false;
};

class Streams : public ::testing::Test {
 protected:
  void SetUp() override {
    fs::create_directories(tmp_);
    const std::string schema = (tmp_ / "probe.yaml").string();
    std::ofstream(schema) << "name: probe\nversion: 1.0.0\n"
                          << "plugin: { path: probe.so, sha256: "
                          << test::digest_of(test::fixture_dir + "/probe.so")
                          << " }\nparams: { mode: { type: string }, items: { type: integer }, "
                             "delay_ms: { type: integer, default: 0 } }\n"
                             "permissions: { run: [operator, admin], view: [operator, admin] }\n";
    std::ofstream(tmp_ / "taskhost.yml") << "run_logs: { max_lines: 100000, max_bytes: 64MiB }\n";
    ASSERT_EQ(cli({"schema", "install", schema}).first, 0);
    ops_ = key("ops", "operator");
  }
  void TearDown() override {
    for (pid_t p : children_) {
      ::kill(p, SIGTERM);
      int status = 0;
      ::waitpid(p, &status, 0);
    }
    fs::remove_all(tmp_);
  }

  std::vector<std::string> globals() {
    return {"--home",       tmp_.string(),     "--database-url", db_.conninfo(),
            "--plugin-dir", test::fixture_dir, "--config",       (tmp_ / "taskhost.yml").string()};
  }

  std::pair<int, std::string> cli(const std::vector<std::string>& args) {
    std::string cmd = TASKHOST_BIN;
    for (const auto& a : globals()) cmd += " '" + a + "'";
    for (const auto& a : args) cmd += " '" + a + "'";
    cmd += " 2>>" + (tmp_ / "cli.err").string();
    FILE* p = ::popen(cmd.c_str(), "r");
    std::string out;
    char buf[4096];
    while (size_t n = std::fread(buf, 1, sizeof buf, p)) out.append(buf, n);
    int status = ::pclose(p);
    return {WEXITSTATUS(status), out};
  }

  std::string key(const std::string& actor, const std::string& role) {
    auto [code, token] = cli({"api-key", "create", "--actor", actor, "--role", role});
    EXPECT_EQ(code, 0);
    while (!token.empty() && token.back() == '\n') token.pop_back();
    return token;
  }

  pid_t spawn(const std::vector<std::string>& args, const std::string& name) {
    pid_t pid = ::fork();
    if (pid == 0) {
      std::vector<std::string> argv{TASKHOST_BIN};
      for (const auto& a : globals()) argv.push_back(a);
      argv.insert(argv.end(), args.begin(), args.end());
      std::vector<char*> raw;
      for (auto& a : argv) raw.push_back(a.data());
      raw.push_back(nullptr);
      std::freopen((tmp_ / (name + ".out")).c_str(), "w", stdout);
      std::freopen((tmp_ / (name + ".err")).c_str(), "w", stderr);
      ::execv(TASKHOST_BIN, raw.data());
      ::_exit(127);
    }
    children_.push_back(pid);
    return pid;
  }

  // serve (heartbeats every 300 ms) and a worker; returns serve's base URL.
  std::string start() {
    spawn({"serve", "--listen", "127.0.0.1:0", "--heartbeat", "300ms", "--threads", "4"}, "serve");
    spawn({"worker", "--concurrency", "2"}, "worker");
    const std::string prefix = "taskhost serve: listening on ";
    for (int i = 0; i < 300; ++i) {
      std::ifstream in(tmp_ / "serve.out");
      std::string line;
      if (std::getline(in, line) && line.rfind(prefix, 0) == 0) return line.substr(prefix.size());
      std::this_thread::sleep_for(std::chrono::milliseconds(100));
    }
    ADD_FAILURE() << "serve did not start";
    return "";
  }

  std::string submit(const std::string& base, const Json& params) {
    auto r = request("POST", base + "/v1/runs", ops_,
                     Json{{"schema", "probe"}, {"params", params}}.dump());
    EXPECT_EQ(r.status, 201) << r.body;
    return r.json().value("id", "");
  }

  std::string wait_finished(const std::string& base, const std::string& id) {
    for (int i = 0; i < 600; ++i) {
      auto state = request("GET", base + "/v1/runs/" + id, ops_).json()["state"].get<std::string>();
      if (state == "succeeded" || state == "failed" || state == "cancelled") return state;
      std::this_thread::sleep_for(std::chrono::milliseconds(100));
    }
    return "unfinished";
  }

  std::string file(const std::string& name) { return test::slurp(tmp_ / name); }

  test::TestDatabase db_;
  fs::path tmp_ =
      fs::temp_directory_path() / ("taskhost-streams-" + std::to_string(::getpid()) + "-" +
                                   ::testing::UnitTest::GetInstance()->current_test_info()->name());
  std::vector<pid_t> children_;
  std::string ops_;
};

bool mentions(const Event& e, const std::string& text) {
  return e.data.value("message", "").find(text) != std::string::npos;
}

TEST_F(Streams, LiveLinesAndProgressResumeWithLastEventIdAndEndWithTheRun) {
  const std::string base = start();
  const std::string id = submit(base, {{"mode", "chatty"}, {"items", 30}, {"delay_ms", 100}});
  SseClient events(base, "/v1/runs/" + id + "/events/stream", ops_);
  SseClient logs(base, "/v1/runs/" + id + "/logs/stream", ops_);

  // Live: line 5 arrives (in the worker's batch of the last second) while
  // the plugin still has lines to go.
  auto line5 = [](const SseClient& c) -> const Event* {
    for (const auto& e : c.events())
      if (mentions(e, "line 5 of 30")) return &e;
    return nullptr;
  };
  ASSERT_TRUE(logs.read_until([&](const SseClient& c) { return line5(c) != nullptr; }))
      << logs.head();
  EXPECT_NE(logs.head().find("200 OK"), std::string::npos);
  EXPECT_NE(logs.head().find("Content-Type: text/event-stream"), std::string::npos);
  EXPECT_FALSE(logs.has("end"));
  for (const auto& e : logs.events()) EXPECT_FALSE(mentions(e, "line 30 of 30"));
  const int64_t seen = *line5(logs)->id;
  logs.close();

  // Progress while it runs, then the end.
  ASSERT_TRUE(events.read_until([](const SseClient& c) {
    for (const auto& e : c.named("run"))
      if (e.data["state"] == "running" && e.data["progress"].is_object() &&
          e.data["progress"]["done"] > 0 && e.data["progress"]["done"] < 30)
        return true;
    return false;
  })) << "no live progress";
  ASSERT_TRUE(events.read_to_end());
  ASSERT_TRUE(events.has("end"));
  EXPECT_EQ(events.named("end").back().data["state"], "succeeded");
  EXPECT_EQ(events.named("run").back().data["progress"]["done"], 30);

  // Resumed after the last line seen: the rest, in order, once each, and the end.
  SseClient resumed(base, "/v1/runs/" + id + "/logs/stream", ops_, std::to_string(seen));
  ASSERT_TRUE(resumed.read_to_end());
  auto lines = resumed.named("log");
  ASSERT_FALSE(lines.empty());
  for (size_t i = 0; i < lines.size(); ++i)
    EXPECT_EQ(*lines[i].id, seen + 1 + static_cast<int64_t>(i));
  EXPECT_TRUE(mentions(lines.front(), "line 6 of 30")) << lines.front().data;
  EXPECT_TRUE(mentions(lines.back(), "-> succeeded")) << lines.back().data;
  EXPECT_EQ(resumed.named("end").size(), 1u);

  // The same log paged, and `taskhost runs logs`.
  auto page = request(
      "GET", base + "/v1/runs/" + id + "/logs?limit=5&after_seq=" + std::to_string(seen), ops_);
  ASSERT_EQ(page.status, 200) << page.body;
  ASSERT_EQ(page.json()["lines"].size(), 5u);
  EXPECT_EQ(page.json()["lines"][0]["seq"], seen + 1);
  EXPECT_EQ(page.json()["next"], seen + 5);
  EXPECT_EQ(page.json()["dropped"]["lines"], 0);
  auto [code, text] = cli({"runs", "logs", id});
  EXPECT_EQ(code, 0);
  EXPECT_NE(text.find("info   #1 line 30 of 30"), std::string::npos) << text;
  EXPECT_NE(text.find("host: running -> succeeded"), std::string::npos) << text;
}

TEST_F(Streams, AuthenticatedAsTheOtherRoutesAndOnlyForThoseWhoMayView) {
  const std::string base = start();
  const std::string id = submit(base, {{"mode", "chatty"}, {"items", 1}});
  SseClient anonymous(base, "/v1/runs/" + id + "/logs/stream", "th_nokey");
  anonymous.read_head();
  EXPECT_NE(anonymous.head().find("401"), std::string::npos) << anonymous.head();
  SseClient viewer(base, "/v1/runs/" + id + "/events/stream", key("eve", "viewer"));
  viewer.read_head();
  EXPECT_NE(viewer.head().find("404"), std::string::npos) << "the schema lets operators view only";
  SseClient bad(base, "/v1/runs/" + id + "/logs/stream", ops_, "12x");
  bad.read_head();
  EXPECT_NE(bad.head().find("422"), std::string::npos) << bad.head();
}

TEST_F(Streams, FollowWithTheCliUntilTheRunIsFinished) {
  const std::string base = start();
  const std::string id = submit(base, {{"mode", "chatty"}, {"items", 20}, {"delay_ms", 100}});
  const auto began = Clock::now();
  auto [code, out] = cli({"runs", "logs", id, "-f", "--json"});
  EXPECT_EQ(code, 0);
  EXPECT_GT(Clock::now() - began, std::chrono::seconds(1)) << "it followed the run as it ran";
  std::istringstream lines(out);
  std::vector<Json> seen;
  for (std::string line; std::getline(lines, line);) seen.push_back(Json::parse(line));
  ASSERT_FALSE(seen.empty());
  int plugin = 0;
  for (size_t i = 0; i < seen.size(); ++i) {
    EXPECT_EQ(seen[i]["seq"], static_cast<int64_t>(i + 1));
    plugin += seen[i]["source"] == "plugin";
  }
  EXPECT_EQ(plugin, 20);
  EXPECT_NE(seen.back()["message"].get<std::string>().find("-> succeeded"), std::string::npos);
}

TEST_F(Streams, FiftyOpenStreamsDoNotStallHealthz) {
  const std::string base = start();
  const std::string id = submit(base, {{"mode", "chatty"}, {"items", 60}, {"delay_ms", 100}});
  std::vector<std::unique_ptr<SseClient>> streams;
  for (int i = 0; i < 50; ++i)
    streams.push_back(std::make_unique<SseClient>(
        base, "/v1/runs/" + id + (i % 2 ? "/events/stream" : "/logs/stream"), ops_));
  for (auto& s : streams)
    ASSERT_TRUE(s->read_until([](const SseClient& c) { return !c.events().empty(); }));
  // While all 50 are open and fed, /healthz answers at once.
  std::chrono::milliseconds worst{0};
  for (int i = 0; i < 20; ++i) {
    const auto t0 = Clock::now();
    EXPECT_EQ(request("GET", base + "/healthz", ops_).status, 200);
    worst =
        std::max(worst, std::chrono::duration_cast<std::chrono::milliseconds>(Clock::now() - t0));
    for (auto& s : streams)
      s->read_until([](const SseClient&) { return false; }, std::chrono::milliseconds(1));
    std::this_thread::sleep_for(std::chrono::milliseconds(100));
  }
  std::cout << "[ figures  ] /healthz with 50 open streams: worst " << worst.count()
            << " ms of 20\n";
  EXPECT_LT(worst, std::chrono::seconds(1));
  int heartbeats = 0;
  for (auto& s : streams) {
    ASSERT_TRUE(s->read_to_end());
    EXPECT_TRUE(s->has("end"));
    heartbeats += s->comments();
  }
  EXPECT_GT(heartbeats, 0) << "idle streams get keep-alive comments";
}

TEST_F(Streams, AClientThatDoesNotReadIsDroppedNotBufferedWithoutBound) {
  const std::string base = start();
  const std::string id = submit(base, {{"mode", "chatty"}, {"items", 60000}});
  SseClient stuck(base, "/v1/runs/" + id + "/logs/stream", ops_, "", 4096);
  EXPECT_EQ(wait_finished(base, id), "succeeded");
  // The server let go of it; what the socket holds ends before the run's end.
  for (int i = 0; i < 100 && file("serve.err").find("dropped") == std::string::npos; ++i)
    std::this_thread::sleep_for(std::chrono::milliseconds(100));
  EXPECT_NE(file("serve.err").find("the client is over 1048576 bytes behind"), std::string::npos)
      << file("serve.err");
  EXPECT_TRUE(stuck.read_to_end());
  EXPECT_FALSE(stuck.has("end"));
  EXPECT_EQ(request("GET", base + "/healthz", ops_).status, 200);
}

}  // namespace
}  // namespace taskhost
