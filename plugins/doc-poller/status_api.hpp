#pragma once

// The Lighthouse Benefits Documents status endpoint, as doc-poller speaks
// it: POST {"data":{"requestIds":[...]}} -> data.statuses[] and
// data.requestIdsNotFound[]; a batch whose ids are all unknown is a 404
// with an errors[] body.
#include <taskhost/sdk.hpp>

#include <cstdint>
#include <optional>
#include <string>
#include <vector>

namespace doc_poller {

// One document's answer.
struct DocumentStatus {
  int64_t request_id = 0;
  std::string status;                          // IN_PROGRESS, SUCCESS or FAILED
  std::optional<double> start_time, end_time;  // epoch seconds
  std::optional<std::string> error_step, error_detail;
  std::optional<std::string> last_step;  // the last of steps[] by name
  std::string response;                  // this document's own JSON, as stored
};

struct BatchAnswer {
  std::vector<DocumentStatus> statuses;
  std::vector<int64_t> not_found;
};

std::string request_body(const std::vector<int64_t>& ids);

// Reads a 200 answer, or a 404 whose ids are all unknown (asked: the ids
// sent). Throws std::runtime_error naming what is malformed; an answer
// about an id that was not asked is malformed.
BatchAnswer parse_answer(int status, const std::string& body, const std::vector<int64_t>& asked);

}  // namespace doc_poller
