#include "cli/fixedwidth_cli.hpp"

#include <taskhost/fixedwidth.hpp>

#include <fstream>
#include <iostream>
#include <nlohmann/json.hpp>
#include <sstream>
#include <string>
#include <vector>

#include "common/text.hpp"

namespace taskhost {
namespace {

namespace fw = fixedwidth;
using Json = nlohmann::json;

constexpr const char* usage =
    "usage: taskhost fixedwidth gen LAYOUT.csv > LAYOUT.yaml\n"
    "       taskhost fixedwidth check FILE --layout LAYOUT.yaml [--json]\n\n"
    "gen    the YAML layout for a vendor's CSV field list (record,field,start,end,type,notes)\n"
    "check  every problem of a fixed-width file, by line, record type and field, and a summary;\n"
    "       exit 1 when there is any\n";

struct Unreadable {
  std::string path;
};

std::string read_all(const std::string& path) {
  std::ifstream in(path, std::ios::binary);
  if (!in) throw Unreadable{path};
  std::ostringstream s;
  s << in.rdbuf();
  return s.str();
}

int gen(const std::string& csv_path) {
  std::cout << fw::layout_yaml_from_csv(read_all(csv_path), csv_path);
  return 0;
}

int check(const std::string& path, const std::string& layout_path, bool json) {
  const fw::Layout layout = fw::load_layout_file(layout_path);
  std::ifstream in(path, std::ios::binary);
  if (!in) throw Unreadable{path};
  fw::FileParser parser(layout, nullptr);
  std::vector<char> buf(1 << 20);
  while (in) {
    in.read(buf.data(), static_cast<std::streamsize>(buf.size()));
    parser.feed(std::string_view(buf.data(), static_cast<size_t>(in.gcount())));
  }
  parser.finish();

  const bool clean = parser.problem_count() == 0;
  if (json) {
    Json records = Json::object(), problems = Json::array();
    for (size_t i = 0; i < layout.records.size(); ++i)
      records[layout.records[i].code] = parser.counts()[i];
    for (const auto& p : parser.problems())
      problems.push_back({{"line", p.line},
                          {"record", p.record},
                          {"field", p.field},
                          {"bytes", p.bytes},
                          {"message", p.message},
                          {"structural", p.structural}});
    std::cout << Json{{"file", path},
                      {"layout", layout.name},
                      {"lines", parser.lines()},
                      {"records", records},
                      {"problems", problems},
                      {"problem_count", parser.problem_count()},
                      {"structural", parser.structural_count()},
                      {"records_with_field_problems", parser.field_problem_records()},
                      {"ok", clean}}
                     .dump(2)
              << "\n";
    return clean ? 0 : 1;
  }
  for (const auto& p : parser.problems()) std::cout << printable(p.str()) << "\n";
  if (parser.problem_count() > parser.problems().size())
    std::cout << "... and " << parser.problem_count() - parser.problems().size()
              << " more problems\n";
  std::string counts;
  for (size_t i = 0; i < layout.records.size(); ++i)
    counts += (counts.empty() ? "" : ", ") + layout.records[i].code + " " +
              std::to_string(parser.counts()[i]);
  std::cout << printable(path) << ": " << parser.lines() << " lines (" << counts << "); "
            << (clean ? std::string("no problems")
                      : std::to_string(parser.problem_count()) + " problems (" +
                            std::to_string(parser.structural_count()) + " structural, " +
                            std::to_string(parser.field_problem_records()) +
                            " records with field problems)")
            << "\n";
  return clean ? 0 : 1;
}

}  // namespace

int run_fixedwidth_cli(int argc, char** argv) {
  std::vector<std::string> args(argv + 1, argv + argc), positional;
  std::string layout;
  bool json = false;
  for (size_t i = 0; i < args.size(); ++i) {
    if (args[i] == "--help" || args[i] == "-h") {
      std::cout << usage;
      return 0;
    } else if (args[i] == "--json") {
      json = true;
    } else if (args[i] == "--layout" && i + 1 < args.size()) {
      layout = args[++i];
    } else if (args[i].rfind("--layout=", 0) == 0) {
      layout = args[i].substr(9);
    } else if (args[i].rfind("-", 0) == 0 && args[i] != "-") {
      std::cerr << "taskhost fixedwidth: unknown option " << printable(args[i]) << "\n" << usage;
      return 2;
    } else {
      positional.push_back(args[i]);
    }
  }
  try {
    if (positional.size() == 2 && positional[0] == "gen" && layout.empty() && !json)
      return gen(positional[1]);
    if (positional.size() == 2 && positional[0] == "check" && !layout.empty())
      return check(positional[1], layout, json);
  } catch (const fw::LayoutError& e) {
    std::istringstream lines(e.what());
    for (std::string line; std::getline(lines, line);) std::cerr << printable(line) << "\n";
    return 2;
  } catch (const Unreadable& u) {
    std::cerr << "taskhost fixedwidth: cannot read " << printable(u.path) << "\n";
    return 6;
  }
  std::cerr << usage;
  return 2;
}

}  // namespace taskhost
