#include "app/views.hpp"

namespace taskhost::app {
namespace {

template <typename T>
Json opt(const std::optional<T>& v) {
  return v ? Json(*v) : Json();
}

}  // namespace

Json schema_json(const InstalledSchema& s) {
  Json j = s.schema.to_json();
  j["installed_at"] = s.installed_at;
  j["installed_by"] = s.installed_by;
  j["removed_at"] = opt(s.removed_at);
  return j;
}

double attempt_rate(const Run& r) {
  return r.elapsed_seconds > 0 ? static_cast<double>(r.attempt_progress) / r.elapsed_seconds : 0;
}

Json run_json(const Run& r, bool listing) {
  Json j = {
      {"id", r.id},
      {"schema", r.schema_name},
      {"schema_version", r.schema_version},
      {"state", to_string(r.state)},
      {"attempt", r.attempt},
      {"actor", r.actor},
      {"params", r.params},
      {"created_at", r.created_at},
      {"started_at", opt(r.started_at)},
      {"finished_at", opt(r.finished_at)},
      {"progress",
       r.progress_total ? Json{{"done", *r.progress_done}, {"total", *r.progress_total}} : Json()},
      {"checkpoint", r.checkpoint},
      {"output", r.output},
      {"error_code", opt(r.error_code)},
      {"error", opt(r.error)},
      {"max_attempts", r.max_attempts},
      {"parent_run_id", opt(r.parent_run_id)},
      {"idempotency_key", opt(r.idempotency_key)},
      {"dry_run", r.dry_run},
      // null unless the schema required approval when the run was made
      {"approval", !r.approval_required ? Json()
                   : r.approval         ? Json{{"decision", r.approval->decision},
                                       {"actor", r.approval->actor},
                                       {"reason", r.approval->reason},
                                       {"at", r.approval->at}}
                                        : Json{{"decision", nullptr}}}};
  if (listing) {
    j.erase("checkpoint");  // not read by a listing: a run's own view has them
    j.erase("output");
  }
  return j;
}

Json run_detail_json(const Run& r, const std::vector<Transition>& transitions,
                     const std::vector<RunEvent>& events) {
  Json j = run_json(r);
  if (r.progress_total && *r.progress_total > 0) {
    const bool attempt_ran = r.state == RunState::running || r.state == RunState::pausing ||
                             r.state == RunState::cancelling || is_final(r.state);
    const double rate = attempt_ran ? attempt_rate(r) : 0;
    j["progress"]["rate"] = rate;
    const int64_t left = *r.progress_total - std::min(*r.progress_done, *r.progress_total);
    j["progress"]["eta_seconds"] =
        r.state == RunState::running && rate > 0 ? Json(static_cast<int64_t>(left / rate)) : Json();
  }
  j["transitions"] = Json::array();
  for (const auto& t : transitions)
    j["transitions"].push_back({{"attempt", t.attempt},
                                {"from", opt(t.from)},
                                {"to", t.to},
                                {"actor", t.actor},
                                {"reason", t.reason},
                                {"at", t.at}});
  j["events"] = Json::array();
  for (const auto& e : events) j["events"].push_back(run_event_json(e));
  return j;
}

Json run_event_json(const RunEvent& e) {
  return {{"attempt", e.attempt}, {"name", e.name}, {"payload", e.payload}, {"at", e.at}};
}

Json run_file_json(const RunFile& f) {
  return {{"name", f.name},
          {"content_type", f.content_type},
          {"size", f.size},
          {"sha256", f.sha256},
          {"created_at", f.created_at}};
}

Json delivery_json(const Delivery& d) {
  return {{"id", d.id},
          {"message_id", d.message_id},
          {"schema", d.schema_name},
          {"run_id", d.run_id},
          {"url", d.url},
          {"event", d.event},
          {"state", d.state},
          {"attempts", d.attempts},
          {"last_status", opt(d.last_status)},
          {"last_error", opt(d.last_error)},
          {"created_at", d.created_at},
          {"next_attempt_at", opt(d.next_attempt_at)},
          {"finished_at", opt(d.finished_at)}};
}

Json api_key_json(const ApiKey& k) {
  return {{"id", k.id},
          {"actor", k.actor},
          {"roles", k.roles},
          {"created_at", k.created_at},
          {"created_by", k.created_by},
          {"expires_at", opt(k.expires_at)},
          {"last_used_at", opt(k.last_used_at)},
          {"revoked_at", opt(k.revoked_at)}};
}

Json log_line_json(const LogLine& l) {
  return {{"seq", l.seq},     {"attempt", l.attempt}, {"at", l.at},
          {"level", l.level}, {"source", l.source},   {"message", l.message}};
}

Json log_page_json(const LogPage& p, bool more) {
  Json lines = Json::array();
  for (const auto& l : p.lines) lines.push_back(log_line_json(l));
  return {{"lines", lines},
          {"next", more && !p.lines.empty() ? Json(p.lines.back().seq) : Json()},
          {"last_seq", p.last_seq},
          {"dropped", {{"lines", p.dropped_lines}, {"bytes", p.dropped_bytes}}}};
}

}  // namespace taskhost::app
