#pragma once

// One JSON view per entity, the same for `--json` and the HTTP API.
#include <nlohmann/json.hpp>
#include <vector>

#include "app/api_keys.hpp"
#include "store/run_logs.hpp"
#include "store/runs.hpp"
#include "store/schemas.hpp"
#include "webhooks/outbox.hpp"

namespace taskhost::app {

using Json = nlohmann::json;

Json schema_json(const InstalledSchema& s);
// A run as stored; in listings without checkpoint and output (not read).
Json run_json(const Run& r, bool listing = false);
// The run with its transitions and events, and its rate and ETA while an
// attempt runs.
Json run_detail_json(const Run& r, const std::vector<Transition>& transitions,
                     const std::vector<RunEvent>& events);
Json run_event_json(const RunEvent& e);
Json run_file_json(const RunFile& f);
Json delivery_json(const Delivery& d);
// Never the secret: it is shown once, at creation.
Json api_key_json(const ApiKey& k);

Json log_line_json(const LogLine& l);
// A page of a run's log: its lines, the cursor of the next page (null when
// there is none yet) and what the run's bound dropped.
Json log_page_json(const LogPage& p, bool more);

// Items per second of the current (or last) attempt: a resumed or rescued
// run is not credited with the items of earlier attempts.
double attempt_rate(const Run& r);

}  // namespace taskhost::app
