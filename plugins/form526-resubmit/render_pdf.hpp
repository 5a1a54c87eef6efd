// The claim as a readable PDF of the 21-526EZ's content (libharu).
#pragma once

#include <string>

#include "claim.hpp"

namespace form526 {

// The TrueType font written once into a private directory under /tmp (the
// sandbox has no fonts: it is built into the plugin, and libharu reads fonts
// only from files), removed with the object.
class Fonts {
 public:
  Fonts();
  ~Fonts();
  Fonts(const Fonts&) = delete;
  Fonts& operator=(const Fonts&) = delete;
  const std::string& path() const { return path_; }

 private:
  std::string dir_, path_;
};

// Renders the claim: identification, contact, service, claimed disabilities
// and documents, with "Resubmitted <date>" stamped on every page. The same
// claim and date give the same bytes. Throws std::runtime_error naming
// libharu's error. Thread-safe: each call has its own document.
std::string render_pdf(const Claim& claim, const std::string& resubmitted_date, const Fonts& fonts);

}  // namespace form526
