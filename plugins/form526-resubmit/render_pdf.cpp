#include "render_pdf.hpp"

#include <hpdf.h>
#include <stdlib.h>
#include <unistd.h>

#include <cstdio>
#include <fstream>
#include <memory>
#include <stdexcept>
#include <vector>

extern "C" {
extern const char form526_font[], form526_font_end[];
}

namespace form526 {
namespace {

void write_file(const std::string& path, const char* begin, const char* end) {
  std::ofstream out(path, std::ios::binary);
  out.write(begin, end - begin);
  if (!out.flush()) throw std::runtime_error("cannot write the font file " + path);
}

// libharu reports errors through a callback; the first one is kept and the
// document is abandoned.
struct HaruError {
  HPDF_STATUS code = HPDF_OK, detail = 0;
  static void handler(HPDF_STATUS code, HPDF_STATUS detail, void* user) {
    auto* e = static_cast<HaruError*>(user);
    if (e->code == HPDF_OK) {
      e->code = code;
      e->detail = detail;
    }
  }
};

constexpr float page_width = 612, page_height = 792;  // US Letter
constexpr float margin = 54, label_width = 150, line_height = 14;

class Writer {
 public:
  Writer(HPDF_Doc doc, const Fonts& fonts, std::string stamp, std::string footer)
      : doc_(doc), stamp_(std::move(stamp)), footer_(std::move(footer)) {
    // The claim's own text may be in any script: the embedded TrueType font.
    // The form's labels are plain ASCII: a standard font costs nothing to embed.
    regular_ =
        HPDF_GetFont(doc, HPDF_LoadTTFontFromFile(doc, fonts.path().c_str(), HPDF_TRUE), "UTF-8");
    bold_ = HPDF_GetFont(doc, "Helvetica-Bold", "WinAnsiEncoding");
    plain_ = HPDF_GetFont(doc, "Helvetica", "WinAnsiEncoding");
    new_page();
  }

  void title(const std::string& text) {
    room(28);
    put(bold_, 12, margin, y_, text);
    y_ -= 24;
  }
  void heading(const std::string& text) {
    room(40);
    y_ -= 8;
    put(bold_, 11, margin, y_, text);
    HPDF_Page_SetLineWidth(page_, 0.5);
    HPDF_Page_MoveTo(page_, margin, y_ - 4);
    HPDF_Page_LineTo(page_, page_width - margin, y_ - 4);
    HPDF_Page_Stroke(page_);
    y_ -= 20;
  }
  // A labelled value, wrapped within the value column. The label is ASCII.
  void field(const std::string& label, const std::string& value) {
    const auto lines = wrap(value.empty() ? "—" : value, page_width - 2 * margin - label_width);
    room(line_height);
    put(bold_, 9, margin, y_, label);
    for (const auto& line : lines) {
      room(line_height);
      put(regular_, 10, margin + label_width, y_, line);
      y_ -= line_height;
    }
  }
  void paragraph(const std::string& text) {
    for (const auto& line : wrap(text, page_width - 2 * margin)) {
      room(line_height);
      put(plain_, 10, margin, y_, line);
      y_ -= line_height;
    }
  }
  void gap() { y_ -= 6; }

 private:
  void new_page() {
    page_ = HPDF_AddPage(doc_);
    HPDF_Page_SetSize(page_, HPDF_PAGE_SIZE_LETTER, HPDF_PAGE_PORTRAIT);
    ++pages_;
    put(bold_, 9, margin, page_height - 36, "VA FORM 21-526EZ");
    // The datestamp the hand-off requires on every page, boxed, top right.
    const float w = width(bold_, 10, stamp_) + 12;
    HPDF_Page_SetLineWidth(page_, 1);
    HPDF_Page_Rectangle(page_, page_width - margin - w, page_height - 42, w, 18);
    HPDF_Page_Stroke(page_);
    put(bold_, 10, page_width - margin - w + 6, page_height - 36, stamp_);
    put(plain_, 8, margin, 30, footer_ + " - page " + std::to_string(pages_));
    y_ = page_height - 72;
  }
  void room(float needed) {
    if (y_ - needed < 54) new_page();
  }
  float width(HPDF_Font font, float size, const std::string& text) {
    HPDF_Page_SetFontAndSize(page_, font, size);
    return HPDF_Page_TextWidth(page_, text.c_str());
  }
  void put(HPDF_Font font, float size, float x, float y, const std::string& text) {
    HPDF_Page_BeginText(page_);
    HPDF_Page_SetFontAndSize(page_, font, size);
    HPDF_Page_TextOut(page_, x, y, text.c_str());
    HPDF_Page_EndText(page_);
  }
  // Lines of text that fit max_width in the 10-point TrueType font (which is
  // wider than Helvetica, so ASCII paragraphs fit too).
  std::vector<std::string> wrap(const std::string& text, float max_width) {
    HPDF_Page_SetFontAndSize(page_, regular_, 10);
    std::vector<std::string> lines;
    std::string rest = text;
    while (!rest.empty()) {
      HPDF_UINT n = HPDF_Page_MeasureText(page_, rest.c_str(), max_width, HPDF_TRUE, nullptr);
      if (n == 0) n = HPDF_Page_MeasureText(page_, rest.c_str(), max_width, HPDF_FALSE, nullptr);
      if (n == 0) n = 1;
      while (n < rest.size() && (static_cast<unsigned char>(rest[n]) & 0xC0) == 0x80) ++n;
      lines.push_back(rest.substr(0, n));
      rest.erase(0, n);
      rest.erase(0, rest.find_first_not_of(' ') == std::string::npos ? rest.size()
                                                                     : rest.find_first_not_of(' '));
    }
    return lines;
  }

  HPDF_Doc doc_;
  HPDF_Page page_ = nullptr;
  HPDF_Font regular_ = nullptr, bold_ = nullptr, plain_ = nullptr;
  std::string stamp_, footer_;
  float y_ = 0;
  int pages_ = 0;
};

std::string joined(std::initializer_list<std::string> parts, const char* sep) {
  std::string out;
  for (const auto& p : parts) {
    if (p.empty()) continue;
    if (!out.empty()) out += sep;
    out += p;
  }
  return out;
}

}  // namespace

Fonts::Fonts() {
  std::string pattern = "/tmp/form526-fonts-XXXXXX";
  if (::mkdtemp(pattern.data()) == nullptr)
    throw std::runtime_error("cannot make a directory for the font under /tmp");
  dir_ = pattern;
  path_ = dir_ + "/DejaVuSans-subset.ttf";
  write_file(path_, form526_font, form526_font_end);
}

Fonts::~Fonts() {
  std::remove(path_.c_str());
  ::rmdir(dir_.c_str());
}

std::string render_pdf(const Claim& c, const std::string& date, const Fonts& fonts) {
  HaruError error;
  std::unique_ptr<std::remove_pointer_t<HPDF_Doc>, decltype(&HPDF_Free)> doc(
      HPDF_New(&HaruError::handler, &error), &HPDF_Free);
  if (!doc) throw std::runtime_error("PDF: libharu could not make a document");
  HPDF_Doc pdf = doc.get();
  HPDF_SetCompressionMode(pdf, HPDF_COMP_ALL);
  HPDF_UseUTFEncodings(pdf);
  HPDF_SetCurrentEncoder(pdf, "UTF-8");
  const std::string id = std::to_string(c.id);
  HPDF_SetInfoAttr(pdf, HPDF_INFO_TITLE, ("VA Form 21-526EZ, submission " + id).c_str());
  HPDF_SetInfoAttr(pdf, HPDF_INFO_CREATOR, "taskhost form526-resubmit");
  {
    Writer w(pdf, fonts, "Resubmitted " + date, "Submission " + id);
    w.title("Application for Disability Compensation and Related Compensation Benefits");
    w.paragraph(
        "This copy of the claim submitted on VA.gov is resubmitted on paper because its "
        "electronic submission did not complete.");
    w.heading("Section I: Veteran identification");
    w.field("Veteran name", joined({c.first_name, c.middle_name, c.last_name}, " "));
    w.field("VA file number", c.file_number);
    w.field("Date of birth", c.date_of_birth);
    w.field("Submission", id + " (" + c.status + ")");
    w.field("Date of claim", c.claim_date);
    w.field("Benefits Delivery at Discharge", c.bdd ? "Yes" : "No");
    w.heading("Section II: Contact information");
    w.field("Mailing address",
            joined({c.address_line1, c.address_line2,
                    joined({c.city, joined({c.state, c.zip}, " ")}, ", "), c.country},
                   ", "));
    w.field("Email", c.email);
    w.field("Telephone", c.phone);
    w.heading("Section III: Service information");
    if (c.service_periods.empty()) w.field("Service periods", "none given");
    int n = 0;
    for (const auto& p : c.service_periods)
      w.field("Period " + std::to_string(++n),
              p.branch + ", " + p.from + " to " + (p.to.empty() ? "present" : p.to));
    w.heading("Section IV: Claimed disabilities");
    n = 0;
    for (const auto& d : c.disabilities)
      w.field(std::to_string(++n) + ".",
              joined({d.name, d.classification, d.service_relevance}, " — "));
    if (c.disabilities.empty()) w.field("Disabilities", "none given");
    w.heading("Section V: Supporting documents");
    if (c.attachments.empty()) w.field("Documents", "none uploaded");
    n = 0;
    for (const auto& a : c.attachments)
      w.field("Document " + std::to_string(++n), a.document_type + ": " + a.file_name);
  }
  if (error.code == HPDF_OK) HPDF_SaveToStream(pdf);
  if (error.code != HPDF_OK) {
    char message[96];
    std::snprintf(message, sizeof message, "PDF: libharu error 0x%04X (detail %u)",
                  static_cast<unsigned>(error.code), static_cast<unsigned>(error.detail));
    throw std::runtime_error(message);
  }
  std::string out(HPDF_GetStreamSize(pdf), '\0');
  HPDF_UINT32 size = static_cast<HPDF_UINT32>(out.size());
  HPDF_ReadFromStream(pdf, reinterpret_cast<HPDF_BYTE*>(out.data()), &size);
  out.resize(size);
  return out;
}

}  // namespace form526
