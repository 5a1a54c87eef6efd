#include "api/server.hpp"

#include <poll.h>
#include <spdlog/spdlog.h>
#include <sys/stat.h>

#include <algorithm>
#include <boost/asio.hpp>
#include <boost/beast/core.hpp>
#include <boost/beast/http.hpp>
#include <condition_variable>
#include <filesystem>
#include <mutex>
#include <optional>
#include <thread>
#include <vector>

#include "api/routes.hpp"
#include "common/error.hpp"
#include "common/text.hpp"
#include "store/run_logs.hpp"

namespace taskhost::api {

namespace net = boost::asio;
namespace beast = boost::beast;
using tcp = net::ip::tcp;
using local = net::local::stream_protocol;

namespace {

// The handlers' database connections: one per handler thread at most, made
// on first need and replaced when one breaks.
class ConnectionPool {
 public:
  explicit ConnectionPool(std::string conninfo) : conninfo_(std::move(conninfo)) {}

  std::unique_ptr<pg::Connection> take() {
    std::lock_guard lock(mutex_);
    if (free_.empty()) return std::make_unique<pg::Connection>(conninfo_);
    auto c = std::move(free_.back());
    free_.pop_back();
    return c;
  }
  void give_back(std::unique_ptr<pg::Connection> c) {
    if (!c->ok()) return;  // a broken one is dropped
    std::lock_guard lock(mutex_);
    free_.push_back(std::move(c));
  }

 private:
  std::string conninfo_;
  std::mutex mutex_;
  std::vector<std::unique_ptr<pg::Connection>> free_;
};

// An open stream as the hub sees it.
class Subscriber {
 public:
  virtual ~Subscriber() = default;
  virtual void wake() = 0;  // from any thread: its run changed
};

// Which open streams follow which run.
class Hub {
 public:
  void add(const std::string& run, const std::shared_ptr<Subscriber>& s) {
    std::lock_guard lock(mutex_);
    subscribers_.emplace(run, s);
  }
  void remove(const std::string& run, const Subscriber* s) {
    std::lock_guard lock(mutex_);
    auto [from, to] = subscribers_.equal_range(run);
    for (auto it = from; it != to;) {
      auto held = it->second.lock();
      it = !held || held.get() == s ? subscribers_.erase(it) : std::next(it);
    }
  }
  // Those of one run, or (run empty) all: after the listener reconnected,
  // since notifications sent meanwhile are lost.
  void wake(const std::string& run) {
    std::vector<std::shared_ptr<Subscriber>> woken;
    {
      std::lock_guard lock(mutex_);
      auto [from, to] = run.empty() ? std::pair(subscribers_.begin(), subscribers_.end())
                                    : subscribers_.equal_range(run);
      for (auto it = from; it != to; ++it)
        if (auto s = it->second.lock()) woken.push_back(std::move(s));
    }
    for (const auto& s : woken) s->wake();
  }

 private:
  std::mutex mutex_;
  std::multimap<std::string, std::weak_ptr<Subscriber>> subscribers_;
};

// The process's one LISTEN connection: it hears run_activity_channel and
// wakes the streams of the run named; it reconnects with backoff.
class Listener {
 public:
  Listener(std::string conninfo, Hub& hub) : conninfo_(std::move(conninfo)), hub_(hub) {
    thread_ = std::thread([this] { loop(); });
  }
  ~Listener() {
    stop_ = true;
    thread_.join();
  }

 private:
  void loop() {
    auto backoff = std::chrono::milliseconds(100);
    while (!stop_) {
      try {
        pg::Connection conn(conninfo_);
        conn.exec(std::string("LISTEN ") + run_activity_channel);
        hub_.wake("");
        backoff = std::chrono::milliseconds(100);
        while (!stop_) {
          pollfd fd{PQsocket(conn.raw()), POLLIN, 0};
          ::poll(&fd, 1, 250);  // and look at stop_ four times a second
          if (PQconsumeInput(conn.raw()) == 0)
            throw Error(ErrorKind::environment, PQerrorMessage(conn.raw()));
          while (PGnotify* n = PQnotifies(conn.raw())) {
            hub_.wake(n->extra);
            PQfreemem(n);
          }
        }
      } catch (const std::exception& e) {
        spdlog::warn("api: the live streams' listener lost the database, retrying in {} ms: {}",
                     backoff.count(), e.what());
        for (auto until = std::chrono::steady_clock::now() + backoff;
             !stop_ && std::chrono::steady_clock::now() < until;)
          std::this_thread::sleep_for(std::chrono::milliseconds(50));
        backoff = std::min(backoff * 2, std::chrono::milliseconds(5000));
      }
    }
  }

  std::string conninfo_;
  Hub& hub_;
  std::atomic<bool> stop_{false};
  std::thread thread_;
};

struct Shared {
  ServeOptions options;
  Router router;
  ConnectionPool pool;
  net::thread_pool handlers;
  Hub hub;

  // For a stream route, sets *stream and reads its first chunk.
  Response handle(const Request& request, const std::string& client,
                  std::unique_ptr<EventStream>* stream, EventStream::Chunk* first) {
    std::unique_ptr<pg::Connection> db;
    try {
      db = pool.take();
    } catch (const Error& e) {
      spdlog::error("api: {}", e.what());
      return problem(http::status::service_unavailable, "the database is unreachable");
    }
    Response r = router.handle(request, *db, client, stream);
    if (*stream) {
      try {
        *first = (*stream)->next(*db);
      } catch (const std::exception& e) {
        spdlog::error("api: opening a stream: {}", e.what());
        stream->reset();
        r = problem(http::status::service_unavailable, "the stream could not be read");
      }
    }
    pool.give_back(std::move(db));
    return r;
  }
};

template <typename Stream>
class Session : public Subscriber, public std::enable_shared_from_this<Session<Stream>> {
 public:
  Session(typename Stream::socket_type socket, Shared& shared, std::string client)
      : stream_(std::move(socket)), shared_(shared), client_(std::move(client)) {}

  void start() { read(); }

 private:
  void read() {
    parser_.emplace();
    parser_->header_limit(static_cast<uint32_t>(shared_.options.header_limit));
    // The parser refuses a Content-Length over its limit as soon as the
    // header is complete, before we know the route: so the largest limit
    // first, and each route's own once the target is known.
    body_limit_ = std::max(shared_.options.body_limit, shared_.options.upload_limit);
    parser_->body_limit(body_limit_);
    stream_.expires_after(shared_.options.read_timeout);
    http::async_read_header(
        stream_, buffer_, *parser_,
        [self = this->shared_from_this()](beast::error_code ec, size_t) { self->on_header(ec); });
  }

  // Uploads may be larger than any other body.
  void on_header(beast::error_code ec) {
    if (ec) return on_read(ec);
    const auto target = parser_->get().target();
    body_limit_ = target.starts_with("/v1/schemas/") && target.find("/uploads/") != target.npos
                      ? shared_.options.upload_limit
                      : shared_.options.body_limit;
    if (auto length = parser_->content_length(); length && *length > body_limit_)
      return reply(too_large(true), false);
    parser_->body_limit(body_limit_);  // a chunked body counts against it as it comes
    http::async_read(
        stream_, buffer_, *parser_,
        [self = this->shared_from_this()](beast::error_code ec, size_t) { self->on_read(ec); });
  }

  void on_read(beast::error_code ec) {
    if (ec == http::error::end_of_stream || ec == beast::error::timeout ||
        ec == net::error::operation_aborted || ec == net::error::connection_reset)
      return close();
    if (ec == http::error::body_limit || ec == http::error::header_limit) {
      return reply(too_large(ec == http::error::body_limit), false);
    }
    if (ec)
      return reply(problem(http::status::bad_request, "malformed HTTP request: " + ec.message()),
                   false);
    stream_.expires_never();  // the handler may take its time; the write sets its own
    auto request = std::make_shared<Request>(parser_->release());
    // Off the I/O thread: a handler blocks on the database.
    net::post(shared_.handlers, [self = this->shared_from_this(), request] {
      std::unique_ptr<EventStream> stream;
      EventStream::Chunk first;
      auto response = std::make_shared<Response>(
          self->shared_.handle(*request, self->client_, &stream, &first));
      if (stream) {
        net::post(self->stream_.get_executor(),
                  [self, events = std::shared_ptr<EventStream>(std::move(stream)),
                   first = std::move(first)]() mutable {
                    self->start_stream(std::move(events), std::move(first));
                  });
        return;
      }
      response->version(request->version());
      response->keep_alive(request->keep_alive());
      net::post(self->stream_.get_executor(),
                [self, response] { self->reply(std::move(*response), response->keep_alive()); });
    });
  }

  void reply(Response response, bool keep_alive) {
    response.keep_alive(keep_alive);
    response.set(http::field::server, "taskhost");
    response.set("X-Content-Type-Options", "nosniff");
    response.set(http::field::cache_control, "no-store");
    // The portal's page: only its own files run, nothing may frame it, and
    // its URLs (run ids) do not leak in Referer. Harmless on API responses.
    response.set("Content-Security-Policy",
                 "default-src 'self'; script-src 'self'; style-src 'self'; img-src 'self'; "
                 "connect-src 'self'; object-src 'none'; base-uri 'none'; form-action 'self'; "
                 "frame-ancestors 'none'");
    response.set("X-Frame-Options", "DENY");
    response.set("Referrer-Policy", "no-referrer");
    response.prepare_payload();
    auto held = std::make_shared<Response>(std::move(response));
    stream_.expires_after(shared_.options.read_timeout);
    http::async_write(stream_, *held,
                      [self = this->shared_from_this(), held](beast::error_code ec, size_t) {
                        if (ec || !held->keep_alive()) return self->close();
                        self->read();
                      });
  }

  Response too_large(bool body) {
    return body ? problem(http::status::payload_too_large,
                          "the body is over " + std::to_string(body_limit_) + " bytes")
                : problem(http::status::request_header_fields_too_large,
                          "the headers are over " + std::to_string(shared_.options.header_limit) +
                              " bytes");
  }

  void close() {
    beast::error_code ignored;
    stream_.socket().shutdown(net::socket_base::shutdown_both, ignored);
    stream_.socket().close(ignored);
  }

  // ---- a live stream (text/event-stream) -----------------------------------
  // All of it runs on the I/O thread but the reads (next()), which run on a
  // handler thread, one at a time; the body ends when the connection does.

  void start_stream(std::shared_ptr<EventStream> events, EventStream::Chunk first) {
    events_ = std::move(events);
    pending_ =
        "HTTP/1.1 200 OK\r\nServer: taskhost\r\nContent-Type: text/event-stream\r\n"
        "Cache-Control: no-store\r\nX-Content-Type-Options: nosniff\r\n"
        "X-Accel-Buffering: no\r\nConnection: close\r\n\r\nretry: 3000\n\n";
    shared_.hub.add(events_->run_id(), this->shared_from_this());
    watch_for_close();
    heartbeat_.emplace(stream_.get_executor());
    beat();
    deliver(std::move(first));
  }

  void wake() override {
    net::post(stream_.get_executor(), [self = this->shared_from_this()] {
      if (self->closed_ || self->finishing_) return;
      if (self->polling_)
        self->dirty_ = true;  // read again once this read is in
      else
        self->poll();
    });
  }

  void poll() {
    polling_ = true;
    net::post(shared_.handlers, [self = this->shared_from_this()] {
      EventStream::Chunk c;
      bool failed = false;
      try {
        auto db = self->shared_.pool.take();
        c = self->events_->next(*db);
        self->shared_.pool.give_back(std::move(db));
      } catch (const std::exception& e) {
        spdlog::warn("api: stream of run {} ended: {}", self->events_->run_id(), e.what());
        failed = true;  // the client reconnects and resumes
      }
      net::post(self->stream_.get_executor(), [self, c = std::move(c), failed]() mutable {
        self->polling_ = false;
        if (failed) return self->close_stream();
        self->deliver(std::move(c));
      });
    });
  }

  void deliver(EventStream::Chunk c) {
    if (closed_) return;
    if (pending_.size() + c.text.size() > shared_.options.stream_buffer_limit) {
      spdlog::warn("api: stream of run {} to {} dropped: the client is over {} bytes behind",
                   events_->run_id(), printable(client_), shared_.options.stream_buffer_limit);
      return close_stream();
    }
    pending_ += c.text;
    finishing_ = finishing_ || c.done;
    write_pending();
    if (!finishing_ && (c.more || dirty_)) {
      dirty_ = false;
      poll();
    }
  }

  void write_pending() {
    if (writing_now_ || closed_) return;
    if (pending_.empty()) {
      if (finishing_) close_stream();
      return;
    }
    writing_ = std::move(pending_);
    pending_.clear();
    writing_now_ = true;
    write_started_ = std::chrono::steady_clock::now();
    net::async_write(stream_.socket(), net::buffer(writing_),
                     [self = this->shared_from_this()](beast::error_code ec, size_t) {
                       self->writing_now_ = false;
                       if (ec) return self->close_stream();
                       self->write_pending();
                     });
  }

  // A comment line when idle; a write stuck for read_timeout ends the stream.
  void beat() {
    heartbeat_->expires_after(shared_.options.heartbeat);
    heartbeat_->async_wait([self = this->shared_from_this()](beast::error_code ec) {
      if (ec || self->closed_) return;
      if (self->writing_now_ && std::chrono::steady_clock::now() - self->write_started_ >
                                    self->shared_.options.read_timeout) {
        spdlog::warn("api: stream of run {} to {} dropped: the client stopped reading",
                     self->events_->run_id(), printable(self->client_));
        return self->close_stream();
      }
      if (!self->writing_now_ && self->pending_.empty()) {
        self->pending_ = ": keep-alive\n\n";
        self->write_pending();
      }
      self->beat();
    });
  }

  // The client sends nothing more; a read ends when it goes away.
  void watch_for_close() {
    stream_.socket().async_read_some(
        net::buffer(ignored_), [self = this->shared_from_this()](beast::error_code ec, size_t) {
          if (ec) return self->close_stream();
          self->watch_for_close();
        });
  }

  void close_stream() {
    if (closed_) return;
    closed_ = true;
    shared_.hub.remove(events_->run_id(), this);
    if (heartbeat_) heartbeat_->cancel();
    close();
  }

  Stream stream_;
  beast::flat_buffer buffer_;
  std::optional<http::request_parser<http::string_body>> parser_;
  size_t body_limit_ = 0;  // this request's
  Shared& shared_;
  std::string client_;

  std::shared_ptr<EventStream> events_;
  std::string pending_, writing_;  // bytes waiting; bytes being written
  bool writing_now_ = false, polling_ = false, dirty_ = false, finishing_ = false, closed_ = false;
  std::chrono::steady_clock::time_point write_started_;
  std::optional<net::steady_timer> heartbeat_;
  char ignored_[256];
};

}  // namespace

struct Server::Impl {
  Impl(app::Host& host, ServeOptions options)
      : shared{options,
               Router(host, options.portal_dir),
               ConnectionPool(host.conninfo()),
               net::thread_pool(static_cast<size_t>(std::max(1, options.threads))),
               {}},
        listener(host.conninfo(), shared.hub) {}

  template <typename Acceptor, typename Stream>
  void accept(Acceptor& acceptor) {
    acceptor.async_accept(
        [this, &acceptor](beast::error_code ec, typename Acceptor::protocol_type::socket socket) {
          if (ec == net::error::operation_aborted) return;
          if (!ec) {
            std::string client = "unix";
            if constexpr (std::is_same_v<typename Acceptor::protocol_type, tcp>) {
              beast::error_code ignored;
              client = socket.remote_endpoint(ignored).address().to_string();
            }
            std::make_shared<Session<Stream>>(std::move(socket), shared, client)->start();
          }
          accept<Acceptor, Stream>(acceptor);
        });
  }

  Shared shared;
  net::io_context io{1};
  std::optional<tcp::acceptor> tcp_acceptor;
  std::optional<local::acceptor> unix_acceptor;
  // Last: it wakes sessions on io, so it stops before io goes.
  Listener listener;
};

Server::Server(app::Host& host, ServeOptions options)
    : impl_(std::make_unique<Impl>(host, std::move(options))) {}

Server::~Server() {
  stop();
  impl_->shared.handlers.join();
}

std::string Server::bind() {
  const auto& o = impl_->shared.options;
  try {
    if (!o.unix_socket.empty()) {
      std::filesystem::remove(o.unix_socket);
      impl_->unix_acceptor.emplace(impl_->io, local::endpoint(o.unix_socket));
      ::chmod(o.unix_socket.c_str(), 0660);
      impl_->accept<local::acceptor, beast::basic_stream<local>>(*impl_->unix_acceptor);
      return o.unix_socket;
    }
    const auto colon = o.listen.rfind(':');
    if (colon == std::string::npos)
      throw Error(ErrorKind::invalid, "--listen: expected host:port, got '" + o.listen + "'");
    std::string host = o.listen.substr(0, colon);
    if (host.size() > 2 && host.front() == '[') host = host.substr(1, host.size() - 2);
    tcp::resolver resolver(impl_->io);
    const auto endpoints = resolver.resolve(
        host, o.listen.substr(colon + 1), tcp::resolver::passive | tcp::resolver::numeric_service);
    impl_->tcp_acceptor.emplace(impl_->io, endpoints.begin()->endpoint());
    impl_->accept<tcp::acceptor, beast::tcp_stream>(*impl_->tcp_acceptor);
    const auto ep = impl_->tcp_acceptor->local_endpoint();
    const std::string addr = ep.address().to_string();
    return "http://" + (ep.address().is_v6() ? "[" + addr + "]" : addr) + ":" +
           std::to_string(ep.port());
  } catch (const boost::system::system_error& e) {
    throw Error(ErrorKind::environment, "cannot listen on " +
                                            (o.unix_socket.empty() ? o.listen : o.unix_socket) +
                                            ": " + e.code().message());
  }
}

void Server::run() { impl_->io.run(); }

void Server::stop() { impl_->io.stop(); }

}  // namespace taskhost::api
