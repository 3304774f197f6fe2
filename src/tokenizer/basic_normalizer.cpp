#include "tokenizer/basic_normalizer.hpp"

#include "tokenizer/python_unicode.hpp"

namespace sdrt::tokenizer {
namespace {

std::u32string clean_and_space_cjk(std::u32string_view text) {
  std::u32string out;
  out.reserve(text.size());
  for (char32_t c : text) {
    if (c == 0 || c == 0xFFFD || is_control(c)) continue;
    if (is_whitespace(c)) {
      out.push_back(U' ');
    } else if (is_cjk_ideograph(c)) {
      out.push_back(U' ');
      out.push_back(c);
      out.push_back(U' ');
    } else {
      out.push_back(c);
    }
  }
  return out;
}

// str.split(): runs of Python whitespace separate words; no empty words.
std::vector<std::u32string_view> split_on_python_space(std::u32string_view text) {
  std::vector<std::u32string_view> words;
  size_t i = 0;
  while (i < text.size()) {
    while (i < text.size() && is_python_space(text[i])) ++i;
    const size_t start = i;
    while (i < text.size() && !is_python_space(text[i])) ++i;
    if (i > start) words.push_back(text.substr(start, i - start));
  }
  return words;
}

}  // namespace

std::vector<std::u32string> basic_tokenize(std::u32string_view text) {
  const std::u32string normalized = nfc(clean_and_space_cjk(text));
  std::vector<std::u32string> words;
  for (std::u32string_view word : split_on_python_space(normalized)) words.push_back(python_lower(word));
  return words;
}

}  // namespace sdrt::tokenizer
