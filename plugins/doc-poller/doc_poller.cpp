// doc-poller: every hour, asks Lighthouse Benefits Documents for the status
// of pending document uploads in bulk and advances each record; flags
// records stuck in pending; reports the Form 526 claims with a document
// problem. Resumable: each batch's one UPDATE commits before the checkpoint
// that moves past it, and a batch already applied is no longer selected
// (polled after the run's cutoff), so a retried attempt never counts a
// document twice.
#include <taskhost/sdk.hpp>

#include <chrono>
#include <map>
#include <optional>
#include <set>
#include <string>
#include <vector>

#include "claims_report.hpp"
#include "status_api.hpp"

namespace doc_poller {
namespace {

using taskhost::Json;

// The credential the schema grants for the status endpoint.
constexpr const char* credential = "lighthouse";

// Steps the API names in error.step; any other is counted as "other", so
// the metric's label values stay the declared few.
const std::set<std::string> known_steps = {"CLAIMS_EVIDENCE", "BENEFITS_GATEWAY_SERVICE", "VBMS",
                                           "BGS"};
std::string step_label(const std::string& step) {
  if (step.empty()) return "none";
  return known_steps.count(step) ? step : "other";
}

// Pending rows not polled since the cutoff, after the last id this run
// handled: a keyset walk on the pending index.
constexpr const char* select_batch = R"(
SELECT id, lighthouse_document_request_id FROM lighthouse_document_uploads
WHERE status = 'pending' AND id > $1
  AND (status_last_polled_at IS NULL OR status_last_polled_at < $2::timestamptz)
ORDER BY id LIMIT $3)";

// One batch's answers in one statement. Every answered row gets its poll
// time and last response; SUCCESS and FAILED move a pending row on (with
// its processing times, and for FAILED the step and detail); everything
// else keeps its values. Returns the rows whose state changed, grouped, and
// the rows polled, grouped: only a pending row is updated, so an answer
// applied before is never counted again.
constexpr const char* apply_batch = R"(
WITH answer AS (
  SELECT * FROM unnest($1::bigint[], $2::text[], $3::float8[], $4::float8[], $5::text[],
                       $6::text[], $7::text[])
    AS a(request_id, api_status, start_time, end_time, error_step, error_detail, response)
), changed AS (
  UPDATE lighthouse_document_uploads d SET
    status = CASE a.api_status WHEN 'SUCCESS' THEN 'completed' WHEN 'FAILED' THEN 'failed'
                               ELSE d.status END,
    error_step = CASE WHEN a.api_status = 'FAILED' THEN a.error_step ELSE d.error_step END,
    error_detail = CASE WHEN a.api_status = 'FAILED' THEN a.error_detail ELSE d.error_detail END,
    processing_started_at = coalesce(to_timestamp(a.start_time), d.processing_started_at),
    processing_ended_at = CASE WHEN a.api_status IN ('SUCCESS', 'FAILED')
                               THEN coalesce(to_timestamp(a.end_time), d.processing_ended_at)
                               ELSE d.processing_ended_at END,
    status_last_polled_at = now(),
    last_status_response = a.response::jsonb
  FROM answer a
  WHERE d.lighthouse_document_request_id = a.request_id AND d.status = 'pending'
  RETURNING d.document_type, d.status, coalesce(d.error_step, '') AS step
)
SELECT document_type, status, step, count(*) FROM changed GROUP BY 1, 2, 3)";

// Stuck: pending longer than the threshold and not flagged yet (a bounded
// page at a time; with the row, its claim and its last step).
constexpr const char* select_stale = R"(
SELECT id, form526_submission_id, document_type, lighthouse_document_request_id,
       to_char(uploaded_at AT TIME ZONE 'UTC', 'YYYY-MM-DD"T"HH24:MI:SS"Z"'),
       coalesce(last_status_response->'steps'->-1->>'name', '')
FROM lighthouse_document_uploads
WHERE status = 'pending' AND stale_flagged_at IS NULL
  AND uploaded_at < now() - make_interval(hours => $1::int)
ORDER BY id LIMIT 500)";
constexpr const char* flag_stale = R"(
UPDATE lighthouse_document_uploads SET stale_flagged_at = now()
WHERE id = ANY($1::bigint[]) AND stale_flagged_at IS NULL)";
constexpr const char* count_unflagged_stale = R"(
SELECT count(*) FROM lighthouse_document_uploads
WHERE status = 'pending' AND stale_flagged_at IS NULL
  AND uploaded_at < now() - make_interval(hours => $1::int))";
constexpr const char* count_stale = R"(
SELECT document_type, count(*) FROM lighthouse_document_uploads
WHERE status = 'pending' AND uploaded_at < now() - make_interval(hours => $1::int)
GROUP BY 1)";

const std::vector<std::string> document_types = {"bdd_instructions", "form_0781", "form_0781a",
                                                 "veteran_upload"};

struct Totals {
  int64_t batches = 0, failed_batches = 0, polled = 0, completed = 0, failed = 0, unknown = 0;
  Json json() const {
    return {{"batches", batches}, {"failed_batches", failed_batches},
            {"polled", polled},   {"completed", completed},
            {"failed", failed},   {"unknown_ids", unknown}};
  }
  static Totals from(const Json& j) {
    Totals t;
    t.batches = j.value("batches", int64_t{0});
    t.failed_batches = j.value("failed_batches", int64_t{0});
    t.polled = j.value("polled", int64_t{0});
    t.completed = j.value("completed", int64_t{0});
    t.failed = j.value("failed", int64_t{0});
    t.unknown = j.value("unknown_ids", int64_t{0});
    return t;
  }
};

std::string ids_text(const std::vector<int64_t>& ids) {
  std::string out;
  for (int64_t id : ids) out += (out.empty() ? "" : ",") + std::to_string(id);
  return out;
}

class Poller {
 public:
  explicit Poller(taskhost::Context& ctx)
      : ctx_(ctx),
        dry_run_(ctx.dry_run()),
        db_(ctx.db()),
        http_(ctx.http(credential)),
        status_url_(ctx.param<std::string>("status_url")),
        batch_size_(ctx.param<int64_t>("batch_size")),
        stale_after_hours_(ctx.param<int64_t>("stale_after_hours")),
        timeout_ms_(ctx.param<int64_t>("request_timeout_ms")) {}

  void run() {
    Json cp = ctx_.checkpoint();
    if (cp.is_null()) {
      // The cutoff is fixed for the whole run, across its attempts: a row
      // polled by an earlier attempt is not polled again.
      auto r = db_.query("SELECT (now() - make_interval(mins => $1::int))::text",
                         {ctx_.param<int64_t>("poll_every_minutes")});
      cp = {{"cutoff", *r.rows.at(0).at(0)}, {"after_id", 0}, {"totals", Totals{}.json()}};
      ctx_.checkpoint(cp);
    }
    const std::string cutoff = cp["cutoff"];
    int64_t after = cp["after_id"];
    Totals totals = Totals::from(cp["totals"]);
    if (!cp.value("polled_all", false)) {
      for (;;) {
        if (ctx_.should_stop()) throw taskhost::Error(TH_ERR_CANCELLED, "stopped on request");
        auto rows = db_.query(select_batch, {after, cutoff, batch_size_});
        if (rows.rows.empty()) break;
        std::vector<int64_t> ids;
        for (const auto& row : rows.rows) ids.push_back(std::stoll(*row.at(1)));
        after = std::stoll(*rows.rows.back().at(0));
        ++totals.batches;
        if (!poll(ids, totals)) ++totals.failed_batches;
        cp["after_id"] = after;
        cp["totals"] = totals.json();
        ctx_.checkpoint(cp);
        ctx_.progress(static_cast<uint64_t>(totals.batches), 0);
      }
      cp["polled_all"] = true;
      ctx_.checkpoint(cp);
    }
    if (totals.batches > 0 && totals.failed_batches == totals.batches)
      throw taskhost::Error(TH_ERR_RETRYABLE,
                            "every batch failed (" + std::to_string(totals.batches) +
                                "): the status endpoint is not answering; see the run's log");
    if (totals.batches > totals.failed_batches)
      ctx_.metric("last_success_timestamp_seconds", now_seconds());

    const int64_t stale_flagged = flag_stale_documents();
    const ClaimsReport report = report_claims(ctx_, db_, stale_after_hours_, dry_run_);
    ctx_.metric("claims_with_problem", static_cast<double>(report.submissions));
    ctx_.set_output({{"dry_run", dry_run_},
                     {"totals", totals.json()},
                     {"stale_flagged", stale_flagged},
                     {"claims_with_problem", report.submissions},
                     {"newly_failing_claims", report.newly_failing},
                     {"report_rows", report.rows}});
  }

 private:
  // One batch: true when the API answered it.
  bool poll(const std::vector<int64_t>& ids, Totals& totals) {
    taskhost::Http::Options o;
    o.headers["Content-Type"] = "application/json";
    o.idempotent = true;  // a status query changes nothing: the host may retry it
    o.timeout_ms = timeout_ms_;
    std::string reason, detail;
    BatchAnswer answer;
    try {
      auto r = http_.request("POST", status_url_, request_body(ids), o);
      if (r.status == 200 || r.status == 404) {
        try {
          answer = parse_answer(r.status, r.body, ids);
        } catch (const std::exception& e) {
          reason = "bad_response";
          detail = e.what();
        }
      } else {
        reason = r.status == 401 || r.status == 403 ? "unauthorized"
                 : r.status == 429                  ? "rate_limited"
                 : r.status >= 500                  ? "server_error"
                                                    : "client_error";
        detail = "HTTP " + std::to_string(r.status);
      }
    } catch (const taskhost::Error& e) {
      if (e.code() == TH_ERR_PERMISSION || e.code() == TH_ERR_INVALID) throw;  // a fault of ours
      const std::string what = e.what();
      reason = what.find("no answer within") != std::string::npos ? "timeout" : "connection";
      detail = what;
    }
    if (!reason.empty()) {
      ctx_.metric("polling_errors_total", 1, {{"reason", reason}});
      ctx_.warn("batch of " + std::to_string(ids.size()) + " failed (" + reason + ": " + detail +
                "); request ids: " + ids_text(ids));
      return false;
    }
    apply(answer, totals);
    return true;
  }

  void apply(const BatchAnswer& answer, Totals& totals) {
    std::vector<int64_t> request_ids;
    std::vector<std::optional<std::string>> api_status, error_step, error_detail, response;
    std::vector<std::optional<double>> start, end;
    for (const auto& s : answer.statuses) {
      request_ids.push_back(s.request_id);
      api_status.push_back(s.status);
      start.push_back(s.start_time);
      end.push_back(s.end_time);
      error_step.push_back(s.error_step);
      error_detail.push_back(s.error_detail);
      response.push_back(s.response);
    }
    // Unknown ids are polled too (their time and answer recorded), never failed.
    for (int64_t id : answer.not_found) {
      request_ids.push_back(id);
      api_status.push_back(std::nullopt);
      start.push_back(std::nullopt);
      end.push_back(std::nullopt);
      error_step.push_back(std::nullopt);
      error_detail.push_back(std::nullopt);
      response.push_back(Json{{"requestIdNotFound", id}}.dump());
    }
    if (!answer.not_found.empty()) {
      totals.unknown += static_cast<int64_t>(answer.not_found.size());
      ctx_.metric("unknown_ids_total", static_cast<double>(answer.not_found.size()));
      ctx_.warn(std::to_string(answer.not_found.size()) +
                " request ids unknown to the API: " + ids_text(answer.not_found));
    }
    if (request_ids.empty()) return;
    if (dry_run_) {  // what the answers would change
      totals.polled += static_cast<int64_t>(request_ids.size());
      for (const auto& s : answer.statuses) {
        totals.completed += s.status == "SUCCESS";
        totals.failed += s.status == "FAILED";
      }
      return;
    }
    auto r = db_.query(apply_batch,
                       {request_ids, api_status, start, end, error_step, error_detail, response});
    std::map<std::string, double> polled;
    for (const auto& row : r.rows) {
      const std::string type = *row.at(0), status = *row.at(1), step = *row.at(2);
      const double n = std::stod(*row.at(3));
      polled[type] += n;
      totals.polled += static_cast<int64_t>(n);
      if (status == "completed") {
        totals.completed += static_cast<int64_t>(n);
        ctx_.metric("documents_completed_total", n, {{"document_type", type}});
      } else if (status == "failed") {
        totals.failed += static_cast<int64_t>(n);
        ctx_.metric("documents_failed_total", n,
                    {{"document_type", type}, {"step", step_label(step)}});
      }
    }
    for (const auto& [type, n] : polled)
      ctx_.metric("documents_polled_total", n, {{"document_type", type}});
  }

  // Flags every newly stuck document once, with a document.stale event
  // each; the events go out before the flags are stored, so a crash between
  // repeats an event (its id tells them apart) rather than losing one.
  int64_t flag_stale_documents() {
    int64_t flagged = 0;
    if (dry_run_)  // how many it would flag
      return std::stoll(*db_.query(count_unflagged_stale, {stale_after_hours_}).rows.at(0).at(0));
    for (;;) {
      auto rows = db_.query(select_stale, {stale_after_hours_});
      if (rows.rows.empty()) break;
      std::vector<int64_t> ids;
      for (const auto& row : rows.rows) {
        ids.push_back(std::stoll(*row.at(0)));
        ctx_.emit("document.stale", {{"document_id", ids.back()},
                                     {"form526_submission_id", std::stoll(*row.at(1))},
                                     {"document_type", *row.at(2)},
                                     {"lighthouse_document_request_id", std::stoll(*row.at(3))},
                                     {"uploaded_at", *row.at(4)},
                                     {"last_step", *row.at(5)}});
      }
      flagged += db_.execute(flag_stale, {ids});
    }
    if (flagged > 0) ctx_.metric("documents_flagged_stale_total", static_cast<double>(flagged));
    std::map<std::string, double> stale;
    for (const auto& t : document_types) stale[t] = 0;
    for (const auto& row : db_.query(count_stale, {stale_after_hours_}).rows)
      stale[*row.at(0)] = std::stod(*row.at(1));
    for (const auto& [type, n] : stale)
      ctx_.metric("stale_documents", n, {{"document_type", type}});
    return flagged;
  }

  static double now_seconds() {
    return std::chrono::duration<double>(std::chrono::system_clock::now().time_since_epoch())
        .count();
  }

  taskhost::Context& ctx_;
  const bool dry_run_;  // the API is asked; nothing is written, flagged or announced
  taskhost::Db db_;
  taskhost::Http http_;
  std::string status_url_;
  int64_t batch_size_, stale_after_hours_, timeout_ms_;
};

}  // namespace

struct DocPoller {
  static constexpr const char* name = "doc-poller";
  static constexpr const char* version = "1.0.0";
  static constexpr const char* description =
      "Polls Lighthouse Benefits Documents for pending uploads' status, flags stuck ones";

  void run(taskhost::Context& ctx) { Poller(ctx).run(); }
};

}  // namespace doc_poller

TASKHOST_PLUGIN(doc_poller::DocPoller)
