// Strict UTF-8 decoding and encoding for the tokenizer.
#pragma once
#include <string>
#include <string_view>

namespace sdrt::tokenizer {

// Decodes UTF-8, rejecting stray continuation bytes, truncated sequences, overlong forms, surrogates and
// values above U+10FFFF with an sdrt::Error that names the byte offset.
std::u32string decode_utf8(std::string_view text);

void append_utf8(std::string& out, char32_t code_point);
std::string encode_utf8(std::u32string_view text);

}  // namespace sdrt::tokenizer
