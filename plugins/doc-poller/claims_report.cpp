#include "claims_report.hpp"

#include <map>
#include <string>
#include <vector>

namespace doc_poller {
namespace {

using taskhost::Json;

constexpr const char* problems = R"(
SELECT d.form526_submission_id, d.document_type,
       CASE WHEN d.status = 'failed' THEN 'failed' ELSE 'stale' END,
       coalesce(d.error_step, ''), coalesce(d.error_detail, ''),
       to_char(d.uploaded_at AT TIME ZONE 'UTC', 'YYYY-MM-DD"T"HH24:MI:SS"Z"')
FROM lighthouse_document_uploads d
WHERE d.status = 'failed'
   OR (d.status = 'pending' AND d.uploaded_at < now() - make_interval(hours => $1::int))
UNION ALL
SELECT s.id, 'bdd_instructions', 'missing', '', '', ''
FROM form526_submissions s
WHERE s.form->>'bdd' = 'true' AND s.created_at < now() - make_interval(hours => $1::int)
  AND NOT EXISTS (SELECT 1 FROM lighthouse_document_uploads d
                  WHERE d.form526_submission_id = s.id AND d.document_type = 'bdd_instructions'
                    AND d.status = 'completed')
ORDER BY 1, 2, 6)";

// Of the given submissions, those never reported before.
constexpr const char* unreported = R"(
SELECT id FROM unnest($1::bigint[]) AS id
WHERE NOT EXISTS (SELECT 1 FROM doc_poller_reported_claims r WHERE r.form526_submission_id = id)
ORDER BY id)";
constexpr const char* mark_reported = R"(
INSERT INTO doc_poller_reported_claims (form526_submission_id)
SELECT unnest($1::bigint[]) ON CONFLICT DO NOTHING)";

std::string csv_field(const std::string& s) {
  if (s.find_first_of(",\"\r\n") == std::string::npos) return s;
  std::string out = "\"";
  for (char c : s) out += c == '"' ? std::string("\"\"") : std::string(1, c);
  return out + "\"";
}

}  // namespace

ClaimsReport report_claims(taskhost::Context& ctx, const taskhost::Db& db,
                           int64_t stale_after_hours, bool dry_run) {
  ClaimsReport report;
  std::string csv = "submission_id,document_type,status,step,detail,uploaded_at\n";
  std::map<int64_t, Json> by_submission;
  for (const auto& row : db.query(problems, {stale_after_hours}).rows) {
    const int64_t id = std::stoll(*row.at(0));
    std::vector<std::string> v;
    for (size_t i = 0; i < 6; ++i) v.push_back(row.at(i).value_or(""));
    csv += v[0] + "," + v[1] + "," + v[2] + "," + csv_field(v[3]) + "," + csv_field(v[4]) + "," +
           v[5] + "\n";
    ++report.rows;
    Json& problem = by_submission[id];
    problem["form526_submission_id"] = id;
    problem["documents"].push_back(
        {{"document_type", v[1]}, {"status", v[2]}, {"step", v[3]}, {"detail", v[4]}});
  }
  ctx.attach_file("claim-report.csv", "text/csv", csv);
  report.submissions = static_cast<int64_t>(by_submission.size());

  // An event per submission reported for the first time, in pages; the
  // events go out before the submissions are marked reported (a crash in
  // between repeats an event rather than losing one).
  std::vector<int64_t> all;
  for (const auto& [id, problem] : by_submission) all.push_back(id);
  constexpr size_t page = 1000;
  for (size_t at = 0; at < all.size(); at += page) {
    std::vector<int64_t> ids(
        all.begin() + static_cast<std::ptrdiff_t>(at),
        all.begin() + static_cast<std::ptrdiff_t>(std::min(all.size(), at + page)));
    std::vector<int64_t> fresh;
    for (const auto& row : db.query(unreported, {ids}).rows)
      fresh.push_back(std::stoll(*row.at(0)));
    if (!dry_run) {
      for (int64_t id : fresh) ctx.emit("claim.document_problem", by_submission[id]);
      if (!fresh.empty()) db.execute(mark_reported, {fresh});
    }
    report.newly_failing += static_cast<int64_t>(fresh.size());
  }
  return report;
}

}  // namespace doc_poller
