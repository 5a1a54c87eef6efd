#pragma once

#include <atomic>
#include <chrono>
#include <functional>
#include <map>
#include <mutex>
#include <string>
#include <thread>
#include <vector>

namespace taskhost::test {

struct HttpRequest {
  std::string method, target;
  std::map<std::string, std::string> headers;  // names in lower case
  std::string body;
};

struct HttpResponse {
  int status = 200;
  std::map<std::string, std::string> headers;
  std::chrono::milliseconds delay{0};  // before answering
  std::string body;
};

// A real HTTP/1.1 server on a loopback port, for the webhook receiver side:
// it records every request and connection, and answers with respond().
class HttpReceiver {
 public:
  using Responder = std::function<HttpResponse(const HttpRequest&)>;
  // port 0 picks a free one.
  explicit HttpReceiver(Responder respond = nullptr, int port = 0);
  ~HttpReceiver();
  HttpReceiver(const HttpReceiver&) = delete;
  HttpReceiver& operator=(const HttpReceiver&) = delete;

  int port() const { return port_; }
  std::string url() const { return "http://127.0.0.1:" + std::to_string(port_) + "/hook"; }
  std::vector<HttpRequest> requests() const;
  int connections() const { return connections_; }
  // Waits until n requests have arrived; false after the timeout.
  bool wait_for(size_t n, std::chrono::milliseconds timeout = std::chrono::seconds(10)) const;

 private:
  void accept_loop();
  void serve(int fd);

  Responder respond_;
  int listen_fd_ = -1, port_ = 0;
  std::atomic<bool> stop_ = false;
  std::atomic<int> connections_ = 0;
  mutable std::mutex mutex_;
  std::vector<HttpRequest> requests_;
  std::vector<std::thread> threads_;
  std::thread acceptor_;
};

}  // namespace taskhost::test
