// One submission's hand-off bundle: the PDF, metadata.json, mappings.json and
// the uploaded documents, zipped (libzip).
#pragma once

#include <string>
#include <vector>

#include "claim.hpp"

namespace form526 {

struct BundleFile {
  std::string name;  // inside the zip
  std::string data;
  bool compress = true;
};

// The zip of files in the given order, each dated `date` (YYYY-MM-DD,
// midnight UTC) so the same files give the same bytes. Throws
// std::runtime_error naming libzip's error.
std::string zip_bundle(const std::vector<BundleFile>& files, const std::string& date);

// The name an uploaded document takes inside the bundle: numbered so that two
// documents of the same name stay apart, with no directory part.
std::string attachment_entry_name(size_t index, const Attachment& a);

// Whether a file of this name is already compressed (PDF, JPEG, PNG ...):
// stored as it is, since deflating it again costs time and saves nothing.
bool already_compressed(const std::string& file_name);

// Lower-case hex SHA-256 of data.
std::string sha256_hex(const std::string& data);

}  // namespace form526
