#include "tokenizer/python_unicode.hpp"

#include <utf8proc.h>

#include <algorithm>
#include <cstdlib>
#include <iterator>
#include <memory>

#include "sdrt/base/error.hpp"
#include "tokenizer/utf8.hpp"

namespace sdrt::tokenizer {
namespace {

struct Range {
  char32_t first, last;
};

// Code points assigned by Unicode 15.0 (utf8proc 2.8) that Unicode 14.0 (Python 3.11's unicodedata) leaves
// unassigned, i.e. category Cn there, so BasicTokenizer drops them (e.g. the emoji U+1FA77 PINK HEART).
// Derived by comparing utf8proc_category with unicodedata.category over every code point.
constexpr Range kAssignedAfterUnicode14[] = {
    {0xCF3, 0xCF3},     {0xECE, 0xECE},     {0x10EFD, 0x10EFF}, {0x1123F, 0x11241}, {0x11B00, 0x11B09},
    {0x11F00, 0x11F10}, {0x11F12, 0x11F3A}, {0x11F3E, 0x11F59}, {0x1342F, 0x1342F}, {0x13439, 0x13455},
    {0x1B132, 0x1B132}, {0x1B155, 0x1B155}, {0x1D2C0, 0x1D2D3}, {0x1DF25, 0x1DF2A}, {0x1E030, 0x1E06D},
    {0x1E08F, 0x1E08F}, {0x1E4D0, 0x1E4F9}, {0x1F6DC, 0x1F6DC}, {0x1F774, 0x1F776}, {0x1F77B, 0x1F77F},
    {0x1F7D9, 0x1F7D9}, {0x1FA75, 0x1FA77}, {0x1FA87, 0x1FA88}, {0x1FAAD, 0x1FAAF}, {0x1FABB, 0x1FABD},
    {0x1FABF, 0x1FABF}, {0x1FACE, 0x1FACF}, {0x1FADA, 0x1FADB}, {0x1FAE8, 0x1FAE8}, {0x1FAF7, 0x1FAF8},
    {0x2B739, 0x2B739}, {0x31350, 0x323AF},
};

// Word_Break MidLetter / MidNumLet / Single_Quote characters: Case_Ignorable although punctuation.
constexpr char32_t kCaseIgnorablePunctuation[] = {0x27,   0x2E,   0x3A,   0xB7,   0x387,  0x55F,
                                                  0x5F4,  0x2018, 0x2019, 0x2024, 0x2027, 0xFE13,
                                                  0xFE52, 0xFE55, 0xFF07, 0xFF0E, 0xFF1A};

// Cased (Other_Lowercase / Other_Uppercase) characters that are neither letters with a case mapping
// nor Case_Ignorable: the ordinal indicators and the squared / circled Latin capitals.
constexpr Range kCasedSymbols[] = {{0xAA, 0xAA}, {0xBA, 0xBA}, {0x1F130, 0x1F149}, {0x1F150, 0x1F169},
                                   {0x1F170, 0x1F189}};

template <size_t N>
bool in_ranges(const Range (&ranges)[N], char32_t c) {
  return std::any_of(std::begin(ranges), std::end(ranges), [c](const Range& r) { return c >= r.first && c <= r.last; });
}

utf8proc_category_t category(char32_t c) {
  if (c > 0x10FFFF || in_ranges(kAssignedAfterUnicode14, c)) return UTF8PROC_CATEGORY_CN;
  return utf8proc_category(static_cast<utf8proc_int32_t>(c));
}

char32_t simple_lower(char32_t c) { return static_cast<char32_t>(utf8proc_tolower(static_cast<utf8proc_int32_t>(c))); }
char32_t simple_upper(char32_t c) { return static_cast<char32_t>(utf8proc_toupper(static_cast<utf8proc_int32_t>(c))); }

bool is_case_ignorable(char32_t c) {
  switch (category(c)) {
    case UTF8PROC_CATEGORY_MN:
    case UTF8PROC_CATEGORY_ME:
    case UTF8PROC_CATEGORY_CF:
    case UTF8PROC_CATEGORY_LM:
    case UTF8PROC_CATEGORY_SK:
      return true;
    default:
      return std::find(std::begin(kCaseIgnorablePunctuation), std::end(kCaseIgnorablePunctuation), c) !=
             std::end(kCaseIgnorablePunctuation);
  }
}

// Unicode "Cased"; exact for every character that is not Case_Ignorable, the only ones final sigma asks about.
bool is_cased(char32_t c) {
  const auto cat = category(c);
  if (cat == UTF8PROC_CATEGORY_LU || cat == UTF8PROC_CATEGORY_LL || cat == UTF8PROC_CATEGORY_LT) return true;
  return simple_lower(c) != c || simple_upper(c) != c || in_ranges(kCasedSymbols, c);
}

// CPython's Final_Sigma test: a cased letter before (skipping case-ignorables) and none after.
bool is_final_sigma(std::u32string_view text, size_t i) {
  size_t before = i;
  while (before > 0 && is_case_ignorable(text[before - 1])) --before;
  if (before == 0 || !is_cased(text[before - 1])) return false;
  size_t after = i + 1;
  while (after < text.size() && is_case_ignorable(text[after])) ++after;
  return after == text.size() || !is_cased(text[after]);
}

}  // namespace

bool is_control(char32_t c) {
  if (c == U'\t' || c == U'\n' || c == U'\r') return false;
  const auto cat = category(c);
  return cat == UTF8PROC_CATEGORY_CN || cat == UTF8PROC_CATEGORY_CC || cat == UTF8PROC_CATEGORY_CF ||
         cat == UTF8PROC_CATEGORY_CS || cat == UTF8PROC_CATEGORY_CO;
}

bool is_whitespace(char32_t c) {
  return c == U' ' || c == U'\t' || c == U'\n' || c == U'\r' || category(c) == UTF8PROC_CATEGORY_ZS;
}

bool is_python_space(char32_t c) {
  return (c >= 0x09 && c <= 0x0D) || (c >= 0x1C && c <= 0x1F) || c == 0x85 || c == 0x2028 || c == 0x2029 ||
         category(c) == UTF8PROC_CATEGORY_ZS;
}

bool is_regex_space(char32_t c) {
  return (c >= 0x09 && c <= 0x0D) || c == 0x85 || c == 0x2028 || c == 0x2029 || category(c) == UTF8PROC_CATEGORY_ZS;
}

bool is_letter(char32_t c) {
  const auto cat = category(c);
  return cat >= UTF8PROC_CATEGORY_LU && cat <= UTF8PROC_CATEGORY_LO;
}

bool is_number(char32_t c) {
  const auto cat = category(c);
  return cat >= UTF8PROC_CATEGORY_ND && cat <= UTF8PROC_CATEGORY_NO;
}

bool is_cjk_ideograph(char32_t c) {
  return (c >= 0x4E00 && c <= 0x9FFF) || (c >= 0x3400 && c <= 0x4DBF) || (c >= 0x20000 && c <= 0x2A6DF) ||
         (c >= 0x2A700 && c <= 0x2B73F) || (c >= 0x2B740 && c <= 0x2B81F) || (c >= 0x2B820 && c <= 0x2CEAF) ||
         (c >= 0xF900 && c <= 0xFAFF) || (c >= 0x2F800 && c <= 0x2FA1F);
}

std::u32string python_lower(std::u32string_view text) {
  std::u32string out;
  out.reserve(text.size());
  for (size_t i = 0; i < text.size(); ++i) {
    const char32_t c = text[i];
    if (c == 0x130) {  // the one unconditional multi-character lower-case mapping
      out += U"i\u0307";
    } else if (c == 0x3A3) {
      out.push_back(is_final_sigma(text, i) ? 0x3C2 : 0x3C3);
    } else {
      out.push_back(simple_lower(c));
    }
  }
  return out;
}

std::u32string nfc(std::u32string_view text) {
  const std::string utf8 = encode_utf8(text);
  utf8proc_uint8_t* composed = nullptr;
  const utf8proc_ssize_t length =
      utf8proc_map(reinterpret_cast<const utf8proc_uint8_t*>(utf8.data()), static_cast<utf8proc_ssize_t>(utf8.size()),
                   &composed, static_cast<utf8proc_option_t>(UTF8PROC_STABLE | UTF8PROC_COMPOSE));
  if (length < 0) throw Error(std::string("NFC normalisation failed: ") + utf8proc_errmsg(length));
  const std::unique_ptr<utf8proc_uint8_t, decltype(&std::free)> owner(composed, &std::free);
  return decode_utf8(std::string_view(reinterpret_cast<const char*>(composed), static_cast<size_t>(length)));
}

std::string unicode_data_version() { return ::utf8proc_unicode_version(); }

}  // namespace sdrt::tokenizer
