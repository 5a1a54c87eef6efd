// taskhost fixed-width toolkit: layouts, a byte-level record parser and a
// record builder, for any vendor layout. A small library beside the SDK
// (target taskhost::fixedwidth), usable by out-of-tree plugins.
//
// A layout (YAML, see schemas/layouts/esi_rxaccum_v10.yaml):
//
//   name: esi_rxaccum
//   version: "10"
//   record_length: 1700
//   discriminator: { start: 201, end: 202 }      # which bytes name the record type
//   header: HD                                    # optional: exactly one, first
//   trailer: TR                                   # optional: exactly one, last
//   trailer_count: { field: record_count, counts: [DT] }   # optional
//   records:
//     DT:
//       - { name: transmission_id, start: 358, end: 407, type: AN }
//       - { name: amount, start: 993, end: 1002, type: D2 }
//       - { name: amount_action, start: 1003, end: 1003, type: SIGN, sign_of: amount }
//
// Positions are 1-based and inclusive, as vendors publish them. Types: AN
// text, N unsigned integer, D2 / D3 unsigned with 2 / 3 implied decimals,
// DATE CCYYMMDD, TIME HHMM or HHMMSS, SIGN a '+' / '-' byte that belongs to
// the amount named by sign_of. Every record's fields must tile it exactly:
// from byte 1 to record_length, without overlaps or gaps.
//
// Values, per type (a field of spaces is null for every type):
//   AN    trailing spaces trimmed; bytes above 0x7F read as Latin-1 and given
//         as UTF-8; control bytes are a field problem
//   N     digits (spaces around them allowed), at most 18
//   D2/D3 like N, as an integer count of hundredths / thousandths (cents for
//         amounts: never floating point), negated when its SIGN byte is '-'
//   DATE  CCYYMMDD, a real calendar date (00000000 is null), as the integer
//   TIME  HHMM or HHMMSS, as the integer HHMMSS
//   SIGN  '+', '-' or a space
//
// Thread-safety: a Layout is immutable once loaded and may be shared; a
// FileParser belongs to one thread.
#pragma once

#include <cstdint>
#include <functional>
#include <optional>
#include <stdexcept>
#include <string>
#include <string_view>
#include <vector>

namespace taskhost::fixedwidth {

enum class Type : uint8_t { AN, N, D2, D3, DATE, TIME, SIGN };
const char* type_name(Type t);

struct Field {
  std::string name;
  uint32_t start = 0, end = 0;  // 1-based, inclusive
  Type type = Type::AN;
  int sign = -1;  // an amount: the index of its SIGN field; a SIGN: its amount's
  std::string note;
  int line = 0;  // in the layout file
  uint32_t width() const { return end - start + 1; }
  int scale() const { return type == Type::D2 ? 2 : type == Type::D3 ? 3 : 0; }
};

struct RecordType {
  std::string code;  // the discriminator's value, e.g. "DT"
  std::vector<Field> fields;
  int line = 0;
  // The index of the field named name, or -1.
  int index(std::string_view name) const;
};

struct Layout {
  std::string name, version;
  uint32_t record_length = 0;
  uint32_t discriminator_start = 0, discriminator_end = 0;
  std::vector<RecordType> records;
  std::optional<std::string> header, trailer;
  std::string trailer_count_field;  // empty: no count to check
  std::vector<std::string> trailer_counts;
  // The record type with that code, or nullptr.
  const RecordType* find(std::string_view code) const;
};

// Every problem of a layout (or a field list), one per line, each naming the
// file and line: "layout.yaml:42: field b (10-20) overlaps a (5-12)".
class LayoutError : public std::runtime_error {
 public:
  using std::runtime_error::runtime_error;
};

// Parses and validates a YAML layout. Throws LayoutError listing every problem.
Layout load_layout(std::string_view yaml, const std::string& file);
// The same, read from a file.
Layout load_layout_file(const std::string& path);

// The YAML layout for a vendor's CSV field list (columns record, field,
// start, end, type, notes; a header row). The discriminator is the field
// every record type has at the same place whose notes give the record's
// code; the first and last record types become header and trailer when
// there are three or more; a trailer field named record_count counts the
// records between; a field NAME_action right after a numeric NAME with
// notes "+ or -" becomes NAME's SIGN. Throws LayoutError naming CSV lines.
std::string layout_yaml_from_csv(std::string_view csv, const std::string& file);

// One decoded field. For AN, text points into the parser's memory (valid
// until the next record); the other types carry number.
struct Value {
  bool null = true;
  int64_t number = 0;
  std::string_view text;
};

// Something wrong with a file: where (line, the record type when known, the
// field when it is a field's), the offending bytes as read, and why.
struct Problem {
  uint64_t line = 0;
  std::string record, field;
  std::string bytes;  // Latin-1 read as UTF-8, at most 64 bytes
  std::string message;
  bool structural = false;  // the file as a whole is unusable
  std::string str() const;  // "line 7 DT date_of_service '20241341': not a date"
};

// Formats an integer of hundredths / thousandths as decimal text: -150, 2 -> "-1.50".
std::string decimal_text(int64_t units, int scale);

// Reads a file record by record from chunks of any size, checks each against
// the layout (length, type, fields) and the file's structure (header first,
// trailer last, the trailer's count), and hands each record to the caller.
class FileParser {
 public:
  // on_record(line, type, values, ok): values are in the type's field order;
  // ok is false when a field of this record has a problem (the problem is
  // already in problems()). Records with a structural problem are not handed on.
  using OnRecord =
      std::function<void(uint64_t line, const RecordType&, const std::vector<Value>&, bool ok)>;

  // keep_problems: how many problems to keep in problems(); more are counted only.
  FileParser(const Layout& layout, OnRecord on_record, size_t keep_problems = 10000);

  void feed(std::string_view bytes);
  // Ends the file: a last line without its line end, the structural checks.
  void finish();

  const std::vector<Problem>& problems() const { return problems_; }
  uint64_t problem_count() const { return problem_count_; }
  uint64_t structural_count() const { return structural_count_; }
  uint64_t field_problem_records() const { return bad_records_; }
  uint64_t lines() const { return line_; }
  // Records of each type, in the layout's order.
  const std::vector<uint64_t>& counts() const { return counts_; }

 private:
  void line(std::string_view bytes);
  bool decode(const RecordType& type, std::string_view bytes);
  void problem(Problem p);

  const Layout& layout_;
  OnRecord on_record_;
  size_t keep_;
  std::string partial_;
  std::string scratch_;  // UTF-8 of the current record's Latin-1 text
  std::vector<Value> values_;
  std::vector<int> negative_signs_;  // the amounts of the current record's '-' signs
  std::vector<Problem> problems_;
  std::vector<uint64_t> counts_;
  uint64_t line_ = 0, problem_count_ = 0, structural_count_ = 0, bad_records_ = 0;
  uint64_t header_line_ = 0, trailer_line_ = 0;
  std::optional<int64_t> trailer_count_;
  bool finished_ = false;
};

// Writes records of a layout: every field starts as spaces (the
// discriminator as the code); set fields by name. For generators and tests.
class RecordBuilder {
 public:
  RecordBuilder(const Layout& layout, std::string_view code);
  // AN: left-justified, padded with spaces; must fit.
  RecordBuilder& text(std::string_view field, std::string_view value);
  // N, D2, D3 (in hundredths / thousandths; a negative amount sets its SIGN
  // field to '-', a positive one to '+'), DATE (CCYYMMDD), TIME (HHMM[SS]):
  // zero-padded, must fit.
  RecordBuilder& number(std::string_view field, int64_t value);
  const std::string& str() const { return bytes_; }

 private:
  const Field& field(std::string_view name) const;
  const RecordType* type_;
  std::string bytes_;
};

}  // namespace taskhost::fixedwidth
