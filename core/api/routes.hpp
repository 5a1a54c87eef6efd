#pragma once

// The HTTP API's routes (openapi/taskhost.yaml is their contract; a test
// walks both ways). Handlers only parse, call the application layer and
// format; errors become RFC 9457 problem documents.
#include <boost/beast/http.hpp>
#include <chrono>
#include <functional>
#include <map>
#include <mutex>
#include <string>
#include <vector>

#include "api/metrics.hpp"
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
};

struct Route {
  http::verb method;
  std::string path;  // "/v1/runs/{id}"
  std::function<Response(Call&)> handle;
  // Served without an API key (health, readiness): the call's actor then
  // has no roles, so no operation that authorizes is reachable.
  bool open = false;
};
const std::vector<Route>& routes();

// An RFC 9457 problem document (application/problem+json).
Response problem(http::status status, const std::string& detail);

// One request from start to finish: open routes as they are, the others
// after a Bearer API key, failed authentications rate limited per client
// address; each answer counted in the API's metrics. Thread-safe.
class Router {
 public:
  explicit Router(app::Host& host);
  Response handle(const Request& request, pg::Connection& db, const std::string& client);

 private:
  // Sets `route` to the one that answered (nullptr: none matched).
  Response dispatch(const Request& request, pg::Connection& db, const std::string& client,
                    const Route*& route);
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
  ApiMetrics metrics_;
};

}  // namespace taskhost::api
