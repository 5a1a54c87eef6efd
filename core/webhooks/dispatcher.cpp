#include "webhooks/dispatcher.hpp"

#include <poll.h>
#include <strings.h>

#include <spdlog/spdlog.h>
#include <algorithm>
#include <functional>
#include <list>
#include <map>
#include <random>
#include <thread>

#include "common/curl.hpp"
#include "webhooks/secrets.hpp"
#include "webhooks/signature.hpp"

namespace taskhost {

using namespace std::chrono_literals;

std::optional<std::chrono::milliseconds> retry_delay(int attempts, double jitter) {
  static constexpr std::chrono::seconds schedule[] = {5s, 5min, 30min, 2h, 5h, 10h, 10h};
  if (attempts < 1 || attempts > static_cast<int>(std::size(schedule))) return std::nullopt;
  auto base = std::chrono::duration<double, std::milli>(schedule[attempts - 1]);
  return std::chrono::duration_cast<std::chrono::milliseconds>(base * (0.9 + 0.2 * jitter));
}

namespace {

// The longest a Retry-After may push a delivery back.
constexpr auto max_retry_after = 24h;
// Deliveries of one stream sent in one claim, one after another.
constexpr int per_stream = 100;

// One stream being sent: its deliveries go one after another.
struct StreamSend {
  const ClaimedStream* stream = nullptr;
  size_t next = 0;  // the delivery to send next
  StreamOutcome outcome;
};

struct Transfer {
  StreamSend* send = nullptr;
  CURL* easy = nullptr;
  curl_slist* headers = nullptr;
  DestinationGuard guard;
  CurlUrl url;
  std::optional<std::string> retry_after;
  char error[CURL_ERROR_SIZE] = {};
};

size_t discard(char*, size_t size, size_t n, void*) { return size * n; }

size_t header(char* data, size_t size, size_t n, void* user) {
  std::string_view line(data, size * n);
  constexpr std::string_view name = "retry-after:";
  if (line.size() > name.size() && strncasecmp(line.data(), name.data(), name.size()) == 0)
    static_cast<Transfer*>(user)->retry_after = std::string(line.substr(name.size()));
  return size * n;
}

// A URL as logs may show it: no query, which can carry a token.
std::string loggable(const std::string& url) { return url.substr(0, url.find('?')); }

}  // namespace

struct Dispatcher::Impl {
  Impl(pg::Connection& c, DispatcherOptions o) : conn(c), options(std::move(o)) {
    curl_init_once();
    multi = curl_multi_init();
    if (!multi) throw Error(ErrorKind::environment, "libcurl: cannot create a multi handle");
    if (!options.jitter)
      options.jitter = [rng = std::mt19937_64(std::random_device{}())]() mutable {
        return std::uniform_real_distribution<double>(0, 1)(rng);
      };
  }
  ~Impl() {
    for (CURL* e : idle) curl_easy_cleanup(e);
    curl_multi_cleanup(multi);
  }

  // Easy handles are reused; the multi handle keeps their connections open.
  CURL* take_easy() {
    if (idle.empty()) return curl_easy_init();
    CURL* e = idle.back();
    idle.pop_back();
    curl_easy_reset(e);
    return e;
  }

  // t.url holds d.url as parse_http_url read it (the parser schema install
  // checked the URL with).
  void start(Transfer& t, const Delivery& d, const std::vector<std::string>& secrets,
             int64_t timestamp) {
    std::string signatures;
    for (const auto& s : secrets)
      signatures +=
          (signatures.empty() ? "" : " ") + webhook_signature(s, d.message_id, timestamp, d.body);
    const std::vector<std::string> headers = {
        "content-type: application/json",   "user-agent: taskhost-webhooks/1",
        "webhook-id: " + d.message_id,      "webhook-timestamp: " + std::to_string(timestamp),
        "webhook-signature: " + signatures, "expect:"};  // no 100-continue round trip
    for (const auto& h : headers) t.headers = curl_slist_append(t.headers, h.c_str());
    t.easy = take_easy();
    t.guard.allow = &options.allow_destinations;
    secure_defaults(t.easy, &t.guard);
    curl_easy_setopt(t.easy, CURLOPT_CURLU, t.url.get());
    curl_easy_setopt(t.easy, CURLOPT_POST, 1L);
    curl_easy_setopt(t.easy, CURLOPT_POSTFIELDS, d.body.data());
    curl_easy_setopt(t.easy, CURLOPT_POSTFIELDSIZE_LARGE, static_cast<curl_off_t>(d.body.size()));
    curl_easy_setopt(t.easy, CURLOPT_HTTPHEADER, t.headers);
    curl_easy_setopt(t.easy, CURLOPT_TIMEOUT_MS, static_cast<long>(options.timeout.count()));
    curl_easy_setopt(t.easy, CURLOPT_WRITEFUNCTION, discard);
    curl_easy_setopt(t.easy, CURLOPT_HEADERFUNCTION, header);
    curl_easy_setopt(t.easy, CURLOPT_HEADERDATA, &t);
    curl_easy_setopt(t.easy, CURLOPT_ERRORBUFFER, t.error);
    curl_easy_setopt(t.easy, CURLOPT_PRIVATE, &t);
    curl_multi_add_handle(multi, t.easy);
  }

  void finish(Transfer& t) {
    curl_multi_remove_handle(multi, t.easy);
    curl_slist_free_all(t.headers);
    idle.push_back(t.easy);
  }

  // Runs the added transfers until none is left, calling done(transfer,
  // result) as each ends; done may start more.
  void perform(const std::function<void(Transfer&, CURLcode)>& done) {
    for (;;) {
      int running = 0, queued = 0;
      curl_multi_perform(multi, &running);
      bool ended = false;
      while (CURLMsg* msg = curl_multi_info_read(multi, &queued)) {
        if (msg->msg != CURLMSG_DONE) continue;
        Transfer* t = nullptr;
        curl_easy_getinfo(msg->easy_handle, CURLINFO_PRIVATE, &t);
        done(*t, msg->data.result);
        ended = true;
      }
      if (ended) continue;  // done() may have started more
      if (running == 0) return;
      curl_multi_poll(multi, nullptr, 0, 1000, nullptr);
    }
  }

  pg::Connection& conn;
  DispatcherOptions options;
  CURLM* multi = nullptr;
  std::vector<CURL*> idle;
};

Dispatcher::Dispatcher(pg::Connection& conn, DispatcherOptions options)
    : impl_(std::make_unique<Impl>(conn, std::move(options))) {}
Dispatcher::~Dispatcher() = default;

int Dispatcher::dispatch_once() {
  Impl& m = *impl_;
  const auto now = m.options.clock();
  // A stream is leased for two attempts' worth; a dispatcher that dies is
  // replaced after that, and sends again with the same message ids. No send
  // starts after `deadline`, so a live one never overruns its lease.
  const auto lease = 2 * m.options.timeout + 30s;
  const auto deadline = std::chrono::steady_clock::now() + lease - m.options.timeout - 10s;
  auto streams = claim_streams(m.conn, now, m.options.batch, per_stream, lease);
  if (streams.empty()) return 0;

  std::vector<StreamSend> sends(streams.size());
  // Per schema name: its secrets, or why they cannot be had (a host key missing).
  std::map<std::string, std::pair<std::vector<std::string>, std::string>> secrets;
  std::list<Transfer> transfers;
  const int64_t timestamp =
      std::chrono::duration_cast<std::chrono::seconds>(now.time_since_epoch()).count();
  int attempted = 0;

  auto fail = [&](StreamSend& send, DeliveryOutcome& out, const Delivery& d,
                  std::optional<std::chrono::seconds> retry_after) {
    if (auto delay = retry_delay(d.attempts + 1, m.options.jitter())) {
      auto at = now + *delay;
      if (retry_after)
        at = std::max(at, now + std::min<std::chrono::seconds>(*retry_after, max_retry_after));
      out.retry_at = at;
    }
    spdlog::warn("webhook {} ({} of run {}) to {}: attempt {} failed: {}", d.message_id, d.event,
                 d.run_id, loggable(d.url), d.attempts + 1, out.error);
    send.outcome.attempts.push_back(out);
  };
  // Starts the stream's next delivery, if any and if there is time left.
  auto start_next = [&](StreamSend& send) {
    const auto& list = send.stream->deliveries;
    if (send.next >= list.size() || std::chrono::steady_clock::now() >= deadline) return;
    const Delivery& d = list[send.next++];
    ++attempted;
    auto it = secrets.find(d.schema_name);
    if (it == secrets.end()) {
      it = secrets.emplace(d.schema_name, std::pair<std::vector<std::string>, std::string>()).first;
      try {
        it->second.first = webhook_secrets(m.conn, m.options.keys, d.schema_name);
      } catch (const Error& e) {
        if (dynamic_cast<const pg::DbError*>(&e)) throw;
        it->second.second = e.what();
      }
    }
    const auto& [found, unopened] = it->second;
    if (found.empty()) {
      DeliveryOutcome out;
      out.id = d.id;
      out.error = !unopened.empty()
                      ? "schema " + d.schema_name + ": " + unopened
                      : "schema " + d.schema_name +
                            " has no webhook secret: create one with `taskhost webhook-key " +
                            d.schema_name + "`";
      fail(send, out, d, std::nullopt);
      return;
    }
    CurlUrl url;
    try {
      url = parse_http_url(d.url);
    } catch (const Error& e) {  // installed before URLs were checked this way
      DeliveryOutcome out;
      out.id = d.id;
      out.error = std::string("the URL is not valid: ") + e.what();
      fail(send, out, d, std::nullopt);
      return;
    }
    Transfer& t = transfers.emplace_back();
    t.send = &send;
    t.url = std::move(url);
    m.start(t, d, found, timestamp);
  };

  for (size_t i = 0; i < streams.size(); ++i) {
    sends[i].stream = &streams[i];
    sends[i].outcome.stream = &streams[i];
    start_next(sends[i]);
  }
  m.perform([&](Transfer& t, CURLcode code) {
    StreamSend& send = *t.send;
    const Delivery& d = send.stream->deliveries[send.next - 1];
    long status = 0;
    curl_easy_getinfo(t.easy, CURLINFO_RESPONSE_CODE, &status);
    auto retry_after = t.retry_after ? parse_retry_after(*t.retry_after, now) : std::nullopt;
    m.finish(t);
    DeliveryOutcome out;
    out.id = d.id;
    if (code != CURLE_OK) {
      out.error = !t.guard.refusal.empty() ? t.guard.refusal
                  : code == CURLE_OPERATION_TIMEDOUT
                      ? "no answer within " + std::to_string(m.options.timeout.count()) + " ms"
                      : std::string(*t.error ? t.error : curl_easy_strerror(code));
      fail(send, out, d, std::nullopt);
      return;
    }
    out.status = static_cast<int>(status);
    if (status >= 200 && status < 300) {
      out.delivered = true;
      send.outcome.attempts.push_back(out);
      start_next(send);
    } else if (status == 410) {
      out.gone = true;
      out.error = "answered 410 Gone: endpoint disabled";
      spdlog::warn("webhook endpoint {} answered 410 Gone: disabled", loggable(d.url));
      send.outcome.attempts.push_back(out);
    } else {
      out.error = "answered HTTP " + std::to_string(status);
      fail(send, out, d, retry_after);
    }
  });

  std::vector<StreamOutcome> outcomes;
  for (auto& send : sends) outcomes.push_back(std::move(send.outcome));
  record_outcomes(m.conn, m.options.clock(), outcomes);
  return attempted;
}

int drain_webhooks(pg::Connection& conn, const DispatcherOptions& options,
                   std::chrono::seconds budget) {
  Dispatcher dispatcher(conn, options);
  const auto until = std::chrono::steady_clock::now() + budget;
  int total = 0;
  while (std::chrono::steady_clock::now() < until)
    if (int n = dispatcher.dispatch_once(); n > 0)
      total += n;
    else
      break;
  return total;
}

void run_dispatcher(const std::string& conninfo, DispatcherOptions options,
                    const std::atomic<bool>& stop) {
  auto backoff = 100ms;
  while (!stop) {
    try {
      pg::Connection conn(conninfo);
      conn.exec("LISTEN taskhost_webhooks");
      Dispatcher dispatcher(conn, options);
      backoff = 100ms;
      while (!stop) {
        if (dispatcher.dispatch_once() >= options.batch) continue;
        // Retries fall due without a notification: look at least every second.
        bool woken = false;
        for (auto until = std::chrono::steady_clock::now() + 1s;
             !stop && !woken && std::chrono::steady_clock::now() < until;) {
          pollfd fd{PQsocket(conn.raw()), POLLIN, 0};
          ::poll(&fd, 1, 100);
          if (PQconsumeInput(conn.raw()) == 0)
            throw Error(ErrorKind::environment, PQerrorMessage(conn.raw()));
          while (PGnotify* n = PQnotifies(conn.raw())) {
            woken = true;
            PQfreemem(n);
          }
        }
      }
    } catch (const std::exception& e) {
      spdlog::warn("webhook dispatcher: {}; retrying in {} ms", e.what(), backoff.count());
      for (auto until = std::chrono::steady_clock::now() + backoff;
           !stop && std::chrono::steady_clock::now() < until;)
        std::this_thread::sleep_for(20ms);
      backoff = std::min<std::chrono::milliseconds>(backoff * 2, 5s);
    }
  }
}

}  // namespace taskhost
