#include "sdrt/tokenizer/clip_tokenizer.hpp"

#include <algorithm>
#include <mutex>
#include <optional>
#include <unordered_map>

#include "sdrt/base/error.hpp"
#include "tokenizer/basic_normalizer.hpp"
#include "tokenizer/byte_pair_encoder.hpp"
#include "tokenizer/clip_word_splitter.hpp"
#include "tokenizer/utf8.hpp"
#include "tokenizer/vocabulary.hpp"

namespace sdrt::tokenizer {
namespace {

constexpr std::string_view kStartOfText = "<|startoftext|>";
constexpr std::string_view kEndOfText = "<|endoftext|>";  // also the unknown token
constexpr size_t kMaxCachedWords = 1 << 16;               // bounds memory for long-running processes
constexpr int kMaxLength = 1 << 16;                        // far above CLIP's 77 positions
constexpr size_t kMaxCachedWordBytes = 256;                // long (hostile) words are not kept
// A word's first k tokens cover at most k * kMaxTokenBytes of its bytes (CLIP's longest vocabulary entry is
// 28 bytes + "</w>"); BPE merges are local, so bytes further than kCutMargin past them cannot change them.
constexpr size_t kMaxTokenBytes = 64;
constexpr size_t kCutMargin = 4096;

int64_t required_id(const Vocabulary& vocab, std::string_view token, const std::string& vocab_path) {
  const auto id = vocab.find(std::string(token));
  if (!id) throw Error(vocab_path + ": vocabulary has no entry for '" + std::string(token) + "'");
  return *id;
}

std::u32string decode_added_token(std::string_view token) {
  try {
    return decode_utf8(token);
  } catch (const Error& e) {
    throw Error("CLIP tokenizer: added token '" + std::string(token) + "': " + e.what());
  }
}

// A piece of the raw text: either an added token (matched verbatim) or text between them.
struct Chunk {
  std::u32string_view text;
  bool is_added_token;
  const AddedToken* added = nullptr;  // set for a token of with_added_tokens
};

}  // namespace

// Tokens of with_added_tokens: their texts longest first, and their names' ids.
struct ClipTokenizer::Added {
  std::vector<AddedToken> tokens;
  std::vector<std::pair<std::u32string, size_t>> texts;  // decoded text, index into tokens; longest first
  std::unordered_map<std::string, int64_t> id_of_name;
  std::unordered_map<int64_t, std::string> name_of_id;
};

struct ClipTokenizer::State {
  Vocabulary vocab;
  BytePairEncoder bpe;
  std::string pad_token;
  std::vector<std::u32string> added_tokens;  // longest first
  int64_t bos = 0, eos = 0, pad = 0;

  std::mutex cache_mutex;
  std::unordered_map<std::string, std::vector<std::string>> word_cache;

  // The leftmost added token, longest at that position, as transformers' trie finds CLIP's added tokens; the
  // text around it is kept whole, since the CLIP special tokens strip no whitespace (lstrip/rstrip false).
  std::vector<Chunk> split_added_tokens(std::u32string_view text, const Added* added) const {
    std::vector<Chunk> chunks;
    size_t plain_start = 0;
    size_t pos = 0;
    while (pos < text.size()) {
      const auto match = std::find_if(added_tokens.begin(), added_tokens.end(), [&](const std::u32string& token) {
        return text.substr(pos, token.size()) == token;
      });
      size_t length = match == added_tokens.end() ? 0 : match->size();
      const AddedToken* extra = nullptr;
      if (added)
        for (const auto& [token, index] : added->texts)
          if (token.size() > length && text.substr(pos, token.size()) == token) {
            length = token.size();
            extra = &added->tokens[index];
            break;  // longest first
          }
      if (length == 0) {
        ++pos;
        continue;
      }
      if (pos > plain_start) chunks.push_back({text.substr(plain_start, pos - plain_start), false});
      chunks.push_back({text.substr(pos, length), true, extra});
      pos += length;
      plain_start = pos;
    }
    if (pos > plain_start) chunks.push_back({text.substr(plain_start), false});
    return chunks;
  }

  void append_word_tokens(std::string word, std::vector<std::string>& out, size_t max_tokens) {
    // CLIPTokenizer's BPE cache is seeded with the special tokens, so the pattern's own
    // <|startoftext|> / <|endoftext|> matches stay whole, without "</w>".
    if (word == kStartOfText || word == kEndOfText) {
      out.push_back(word);
      return;
    }
    // Only the tokens that can be kept matter: a longer word is cut well past them before BPE.
    const size_t wanted = max_tokens - std::min(max_tokens, out.size());
    if (wanted < SIZE_MAX / kMaxTokenBytes - kCutMargin && word.size() > wanted * kMaxTokenBytes + kCutMargin)
      word.resize(wanted * kMaxTokenBytes + kCutMargin);
    if (word.size() > kMaxCachedWordBytes) {
      const auto symbols = bpe.encode_word(word);
      out.insert(out.end(), symbols.begin(), symbols.end());
      return;
    }
    const std::lock_guard<std::mutex> lock(cache_mutex);
    auto it = word_cache.find(word);
    if (it == word_cache.end()) {
      if (word_cache.size() >= kMaxCachedWords) word_cache.clear();
      it = word_cache.emplace(word, bpe.encode_word(word)).first;
    }
    out.insert(out.end(), it->second.begin(), it->second.end());
  }

  // The first max_tokens tokens (or all): BPE stops once they are known, so a huge prompt costs only
  // its linear normalisation.
  std::vector<std::string> tokenize(std::string_view utf8_text, size_t max_tokens, const Added* added) {
    const std::u32string text = decode_utf8(utf8_text);
    std::vector<std::string> tokens;
    for (const Chunk& chunk : split_added_tokens(text, added)) {
      if (tokens.size() >= max_tokens) break;
      if (chunk.added) {
        tokens.insert(tokens.end(), chunk.added->names.begin(), chunk.added->names.end());
        continue;
      }
      if (chunk.is_added_token) {
        tokens.push_back(encode_utf8(chunk.text));
        continue;
      }
      for (const std::u32string& word : basic_tokenize(chunk.text))
        for (std::u32string_view piece : split_clip_words(word)) {
          if (tokens.size() >= max_tokens) break;
          append_word_tokens(encode_utf8(piece), tokens, max_tokens);
        }
    }
    if (tokens.size() > max_tokens) tokens.resize(max_tokens);
    return tokens;
  }
};

ClipTokenizer::ClipTokenizer(std::shared_ptr<State> state) : state_(std::move(state)) {}

ClipTokenizer ClipTokenizer::from_files(const std::string& vocab_json, const std::string& merges_txt,
                                        const std::string& pad_token) {
  auto state = std::make_shared<State>();
  state->vocab = Vocabulary::from_json_file(vocab_json);
  state->bpe = BytePairEncoder::from_merges_file(merges_txt);
  if (pad_token.empty()) throw Error("CLIP tokenizer: the pad token must not be empty");
  state->pad_token = pad_token;
  state->bos = required_id(state->vocab, kStartOfText, vocab_json);
  state->eos = required_id(state->vocab, kEndOfText, vocab_json);
  state->pad = required_id(state->vocab, pad_token, vocab_json);
  for (std::string_view token : {kStartOfText, kEndOfText, std::string_view(pad_token)}) {
    std::u32string decoded = decode_added_token(token);
    if (std::find(state->added_tokens.begin(), state->added_tokens.end(), decoded) == state->added_tokens.end())
      state->added_tokens.push_back(std::move(decoded));
  }
  std::stable_sort(state->added_tokens.begin(), state->added_tokens.end(),
                   [](const std::u32string& a, const std::u32string& b) { return a.size() > b.size(); });
  return ClipTokenizer(std::move(state));
}

std::vector<std::string> ClipTokenizer::tokenize(std::string_view text) const {
  return state_->tokenize(text, SIZE_MAX, added_.get());
}

std::vector<int64_t> ClipTokenizer::ids(std::string_view text, size_t max_tokens) const {
  const std::vector<std::string> tokens = state_->tokenize(text, max_tokens, added_.get());
  std::vector<int64_t> out;
  out.reserve(std::min(tokens.size(), max_tokens));
  for (size_t i = 0; i < tokens.size() && i < max_tokens; ++i) {
    if (added_)
      if (auto it = added_->id_of_name.find(tokens[i]); it != added_->id_of_name.end()) {
        out.push_back(it->second);
        continue;
      }
    out.push_back(state_->vocab.find(tokens[i]).value_or(state_->eos));  // the unknown token is <|endoftext|>
  }
  return out;
}

ClipTokenizer ClipTokenizer::with_added_tokens(const std::vector<AddedToken>& tokens) const {
  auto added = std::make_shared<Added>(added_ ? *added_ : Added{});
  for (const AddedToken& t : tokens) {
    const std::string what = "CLIP tokenizer: added token '" + t.text + "'";
    if (t.text.empty()) throw Error("CLIP tokenizer: an added token is empty");
    if (t.ids.empty() || t.names.size() != t.ids.size()) throw Error(what + " needs one name per id");
    std::u32string decoded = decode_added_token(t.text);
    if (state_->vocab.find(t.text) || std::find(state_->added_tokens.begin(), state_->added_tokens.end(), decoded) !=
                                          state_->added_tokens.end())
      throw Error(what + " is already in the vocabulary; choose another token");
    for (const auto& [text, index] : added->texts)
      if (text == decoded) throw Error(what + " is added twice");
    for (size_t i = 0; i < t.ids.size(); ++i) {
      if (state_->vocab.find(t.names[i]))
        throw Error(what + ": name '" + t.names[i] + "' is already in the vocabulary; choose another token");
      if (t.ids[i] < vocab_size())
        throw Error(what + ": id " + std::to_string(t.ids[i]) + " is inside the vocabulary of " + std::to_string(vocab_size()));
      const auto [it, fresh] = added->id_of_name.emplace(t.names[i], t.ids[i]);
      if (!fresh && it->second != t.ids[i]) throw Error(what + ": name '" + t.names[i] + "' has two ids");
      const auto [jt, fresh_id] = added->name_of_id.emplace(t.ids[i], t.names[i]);
      if (!fresh_id && jt->second != t.names[i]) throw Error(what + ": id " + std::to_string(t.ids[i]) + " has two names");
    }
    added->texts.emplace_back(std::move(decoded), added->tokens.size());
    added->tokens.push_back(t);
  }
  std::stable_sort(added->texts.begin(), added->texts.end(),
                   [](const auto& a, const auto& b) { return a.first.size() > b.first.size(); });
  ClipTokenizer copy(state_);
  copy.added_ = std::move(added);
  return copy;
}

std::vector<int64_t> ClipTokenizer::encode(std::string_view text, int max_length) const {
  if (max_length < 2 || max_length > kMaxLength)
    throw Error("CLIP tokenizer: max_length " + std::to_string(max_length) + " is outside [2, " +
                std::to_string(kMaxLength) + "]");
  const size_t length = static_cast<size_t>(max_length);
  const std::vector<int64_t> tokens = ids(text, length - 2);
  std::vector<int64_t> out;
  out.reserve(length);
  out.push_back(state_->bos);
  out.insert(out.end(), tokens.begin(), tokens.end());
  out.push_back(state_->eos);
  out.resize(length, state_->pad);
  return out;
}

int64_t ClipTokenizer::bos_id() const { return state_->bos; }
int64_t ClipTokenizer::eos_id() const { return state_->eos; }
int64_t ClipTokenizer::pad_id() const { return state_->pad; }
const std::string& ClipTokenizer::pad_token() const { return state_->pad_token; }
int64_t ClipTokenizer::vocab_size() const { return state_->vocab.size(); }

const std::string& ClipTokenizer::token_of(int64_t id) const {
  if (added_)
    if (auto it = added_->name_of_id.find(id); it != added_->name_of_id.end()) return it->second;
  const std::string* token = state_->vocab.token_of(id);
  if (!token) throw Error("CLIP tokenizer: no token has id " + std::to_string(id));
  return *token;
}

}  // namespace sdrt::tokenizer
