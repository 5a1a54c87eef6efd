#include "services/http_service.hpp"

#include <curl/curl.h>
#include <strings.h>

#include <algorithm>
#include <map>
#include <memory>
#include <mutex>
#include <thread>

#include "common/curl.hpp"
#include "common/error.hpp"
#include "common/jwt.hpp"

namespace taskhost {

namespace {

using namespace std::chrono_literals;

constexpr size_t max_request_body = 16u << 20;
constexpr uint64_t max_response_limit = 256u << 20;
constexpr int max_attempts = 4;
constexpr auto max_in_call_wait = 60s;
// A client assertion's lifetime (RFC 7523 3: "a reasonably short" one).
constexpr auto assertion_lifetime = 5min;

// A URL split by curl's parser (which also removes dot segments).
struct Url {
  std::string scheme, host, port, path, query;
  std::string origin() const { return scheme + "://" + host + ":" + port; }
  std::string text() const {
    return scheme + "://" + host + ":" + port + path + (query.empty() ? "" : "?" + query);
  }
};

Url parse_url(const std::string& text, const std::string* base = nullptr) {
  std::unique_ptr<CURLU, decltype(&curl_url_cleanup)> u(curl_url(), &curl_url_cleanup);
  auto fail = [&](const std::string& why) {
    throw Error(ErrorKind::invalid, "URL '" + text + "': " + why);
  };
  if (base && curl_url_set(u.get(), CURLUPART_URL, base->c_str(), 0) != CURLUE_OK) fail("bad base");
  if (curl_url_set(u.get(), CURLUPART_URL, text.c_str(), 0) != CURLUE_OK) fail("not a URL");
  auto part = [&](CURLUPart p, unsigned flags = 0) {
    char* v = nullptr;
    std::string out;
    if (curl_url_get(u.get(), p, &v, flags) == CURLUE_OK && v) out = v;
    curl_free(v);
    return out;
  };
  Url url{part(CURLUPART_SCHEME), part(CURLUPART_HOST), part(CURLUPART_PORT, CURLU_DEFAULT_PORT),
          part(CURLUPART_PATH), part(CURLUPART_QUERY)};
  if (url.scheme != "http" && url.scheme != "https") fail("only http and https");
  if (!part(CURLUPART_USER).empty() || !part(CURLUPART_PASSWORD).empty())
    throw Error(ErrorKind::invalid,  // without the URL: it holds a password
                "a URL with user:password is refused; the host injects credentials");
  if (url.path.empty()) url.path = "/";
  return url;
}

bool within(const Url& url, const Url& base) {
  if (url.origin() != base.origin()) return false;
  if (base.path == "/" || url.path == base.path) return true;
  std::string prefix = base.path.back() == '/' ? base.path : base.path + "/";
  return url.path.rfind(prefix, 0) == 0;
}

bool iequal(const std::string& a, const std::string& b) {
  return a.size() == b.size() && strcasecmp(a.c_str(), b.c_str()) == 0;
}

// OAuth2 tokens, shared by the runs of this process, per credential name and
// token URL.
struct CachedToken {
  std::string token;
  std::chrono::steady_clock::time_point expires;
};
std::mutex token_mutex;
std::map<std::string, CachedToken> token_cache;

}  // namespace

struct HttpService::Impl {
  std::string schema;
  std::vector<HttpGrant> grants;
  const HostConfig& config;
  ServiceAudit audit;
  bool dry_run;
  CURL* easy = nullptr;
  DestinationGuard guard;

  Impl(std::string s, std::vector<HttpGrant> g, const HostConfig& c, ServiceAudit a, bool dry)
      : schema(std::move(s)), grants(std::move(g)), config(c), audit(std::move(a)), dry_run(dry) {
    curl_init_once();
    easy = curl_easy_init();
    if (!easy) throw Error(ErrorKind::environment, "libcurl: cannot create a handle");
    guard.allow = &config.allow_destinations;
  }
  ~Impl() { curl_easy_cleanup(easy); }

  void authorize(const Url& url, const std::string& credential) const {
    std::string granted;
    for (const auto& g : grants) {
      if (g.credential == credential && within(url, parse_url(g.base_url))) return;
      granted += (granted.empty() ? "" : ", ") + g.base_url +
                 (g.credential.empty() ? "" : " (" + g.credential + ")");
    }
    throw not_granted(
        schema, "http",
        url.origin() + url.path + (credential.empty() ? "" : " with credential " + credential),
        granted, "nothing granted");
  }

  // In a dry run only GET, HEAD and the methods a grant covering url
  // declares safe_methods may be sent.
  void check_dry_run(const std::string& method, const Url& url,
                     const std::string& credential) const {
    if (!dry_run || method == "GET" || method == "HEAD") return;
    for (const auto& g : grants)
      if (g.credential == credential && within(url, parse_url(g.base_url)) &&
          std::find(g.safe_methods.begin(), g.safe_methods.end(), method) != g.safe_methods.end())
        return;
    throw dry_run_refusal("http " + method + " " + url.origin() + url.path +
                          " (only GET, HEAD and a grant's safe_methods may be sent)");
  }

  struct Response {
    long status = 0;
    std::map<std::string, std::string> headers;
    uint64_t bytes = 0;
  };

  // One exchange. Streams the response body into out, except a redirect's,
  // with may_retry a 429/5xx answer's, and with may_renew a 401's: each of
  // those is answered again, and only the answer that ends the call is the
  // plugin's.
  Response exchange(const std::string& method, const Url& url,
                    const std::vector<std::string>& headers, const std::string& body,
                    std::chrono::milliseconds timeout, uint64_t limit, bool may_retry,
                    const ByteSink& out, std::string& transport_error, bool may_renew = false) {
    struct Transfer {
      Response r;
      const ByteSink* out;
      CURL* easy;
      uint64_t limit;
      bool may_retry, may_renew;
      std::exception_ptr error;
    } t{{}, &out, easy, limit, may_retry, may_renew, nullptr};
    curl_slist* list = nullptr;
    for (const auto& h : headers) list = curl_slist_append(list, h.c_str());
    list = curl_slist_append(list, "Expect:");
    char errbuf[CURL_ERROR_SIZE] = {0};
    guard.refusal.clear();
    curl_easy_reset(easy);
    secure_defaults(easy, &guard);
    const std::string u = url.text();
    curl_easy_setopt(easy, CURLOPT_URL, u.c_str());
    curl_easy_setopt(easy, CURLOPT_HTTPHEADER, list);
    curl_easy_setopt(easy, CURLOPT_TIMEOUT_MS, static_cast<long>(timeout.count()));
    curl_easy_setopt(easy, CURLOPT_ERRORBUFFER, errbuf);
    curl_easy_setopt(easy, CURLOPT_ACCEPT_ENCODING, "");
    if (method == "HEAD")
      curl_easy_setopt(easy, CURLOPT_NOBODY, 1L);
    else if (method != "GET")
      curl_easy_setopt(easy, CURLOPT_CUSTOMREQUEST, method.c_str());
    if (!body.empty() || method == "POST" || method == "PUT" || method == "PATCH") {
      curl_easy_setopt(easy, CURLOPT_POSTFIELDS, body.data());
      curl_easy_setopt(easy, CURLOPT_POSTFIELDSIZE_LARGE, static_cast<curl_off_t>(body.size()));
    }
    curl_easy_setopt(easy, CURLOPT_HEADERDATA, &t);
    curl_easy_setopt(
        easy, CURLOPT_HEADERFUNCTION, +[](char* d, size_t s, size_t n, void* user) -> size_t {
          auto* t = static_cast<Transfer*>(user);
          std::string line(d, s * n);
          if (line.rfind("HTTP/", 0) == 0) t->r.headers.clear();
          if (auto colon = line.find(':'); colon != std::string::npos) {
            std::string name = line.substr(0, colon);
            std::transform(name.begin(), name.end(), name.begin(), ::tolower);
            std::string value = line.substr(colon + 1);
            value.erase(0, value.find_first_not_of(" \t"));
            while (!value.empty() && (value.back() == '\r' || value.back() == '\n'))
              value.pop_back();
            t->r.headers[name] = value;
          }
          return s * n;
        });
    curl_easy_setopt(easy, CURLOPT_WRITEDATA, &t);
    curl_easy_setopt(
        easy, CURLOPT_WRITEFUNCTION, +[](char* d, size_t s, size_t n, void* user) -> size_t {
          auto* t = static_cast<Transfer*>(user);
          long status = 0;
          curl_easy_getinfo(t->easy, CURLINFO_RESPONSE_CODE, &status);
          // A redirect's body is never the plugin's; a retried answer's
          // neither, nor a 401's that a renewed token will be sent after.
          bool redirect = status >= 300 && status < 400;
          bool retried = t->may_retry && (status == 429 || status >= 500);
          bool renewed = t->may_renew && status == 401;
          if (redirect || retried || renewed) return s * n;
          t->r.bytes += s * n;
          if (t->r.bytes > t->limit) {
            t->error = std::make_exception_ptr(
                Error(ErrorKind::environment,
                      "the response is larger than " + std::to_string(t->limit) + " bytes"));
            return 0;
          }
          try {
            (*t->out)(d, s * n);
          } catch (...) {
            t->error = std::current_exception();
            return 0;
          }
          return s * n;
        });
    CURLcode code = curl_easy_perform(easy);
    curl_slist_free_all(list);
    if (t.error) std::rethrow_exception(t.error);
    if (code != CURLE_OK) {
      transport_error = !guard.refusal.empty() ? guard.refusal
                        : code == CURLE_OPERATION_TIMEDOUT
                            ? "no answer within " + std::to_string(timeout.count()) + " ms"
                        : *errbuf ? std::string(errbuf)
                                  : curl_easy_strerror(code);
      return t.r;
    }
    curl_easy_getinfo(easy, CURLINFO_RESPONSE_CODE, &t.r.status);
    return t.r;
  }

  std::string token(const std::string& name, const HttpCredentialConfig& c, bool renew) {
    std::lock_guard lock(token_mutex);
    auto now = std::chrono::steady_clock::now();
    // A token belongs to its issuer: the same name with another token URL
    // (a changed config, another host config in this process) is another.
    const std::string key = name + "\n" + c.token_url;
    auto it = token_cache.find(key);
    if (!renew && it != token_cache.end() && it->second.expires > now) return it->second.token;
    Url url = parse_url(c.token_url);
    auto escape = [&](const std::string& v) {
      char* e = curl_easy_escape(easy, v.c_str(), static_cast<int>(v.size()));
      std::string out = e ? e : "";
      curl_free(e);
      return out;
    };
    std::string body = "grant_type=client_credentials";
    if (!c.scope.empty()) body += "&scope=" + escape(c.scope);
    const std::string id = c.client_id.resolve();
    body += "&client_id=" + escape(id);
    if (c.kind == HttpCredentialConfig::Kind::private_key_jwt) {
      // RFC 7523 2.2: the client authenticates with a JWT it signs; iss and
      // sub are the client, aud the token endpoint, jti never used twice.
      const auto issued = std::chrono::duration_cast<std::chrono::seconds>(
                              std::chrono::system_clock::now().time_since_epoch())
                              .count();
      std::string key = c.private_key.resolve();
      const std::string assertion =
          jwt_rs256({{"iss", id},
                     {"sub", id},
                     {"aud", c.token_url},
                     {"iat", issued},
                     {"exp", issued + std::chrono::seconds(assertion_lifetime).count()},
                     {"jti", random_hex_id()}},
                    key);
      std::fill(key.begin(), key.end(), '\0');
      body += "&client_assertion_type=" +
              escape("urn:ietf:params:oauth:client-assertion-type:jwt-bearer") +
              "&client_assertion=" + escape(assertion);
    } else {
      body += "&client_secret=" + escape(c.client_secret.resolve());
    }
    std::string reply, error;
    Response r = exchange(
        "POST", url, {"Content-Type: application/x-www-form-urlencoded"}, body, 15s, 1 << 20, false,
        [&](const char* d, size_t n) { reply.append(d, n); }, error);
    if (!error.empty() || r.status != 200)
      throw Error(ErrorKind::environment,
                  "OAuth2 token for credential " + name + ": " +
                      (error.empty() ? "HTTP " + std::to_string(r.status) : error));
    Json j = Json::parse(reply, nullptr, false);
    if (j.is_discarded() || !j.contains("access_token") || !j["access_token"].is_string())
      throw Error(ErrorKind::environment,
                  "OAuth2 token for credential " + name + ": no access_token in the reply");
    auto lifetime = std::chrono::seconds(j.value("expires_in", 3600));
    CachedToken t{j["access_token"], now + std::max(lifetime - 60s, 0s)};
    token_cache[key] = t;
    return t.token;
  }

  // The credential's headers, resolved now (and never logged).
  std::vector<std::string> credential_headers(const std::string& name, bool renew) {
    if (name.empty()) return {};
    auto it = config.http_credentials.find(name);
    if (it == config.http_credentials.end())
      throw Error(ErrorKind::environment,
                  "credential " + name + " is not in the host config (http_credentials)");
    const auto& c = it->second;
    switch (c.kind) {
      case HttpCredentialConfig::Kind::bearer:
        return {"Authorization: Bearer " + c.secret.resolve()};
      case HttpCredentialConfig::Kind::header:
        return {c.header_name + ": " + c.secret.resolve()};
      case HttpCredentialConfig::Kind::oauth2:
      case HttpCredentialConfig::Kind::private_key_jwt:
        return {"Authorization: Bearer " + token(name, c, renew)};
    }
    return {};
  }

  Json request(const Json& req, const ByteSource& in, const ByteSink& out, ServiceCall& record) {
    const std::string credential = req.value("credential", "");
    std::string method = req.value("method", "GET");
    static const std::vector<std::string> methods = {"GET",    "HEAD",  "POST",   "PUT",
                                                     "DELETE", "PATCH", "OPTIONS"};
    if (std::find(methods.begin(), methods.end(), method) == methods.end())
      throw Error(ErrorKind::invalid, "http: method '" + method + "' is not supported");
    if (!req.contains("url") || !req["url"].is_string())
      throw Error(ErrorKind::invalid, "http: 'url' must be a string");
    Url url = parse_url(req["url"]);
    record.resource = method + " " + url.origin() + url.path;
    authorize(url, credential);
    check_dry_run(method, url, credential);

    std::vector<std::string> headers;
    std::string reserved_header;
    if (auto it = config.http_credentials.find(credential); it != config.http_credentials.end())
      reserved_header = it->second.header_name;
    if (req.contains("headers"))
      for (const auto& [name, value] : req["headers"].items()) {
        if (!value.is_string())
          throw Error(ErrorKind::invalid, "http: header " + name + " must be a string");
        const std::string v = value;
        if (name.empty() || name.find_first_of(":\r\n ") != std::string::npos ||
            v.find_first_of("\r\n") != std::string::npos)
          throw Error(ErrorKind::invalid, "http: header " + name + " is malformed");
        for (const char* host_only : {"authorization", "proxy-authorization", "host", "cookie"})
          if (iequal(name, host_only))
            throw Error(ErrorKind::invalid, "http: header " + name + " is set by the host");
        if (!reserved_header.empty() && iequal(name, reserved_header))
          throw Error(ErrorKind::invalid, "http: header " + name + " is set by the host");
        headers.push_back(name + ": " + v);
      }
    std::string body;
    if (in) {
      char buf[65536];
      for (size_t n; (n = in(buf, sizeof buf)) > 0;) {
        body.append(buf, n);
        if (body.size() > max_request_body)
          throw Error(ErrorKind::invalid, "http: a request body may be at most 16 MiB");
      }
    }
    record.bytes = body.size();
    const bool idempotent = req.value("idempotent", method != "POST" && method != "PATCH");
    const auto timeout = std::chrono::milliseconds(
        std::clamp<int64_t>(req.value("timeout_ms", int64_t{30'000}), 1, 300'000));
    const uint64_t limit = std::min<uint64_t>(req.value("max_response_bytes", uint64_t{64u << 20}),
                                              max_response_limit);

    auto backoff = [](int attempt) {
      return retry_backoff(std::chrono::milliseconds(200), attempt);
    };
    bool renewed = false;
    int redirects = 0;
    for (int attempt = 1;;) {
      std::vector<std::string> all = headers;
      auto cred = credential_headers(credential, false);
      all.insert(all.end(), cred.begin(), cred.end());
      const bool retry_left = idempotent && attempt < max_attempts;
      const bool may_renew = !renewed && credential_fetches_tokens(credential);
      std::string error;
      Response r =
          exchange(method, url, all, body, timeout, limit, retry_left, out, error, may_renew);
      if (!error.empty()) {
        if (!retry_left)
          throw Error(ErrorKind::environment, "http " + method + " " + url.text() + ": " + error);
        std::this_thread::sleep_for(backoff(attempt++));
        continue;
      }
      if (r.status == 401 && may_renew) {
        renewed = true;  // the cached token may have been revoked: fetch a fresh one, once
        credential_headers(credential, true);
        continue;
      }
      if (r.status >= 300 && r.status < 400 && r.headers.count("location")) {
        // Followed only inside the grant, at most 5; never to another origin.
        const std::string base = url.text();
        Url next = parse_url(r.headers["location"], &base);
        if (next.origin() != url.origin())
          throw Error(ErrorKind::refused, "http: redirect from " + url.origin() +
                                              " to another origin (" + next.origin() + ") refused");
        authorize(next, credential);
        if (++redirects > 5) throw Error(ErrorKind::environment, "http: more than 5 redirects");
        if (r.status == 303 || ((r.status == 301 || r.status == 302) && method == "POST")) {
          method = "GET";
          body.clear();
        }
        check_dry_run(method, next, credential);
        url = next;
        continue;
      }
      if ((r.status == 429 || r.status >= 500) && retry_left) {
        auto asked =
            r.headers.count("retry-after")
                ? parse_retry_after(r.headers["retry-after"], std::chrono::system_clock::now())
                : std::nullopt;
        if (!asked || *asked <= max_in_call_wait) {
          std::this_thread::sleep_for(asked ? std::chrono::milliseconds(*asked) : backoff(attempt));
          ++attempt;
          continue;
        }
        // Asked to come back later than a call may wait: the plugin decides.
        // The body was held back for a retry; fetch it again (idempotent).
        r = exchange(method, url, all, body, timeout, limit, false, out, error);
        if (!error.empty())
          throw Error(ErrorKind::environment, "http " + method + " " + url.text() + ": " + error);
      }
      record.bytes += r.bytes;
      record.outcome = "HTTP " + std::to_string(r.status);
      Json h = Json::object();
      for (const auto& [k, v] : r.headers) h[k] = v;
      return {{"status", r.status}, {"headers", h}, {"bytes", r.bytes}};
    }
  }

  bool credential_fetches_tokens(const std::string& name) const {
    auto it = config.http_credentials.find(name);
    return it != config.http_credentials.end() && it->second.fetches_tokens();
  }
};

HttpService::HttpService(std::string schema, std::vector<HttpGrant> grants,
                         const HostConfig& config, ServiceAudit audit, bool dry_run)
    : impl_(std::make_unique<Impl>(std::move(schema), std::move(grants), config, std::move(audit),
                                   dry_run)) {}
HttpService::~HttpService() = default;

Json HttpService::call(const std::string& op, const Json& request, const ByteSource& in,
                       const ByteSink& out) {
  ServiceCall record{"http", op, "", 0, "ok"};
  return audited(impl_->audit, record, [&] {
    if (op != "request") throw Error(ErrorKind::invalid, "http has one operation, 'request'");
    if (!request.is_object()) throw Error(ErrorKind::invalid, "http: request must be an object");
    Json reply = impl_->request(request, in, out, record);
    return reply;
  });
}

}  // namespace taskhost
