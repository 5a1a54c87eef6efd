#include "support/http_receiver.hpp"

#include <arpa/inet.h>
#include <netinet/in.h>
#include <poll.h>
#include <sys/socket.h>
#include <unistd.h>

#include <algorithm>
#include <stdexcept>

namespace taskhost::test {

namespace {

// Waits for fd to be readable, up to 100 ms; false on timeout.
bool readable(int fd) {
  pollfd p{fd, POLLIN, 0};
  return ::poll(&p, 1, 100) > 0;
}

const char* reason(int status) {
  switch (status) {
    case 200:
      return "OK";
    case 204:
      return "No Content";
    case 410:
      return "Gone";
    case 429:
      return "Too Many Requests";
    default:
      return status >= 500 ? "Server Error" : "Other";
  }
}

}  // namespace

HttpReceiver::HttpReceiver(Responder respond, int port) : respond_(std::move(respond)) {
  listen_fd_ = ::socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
  int one = 1;
  ::setsockopt(listen_fd_, SOL_SOCKET, SO_REUSEADDR, &one, sizeof one);
  sockaddr_in a{};
  a.sin_family = AF_INET;
  a.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
  a.sin_port = htons(static_cast<uint16_t>(port));
  if (::bind(listen_fd_, reinterpret_cast<sockaddr*>(&a), sizeof a) != 0 ||
      ::listen(listen_fd_, 128) != 0)
    throw std::runtime_error("HttpReceiver: cannot listen on port " + std::to_string(port));
  socklen_t len = sizeof a;
  ::getsockname(listen_fd_, reinterpret_cast<sockaddr*>(&a), &len);
  port_ = ntohs(a.sin_port);
  acceptor_ = std::thread([this] { accept_loop(); });
}

HttpReceiver::~HttpReceiver() {
  stop_ = true;
  acceptor_.join();
  for (auto& t : threads_) t.join();
  ::close(listen_fd_);
}

std::vector<HttpRequest> HttpReceiver::requests() const {
  std::lock_guard lock(mutex_);
  return requests_;
}

bool HttpReceiver::wait_for(size_t n, std::chrono::milliseconds timeout) const {
  auto until = std::chrono::steady_clock::now() + timeout;
  while (std::chrono::steady_clock::now() < until) {
    if (requests().size() >= n) return true;
    std::this_thread::sleep_for(std::chrono::milliseconds(5));
  }
  return requests().size() >= n;
}

void HttpReceiver::accept_loop() {
  while (!stop_) {
    if (!readable(listen_fd_)) continue;
    int fd = ::accept4(listen_fd_, nullptr, nullptr, SOCK_CLOEXEC);
    if (fd < 0) continue;
    ++connections_;
    threads_.emplace_back([this, fd] {
      serve(fd);
      ::close(fd);
    });
  }
}

void HttpReceiver::serve(int fd) {
  std::string buffer;
  while (!stop_) {
    // Read one request: headers, then Content-Length bytes of body.
    // Appends what the client sent next; false once it closed (or we stop).
    auto read_more = [&] {
      while (!stop_)
        if (readable(fd)) {
          char chunk[65536];
          ssize_t n = ::read(fd, chunk, sizeof chunk);
          if (n <= 0) return false;
          buffer.append(chunk, static_cast<size_t>(n));
          return true;
        }
      return false;
    };
    size_t head_end;
    while ((head_end = buffer.find("\r\n\r\n")) == std::string::npos)
      if (!read_more()) return;
    HttpRequest req;
    std::string head = buffer.substr(0, head_end);
    size_t line_end = head.find("\r\n");
    std::string first = head.substr(0, line_end);
    req.method = first.substr(0, first.find(' '));
    req.target = first.substr(req.method.size() + 1, first.rfind(' ') - req.method.size() - 1);
    for (size_t pos = line_end; pos != std::string::npos && pos < head.size();) {
      size_t next = head.find("\r\n", pos + 2);
      std::string line =
          head.substr(pos + 2, next == std::string::npos ? std::string::npos : next - pos - 2);
      if (auto colon = line.find(':'); colon != std::string::npos) {
        std::string name = line.substr(0, colon);
        std::transform(name.begin(), name.end(), name.begin(), ::tolower);
        req.headers[name] = line.substr(line.find_first_not_of(' ', colon + 1));
      }
      pos = next;
    }
    size_t length =
        req.headers.count("content-length") ? std::stoul(req.headers["content-length"]) : 0;
    buffer.erase(0, head_end + 4);
    while (buffer.size() < length)
      if (!read_more()) return;
    req.body = buffer.substr(0, length);
    buffer.erase(0, length);

    HttpResponse res = respond_ ? respond_(req) : HttpResponse{};
    {
      std::lock_guard lock(mutex_);
      requests_.push_back(req);
    }
    // In steps of at most 10 ms, so a stop is heard and a short delay kept.
    for (auto left = res.delay; left.count() > 0 && !stop_;) {
      const auto step = std::min(left, std::chrono::milliseconds(10));
      std::this_thread::sleep_for(step);
      left -= step;
    }
    std::string out = "HTTP/1.1 " + std::to_string(res.status) + " " + reason(res.status) +
                      "\r\ncontent-length: " + std::to_string(res.body.size()) + "\r\n";
    for (const auto& [k, v] : res.headers) out += k + ": " + v + "\r\n";
    out += "\r\n" + res.body;
    if (::send(fd, out.data(), out.size(), MSG_NOSIGNAL) < 0) return;
  }
}

}  // namespace taskhost::test
