#include "plugin/elf.hpp"

#include <elf.h>
#include <taskhost/plugin.h>

#include <algorithm>
#include <cstring>
#include <optional>

#include "common/error.hpp"

namespace taskhost {
namespace {

class Reader {
 public:
  Reader(const std::filesystem::path& file, const std::string& bytes)
      : file_(file), bytes_(bytes) {}

  template <typename T>
  T at(uint64_t offset) const {
    if (offset > bytes_.size() || bytes_.size() - offset < sizeof(T))
      fail("it is truncated (a structure at offset " + std::to_string(offset) +
           " lies past its end)");
    T v;
    std::memcpy(&v, bytes_.data() + offset, sizeof v);
    return v;
  }

  // The NUL-terminated string at offset within a string table section.
  std::string string(const Elf64_Shdr& table, uint64_t offset) const {
    if (offset >= table.sh_size) fail("a name lies outside its string table");
    uint64_t start = table.sh_offset + offset, end = table.sh_offset + table.sh_size;
    if (end > bytes_.size() || end < start) fail("a string table lies past its end");
    const char* p = bytes_.data() + start;
    const void* nul = std::memchr(p, '\0', end - start);
    if (!nul) fail("a name in a string table is not terminated");
    return std::string(p, static_cast<const char*>(nul));
  }

  [[noreturn]] void fail(const std::string& why) const {
    throw Error(ErrorKind::refused, "plugin " + file_.string() + " refused: " + why);
  }

 private:
  const std::filesystem::path& file_;
  const std::string& bytes_;
};

std::string machine_name(uint16_t m) {
  switch (m) {
    case EM_X86_64:
      return "x86-64";
    case EM_AARCH64:
      return "aarch64";
    case EM_386:
      return "i386";
    default:
      return "machine " + std::to_string(m);
  }
}

}  // namespace

ElfSummary read_elf(const std::filesystem::path& file, const std::string& bytes) {
  Reader r(file, bytes);
  if (bytes.size() < SELFMAG || std::memcmp(bytes.data(), ELFMAG, SELFMAG) != 0)
    r.fail("it is not an ELF file (a plugin is a shared library, .so)");
  auto eh = r.at<Elf64_Ehdr>(0);
  if (eh.e_ident[EI_CLASS] != ELFCLASS64 || eh.e_ident[EI_DATA] != ELFDATA2LSB)
    r.fail("it is not a 64-bit little-endian ELF file");
  if (eh.e_type != ET_DYN) r.fail("it is an ELF file but not a shared library");
  if (eh.e_shentsize != sizeof(Elf64_Shdr)) r.fail("its section headers have an unknown size");

  ElfSummary out;
  out.machine = machine_name(eh.e_machine);
  auto section = [&](uint64_t i) {
    if (i >= eh.e_shnum)
      r.fail("a section refers to section " + std::to_string(i) + " of " +
             std::to_string(eh.e_shnum));
    return r.at<Elf64_Shdr>(eh.e_shoff + i * sizeof(Elf64_Shdr));
  };
  for (uint64_t i = 0; i < eh.e_shnum; ++i) {
    auto sh = section(i);
    if (sh.sh_type == SHT_DYNSYM) {
      auto names = section(sh.sh_link);
      for (uint64_t off = sizeof(Elf64_Sym); off + sizeof(Elf64_Sym) <= sh.sh_size;
           off += sizeof(Elf64_Sym)) {
        auto sym = r.at<Elf64_Sym>(sh.sh_offset + off);
        if (sym.st_shndx == SHN_UNDEF) {
          if (sym.st_name != 0) out.imports.push_back(r.string(names, sym.st_name));
        } else if (ELF64_ST_TYPE(sym.st_info) == STT_FUNC &&
                   ELF64_ST_BIND(sym.st_info) == STB_GLOBAL &&
                   r.string(names, sym.st_name) == TH_PLUGIN_ENTRY_SYMBOL) {
          out.exports_entry = true;
        }
      }
    } else if (sh.sh_type == SHT_DYNAMIC) {
      auto names = section(sh.sh_link);
      for (uint64_t off = 0; off + sizeof(Elf64_Dyn) <= sh.sh_size; off += sizeof(Elf64_Dyn)) {
        auto dyn = r.at<Elf64_Dyn>(sh.sh_offset + off);
        if (dyn.d_tag == DT_NULL) break;
        if (dyn.d_tag == DT_NEEDED) out.needed.push_back(r.string(names, dyn.d_un.d_val));
      }
    }
  }
  std::sort(out.imports.begin(), out.imports.end());
  return out;
}

}  // namespace taskhost
