#pragma once

#include <taskhost/sdk.hpp>

#include <cstdint>

namespace doc_poller {

struct ClaimsReport {
  int64_t submissions = 0;    // Form 526 submissions with a document problem
  int64_t newly_failing = 0;  // of them, reported for the first time
  int64_t rows = 0;           // rows of the CSV
};

// The claim view: every Form 526 submission with a failed document, a stale
// one (pending more than stale_after_hours after upload), or, for a BDD
// claim older than that, no completed bdd_instructions document. Attaches
// claim-report.csv (submission_id, document_type, status, step, detail,
// uploaded_at; status failed, stale or missing) to the run and emits
// claim.document_problem once per submission the first time it appears
// (in a dry run: counts them, announces and marks nothing).
ClaimsReport report_claims(taskhost::Context& ctx, const taskhost::Db& db,
                           int64_t stale_after_hours, bool dry_run);

}  // namespace doc_poller
