// DejaVu Sans (Debian's fonts-dejavu-core), subset at build time to the
// Latin, Greek and Cyrillic letters and the punctuation (see CMakeLists.txt),
// built into the plugin: the sandbox binds no font directory, and the PDFs
// must show any such name. The symbols are the file's bytes.
asm(".pushsection .rodata\n"
    ".balign 16\n"
    ".globl form526_font\n"
    ".hidden form526_font\n"
    "form526_font:\n"
    ".incbin \"" FORM526_FONT
    "\"\n"
    ".globl form526_font_end\n"
    ".hidden form526_font_end\n"
    "form526_font_end:\n"
    ".popsection\n");
