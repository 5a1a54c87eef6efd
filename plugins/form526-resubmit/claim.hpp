// A submission as the plugin reads it from form526_submissions and
// form526_attachments, and the metadata.json the hand-off expects with it.
#pragma once

#include <taskhost/sdk.hpp>

#include <cstdint>
#include <string>
#include <vector>

namespace form526 {

struct Attachment {
  std::string document_type, file_name, object_key;
};

struct ServicePeriod {
  std::string branch, from, to;
};

struct Disability {
  std::string name, classification, service_relevance;
};

struct Claim {
  int64_t id = 0;
  std::string user_uuid, claim_date;  // claim_date: YYYY-MM-DD of created_at (UTC)
  std::string status;
  std::string first_name, middle_name, last_name, file_number, date_of_birth;
  std::string email, phone;
  std::string address_line1, address_line2, city, state, zip, country;
  std::vector<ServicePeriod> service_periods;
  std::vector<Disability> disabilities;
  bool bdd = false;
  std::vector<Attachment> attachments;
};

// Builds a Claim from the row's columns; the form JSON as the table holds
// it. Throws std::invalid_argument naming the field that is missing or of
// the wrong type.
Claim claim_from_row(int64_t id, const std::string& user_uuid, const std::string& created_at,
                     const std::string& status, const std::string& form_json,
                     const std::string& attachments_json);

// metadata.json in the shape the benefits-intake API documents. Names are
// transliterated to the letters it accepts; the zip code is the first five
// digits, or 00000 outside the United States. Throws std::invalid_argument
// when a name keeps no letter at all.
taskhost::Json intake_metadata(const Claim& claim, const std::string& source);

// A name as the intake API accepts it: ASCII letters (accents dropped;
// Greek, Cyrillic and Vietnamese romanised), hyphen, slash and space, at most
// 50 characters.
std::string intake_name(const std::string& utf8);

}  // namespace form526
