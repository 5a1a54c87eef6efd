#include "claim.hpp"

#include <stdexcept>

namespace form526 {
namespace {

using taskhost::Json;

std::string text(const Json& object, const char* key, const std::string& where,
                 bool required = true) {
  auto it = object.find(key);
  if (it == object.end() || it->is_null()) {
    if (required) throw std::invalid_argument(where + "." + key + " is missing");
    return "";
  }
  if (!it->is_string()) throw std::invalid_argument(where + "." + key + " is not a string");
  return it->get<std::string>();
}

const Json& member(const Json& object, const char* key, const std::string& where,
                   Json::value_t type) {
  auto it = object.find(key);
  if (it == object.end() || it->type() != type)
    throw std::invalid_argument(where + "." + key + " is missing or not " +
                                (type == Json::value_t::array ? "a list" : "an object"));
  return *it;
}

// Base letters of U+0100..U+017F; '*' marks the four that become two letters.
constexpr std::string_view latin_extended_a =
    "AaAaAaCcCcCcCcDdDdEeEeEeEeEeGgGgGgGgHhHhIiIiIiIiIi**JjKkkLlLlLlL"
    "lLlNnNnNnnNnOoOoOo**RrRrRrSsSsSsSsTtTtTtUuUuUuUuUuUuWwYyYZzZzZzs";
// U+00C0..U+00FF; '*' marks letters handled below, '-' signs that are dropped.
constexpr std::string_view latin_1 =
    "AAAAAA*CEEEEIIIIDNOOOOO-OUUUUY**aaaaaa*ceeeeiiiidnooooo-ouuuuy*y";

// Russian-style romanisation of U+0410..U+044F (upper case, then lower).
constexpr const char* cyrillic[32] = {
    "A", "B", "V", "G", "D", "E",  "Zh", "Z",  "I",  "Y",    "K", "L", "M", "N", "O",  "P",
    "R", "S", "T", "U", "F", "Kh", "Ts", "Ch", "Sh", "Shch", "",  "Y", "",  "E", "Yu", "Ya"};
// Greek U+0391..U+03A9 (U+03A2 unassigned).
constexpr const char* greek[25] = {"A", "V", "G", "D", "E",  "Z",  "I", "Th", "I",
                                   "K", "L", "M", "N", "X",  "O",  "P", "R",  "",
                                   "S", "T", "Y", "F", "Ch", "Ps", "O"};

std::string lower(std::string s) {
  for (char& c : s)
    if (c >= 'A' && c <= 'Z') c = static_cast<char>(c - 'A' + 'a');
  return s;
}

std::string transliterate(uint32_t cp) {
  if (cp < 0x80) {
    const char c = static_cast<char>(cp);
    if ((c >= 'A' && c <= 'Z') || (c >= 'a' && c <= 'z') || c == '-' || c == '/' || c == ' ')
      return std::string(1, c);
    return "";
  }
  if (cp >= 0xC0 && cp <= 0xFF) {
    switch (cp) {
      case 0xC6:
        return "AE";
      case 0xDE:
        return "TH";
      case 0xDF:
        return "ss";
      case 0xE6:
        return "ae";
      case 0xFE:
        return "th";
    }
    const char c = latin_1[cp - 0xC0];
    return c == '-' ? "" : std::string(1, c);
  }
  if (cp >= 0x100 && cp <= 0x17F) {
    switch (cp) {
      case 0x132:
        return "IJ";
      case 0x133:
        return "ij";
      case 0x152:
        return "OE";
      case 0x153:
        return "oe";
    }
    return std::string(1, latin_extended_a[cp - 0x100]);
  }
  if (cp == 0x1A0 || cp == 0x1A1) return cp == 0x1A0 ? "O" : "o";  // Vietnamese horned O, U
  if (cp == 0x1AF || cp == 0x1B0) return cp == 0x1AF ? "U" : "u";
  if (cp >= 0x1EA0 && cp <= 0x1EF9) {  // Vietnamese: pairs of upper, lower case by vowel
    const char base = cp < 0x1EB8   ? 'a'
                      : cp < 0x1EC8 ? 'e'
                      : cp < 0x1ECC ? 'i'
                      : cp < 0x1EE4 ? 'o'
                      : cp < 0x1EF2 ? 'u'
                                    : 'y';
    return std::string(1, (cp % 2 == 0) ? static_cast<char>(base - 'a' + 'A') : base);
  }
  if (cp >= 0x410 && cp <= 0x44F)
    return cp < 0x430 ? cyrillic[cp - 0x410] : lower(cyrillic[cp - 0x430]);
  if (cp == 0x401 || cp == 0x451) return cp == 0x401 ? "E" : "e";  // Ё ё
  if (cp >= 0x391 && cp <= 0x3A9) return greek[cp - 0x391];
  if (cp >= 0x3B1 && cp <= 0x3C9) return lower(cp == 0x3C2 ? "S" : greek[cp - 0x3B1]);  // ς
  switch (cp) {  // Greek with tonos
    case 0x386:
    case 0x3AC:
      return cp == 0x386 ? "A" : "a";
    case 0x388:
    case 0x3AD:
      return cp == 0x388 ? "E" : "e";
    case 0x389:
    case 0x3AE:
    case 0x38A:
    case 0x3AF:
      return cp < 0x3A0 ? "I" : "i";
    case 0x38C:
    case 0x3CC:
      return cp == 0x38C ? "O" : "o";
    case 0x38E:
    case 0x3CD:
      return cp == 0x38E ? "Y" : "y";
    case 0x38F:
    case 0x3CE:
      return cp == 0x38F ? "O" : "o";
  }
  return "";  // no Latin letter for it
}

}  // namespace

std::string intake_name(const std::string& utf8) {
  std::string out;
  for (size_t i = 0; i < utf8.size();) {
    const auto b = static_cast<unsigned char>(utf8[i]);
    const int n = b < 0x80 ? 1 : (b >> 5) == 6 ? 2 : (b >> 4) == 14 ? 3 : (b >> 3) == 30 ? 4 : 1;
    uint32_t cp = n == 1 ? b : b & (0x3F >> (n - 1));
    for (int k = 1; k < n && i + k < utf8.size(); ++k)
      cp = cp << 6 | (static_cast<unsigned char>(utf8[i + k]) & 0x3F);
    i += n;
    for (char c : transliterate(cp))
      if (c != ' ' || (!out.empty() && out.back() != ' ')) out += c;
  }
  while (!out.empty() && out.back() == ' ') out.pop_back();
  return out.substr(0, 50);
}

Claim claim_from_row(int64_t id, const std::string& user_uuid, const std::string& created_at,
                     const std::string& status, const std::string& form_json,
                     const std::string& attachments_json) {
  Claim c;
  c.id = id;
  c.user_uuid = user_uuid;
  c.claim_date = created_at.substr(0, 10);
  c.status = status;
  const Json form = Json::parse(form_json);
  const Json& v = member(form, "veteran", "form", Json::value_t::object);
  c.first_name = text(v, "first_name", "form.veteran");
  c.middle_name = text(v, "middle_name", "form.veteran", false);
  c.last_name = text(v, "last_name", "form.veteran");
  c.file_number = text(v, "file_number", "form.veteran");
  c.date_of_birth = text(v, "date_of_birth", "form.veteran");
  c.email = text(v, "email", "form.veteran", false);
  c.phone = text(v, "phone", "form.veteran", false);
  const Json& a = member(v, "address", "form.veteran", Json::value_t::object);
  c.address_line1 = text(a, "line1", "form.veteran.address");
  c.address_line2 = text(a, "line2", "form.veteran.address", false);
  c.city = text(a, "city", "form.veteran.address");
  c.state = text(a, "state", "form.veteran.address", false);
  c.zip = text(a, "zip", "form.veteran.address", false);
  c.country = text(a, "country", "form.veteran.address");
  for (const auto& p : member(form, "service_periods", "form", Json::value_t::array))
    c.service_periods.push_back({text(p, "branch", "form.service_periods[]"),
                                 text(p, "from", "form.service_periods[]"),
                                 text(p, "to", "form.service_periods[]", false)});
  for (const auto& d : member(form, "disabilities", "form", Json::value_t::array))
    c.disabilities.push_back({text(d, "name", "form.disabilities[]"),
                              text(d, "classification", "form.disabilities[]", false),
                              text(d, "service_relevance", "form.disabilities[]", false)});
  c.bdd = form.value("bdd", false);
  const Json attachments = Json::parse(attachments_json);
  for (const auto& x : attachments)
    c.attachments.push_back({x.at("document_type"), x.at("file_name"), x.at("object_key")});
  return c;
}

Json intake_metadata(const Claim& c, const std::string& source) {
  std::string zip;
  for (char ch : c.zip)
    if (ch >= '0' && ch <= '9' && zip.size() < 5) zip += ch;
  if (c.country != "USA" || zip.size() != 5) zip = "00000";
  const std::string first = intake_name(c.first_name), last = intake_name(c.last_name);
  if (first.empty() || last.empty())
    throw std::invalid_argument("the veteran's name has no letter the intake API accepts");
  return {{"veteranFirstName", first},
          {"veteranLastName", last},
          {"fileNumber", c.file_number},
          {"zipCode", zip},
          {"source", source},
          {"docType", "21-526EZ"},
          {"businessLine", "CMP"},
          {"claimDate", c.claim_date},
          {"numberAttachments", c.attachments.size()}};
}

}  // namespace form526
