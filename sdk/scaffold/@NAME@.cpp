// @NAME@: counts the rows of a CSV in object storage by the values of one
// column and attaches the counts as result.csv. A worked example of what a
// task does well: typed parameters, a checkpoint a retried attempt resumes
// from, progress, an event per bad line, a stop request honoured, an output.
// Replace the counting with your script; keep the rest.
#include <taskhost/sdk.hpp>

#include <cstdint>
#include <map>
#include <string>
#include <string_view>
#include <vector>

namespace {

std::vector<std::string_view> split(std::string_view text, char sep) {
  std::vector<std::string_view> parts;
  for (size_t start = 0;;) {
    size_t end = text.find(sep, start);
    parts.push_back(text.substr(start, end == text.npos ? text.npos : end - start));
    if (end == text.npos) return parts;
    start = end + 1;
  }
}

struct TaskhostScaffold {
  static constexpr const char* name = "@NAME@";
  static constexpr const char* version = "0.1.0";
  static constexpr const char* description = "Counts the rows of a CSV by one column";

  void run(taskhost::Context& ctx) {
    // The host checked the parameters against the schema before the run began.
    const auto key = ctx.param<std::string>("input");
    const auto column = ctx.param<std::string>("column");

    // The whole object: fine for a few MiB. For large ones, stream it with
    // get(key, [](std::string_view chunk) { ... }).
    const std::string text = ctx.s3("@NAME@-input").get(key);
    std::vector<std::string_view> lines = split(text, '\n');
    if (!lines.empty() && lines.back().empty()) lines.pop_back();
    if (lines.empty()) throw taskhost::PermanentError(key + " is empty: it needs a header line");

    // Which field holds the column (a simple CSV: no quoted commas).
    const auto header = split(lines[0], ',');
    size_t field = 0;
    while (field < header.size() && header[field] != column) ++field;
    if (field == header.size())
      throw taskhost::PermanentError(key + " line 1: no column '" + column + "' in the header");

    // Resume where the last attempt's checkpoint left off.
    const taskhost::Json saved = ctx.checkpoint();
    size_t next = saved.is_object() ? saved.value("next_line", size_t{1}) : 1;
    auto counts = saved.is_object() ? saved.at("counts").get<std::map<std::string, int64_t>>()
                                    : std::map<std::string, int64_t>{};
    int64_t malformed = saved.is_object() ? saved.value("malformed", int64_t{0}) : 0;
    if (next > 1) ctx.info("resuming at line " + std::to_string(next + 1));

    const uint64_t total = lines.size() - 1;
    for (; next < lines.size(); ++next) {
      const auto fields = split(lines[next], ',');
      if (fields.size() != header.size()) {
        ++malformed;  // reported, and the rest still counted
        ctx.emit("line.malformed", {{"line", next + 1}, {"fields", fields.size()}});
      } else {
        ++counts[std::string(fields[field])];
      }
      if ((next % 1000) == 0 || next + 1 == lines.size()) {
        ctx.checkpoint({{"next_line", next + 1}, {"counts", counts}, {"malformed", malformed}});
        ctx.progress(next, total);
        if (ctx.should_stop()) throw taskhost::Error(TH_ERR_CANCELLED, "stop requested");
      }
    }

    std::string csv = column + ",rows\n";
    for (const auto& [value, rows] : counts) csv += value + "," + std::to_string(rows) + "\n";
    ctx.attach_file("result.csv", "text/csv", csv);
    ctx.info("counted " + std::to_string(total) + " lines of " + key);
    ctx.set_output({{"lines", total}, {"values", counts.size()}, {"malformed", malformed}});
  }
};  // namespace

}  // namespace

TASKHOST_PLUGIN(TaskhostScaffold)
