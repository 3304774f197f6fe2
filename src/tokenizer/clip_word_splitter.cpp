#include "tokenizer/clip_word_splitter.hpp"

#include "tokenizer/python_unicode.hpp"

namespace sdrt::tokenizer {
namespace {

// The literal alternatives in pattern order. Under IGNORECASE the only lower-case character that also
// matches one of their letters is U+017F LATIN SMALL LETTER LONG S, matching "s" (upper case is gone).
constexpr std::u32string_view kLiterals[] = {U"<|startoftext|>", U"<|endoftext|>", U"'s", U"'t", U"'re",
                                             U"'ve",             U"'m",             U"'ll", U"'d"};

bool same_ignoring_case(char32_t pattern_char, char32_t c) {
  return c == pattern_char || (pattern_char == U's' && c == 0x17F);
}

bool literal_at(std::u32string_view text, size_t pos, std::u32string_view literal) {
  if (text.size() - pos < literal.size()) return false;
  for (size_t k = 0; k < literal.size(); ++k)
    if (!same_ignoring_case(literal[k], text[pos + k])) return false;
  return true;
}

// [^\s\p{L}\p{N}] under IGNORECASE also rejects characters whose case variant is a letter: of all
// characters that reach the pattern that is only U+0345 COMBINING GREEK YPOGEGRAMMENI (~ U+03B9 iota), which
// [\p{L}] does not match either, so findall skips it like whitespace.
bool is_other(char32_t c) { return c != 0x345 && !is_regex_space(c) && !is_letter(c) && !is_number(c); }

// Length of the match starting at pos, 0 when no alternative matches there.
size_t match_length(std::u32string_view text, size_t pos) {
  for (std::u32string_view literal : kLiterals)
    if (literal_at(text, pos, literal)) return literal.size();
  const char32_t c = text[pos];
  size_t end = pos + 1;
  if (is_letter(c)) {
    while (end < text.size() && is_letter(text[end])) ++end;
    return end - pos;
  }
  if (is_number(c)) return 1;
  if (is_other(c)) {
    while (end < text.size() && is_other(text[end])) ++end;
    return end - pos;
  }
  return 0;
}

}  // namespace

std::vector<std::u32string_view> split_clip_words(std::u32string_view text) {
  std::vector<std::u32string_view> words;
  size_t pos = 0;
  while (pos < text.size()) {
    const size_t length = match_length(text, pos);
    if (length == 0) {
      ++pos;
    } else {
      words.push_back(text.substr(pos, length));
      pos += length;
    }
  }
  return words;
}

}  // namespace sdrt::tokenizer
