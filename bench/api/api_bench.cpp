// bench/api: latency and throughput of POST /v1/runs and GET /v1/runs/{id}
// against a running `taskhost serve`, with 1 and 16 keep-alive clients,
// beside the CLI doing the same submissions (`taskhost run`, one process
// each, as an operator's script would).
//   api_bench HOST PORT API_KEY N TASKHOST HOME
#include <spawn.h>
#include <sys/wait.h>

#include <algorithm>
#include <boost/asio/connect.hpp>
#include <boost/asio/ip/tcp.hpp>
#include <boost/beast/core.hpp>
#include <boost/beast/http.hpp>
#include <chrono>
#include <cstdio>
#include <mutex>
#include <nlohmann/json.hpp>
#include <stdexcept>
#include <string>
#include <thread>
#include <vector>

extern char** environ;

namespace {

namespace beast = boost::beast;
namespace http = beast::http;
namespace net = boost::asio;
using Clock = std::chrono::steady_clock;
using Json = nlohmann::json;

struct Target {
  std::string host, port, key;
};

// One keep-alive connection, as a client library would hold.
class Client {
 public:
  explicit Client(const Target& t) : target_(t), stream_(io_) {
    net::ip::tcp::resolver resolver(io_);
    stream_.connect(resolver.resolve(t.host, t.port));
  }
  std::string send(http::verb method, const std::string& path, const std::string& body,
                   http::status expected) {
    http::request<http::string_body> req{method, path, 11};
    req.set(http::field::host, target_.host);
    req.set(http::field::authorization, "Bearer " + target_.key);
    if (!body.empty()) {
      req.set(http::field::content_type, "application/json");
      req.body() = body;
    }
    req.prepare_payload();
    http::write(stream_, req);
    beast::flat_buffer buffer;
    http::response<http::string_body> res;
    http::read(stream_, buffer, res);
    if (res.result() != expected)
      throw std::runtime_error(path + ": HTTP " + std::to_string(res.result_int()) + " " +
                               res.body());
    return res.body();
  }

 private:
  const Target& target_;
  net::io_context io_;
  beast::tcp_stream stream_;
};

struct Figures {
  double per_second = 0, p50_ms = 0, p99_ms = 0;
};

Figures summarise(std::vector<double> ms, double seconds) {
  std::sort(ms.begin(), ms.end());
  auto at = [&](double q) { return ms[std::min(ms.size() - 1, size_t(q * ms.size()))]; };
  return {ms.size() / seconds, at(0.50), at(0.99)};
}

// `clients` threads share n operations; op(client_index, i) does one.
template <typename Op>
Figures measure(int clients, int n, Op op) {
  std::vector<std::vector<double>> times(clients);
  auto start = Clock::now();
  std::vector<std::thread> threads;
  for (int c = 0; c < clients; ++c)
    threads.emplace_back([&, c] {
      for (int i = c; i < n; i += clients) {
        auto t0 = Clock::now();
        op(c, i);
        times[c].push_back(std::chrono::duration<double, std::milli>(Clock::now() - t0).count());
      }
    });
  for (auto& t : threads) t.join();
  double seconds = std::chrono::duration<double>(Clock::now() - start).count();
  std::vector<double> all;
  for (auto& v : times) all.insert(all.end(), v.begin(), v.end());
  return summarise(std::move(all), seconds);
}

void print(const char* what, int clients, const Figures& f) {
  std::printf("%-34s %2d client%s %8.0f req/s   p50 %7.2f ms   p99 %7.2f ms\n", what, clients,
              clients == 1 ? " " : "s", f.per_second, f.p50_ms, f.p99_ms);
}

int run_cli(const std::string& taskhost, const std::string& home) {
  std::vector<std::string> args{taskhost, "--home", home, "--log-level", "warn", "run", "noop"};
  std::vector<char*> argv;
  for (auto& a : args) argv.push_back(a.data());
  argv.push_back(nullptr);
  posix_spawn_file_actions_t actions;
  posix_spawn_file_actions_init(&actions);
  posix_spawn_file_actions_addopen(&actions, 1, "/dev/null", O_WRONLY, 0);
  pid_t pid;
  int rc = posix_spawn(&pid, argv[0], &actions, nullptr, argv.data(), environ);
  posix_spawn_file_actions_destroy(&actions);
  if (rc != 0) throw std::runtime_error("cannot start " + taskhost);
  int status = 0;
  waitpid(pid, &status, 0);
  return WIFEXITED(status) ? WEXITSTATUS(status) : 128;
}

}  // namespace

int main(int argc, char** argv) {
  if (argc != 7) {
    std::fprintf(stderr, "usage: api_bench HOST PORT API_KEY N TASKHOST HOME\n");
    return 2;
  }
  Target target{argv[1], argv[2], argv[3]};
  const int n = std::stoi(argv[4]);
  const std::string taskhost = argv[5], home = argv[6];
  try {
    for (int clients : {1, 16}) {
      std::vector<std::unique_ptr<Client>> pool;
      for (int c = 0; c < clients; ++c) pool.push_back(std::make_unique<Client>(target));
      std::vector<std::string> ids(n);
      std::mutex ids_mutex;
      auto submit = measure(clients, n, [&](int c, int i) {
        auto body = pool[c]->send(http::verb::post, "/v1/runs", R"({"schema":"noop"})",
                                  http::status::created);
        std::lock_guard lock(ids_mutex);
        ids[i] = Json::parse(body).at("id").get<std::string>();
      });
      print("POST /v1/runs", clients, submit);
      auto show = measure(clients, n, [&](int c, int i) {
        pool[c]->send(http::verb::get, "/v1/runs/" + ids[i], "", http::status::ok);
      });
      print("GET /v1/runs/{id}", clients, show);
      // Processes are costlier than requests: a tenth as many.
      auto cli = measure(clients, std::max(clients, n / 10), [&](int, int) {
        if (run_cli(taskhost, home) != 0) throw std::runtime_error("taskhost run noop failed");
      });
      print("CLI `taskhost run noop` (process)", clients, cli);
    }
  } catch (const std::exception& e) {
    std::fprintf(stderr, "api_bench: %s\n", e.what());
    return 1;
  }
}
