#include "status_api.hpp"

#include <set>
#include <stdexcept>

namespace doc_poller {

using taskhost::Json;

std::string request_body(const std::vector<int64_t>& ids) {
  return Json{{"data", {{"requestIds", ids}}}}.dump();
}

namespace {

[[noreturn]] void malformed(const std::string& why) {
  throw std::runtime_error("malformed status answer: " + why);
}

std::optional<std::string> text(const Json& j, const char* key) {
  auto it = j.find(key);
  if (it == j.end() || it->is_null()) return std::nullopt;
  if (!it->is_string()) malformed(std::string(key) + " is not a string");
  return it->get<std::string>();
}

std::optional<double> seconds(const Json& time, const char* key) {
  auto it = time.find(key);
  if (it == time.end() || it->is_null()) return std::nullopt;
  if (!it->is_number()) malformed(std::string("time.") + key + " is not a number");
  return it->get<double>();
}

int64_t request_id(const Json& j) {
  if (j.is_number_integer()) return j.get<int64_t>();
  // The API documents numbers; a string of digits is the same id.
  if (j.is_string() && !j.get<std::string>().empty() &&
      j.get<std::string>().find_first_not_of("0123456789") == std::string::npos &&
      j.get<std::string>().size() < 19)
    return std::stoll(j.get<std::string>());
  malformed("a requestId is not an integer");
}

}  // namespace

BatchAnswer parse_answer(int status, const std::string& body, const std::vector<int64_t>& asked) {
  BatchAnswer answer;
  Json j = Json::parse(body, nullptr, false);
  if (j.is_discarded() || !j.is_object()) malformed("not a JSON object");
  if (status == 404) {
    // All unknown: the API says so in errors[] instead of data.
    if (!j.contains("errors") || !j["errors"].is_array()) malformed("a 404 without errors[]");
    answer.not_found = asked;
    return answer;
  }
  if (status != 200) malformed("HTTP " + std::to_string(status));
  const Json& data = j.contains("data") ? j["data"] : Json();
  if (!data.is_object()) malformed("no data object");
  const std::set<int64_t> expected(asked.begin(), asked.end());
  std::set<int64_t> seen;
  auto known = [&](int64_t id) {
    if (!expected.count(id))
      malformed("an answer about request id " + std::to_string(id) + ", which was not asked");
    if (!seen.insert(id).second) malformed("request id " + std::to_string(id) + " answered twice");
  };
  if (data.contains("statuses")) {
    if (!data["statuses"].is_array()) malformed("data.statuses is not a list");
    for (const Json& s : data["statuses"]) {
      if (!s.is_object() || !s.contains("requestId")) malformed("a status without requestId");
      DocumentStatus d;
      d.request_id = request_id(s["requestId"]);
      known(d.request_id);
      d.status = text(s, "status").value_or("");
      if (d.status != "IN_PROGRESS" && d.status != "SUCCESS" && d.status != "FAILED")
        malformed("request id " + std::to_string(d.request_id) + " has status '" + d.status + "'");
      if (auto t = s.find("time"); t != s.end() && t->is_object()) {
        d.start_time = seconds(*t, "startTime");
        d.end_time = seconds(*t, "endTime");
      }
      if (auto e = s.find("error"); e != s.end() && e->is_object()) {
        d.error_step = text(*e, "step");
        d.error_detail = text(*e, "detail");
      }
      if (auto st = s.find("steps");
          st != s.end() && st->is_array() && !st->empty() && st->back().is_object())
        d.last_step = text(st->back(), "name");
      d.response = s.dump();
      answer.statuses.push_back(std::move(d));
    }
  }
  if (data.contains("requestIdsNotFound")) {
    if (!data["requestIdsNotFound"].is_array()) malformed("data.requestIdsNotFound is not a list");
    for (const Json& id : data["requestIdsNotFound"]) {
      answer.not_found.push_back(request_id(id));
      known(answer.not_found.back());
    }
  }
  return answer;
}

}  // namespace doc_poller
