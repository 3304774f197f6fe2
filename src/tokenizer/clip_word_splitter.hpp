// The CLIP word pattern, applied with the `regex` module and IGNORECASE to BasicTokenizer's output:
//   <\|startoftext\|>|<\|endoftext\|>|'s|'t|'re|'ve|'m|'ll|'d|[\p{L}]+|[\p{N}]|[^\s\p{L}\p{N}]+
#pragma once
#include <string_view>
#include <vector>

namespace sdrt::tokenizer {

// Every match of the pattern in `text`, left to right (re.findall): at each position the first alternative
// that matches wins; whitespace that no alternative matches is skipped.
std::vector<std::u32string_view> split_clip_words(std::u32string_view text);

}  // namespace sdrt::tokenizer
