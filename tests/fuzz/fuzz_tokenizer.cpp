// CLIP tokenizer on arbitrary bytes (invalid UTF-8 included) with the SD1 ("<|endoftext|>") and SD2 ("!")
// pad tokens. The first input byte selects raw text (even) or a generated prompt (odd: one long word, many
// words, many added tokens, a long run of one code point) and the max_length.
#include "generators.hpp"
#include "sdrt/tokenizer/clip_tokenizer.hpp"

namespace {
const sdrt::tokenizer::ClipTokenizer& clip(bool sd2) {
  static const std::string dir = SDRT_SOURCE_DIR "/resources/clip-tokenizer/";
  static const auto sd1_tok = sdrt::tokenizer::ClipTokenizer::from_files(dir + "vocab.json", dir + "merges.txt");
  static const auto sd2_tok = sdrt::tokenizer::ClipTokenizer::from_files(dir + "vocab.json", dir + "merges.txt", "!");
  return sd2 ? sd2_tok : sd1_tok;
}
}  // namespace

extern "C" int LLVMFuzzerInitialize(int*, char***) {
  clip(false), clip(true);
  return 0;
}

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  using namespace sdrt;
  if (size == 0) return 0;
  fuzz::Params p(data + 1, size - 1);
  const std::string text = data[0] % 2 ? fuzz::gen_prompt(p) : std::string(reinterpret_cast<const char*>(data) + 1, size - 1);
  const auto& tok = clip(data[0] & 2);
  const int max_length = data[0] & 4 ? 77 : 2 + data[0] / 8;
  fuzz::expect_clean([&] {
    const auto ids = tok.encode(text, max_length);
    if (ids.size() != static_cast<size_t>(max_length) || ids.front() != tok.bos_id()) __builtin_trap();
    for (int64_t id : ids) tok.token_of(id);
  });
  return 0;
}
