#include "api/server.hpp"

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

struct Shared {
  ServeOptions options;
  Router router;
  ConnectionPool pool;
  net::thread_pool handlers;

  Response handle(const Request& request, const std::string& client) {
    std::unique_ptr<pg::Connection> db;
    try {
      db = pool.take();
    } catch (const Error& e) {
      spdlog::error("api: {}", e.what());
      return problem(http::status::service_unavailable, "the database is unreachable");
    }
    Response r = router.handle(request, *db, client);
    pool.give_back(std::move(db));
    return r;
  }
};

template <typename Stream>
class Session : public std::enable_shared_from_this<Session<Stream>> {
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
      auto response = std::make_shared<Response>(self->shared_.handle(*request, self->client_));
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

  Stream stream_;
  beast::flat_buffer buffer_;
  std::optional<http::request_parser<http::string_body>> parser_;
  size_t body_limit_ = 0;  // this request's
  Shared& shared_;
  std::string client_;
};

}  // namespace

struct Server::Impl {
  Impl(app::Host& host, ServeOptions options)
      : shared{options, Router(host, options.portal_dir), ConnectionPool(host.conninfo()),
               net::thread_pool(static_cast<size_t>(std::max(1, options.threads)))} {}

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
