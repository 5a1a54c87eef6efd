#include "common/diagnostic.hpp"

namespace taskhost {

std::string Diagnostic::str() const {
  std::string out;
  if (!file.empty()) out += file + ":";
  if (line > 0) out += std::to_string(line) + ":" + std::to_string(column) + ":";
  if (!out.empty()) out += " ";
  if (!field.empty()) out += field + ": ";
  return out + message;
}

std::string format_diagnostics(const std::vector<Diagnostic>& errors) {
  std::string out;
  for (const auto& d : errors) out += (out.empty() ? "" : "\n") + d.str();
  return out;
}

void Diagnostics::add(Diagnostic d) {
  if (++total_ <= max) {
    out_->push_back(std::move(d));
    return;
  }
  Diagnostic summary{d.file, 0, 0, "",
                     "... and " + std::to_string(total_ - max) + " more problems (the first " +
                         std::to_string(max) + " are listed)"};
  if (total_ == max + 1)
    out_->push_back(std::move(summary));
  else
    out_->back() = std::move(summary);
}

}  // namespace taskhost
