#include "store/run_logs.hpp"

namespace taskhost {

LogPage read_run_logs(pg::Connection& conn, const std::string& run_id, const LogQuery& q) {
  LogPage page;
  auto r = conn.exec(
      "SELECT seq, attempt, at::text, level, source, message FROM taskhost.run_logs "
      "WHERE run_id = $1 AND seq > $2 AND ($3::int IS NULL OR attempt = $3) "
      "ORDER BY seq LIMIT $4",
      {run_id, q.after_seq,
       q.attempt ? std::optional<std::string>(std::to_string(*q.attempt)) : std::nullopt, q.limit});
  for (int i = 0; i < r.rows(); ++i)
    page.lines.push_back({r.integer(i, 0), static_cast<int>(r.integer(i, 1)), r.text(i, 2),
                          r.text(i, 3), r.text(i, 4), r.text(i, 5)});
  auto t = conn.exec(
      "SELECT last_seq, dropped_lines, dropped_bytes FROM taskhost.run_log_totals "
      "WHERE run_id = $1",
      {run_id});
  if (t.rows() == 1) {
    page.last_seq = t.integer(0, 0);
    page.dropped_lines = t.integer(0, 1);
    page.dropped_bytes = t.integer(0, 2);
  }
  return page;
}

std::optional<bool> append_run_logs(pg::Connection& conn, const std::string& run_id, int attempt,
                                    const std::vector<PendingLine>& lines, int64_t max_lines,
                                    uint64_t max_bytes, int64_t dropped_lines,
                                    int64_t dropped_bytes) {
  std::vector<std::optional<std::string>> ats, levels, messages;
  for (const auto& l : lines) {
    const auto us =
        std::chrono::duration_cast<std::chrono::microseconds>(l.at.time_since_epoch()).count();
    ats.push_back(std::to_string(us));
    levels.push_back(l.level);
    messages.push_back(l.message);
  }
  // Times travel as microseconds since the epoch: exact, and no time zone.
  auto r = conn.exec(
      "SELECT taskhost.append_run_logs($1, $2, "
      "  (SELECT array_agg(timestamptz 'epoch' + u * interval '1 microsecond' ORDER BY o) "
      "   FROM unnest($3::bigint[]) WITH ORDINALITY AS x(u, o)), "
      "  $4::text[], $5::text[], $6, $7, $8, $9)",
      {run_id, attempt, pg::array_literal(ats), pg::array_literal(levels),
       pg::array_literal(messages), max_lines, max_bytes, dropped_lines, dropped_bytes});
  if (r.null(0, 0)) return std::nullopt;
  return r.boolean(0, 0);
}

}  // namespace taskhost
