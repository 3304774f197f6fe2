// transformers' BasicTokenizer as CLIPTokenizer configures it without ftfy (lower case, strip_accents=False,
// no punctuation split, CJK ideographs spaced out).
#pragma once
#include <string>
#include <string_view>
#include <vector>

namespace sdrt::tokenizer {

// Drops NUL, U+FFFD and control characters, turns whitespace into spaces, spaces out CJK ideographs,
// applies NFC, splits on whitespace and lower-cases each word.
std::vector<std::u32string> basic_tokenize(std::u32string_view text);

}  // namespace sdrt::tokenizer
