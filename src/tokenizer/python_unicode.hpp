// Character properties as Python 3.11 sees them (unicodedata 14.0.0, str methods, the `regex` module),
// which transformers' slow CLIPTokenizer relies on; backed by utf8proc.
#pragma once
#include <string>
#include <string_view>

namespace sdrt::tokenizer {

// BasicTokenizer's _is_control: a "C*" category (Cc, Cf, Cs, Co, Cn) except \t \n \r. Characters that
// utf8proc knows but Unicode 14.0 leaves unassigned count as Cn, as they do for Python 3.11.
bool is_control(char32_t c);
// BasicTokenizer's _is_whitespace: space, \t, \n, \r or category Zs.
bool is_whitespace(char32_t c);
// str.isspace / str.split() separators.
bool is_python_space(char32_t c);
// `regex` classes used by the CLIP word pattern: \s, \p{L}, \p{N}.
bool is_regex_space(char32_t c);
bool is_letter(char32_t c);
bool is_number(char32_t c);
// BasicTokenizer's _is_chinese_char: the CJK Unified/Compatibility Ideograph blocks it lists.
bool is_cjk_ideograph(char32_t c);

// str.lower(): full lower-case mapping (U+0130 -> "i\u0307") and Greek final sigma in its word context.
std::u32string python_lower(std::u32string_view text);
// unicodedata.normalize("NFC", text).
std::u32string nfc(std::u32string_view text);

// utf8proc's Unicode version; the Unicode-14 emulation above is exact for utf8proc's "15.0.0".
std::string unicode_data_version();

}  // namespace sdrt::tokenizer
