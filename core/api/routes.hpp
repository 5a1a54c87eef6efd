#pragma once

// The HTTP API's routes (openapi/taskhost.yaml is their contract; a test
// walks both ways). Handlers only parse, call the application layer and
// format; errors become RFC 9457 problem documents.
#include <boost/beast/http.hpp>
#include <chrono>
#include <filesystem>
#include <functional>
#include <map>
#include <memory>
#include <mutex>
#include <optional>
#include <string>
#include <vector>

#include "api/metrics.hpp"
#include "app/api_keys.hpp"
#include "app/app.hpp"

namespace taskhost::api {

namespace http = boost::beast::http;
using Request = http::request<http::string_body>;
using Response = http::response<http::string_body>;

struct Call {
  const Request& request;
  std::map<std::string, std::string> path;   // {name} segments
  std::map<std::string, std::string> query;  // decoded
  app::App& app;
  app::Host& host;
  pg::Connection& db;
  const ApiMetrics& metrics;
  // The portal session the request came with (std::nullopt: an API key).
  std::optional<app::PortalSession> session = std::nullopt;
};

// A live response (text/event-stream, api/streams.cpp): the server asks it
// for what is new when it opens and each time its run's activity is
// announced (run_activity_channel), on a handler thread with a connection.
class EventStream {
 public:
  struct Chunk {
    std::string text;   // server-sent events, possibly none
    bool more = false;  // a limit cut this read short: ask again at once
    bool done = false;  // the run finished and everything was sent
  };
  virtual ~EventStream() = default;
  virtual const std::string& run_id() const = 0;
  virtual Chunk next(pg::Connection& db) = 0;
};

struct Route {
  http::verb method;
  std::string path;  // "/v1/runs/{id}"
  std::function<Response(Call&)> handle;
  // Served without an API key (health, readiness, metrics, signing in):
  // the call's actor then has no roles, so no operation that authorizes is
  // reachable; its 401s count as failed authentications.
  bool open = false;
  // Instead of handle, for a route answering with a stream.
  std::function<std::unique_ptr<EventStream>(Call&)> stream = {};
};
const std::vector<Route>& routes();

// The stream routes' openers (api/streams.cpp).
std::unique_ptr<EventStream> open_run_events_stream(Call& c);
std::unique_ptr<EventStream> open_run_logs_stream(Call& c);

// An RFC 9457 problem document (application/problem+json), with extension
// members when given (a 422 for parameters: errors: [{field, detail}]).
Response problem(http::status status, const std::string& detail,
                 const nlohmann::json& extensions = nlohmann::json::object());

// The portal's cookie, and the header its state changes carry.
inline constexpr const char* session_cookie = "taskhost_session";
inline constexpr const char* csrf_header = "X-CSRF-Token";

// One request from start to finish: open routes as they are, the portal's
// static files, the others after a Bearer API key or a portal session cookie
// (whose state changes must carry its CSRF token), failed authentications
// rate limited per client address; each answer counted in the API's metrics.
// Thread-safe.
class Router {
 public:
  // portal_dir: the portal's files, read once here (none: no portal).
  Router(app::Host& host, const std::filesystem::path& portal_dir);
  // A stream route sets *stream (and the response is only its status);
  // without a place for one, it answers 406.
  Response handle(const Request& request, pg::Connection& db, const std::string& client,
                  std::unique_ptr<EventStream>* stream = nullptr);

 private:
  // Sets `route` to the one that answered (nullptr: none matched).
  Response dispatch(const Request& request, pg::Connection& db, const std::string& client,
                    std::unique_ptr<EventStream>* stream, const Route*& route);
  bool throttled(const std::string& client);
  void failed(const std::string& client);
  std::optional<Response> portal_file(const Request& request, std::string_view path) const;

  app::Host& host_;
  std::string pepper_;
  struct Asset {
    std::string content_type, body;
  };
  std::map<std::string, Asset> portal_;  // by request path: "/", "/app.js"
  std::filesystem::path portal_dir_;
  std::mutex mutex_;
  struct Failures {
    int count = 0;
    std::chrono::steady_clock::time_point since;
  };
  std::map<std::string, Failures> failures_;
  ApiMetrics metrics_;
};

}  // namespace taskhost::api
