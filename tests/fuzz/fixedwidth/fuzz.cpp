// The fixed-width toolkit on hostile input: the first byte chooses what the
// rest is — a YAML layout, a vendor CSV field list, or a file parsed (in two
// chunk sizes, which must agree) against a small layout with every type.
#include <taskhost/fixedwidth.hpp>

#include <cstddef>
#include <cstdint>
#include <cstdlib>
#include <string>
#include <string_view>
#include <vector>

namespace fw = taskhost::fixedwidth;

namespace {

const fw::Layout& layout() {
  static const fw::Layout l = fw::load_layout(R"(name: fuzz
record_length: 40
discriminator: { start: 1, end: 2 }
header: HD
trailer: TR
trailer_count: { field: count, counts: [DT] }
records:
  HD:
    - { name: code, start: 1, end: 2, type: AN }
    - { name: date, start: 3, end: 10, type: DATE }
    - { name: time, start: 11, end: 14, type: TIME }
    - { name: rest, start: 15, end: 40, type: AN }
  DT:
    - { name: code, start: 1, end: 2, type: AN }
    - { name: text, start: 3, end: 12, type: AN }
    - { name: sign, start: 13, end: 13, type: SIGN, sign_of: amount }
    - { name: amount, start: 14, end: 23, type: D2 }
    - { name: qty, start: 24, end: 30, type: D3 }
    - { name: n, start: 31, end: 40, type: N }
  TR:
    - { name: code, start: 1, end: 2, type: AN }
    - { name: count, start: 3, end: 40, type: N }
)",
                                              "fuzz.yaml");
  return l;
}

std::vector<std::string> parse(std::string_view bytes, size_t chunk) {
  std::vector<std::string> seen;
  fw::FileParser p(layout(), [&](uint64_t line, const fw::RecordType& t,
                                 const std::vector<fw::Value>& values, bool ok) {
    std::string row = std::to_string(line) + t.code + (ok ? "+" : "-");
    for (const auto& v : values)
      row += v.null ? "|" : "|" + std::string(v.text) + std::to_string(v.number);
    seen.push_back(row);
  });
  for (size_t i = 0; i < bytes.size(); i += chunk) p.feed(bytes.substr(i, chunk));
  p.finish();
  for (const auto& problem : p.problems()) seen.push_back(problem.str());
  return seen;
}

}  // namespace

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  if (size == 0) return 0;
  const std::string_view rest(reinterpret_cast<const char*>(data) + 1, size - 1);
  switch (data[0] % 3) {
    case 0:
      try {
        fw::load_layout(rest, "fuzz.yaml");
      } catch (const fw::LayoutError&) {
      }
      break;
    case 1:
      try {
        fw::layout_yaml_from_csv(rest, "fuzz.csv");
      } catch (const fw::LayoutError&) {
      }
      break;
    default:
      if (parse(rest, rest.size() + 1) != parse(rest, 7)) std::abort();  // chunking must not matter
  }
  return 0;
}
