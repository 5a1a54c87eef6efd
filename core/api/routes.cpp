#include "api/routes.hpp"

#include <spdlog/spdlog.h>

#include <boost/beast/core/string.hpp>
#include <fstream>
#include <sstream>

#include "app/api_keys.hpp"
#include "app/views.hpp"
#include "common/error.hpp"
#include "common/json_input.hpp"
#include "common/sha256.hpp"
#include "common/text.hpp"
#include "store/migrate.hpp"

namespace taskhost::api {
namespace {

using Json = nlohmann::json;

// Failed authentications a client may make per minute before 429.
constexpr int max_failures_per_minute = 20;

Response json_response(http::status status, const Json& body) {
  Response r{status, 11};
  r.set(http::field::content_type, "application/json");
  r.body() = body.dump();
  return r;
}

http::status status_of(ErrorKind k) {
  switch (k) {
    case ErrorKind::invalid:
      return http::status::unprocessable_entity;
    case ErrorKind::not_found:
      return http::status::not_found;
    case ErrorKind::conflict:
      return http::status::conflict;
    case ErrorKind::refused:
      return http::status::forbidden;
    case ErrorKind::environment:
      return http::status::service_unavailable;
  }
  return http::status::internal_server_error;
}

// '+' means a space only in a query (form encoding); in a path it is itself,
// as in hello@1.0.0+3f2a9c1d0e4b.
std::string percent_decode(std::string_view s, bool plus_is_space) {
  std::string out;
  for (size_t i = 0; i < s.size(); ++i) {
    if (s[i] == '%' && i + 2 < s.size() && std::isxdigit(static_cast<unsigned char>(s[i + 1])) &&
        std::isxdigit(static_cast<unsigned char>(s[i + 2]))) {
      out += static_cast<char>(std::stoi(std::string(s.substr(i + 1, 2)), nullptr, 16));
      i += 2;
    } else {
      out += s[i] == '+' && plus_is_space ? ' ' : s[i];
    }
  }
  return out;
}

std::map<std::string, std::string> parse_query(std::string_view q) {
  std::map<std::string, std::string> out;
  while (!q.empty()) {
    auto amp = q.find('&');
    auto pair = q.substr(0, amp);
    auto eq = pair.find('=');
    out[percent_decode(pair.substr(0, eq), true)] =
        eq == std::string_view::npos ? "" : percent_decode(pair.substr(eq + 1), true);
    q = amp == std::string_view::npos ? std::string_view() : q.substr(amp + 1);
  }
  return out;
}

// Matches "/v1/runs/{id}" against a path, filling the named segments.
bool match(const std::string& pattern, std::string_view path,
           std::map<std::string, std::string>& params) {
  size_t p = 0, q = 0;
  while (p < pattern.size() && q <= path.size()) {
    if (pattern[p] == '{') {
      const size_t close = pattern.find('}', p);
      const size_t end = std::min(path.find('/', q), path.size());
      if (end == q) return false;
      params[pattern.substr(p + 1, close - p - 1)] = percent_decode(path.substr(q, end - q), false);
      p = close + 1;
      q = end;
    } else {
      if (q >= path.size() || pattern[p] != path[q]) return false;
      ++p;
      ++q;
    }
  }
  return p == pattern.size() && q == path.size();
}

// The value of one cookie in a Cookie header ("a=1; b=2"), or "".
std::string cookie_value(std::string_view header, std::string_view name) {
  while (!header.empty()) {
    const size_t semi = header.find(';');
    std::string_view pair = header.substr(0, semi);
    while (!pair.empty() && pair.front() == ' ') pair.remove_prefix(1);
    if (pair.size() > name.size() && pair.substr(0, name.size()) == name &&
        pair[name.size()] == '=')
      return std::string(pair.substr(name.size() + 1));
    header = semi == std::string_view::npos ? std::string_view() : header.substr(semi + 1);
  }
  return "";
}

std::optional<std::string> opt(const Call& c, const char* name) {
  auto it = c.query.find(name);
  return it == c.query.end() ? std::nullopt : std::optional<std::string>(it->second);
}

int int_param(const Call& c, const char* name, int fallback, int max) {
  auto v = opt(c, name);
  if (!v) return fallback;
  if (v->empty() || v->size() > 9 || v->find_first_not_of("0123456789") != std::string::npos ||
      std::stoi(*v) < 1 || std::stoi(*v) > max)
    throw Error(ErrorKind::invalid,
                std::string(name) + ": expected a number from 1 to " + std::to_string(max));
  return std::stoi(*v);
}

Json body_object(const Call& c) {
  if (c.request.body().empty()) return Json::object();
  Json j = parse_json_input(c.request.body(), "request body");
  if (!j.is_object()) throw Error(ErrorKind::invalid, "request body: expected a JSON object");
  return j;
}

std::string string_field(const Json& body, const char* name, bool required) {
  auto it = body.find(name);
  if (it == body.end() || it->is_null()) {
    if (required) throw Error(ErrorKind::invalid, std::string(name) + ": required");
    return "";
  }
  if (!it->is_string()) throw Error(ErrorKind::invalid, std::string(name) + ": expected a string");
  return it->get<std::string>();
}

// ---- handlers --------------------------------------------------------------

// A schema as the API shows it: with what the caller may do with it.
Json schema_view(Call& c, const InstalledSchema& s) {
  Json j = app::schema_json(s);
  j["allowed_actions"] = c.app.schema_actions(s);
  return j;
}

Response list_schemas(Call& c) {
  Json out = Json::array();
  for (const auto& s : c.app.schemas(opt(c, "all") == "true")) out.push_back(schema_view(c, s));
  return json_response(http::status::ok, {{"schemas", out}});
}

Response show_schema(Call& c) {
  return json_response(http::status::ok, schema_view(c, c.app.schema(c.path["ref"])));
}

Response install_schema(Call& c) {
  Json body = body_object(c);
  auto report = c.app.install_text(string_field(body, "file", false).empty()
                                       ? "request body"
                                       : string_field(body, "file", false),
                                   string_field(body, "yaml", true), body.value("dry_run", false));
  const auto& i = report;
  Json j = {{"schema", i.schema},
            {"outcome", i.outcome},
            {"digest", i.digest},
            {"migrations", i.migrations}};
  if (i.outcome == "conflict")
    return problem(http::status::conflict,
                   i.schema + " is already installed from a different file");
  return json_response(i.outcome == "installed" || i.outcome == "restored" ? http::status::created
                                                                           : http::status::ok,
                       j);
}

Response submit(Call& c) {
  Json body = body_object(c);
  auto schema = c.app.runnable(string_field(body, "schema", true));
  Json params = body.contains("params") ? body["params"] : Json::object();
  if (!params.is_object()) throw Error(ErrorKind::invalid, "params: expected a JSON object");
  std::optional<std::string> key;
  if (auto h = c.request.find("Idempotency-Key"); h != c.request.end())
    key = std::string(h->value());
  auto dry_run = body.value("dry_run", Json(false));
  if (!dry_run.is_boolean()) throw Error(ErrorKind::invalid, "dry_run: expected true or false");
  auto submitted = c.app.submit(schema, params, key, dry_run.get<bool>());
  return json_response(submitted.created ? http::status::created : http::status::ok,
                       app::run_json(c.app.run(submitted.run_id)));
}

Response list_runs(Call& c) {
  RunFilter f;
  f.schema = opt(c, "schema");
  if (auto s = opt(c, "state")) f.state = run_state_from(*s);
  f.limit = int_param(c, "limit", 50, 500);
  if (auto after = opt(c, "after")) {
    if (after->size() != 36) throw Error(ErrorKind::invalid, "after: expected a run id");
    f.after_id = *after;
  }
  auto runs = c.app.runs(f);
  Json out = Json::array();
  for (const auto& r : runs) out.push_back(app::run_json(r, true));
  Json next = runs.size() == static_cast<size_t>(f.limit) ? Json(runs.back().id) : Json();
  return json_response(http::status::ok, {{"runs", out}, {"next", next}});
}

Response show_run(Call& c) {
  Run r = c.app.run(c.path["id"]);
  Json j = app::run_detail_json(r, c.app.transitions(r), c.app.events(r, 100));
  j["allowed_actions"] = c.app.run_actions(r);
  return json_response(http::status::ok, j);
}

Response control(Call& c, app::RunControl op) {
  Json body = body_object(c);
  std::string reason = string_field(body, "reason", false);
  if (reason.empty()) reason = "operator request";
  RunState now = c.app.control(op, c.path["id"], reason);
  return json_response(http::status::ok,
                       {{"id", c.app.run(c.path["id"]).id}, {"state", to_string(now)}});
}

// Four eyes: approve or reject a run awaiting approval.
Response decide(Call& c, bool approve) {
  Json body = body_object(c);
  const std::string reason = string_field(body, "reason", !approve);
  RunState now = approve ? c.app.approve(c.path["id"], reason) : c.app.reject(c.path["id"], reason);
  return json_response(http::status::ok,
                       {{"id", c.app.run(c.path["id"]).id}, {"state", to_string(now)}});
}

Response run_events(Call& c) {
  Run r = c.app.run(c.path["id"]);
  Json out = Json::array();
  for (const auto& e : c.app.events(r, int_param(c, "limit", 1000, 10000)))
    out.push_back(app::run_event_json(e));
  return json_response(http::status::ok, {{"events", out}});
}

Response run_output(Call& c) {
  Run r = c.app.run(c.path["id"]);
  Json files = Json::array();
  for (const auto& f : c.app.files(r)) files.push_back(app::run_file_json(f));
  return json_response(
      http::status::ok,
      {{"id", r.id}, {"state", to_string(r.state)}, {"output", r.output}, {"files", files}});
}

Response run_file(Call& c) {
  Run r = c.app.run(c.path["id"]);
  const std::string name = c.path["name"];
  std::string type = "application/octet-stream";
  for (const auto& f : c.app.files(r))
    if (f.name == name) type = f.content_type;
  Response res{http::status::ok, 11};
  res.body() = c.app.file_content(r, name);
  res.set(http::field::content_type, type);
  // A download, never rendered in the portal's origin.
  std::string safe;
  for (char ch : name)
    safe += std::isalnum(static_cast<unsigned char>(ch)) || ch == '.' || ch == '-' || ch == '_'
                ? ch
                : '_';
  res.set(http::field::content_disposition, "attachment; filename=\"" + safe + "\"");
  return res;
}

app::AuditQuery audit_query(const Call& c) {
  app::AuditQuery q;
  q.run = opt(c, "run");
  q.actor = opt(c, "actor");
  q.action = opt(c, "action");
  q.since = opt(c, "since");
  q.until = opt(c, "until");
  if (auto a = opt(c, "after")) {
    if (a->empty() || a->size() > 18 || a->find_first_not_of("0123456789") != std::string::npos)
      throw Error(ErrorKind::invalid, "after: expected an entry's seq");
    q.after_seq = std::stoll(*a);
  }
  return q;
}

Response list_audit(Call& c) {
  auto q = audit_query(c);
  q.limit = int_param(c, "limit", 100, 1000);
  auto entries = c.app.audit(q);
  Json out = Json::array();
  for (const auto& e : entries) out.push_back(audit_json(e));
  Json next = entries.size() == static_cast<size_t>(*q.limit) ? Json(entries.back().seq) : Json();
  return json_response(http::status::ok, {{"entries", out}, {"next", next}});
}

Response export_audit(Call& c) {
  Response r{http::status::ok, 11};
  r.set(http::field::content_type, "application/x-ndjson");
  c.app.each_audit(audit_query(c),
                   [&](const AuditEntry& e) { r.body() += audit_json(e).dump() + "\n"; });
  return r;
}

Response verify_audit(Call& c) {
  auto v = c.app.verify_audit();
  return json_response(http::status::ok,
                       {{"intact", v.ok()},
                        {"entries", v.entries},
                        {"broken_seq", v.broken_seq ? Json(*v.broken_seq) : Json()},
                        {"why", v.ok() ? Json() : Json(v.why)}});
}

Response list_deliveries(Call& c) {
  DeliveryFilter f;
  f.dead_only = opt(c, "failed") == "true";
  f.run_id = opt(c, "run");
  f.limit = int_param(c, "limit", 100, 1000);
  Json out = Json::array();
  for (const auto& d : c.app.deliveries(f)) out.push_back(app::delivery_json(d));
  return json_response(http::status::ok, {{"deliveries", out}});
}

Response redeliver(Call& c) {
  const auto& id = c.path["id"];
  if (id.empty() || id.size() > 18 || id.find_first_not_of("0123456789") != std::string::npos)
    throw Error(ErrorKind::invalid, "delivery id: expected a number");
  c.app.redeliver(std::stoll(id));
  return json_response(http::status::ok, {{"id", std::stoll(id)}, {"state", "pending"}});
}

Response create_key(Call& c) {
  Json body = body_object(c);
  std::vector<std::string> roles;
  if (auto it = body.find("roles"); it != body.end() && it->is_array())
    for (const auto& r : *it)
      if (r.is_string()) roles.push_back(r.get<std::string>());
  std::optional<std::chrono::seconds> expires;
  if (auto it = body.find("expires_in_seconds"); it != body.end() && !it->is_null()) {
    if (!it->is_number_integer() || it->get<int64_t>() < 60)
      throw Error(ErrorKind::invalid,
                  "expires_in_seconds: expected a number of seconds, at least 60");
    expires = std::chrono::seconds(it->get<int64_t>());
  }
  auto made = app::create_api_key(c.db, c.host.api_pepper(), c.app.actor(),
                                  string_field(body, "actor", true), roles, expires);
  Json j = app::api_key_json(made.key);
  j["token"] = made.token;
  return json_response(http::status::created, j);
}

Response list_keys(Call& c) {
  Json out = Json::array();
  for (const auto& k : app::list_api_keys(c.db, c.app.actor())) out.push_back(app::api_key_json(k));
  return json_response(http::status::ok, {{"keys", out}});
}

Response run_logs(Call& c) {
  Run r = c.app.run(c.path["id"]);
  LogQuery q;
  q.limit = int_param(c, "limit", 1000, 10000);
  if (opt(c, "attempt")) q.attempt = int_param(c, "attempt", 1, 1000000);
  if (auto a = opt(c, "after_seq")) {
    if (a->empty() || a->size() > 18 || a->find_first_not_of("0123456789") != std::string::npos)
      throw Error(ErrorKind::invalid, "after_seq: expected a line's seq");
    q.after_seq = std::stoll(*a);
  }
  auto page = c.app.logs(r, q);
  return json_response(http::status::ok,
                       app::log_page_json(page, page.lines.size() == static_cast<size_t>(q.limit)));
}

Response health(Call&) { return json_response(http::status::ok, {{"status", "ok"}}); }

Response ready(Call& c) {
  require_migrated(c.db, bundled_migrations());
  return json_response(http::status::ok, {{"status", "ready"}});
}

Response metrics(Call& c) {
  Response r{http::status::ok, 11};
  r.set(http::field::content_type, "text/plain; version=0.0.4; charset=utf-8");
  r.body() = c.metrics.render(c.db);
  return r;
}

Response revoke_key(Call& c) {
  app::revoke_api_key(c.db, c.app.actor(), c.path["id"]);
  return json_response(http::status::ok, {{"id", c.path["id"]}, {"revoked", true}});
}

// ---- the portal: sign-in sessions, uploads, a run's audit trail -------------

// A portal session lasts at most this long (less when its key ends sooner).
constexpr std::chrono::hours session_lifetime{8};

// The session cookie: never readable by scripts, never sent cross-site,
// Secure when the request came over TLS (a TLS-terminating proxy says so).
std::string session_cookie_value(const Call& c, const std::string& value, int64_t max_age) {
  std::string cookie = std::string(session_cookie) + "=" + value +
                       "; Path=/; HttpOnly; SameSite=Strict; Max-Age=" + std::to_string(max_age);
  if (auto h = c.request.find("X-Forwarded-Proto");
      h != c.request.end() && boost::beast::iequals(h->value(), "https"))
    cookie += "; Secure";
  return cookie;
}

Json session_json(Call& c, const std::optional<app::PortalSession>& s) {
  const auto& actor = c.app.actor();
  return {{"actor", actor.name},
          {"roles", actor.roles},
          {"allowed_actions", c.app.platform_actions()},
          {"csrf_token", s ? Json(s->csrf_token) : Json()},
          {"expires_at", s ? Json(s->expires_at) : Json()}};
}

Response start_session(Call& c) {
  // A JSON body only: a page elsewhere cannot send one without a CORS
  // preflight, which this server never grants, so it cannot sign a browser
  // in under its own key (login CSRF).
  auto type = c.request.find(http::field::content_type);
  if (type == c.request.end() ||
      !boost::beast::iequals(type->value().substr(0, 16), "application/json"))
    return problem(http::status::unsupported_media_type,
                   "sign in with a JSON body: Content-Type: application/json");
  Json body = body_object(c);
  auto s = app::start_portal_session(c.db, c.host.api_pepper(), string_field(body, "key", true),
                                     session_lifetime);
  if (!s) return problem(http::status::unauthorized, "that API key is unknown, revoked or expired");
  app::App a(c.host, c.db, s->actor);
  Call signed_in{c.request, c.path, c.query, a, c.host, c.db, c.metrics, s};
  Response r = json_response(http::status::created, session_json(signed_in, s));
  r.set(http::field::set_cookie,
        session_cookie_value(
            c, s->cookie,
            std::chrono::duration_cast<std::chrono::seconds>(session_lifetime).count()));
  return r;
}

Response show_session(Call& c) {
  return json_response(http::status::ok, session_json(c, c.session));
}

Response end_session(Call& c) {
  if (!c.session)
    return problem(http::status::not_found,
                   "no portal session: this request came with an API key, which sign-out does not "
                   "revoke (DELETE /v1/api-keys/{id} does)");
  app::end_portal_session(c.db, *c.session);
  Response r = json_response(http::status::ok, {{"signed_out", true}});
  r.set(http::field::set_cookie, session_cookie_value(c, "", 0));
  return r;
}

Response upload(Call& c) {
  auto u = c.app.upload(c.path["ref"], c.path["param"], opt(c, "name").value_or("upload.csv"),
                        c.request.body());
  return json_response(
      http::status::created,
      {{"bucket", u.bucket}, {"key", u.key}, {"size", u.size}, {"sha256", u.sha256}});
}

Response run_audit(Call& c) {
  Run r = c.app.run(c.path["id"]);
  Json out = Json::array();
  for (const auto& e : c.app.run_audit(r, int_param(c, "limit", 200, 1000)))
    out.push_back(audit_json(e));
  return json_response(http::status::ok, {{"entries", out}});
}

}  // namespace

Response problem(http::status status, const std::string& detail, const Json& extensions) {
  Response r{status, 11};
  r.set(http::field::content_type, "application/problem+json");
  Json body = extensions;
  body.update(Json{{"type", "about:blank"},
                   {"title", std::string(http::obsolete_reason(status))},
                   {"status", static_cast<int>(status)},
                   {"detail", detail}});
  r.body() = body.dump();
  return r;
}

const std::vector<Route>& routes() {
  using V = http::verb;
  auto ctl = [](app::RunControl op) { return [op](Call& c) { return control(c, op); }; };
  static const std::vector<Route> table = {
      {V::get, "/healthz", health, true},
      {V::get, "/readyz", ready, true},
      {V::get, "/metrics", metrics, true},
      {V::get, "/v1/schemas", list_schemas},
      {V::post, "/v1/schemas", install_schema},
      {V::get, "/v1/schemas/{ref}", show_schema},
      {V::get, "/v1/runs", list_runs},
      {V::post, "/v1/runs", submit},
      {V::get, "/v1/runs/{id}", show_run},
      {V::post, "/v1/runs/{id}/cancel", ctl(app::RunControl::cancel)},
      {V::post, "/v1/runs/{id}/pause", ctl(app::RunControl::pause)},
      {V::post, "/v1/runs/{id}/resume", ctl(app::RunControl::resume)},
      {V::post, "/v1/runs/{id}/retry", ctl(app::RunControl::retry)},
      {V::get, "/v1/runs/{id}/events", run_events},
      {V::get, "/v1/runs/{id}/output", run_output},
      {V::get, "/v1/runs/{id}/files/{name}", run_file},
      {V::get, "/v1/audit", list_audit},
      {V::get, "/v1/audit/export", export_audit},
      {V::get, "/v1/audit/verify", verify_audit},
      {V::get, "/v1/webhooks/deliveries", list_deliveries},
      {V::post, "/v1/webhooks/deliveries/{id}/redeliver", redeliver},
      {V::get, "/v1/api-keys", list_keys},
      {V::post, "/v1/api-keys", create_key},
      {V::delete_, "/v1/api-keys/{id}", revoke_key},
      // Dry runs and approvals
      {V::post, "/v1/runs/{id}/approve", [](Call& c) { return decide(c, true); }},
      {V::post, "/v1/runs/{id}/reject", [](Call& c) { return decide(c, false); }},
      // the portal
      {V::post, "/v1/session", start_session, true},
      {V::get, "/v1/session", show_session},
      {V::delete_, "/v1/session", end_session},
      {V::post, "/v1/schemas/{ref}/uploads/{param}", upload},
      {V::get, "/v1/runs/{id}/audit", run_audit},
      // Run logs and live streams (server-sent events).
      {V::get, "/v1/runs/{id}/logs", run_logs},
      {V::get, "/v1/runs/{id}/logs/stream", nullptr, false, open_run_logs_stream},
      {V::get, "/v1/runs/{id}/events/stream", nullptr, false, open_run_events_stream},
  };
  return table;
}

Router::Router(app::Host& host, const std::filesystem::path& portal_dir)
    : host_(host), pepper_(host.api_pepper()), portal_dir_(portal_dir) {
  static const std::map<std::string, std::string> types = {
      {".html", "text/html; charset=utf-8"},
      {".js", "text/javascript; charset=utf-8"},
      {".css", "text/css; charset=utf-8"},
      {".svg", "image/svg+xml"},
      {".png", "image/png"},
      {".ico", "image/x-icon"}};
  std::error_code ec;
  for (const auto& f : std::filesystem::directory_iterator(portal_dir, ec)) {
    auto type = types.find(f.path().extension().string());
    if (!f.is_regular_file() || type == types.end()) continue;
    std::ifstream in(f.path(), std::ios::binary);
    std::stringstream body;
    body << in.rdbuf();
    const std::string name = f.path().filename().string();
    portal_[name == "index.html" ? "/" : "/" + name] = {type->second, body.str()};
  }
  if (portal_.count("/") == 0)
    spdlog::warn("serve: no portal at {} (index.html missing); serving the API only",
                 portal_dir.string());
}

std::optional<Response> Router::portal_file(const Request& request, std::string_view path) const {
  if (request.method() != http::verb::get || path.rfind("/v1/", 0) == 0) return std::nullopt;
  auto it = portal_.find(std::string(path));
  if (it == portal_.end()) {
    if (path != "/") return std::nullopt;
    return problem(http::status::not_found,
                   "the portal is not installed (no index.html in " + portal_dir_.string() + ")");
  }
  Response r{http::status::ok, 11};
  r.set(http::field::content_type, it->second.content_type);
  r.body() = it->second.body;
  return r;
}

bool Router::throttled(const std::string& client) {
  std::lock_guard lock(mutex_);
  auto it = failures_.find(client);
  if (it == failures_.end()) return false;
  if (std::chrono::steady_clock::now() - it->second.since > std::chrono::minutes(1)) {
    failures_.erase(it);
    return false;
  }
  return it->second.count >= max_failures_per_minute;
}

void Router::failed(const std::string& client) {
  std::lock_guard lock(mutex_);
  auto& f = failures_[client];
  if (f.count == 0) f.since = std::chrono::steady_clock::now();
  ++f.count;
  if (failures_.size() > 10000) failures_.clear();  // bounded, whatever the clients
}

Response Router::handle(const Request& request, pg::Connection& db, const std::string& client,
                        std::unique_ptr<EventStream>* stream) {
  const auto start = std::chrono::steady_clock::now();
  const Route* route = nullptr;
  Response r = dispatch(request, db, client, stream, route);
  // Unmatched requests share one series whatever their path and method, so
  // a client cannot make new series at will.
  metrics_.observe(route ? route->path : "unmatched",
                   route ? std::string(http::to_string(route->method)) : "other", r.result_int(),
                   std::chrono::duration<double>(std::chrono::steady_clock::now() - start).count());
  return r;
}

Response Router::dispatch(const Request& request, pg::Connection& db, const std::string& client,
                          std::unique_ptr<EventStream>* stream, const Route*& route) {
  const std::string_view target(request.target().data(), request.target().size());
  const auto qmark = target.find('?');
  const std::string_view path = target.substr(0, qmark);
  try {
    if (auto file = portal_file(request, path)) return std::move(*file);
    std::map<std::string, std::string> params;
    bool path_known = false;
    for (const auto& r : routes()) {
      std::map<std::string, std::string> p;
      if (!match(r.path, path, p)) continue;
      path_known = true;
      if (r.method == request.method()) {
        route = &r;
        params = std::move(p);
        break;
      }
    }
    if (!route)
      return path_known ? problem(http::status::method_not_allowed,
                                  std::string(request.method_string()) + " is not allowed here")
                        : problem(http::status::not_found, "no such resource");

    // Failed authentications throttle the address's /v1 requests (signing
    // in included); health, readiness and metrics answer whoever asks.
    if (path.rfind("/v1/", 0) == 0 && throttled(client)) {
      Response r = problem(http::status::too_many_requests,
                           "too many failed authentications from this address; wait a minute");
      r.set(http::field::retry_after, "60");
      return r;
    }
    const auto query = parse_query(qmark == std::string_view::npos ? "" : target.substr(qmark + 1));
    if (route->open) {
      app::App anonymous(host_, db, app::Actor{"anonymous", {}});
      Call call{request, std::move(params), query, anonymous, host_, db, metrics_};
      Response r = route->handle(call);
      if (r.result() == http::status::unauthorized) {
        failed(client);
        spdlog::warn("api: {} {} from {}: sign-in refused", std::string(request.method_string()),
                     printable(std::string(path)), client);
      }
      return r;
    }
    std::string token, cookie;
    if (auto h = request.find(http::field::authorization); h != request.end()) {
      const std::string_view v(h->value().data(), h->value().size());
      if (v.rfind("Bearer ", 0) == 0) token = std::string(v.substr(7));
    } else if (auto c = request.find(http::field::cookie); c != request.end()) {
      cookie = cookie_value(std::string_view(c->value().data(), c->value().size()), session_cookie);
    }
    std::optional<app::Actor> actor;
    std::optional<app::PortalSession> session;
    if (!token.empty()) {
      actor = app::authenticate_api_key(db, pepper_, token);
    } else if (!cookie.empty()) {
      session = app::find_portal_session(db, pepper_, cookie);
      if (session) actor = session->actor;
    }
    if (!actor) {
      // An ended session's cookie is not a guess: the portal meets one after
      // every sign-out or expiry, so it does not count towards the limit.
      if (cookie.empty()) failed(client);
      spdlog::warn("api: {} {} from {}: {}", std::string(request.method_string()),
                   printable(std::string(path)), client,
                   !token.empty()    ? "API key " + app::api_key_id(token) + " refused"
                   : !cookie.empty() ? std::string("no live portal session")
                                     : std::string("no API key"));
      Response r = problem(http::status::unauthorized,
                           cookie.empty() ? "an API key is required: Authorization: Bearer th_..."
                                          : "the portal session has ended; sign in again");
      r.set(http::field::www_authenticate, "Bearer");
      return r;
    }
    // A cookie rides along with any request the browser makes to us, even
    // one another site's page caused: a state change must also prove it
    // came from the portal's own script, which alone can read the token.
    if (session && request.method() != http::verb::get && request.method() != http::verb::head) {
      auto h = request.find(csrf_header);
      if (h == request.end() ||
          !constant_time_equal(std::string_view(h->value().data(), h->value().size()),
                               session->csrf_token)) {
        spdlog::warn("api: {} {} from {}: portal session {} without its CSRF token",
                     std::string(request.method_string()), printable(std::string(path)), client,
                     session->id);
        return problem(http::status::forbidden,
                       std::string("a state change with the portal's session cookie must carry "
                                   "its CSRF token in the ") +
                           csrf_header + " header");
      }
    }
    app::App a(host_, db, *actor);
    Call call{request, std::move(params), query, a, host_, db, metrics_, session};
    if (!route->stream) return route->handle(call);
    if (!stream) return problem(http::status::not_acceptable, "this server cannot stream here");
    *stream = route->stream(call);
    return Response{http::status::ok, 11};
  } catch (const FieldErrors& e) {
    Json fields = Json::array();
    for (const auto& f : e.fields()) fields.push_back({{"field", f.field}, {"detail", f.detail}});
    return problem(status_of(e.kind()), e.what(), {{"errors", fields}});
  } catch (const Error& e) {
    return problem(status_of(e.kind()), e.what());
  } catch (const std::exception& e) {
    spdlog::error("api: {} {}: {}", std::string(request.method_string()),
                  printable(std::string(path)), e.what());
    return problem(http::status::internal_server_error, "unexpected error (see the server's log)");
  }
}

}  // namespace taskhost::api
