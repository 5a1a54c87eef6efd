#include "common/json_input.hpp"

#include "common/error.hpp"
#include "common/text.hpp"

namespace taskhost {

nlohmann::json parse_json_input(std::string_view text, const std::string& what) {
  using Json = nlohmann::json;
  // The callback sees each value as it is parsed, before anything deeper is
  // built; throwing there stops the parse.
  auto check = [&](int depth, Json::parse_event_t event, Json& parsed) {
    if ((event == Json::parse_event_t::object_start || event == Json::parse_event_t::array_start) &&
        depth >= max_json_depth)
      throw Error(ErrorKind::invalid,
                  what + ": nested deeper than " + std::to_string(max_json_depth) + " levels");
    if ((event == Json::parse_event_t::key || event == Json::parse_event_t::value) &&
        parsed.is_string() && parsed.get_ref<const std::string&>().find('\0') != std::string::npos)
      throw Error(ErrorKind::invalid,
                  what + ": a string holds a NUL character (\\u0000), which cannot be stored");
    return true;
  };
  try {
    return Json::parse(text.begin(), text.end(), check);
  } catch (const Json::exception& e) {
    // e.what() is "[json.exception.parse_error.101] parse error at line 1, ...".
    std::string why = e.what();
    if (auto end = why.find("] "); why.rfind("[json.exception.", 0) == 0 && end != why.npos)
      why = why.substr(end + 2);
    throw Error(ErrorKind::invalid, what + ": not valid JSON: " + why);
  }
}

}  // namespace taskhost
