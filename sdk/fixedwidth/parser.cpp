// The byte-level record parser and the record builder.
#include <algorithm>
#include <bit>
#include <cstring>

#include "taskhost/fixedwidth.hpp"

namespace taskhost::fixedwidth {
namespace {

constexpr size_t max_problem_bytes = 64;

// Bytes as text for a message: Latin-1 above 0x7F, control bytes as \xNN.
std::string shown(std::string_view bytes) {
  std::string out;
  for (unsigned char c : bytes.substr(0, max_problem_bytes)) {
    if (c < 0x20 || c == 0x7F) {
      static const char hex[] = "0123456789ABCDEF";
      out += "\\x";
      out += hex[c >> 4];
      out += hex[c & 15];
    } else if (c >= 0x80) {
      out += static_cast<char>(0xC0 | (c >> 6));
      out += static_cast<char>(0x80 | (c & 0x3F));
    } else {
      out += static_cast<char>(c);
    }
  }
  if (bytes.size() > max_problem_bytes) out += "...";
  return out;
}

// s without its trailing spaces, eight bytes at a time: most of a vendor's
// record is space padding, and this is the parser's hottest loop.
std::string_view trim_spaces(std::string_view s) {
  static_assert(std::endian::native == std::endian::little);
  constexpr uint64_t spaces = 0x2020202020202020;
  size_t n = s.size();
  for (; n >= 8; n -= 8) {
    uint64_t word;
    std::memcpy(&word, s.data() + n - 8, 8);
    // The word's highest byte is its last: the leading zero bytes of the
    // XOR are the trailing spaces.
    if (word != spaces) return s.substr(0, n - std::countl_zero(word ^ spaces) / 8);
  }
  while (n > 0 && s[n - 1] == ' ') --n;
  return s.substr(0, n);
}

bool blank(std::string_view s) { return trim_spaces(s).empty(); }

// Digits after optional spaces (trailing ones already trimmed, not all
// spaces): the value, or nullopt.
std::optional<int64_t> digits(std::string_view s) {
  size_t b = 0;
  while (b < s.size() && s[b] == ' ') ++b;
  if (b == s.size() || s.size() - b > 18) return std::nullopt;
  int64_t v = 0;
  for (size_t i = b; i < s.size(); ++i) {
    const unsigned d = static_cast<unsigned char>(s[i]) - '0';
    if (d > 9) return std::nullopt;
    v = v * 10 + d;
  }
  return v;
}

int64_t two(std::string_view s, size_t at) { return (s[at] - '0') * 10 + (s[at + 1] - '0'); }

bool all_digits(std::string_view s) {
  return std::all_of(s.begin(), s.end(), [](char c) { return c >= '0' && c <= '9'; });
}

bool valid_date(std::string_view s) {
  if (s.size() != 8 || !all_digits(s)) return false;
  const int64_t y = two(s, 0) * 100 + two(s, 2), m = two(s, 4), d = two(s, 6);
  static const int days[] = {31, 29, 31, 30, 31, 30, 31, 31, 30, 31, 30, 31};
  if (y < 1 || m < 1 || m > 12 || d < 1 || d > days[m - 1]) return false;
  const bool leap = (y % 4 == 0 && y % 100 != 0) || y % 400 == 0;
  return m != 2 || d <= 28 || leap;
}

bool valid_time(std::string_view s) {
  if ((s.size() != 4 && s.size() != 6) || !all_digits(s)) return false;
  return two(s, 0) < 24 && two(s, 2) < 60 && (s.size() == 4 || two(s, 4) < 60);
}

}  // namespace

std::string Problem::str() const {
  std::string s = "line " + std::to_string(line);
  if (!record.empty()) s += " " + record;
  if (!field.empty()) s += " " + field;
  if (!bytes.empty() || !field.empty()) s += " '" + bytes + "'";
  return s + ": " + message;
}

std::string decimal_text(int64_t units, int scale) {
  if (scale == 0) return std::to_string(units);
  const bool negative = units < 0;
  const uint64_t magnitude = negative ? 0 - static_cast<uint64_t>(units) : units;
  std::string digits = std::to_string(magnitude);
  if (digits.size() <= static_cast<size_t>(scale)) digits.insert(0, scale + 1 - digits.size(), '0');
  digits.insert(digits.size() - scale, 1, '.');
  return negative ? "-" + digits : digits;
}

FileParser::FileParser(const Layout& layout, OnRecord on_record, size_t keep_problems)
    : layout_(layout),
      on_record_(std::move(on_record)),
      keep_(keep_problems),
      counts_(layout.records.size()) {
  // Latin-1 grows at most twice in UTF-8: views into scratch_ stay valid
  // through a record.
  scratch_.reserve(2 * layout.record_length);
}

void FileParser::problem(Problem p) {
  ++problem_count_;
  if (p.structural) ++structural_count_;
  if (problems_.size() < keep_) problems_.push_back(std::move(p));
}

void FileParser::feed(std::string_view bytes) {
  if (!partial_.empty()) {
    const size_t nl = bytes.find('\n');
    if (nl == std::string_view::npos) {
      partial_.append(bytes);
      return;
    }
    partial_.append(bytes.substr(0, nl));
    line(partial_);
    partial_.clear();
    bytes.remove_prefix(nl + 1);
  }
  for (size_t nl; (nl = bytes.find('\n')) != std::string_view::npos;) {
    line(bytes.substr(0, nl));
    bytes.remove_prefix(nl + 1);
  }
  partial_.append(bytes);
}

void FileParser::finish() {
  if (finished_) return;
  finished_ = true;
  if (!partial_.empty()) line(partial_);  // a last line without its line end
  partial_.clear();
  auto structural = [&](uint64_t at, std::string record, std::string message) {
    problem({at, std::move(record), "", "", std::move(message), true});
  };
  if (line_ == 0) structural(0, "", "the file is empty");
  if (layout_.trailer && trailer_line_ == 0 && line_ > 0)
    structural(line_, "", "no " + *layout_.trailer + " trailer record: the file may be truncated");
  if (trailer_count_) {
    uint64_t counted = 0;
    std::string what;
    for (const auto& code : layout_.trailer_counts) {
      counted += counts_[layout_.find(code) - layout_.records.data()];
      what += (what.empty() ? "" : "+") + code;
    }
    if (static_cast<uint64_t>(*trailer_count_) != counted)
      structural(trailer_line_, *layout_.trailer,
                 "the trailer's " + layout_.trailer_count_field + " is " +
                     std::to_string(*trailer_count_) + " but the file has " +
                     std::to_string(counted) + " " + what + " records");
  }
}

void FileParser::line(std::string_view bytes) {
  ++line_;
  if (!bytes.empty() && bytes.back() == '\r') bytes.remove_suffix(1);
  auto structural = [&](std::string record, std::string message) {
    problem({line_, std::move(record), "", shown(bytes.substr(0, 16)), std::move(message), true});
  };
  if (bytes.size() != layout_.record_length) {
    structural("", "the record is " + std::to_string(bytes.size()) + " bytes, the layout's are " +
                       std::to_string(layout_.record_length));
    return;
  }
  const std::string_view code = bytes.substr(
      layout_.discriminator_start - 1, layout_.discriminator_end - layout_.discriminator_start + 1);
  const RecordType* type = layout_.find(code);
  if (type == nullptr) {
    problem({line_, "", "", shown(code), "unknown record type", true});
    return;
  }
  const bool is_header = layout_.header && code == *layout_.header;
  const bool is_trailer = layout_.trailer && code == *layout_.trailer;
  if (trailer_line_ != 0) {
    structural(type->code,
               "a record after the trailer (line " + std::to_string(trailer_line_) + ")");
    return;
  }
  if (is_header && line_ != 1) {
    structural(type->code, header_line_ ? "a second header (the first is line " +
                                              std::to_string(header_line_) + ")"
                                        : "the header must be the first record");
    return;
  }
  if (layout_.header && !is_header && line_ == 1) {
    // Said once; the records after it are still checked.
    structural(type->code, "the file must begin with a " + *layout_.header + " header");
  }
  if (is_header) header_line_ = line_;
  if (is_trailer) trailer_line_ = line_;
  ++counts_[type - layout_.records.data()];
  const bool ok = decode(*type, bytes);
  if (!ok) ++bad_records_;
  if (is_trailer && !layout_.trailer_count_field.empty()) {
    const Value& v = values_[type->index(layout_.trailer_count_field)];
    if (v.null)
      structural(type->code, "the trailer's " + layout_.trailer_count_field + " is not a number");
    else
      trailer_count_ = v.number;
  }
  if (on_record_) on_record_(line_, *type, values_, ok);
}

bool FileParser::decode(const RecordType& type, std::string_view bytes) {
  values_.resize(type.fields.size());
  scratch_.clear();
  negative_signs_.clear();
  bool ok = true;
  auto fail = [&](const Field& f, std::string_view raw, std::string message) {
    ok = false;
    problem({line_, type.code, f.name, shown(raw), std::move(message), false});
  };
  for (size_t i = 0; i < type.fields.size(); ++i) {
    const Field& f = type.fields[i];
    const std::string_view raw = bytes.substr(f.start - 1, f.width());
    Value& v = values_[i];
    v = Value{};
    switch (f.type) {
      case Type::AN: {
        const std::string_view text = trim_spaces(raw);
        if (text.empty()) break;
        // Bitwise, not short-circuit, so that the compiler vectorizes it.
        unsigned control = 0, high = 0;
        for (unsigned char c : text) {
          control |= static_cast<unsigned>(c < 0x20) | static_cast<unsigned>(c == 0x7F);
          high |= c;
        }
        if (control) {
          fail(f, raw, "a control byte in text");
          break;
        }
        v.null = false;
        if (high < 0x80) {
          v.text = text;
        } else {  // Latin-1 to UTF-8
          const size_t at = scratch_.size();
          for (unsigned char c : text) {
            if (c < 0x80) {
              scratch_ += static_cast<char>(c);
            } else {
              scratch_ += static_cast<char>(0xC0 | (c >> 6));
              scratch_ += static_cast<char>(0x80 | (c & 0x3F));
            }
          }
          v.text = std::string_view(scratch_).substr(at);
        }
        break;
      }
      case Type::N:
      case Type::D2:
      case Type::D3: {
        const std::string_view trimmed = trim_spaces(raw);
        if (trimmed.empty()) break;
        if (auto d = digits(trimmed)) {
          v.null = false;
          v.number = *d;
        } else {
          fail(f, raw,
               std::string("not ") + (f.type == Type::N ? "an unsigned number" : "an amount"));
        }
        break;
      }
      case Type::DATE:
        if (blank(raw) || raw == "00000000") break;
        if (valid_date(raw)) {
          v.null = false;
          v.number = two(raw, 0) * 1000000 + two(raw, 2) * 10000 + two(raw, 4) * 100 + two(raw, 6);
        } else {
          fail(f, raw, "not a date (CCYYMMDD)");
        }
        break;
      case Type::TIME:
        if (blank(raw)) break;
        if (valid_time(raw)) {
          v.null = false;
          v.number = raw.size() == 4 ? (two(raw, 0) * 100 + two(raw, 2)) * 100
                                     : two(raw, 0) * 10000 + two(raw, 2) * 100 + two(raw, 4);
        } else {
          fail(f, raw, "not a time (HHMM or HHMMSS)");
        }
        break;
      case Type::SIGN:
        if (raw[0] == ' ') break;
        if (raw[0] == '+' || raw[0] == '-') {
          v.null = false;
          v.number = raw[0] == '-' ? -1 : 1;
          if (v.number < 0) negative_signs_.push_back(f.sign);
        } else {
          fail(f, raw, "not a sign (+, - or a space)");
        }
        break;
    }
  }
  // Signs apply once every field is read (a SIGN may come before its amount).
  for (const int amount : negative_signs_) values_[amount].number = -values_[amount].number;
  return ok;
}

RecordBuilder::RecordBuilder(const Layout& layout, std::string_view code)
    : type_(layout.find(code)), bytes_(layout.record_length, ' ') {
  if (type_ == nullptr) throw std::invalid_argument("no record type " + std::string(code));
  bytes_.replace(layout.discriminator_start - 1, code.size(), code);
}

const Field& RecordBuilder::field(std::string_view name) const {
  const int i = type_->index(name);
  if (i < 0)
    throw std::invalid_argument("record " + type_->code + " has no field " + std::string(name));
  return type_->fields[i];
}

RecordBuilder& RecordBuilder::text(std::string_view name, std::string_view value) {
  const Field& f = field(name);
  if (value.size() > f.width())
    throw std::invalid_argument(f.name + ": '" + std::string(value) + "' is wider than " +
                                std::to_string(f.width()) + " bytes");
  bytes_.replace(f.start - 1, f.width(),
                 std::string(value) + std::string(f.width() - value.size(), ' '));
  return *this;
}

RecordBuilder& RecordBuilder::number(std::string_view name, int64_t value) {
  const Field& f = field(name);
  if (f.type == Type::AN || f.type == Type::SIGN)
    throw std::invalid_argument(f.name + " is " + type_name(f.type) + ", not a number");
  if (value < 0 && f.sign < 0)
    throw std::invalid_argument(f.name + " has no SIGN field for a negative value");
  std::string digits = std::to_string(value < 0 ? -value : value);
  if (digits.size() > f.width())
    throw std::invalid_argument(f.name + ": " + digits + " is wider than " +
                                std::to_string(f.width()) + " bytes");
  digits.insert(0, f.width() - digits.size(), '0');
  bytes_.replace(f.start - 1, f.width(), digits);
  if (f.sign >= 0) bytes_[type_->fields[f.sign].start - 1] = value < 0 ? '-' : '+';
  return *this;
}

}  // namespace taskhost::fixedwidth
