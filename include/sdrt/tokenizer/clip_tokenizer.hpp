// CLIP byte-level BPE tokenizer, identical to Hugging Face's slow CLIPTokenizer without ftfy (as diffusers
// uses it): BasicTokenizer normalisation, the CLIP word regex, BPE with "</w>" word ends, and added tokens
// (<|startoftext|>, <|endoftext|>, a pad token such as SD2's "!") split out of the raw text first.
#pragma once
#include <cstddef>
#include <cstdint>
#include <memory>
#include <string>
#include <string_view>
#include <vector>

namespace sdrt::tokenizer {

// A token added after the vocabulary (a textual-inversion embedding): `text`, found verbatim in the raw text
// like the special tokens, becomes `ids` (several for a multi-vector embedding, as diffusers expands "<tok>"
// to "<tok> <tok>_1 ..."), shown as `names` by tokenize().
struct AddedToken {
  std::string text;
  std::vector<std::string> names;  // one per id
  std::vector<int64_t> ids;        // each >= vocab_size()
};

class ClipTokenizer {
 public:
  // vocab.json + merges.txt; pad_token is "<|endoftext|>" (SD1) or "!" (SD2). The pad token is an added
  // token matched in the raw text, like <|startoftext|> and <|endoftext|>; it must be in the vocabulary.
  static ClipTokenizer from_files(const std::string& vocab_json, const std::string& merges_txt,
                                  const std::string& pad_token = "<|endoftext|>");
  // A diffusers tokenizer/ folder or a bundle folder holding vocab.json + merges.txt and optionally
  // special_tokens_map.json / tokenizer_config.json, whose pad_token (a string or {"content": ...}) is used,
  // special_tokens_map.json first as transformers does; "<|endoftext|>" when neither names one.
  static ClipTokenizer from_folder(const std::string& dir);

  // max_length ids: BOS + the first (max_length - 2) tokens + EOS, padded with the pad id.
  // Throws sdrt::Error on invalid UTF-8 (naming the byte offset) and for max_length outside
  // [2, 65536].
  std::vector<int64_t> encode(std::string_view text, int max_length = 77) const;
  // The token strings (e.g. "photo</w>", "<|endoftext|>") of the whole text, before truncation.
  std::vector<std::string> tokenize(std::string_view text) const;

  // The ids of the text's tokens without BOS, EOS or padding, the first max_tokens of them.
  std::vector<int64_t> ids(std::string_view text, size_t max_tokens = SIZE_MAX) const;
  // A copy that also knows `tokens` (the longest match wins where they overlap, as for the special
  // tokens). Throws naming a token that is empty, in the vocabulary, listed twice or has an id below
  // vocab_size().
  ClipTokenizer with_added_tokens(const std::vector<AddedToken>& tokens) const;

  int64_t bos_id() const;
  int64_t eos_id() const;
  int64_t pad_id() const;
  const std::string& pad_token() const;
  int64_t vocab_size() const;
  // The vocabulary (or added token) string of an id; throws sdrt::Error for ids without one.
  const std::string& token_of(int64_t id) const;

 private:
  struct State;
  struct Added;
  explicit ClipTokenizer(std::shared_ptr<State> state);
  // Shared by copies: immutable vocabulary and merges plus a mutex-guarded word cache.
  std::shared_ptr<State> state_;
  std::shared_ptr<const Added> added_;  // null without added tokens
};

}  // namespace sdrt::tokenizer
