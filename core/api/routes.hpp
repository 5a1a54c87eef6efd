#pragma once

// The HTTP API's routes (openapi/taskhost.yaml is their contract; a test
// walks both ways). Handlers only parse, call the application layer and
// format; errors become RFC 9457 problem documents.
#include <boost/beast/http.hpp>
#include <chrono>
#include <functional>
#include <map>
#include <memory>
#include <mutex>
#include <string>
#include <vector>

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
  // Served without an API key (health, readiness): the call's actor then
  // has no roles, so no operation that authorizes is reachable.
  bool open = false;
  // Instead of handle, for a route answering with a stream.
  std::function<std::unique_ptr<EventStream>(Call&)> stream = {};
};
const std::vector<Route>& routes();

// The stream routes' openers (api/streams.cpp).
std::unique_ptr<EventStream> open_run_events_stream(Call& c);
std::unique_ptr<EventStream> open_run_logs_stream(Call& c);

// An RFC 9457 problem document (application/problem+json).
Response problem(http::status status, const std::string& detail);

// One request from start to finish: open routes as they are, the others
// after a Bearer API key, failed authentications rate limited per client
// address. Thread-safe.
class Router {
 public:
  explicit Router(app::Host& host);
  // A stream route sets *stream (and the response is only its status);
  // without a place for one, it answers 406.
  Response handle(const Request& request, pg::Connection& db, const std::string& client,
                  std::unique_ptr<EventStream>* stream = nullptr);

 private:
  bool throttled(const std::string& client);
  void failed(const std::string& client);

  app::Host& host_;
  std::string pepper_;
  std::mutex mutex_;
  struct Failures {
    int count = 0;
    std::chrono::steady_clock::time_point since;
  };
  std::map<std::string, Failures> failures_;
};

}  // namespace taskhost::api
