#pragma once

#include <filesystem>
#include <string>
#include <vector>

namespace taskhost {

// What can be read from a plugin file without running any of its code.
struct ElfSummary {
  std::string machine;               // "x86-64", "aarch64", ...
  bool exports_entry = false;        // defines TH_PLUGIN_ENTRY_SYMBOL as a function
  std::vector<std::string> needed;   // shared libraries it links (DT_NEEDED)
  std::vector<std::string> imports;  // functions and objects it uses from them, sorted
};

// Reads bytes as an ELF shared object, every offset bounds-checked: the file
// is untrusted. Throws Error(refused) naming file and what is wrong (not
// ELF, not 64-bit, not a shared library, truncated).
ElfSummary read_elf(const std::filesystem::path& file, const std::string& bytes);

}  // namespace taskhost
