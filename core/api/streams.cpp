// Live streams of a run as server-sent events (text/event-stream). Each
// event carries its cursor as id (a run event's id, a log line's seq), so a
// client that reconnects with Last-Event-ID (as EventSource does) resumes
// after what it saw. The stream ends with an `end` event once the run is
// finished and everything up to its end was sent.
#include "api/routes.hpp"
#include "app/views.hpp"
#include "common/error.hpp"
#include "store/run_logs.hpp"

namespace taskhost::api {
namespace {

using Json = nlohmann::json;
using Chunk = EventStream::Chunk;

// Rows read per round: a stream that is far behind catches up in rounds, so
// no read holds a handler (or a client's buffer) long.
constexpr int rows_per_round = 500;

std::string sse(const char* event, const Json& data, std::optional<int64_t> id = std::nullopt) {
  std::string out;
  if (id) out += "id: " + std::to_string(*id) + "\n";
  // dump() escapes newlines: the data is one line.
  return out + "event: " + event + "\ndata: " + data.dump() + "\n\n";
}

// Where to resume: the Last-Event-ID header, else ?after=, else the start.
int64_t resume_after(const Call& c) {
  std::string v;
  const char* where = "Last-Event-ID";
  if (auto h = c.request.find("Last-Event-ID"); h != c.request.end()) {
    v = std::string(h->value());
  } else if (auto q = c.query.find("after"); q != c.query.end()) {
    v = q->second;
    where = "after";
  } else {
    return 0;
  }
  if (v.empty() || v.size() > 18 || v.find_first_not_of("0123456789") != std::string::npos)
    throw Error(ErrorKind::invalid,
                std::string(where) + ": expected the id of an event of this stream");
  return std::stoll(v);
}

Chunk end_of(Chunk c, const Run& r) {
  c.text += sse("end", {{"id", r.id}, {"state", to_string(r.state)}});
  c.done = true;
  return c;
}

// The run's state and progress (`run`, sent when they change) and the
// events its plugin emits (`event`).
class RunEventsStream : public EventStream {
 public:
  RunEventsStream(std::string run_id, int64_t after) : id_(std::move(run_id)), after_(after) {}
  const std::string& run_id() const override { return id_; }

  Chunk next(pg::Connection& db) override {
    Chunk c;
    // The run before its events: a run read as finished has all of them in.
    const Run r = get_run(db, id_);
    const auto events = run_events(db, id_, rows_per_round, after_);
    for (const auto& e : events) {
      after_ = e.id;
      c.text += sse("event", app::run_event_json(e), e.id);
    }
    c.more = events.size() == static_cast<size_t>(rows_per_round);
    Json run = app::run_json(r, true);
    run["progress"] = app::run_detail_json(r, {}, {})["progress"];  // with rate and ETA
    if (std::string now = run.dump(); now != last_run_) {
      last_run_ = std::move(now);
      c.text += sse("run", run);
    }
    return is_final(r.state) && !c.more ? end_of(std::move(c), r) : c;
  }

 private:
  std::string id_;
  int64_t after_;
  std::string last_run_;
};

// The run's log lines (`log`), as GET /v1/runs/{id}/logs pages them.
class RunLogsStream : public EventStream {
 public:
  RunLogsStream(std::string run_id, int64_t after, std::optional<int> attempt)
      : id_(std::move(run_id)) {
    q_.after_seq = after;
    q_.attempt = attempt;
    q_.limit = rows_per_round;
  }
  const std::string& run_id() const override { return id_; }

  Chunk next(pg::Connection& db) override {
    Chunk c;
    const Run r = get_run(db, id_);
    const auto page = read_run_logs(db, id_, q_);
    for (const auto& l : page.lines) {
      q_.after_seq = l.seq;
      c.text += sse("log", app::log_line_json(l), l.seq);
    }
    c.more = page.lines.size() == static_cast<size_t>(q_.limit);
    return is_final(r.state) && !c.more ? end_of(std::move(c), r) : c;
  }

 private:
  std::string id_;
  LogQuery q_;
};

}  // namespace

std::unique_ptr<EventStream> open_run_events_stream(Call& c) {
  const Run r = c.app.run(c.path["id"]);  // the viewer's permission, once
  return std::make_unique<RunEventsStream>(r.id, resume_after(c));
}

std::unique_ptr<EventStream> open_run_logs_stream(Call& c) {
  const Run r = c.app.run(c.path["id"]);
  std::optional<int> attempt;
  if (auto a = c.query.find("attempt"); a != c.query.end()) {
    const std::string& v = a->second;
    if (v.empty() || v.size() > 6 || v.find_first_not_of("0123456789") != std::string::npos ||
        std::stoi(v) < 1)
      throw Error(ErrorKind::invalid, "attempt: expected an attempt number from 1");
    attempt = std::stoi(v);
  }
  return std::make_unique<RunLogsStream>(r.id, resume_after(c), attempt);
}

}  // namespace taskhost::api
