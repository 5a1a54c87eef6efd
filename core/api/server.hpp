#pragma once

#include <atomic>
#include <chrono>
#include <cstdint>
#include <filesystem>
#include <functional>
#include <memory>
#include <string>

#include "app/host.hpp"

namespace taskhost::api {

struct ServeOptions {
  std::string listen;       // host:port; port 0 picks a free one
  std::string unix_socket;  // instead of listen: a socket file (mode 0660)
  // Handler threads, each with its own database connection: a request holds
  // one only while its handler runs, so idle keep-alive clients hold none.
  int threads = 4;
  size_t header_limit = 16 * 1024;
  size_t body_limit = 1 << 20;
  // An operator's file for a parameter (POST /v1/schemas/{ref}/uploads/..):
  // held in memory while it is stored, so bounded by this times the threads.
  size_t upload_limit = 32 << 20;
  std::filesystem::path portal_dir;       // the portal's static files
  std::chrono::seconds read_timeout{30};  // per request, and idle keep-alive
  // Live streams (text/event-stream): a comment line this often while
  // nothing else is sent, so proxies keep the connection open; the bytes a
  // client may fall behind before its stream is dropped (it reconnects with
  // Last-Event-ID); a write that makes no progress for read_timeout drops
  // it too.
  std::chrono::milliseconds heartbeat{15'000};
  size_t stream_buffer_limit = 1 << 20;
};

// `taskhost serve`: HTTP/1.1 with keep-alive over Boost.Beast, asynchronous
// (one I/O thread), handlers posted to a bounded pool (routes.hpp). Live
// streams hold no thread while idle: one LISTEN connection hears of runs'
// activity and wakes their streams, each of which then reads what is new on
// a handler thread and writes it asynchronously.
class Server {
 public:
  Server(app::Host& host, ServeOptions options);
  ~Server();
  // Binds; returns what it listens on ("http://127.0.0.1:8080" or the
  // socket path). Throws Error(environment) when it cannot.
  std::string bind();
  // Serves until stop(); safe to call stop() from another thread.
  void run();
  void stop();

 private:
  struct Impl;
  std::unique_ptr<Impl> impl_;
};

}  // namespace taskhost::api
