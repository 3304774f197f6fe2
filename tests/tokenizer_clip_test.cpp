#include <gtest/gtest.h>

#include <chrono>
#include <filesystem>
#include <fstream>
#include <functional>
#include <nlohmann/json.hpp>
#include <string>
#include <vector>

#include "sdrt/base/error.hpp"
#include "sdrt/tokenizer/clip_tokenizer.hpp"
#include "support/test_support.hpp"
#include "tokenizer/python_unicode.hpp"

namespace sdrt {
namespace {

using tokenizer::ClipTokenizer;
namespace fs = std::filesystem;

constexpr int64_t kBos = 49406;
constexpr int64_t kEos = 49407;

const ClipTokenizer& sd1() {
  static const ClipTokenizer tok = ClipTokenizer::from_folder(test::reference_path("models/sd1-tiny/tokenizer"));
  return tok;
}

const ClipTokenizer& sd2() {
  static const ClipTokenizer tok = ClipTokenizer::from_folder(test::reference_path("models/sd2-tiny-v/tokenizer"));
  return tok;
}

struct Case {
  std::string prompt;
  std::vector<int64_t> sd1_ids, sd2_ids;
  std::vector<std::string> sd1_bpe;  // empty when the case stores none
  bool has_bpe = false;
  size_t n_tokens_untruncated = 0;
};

std::vector<Case> load_cases() {
  std::ifstream in(test::reference_path("cases/tokenizer_cases.jsonl"));
  std::vector<Case> cases;
  std::string line;
  while (std::getline(in, line)) {
    const auto j = nlohmann::json::parse(line);
    Case c;
    c.prompt = j.at("prompt").get<std::string>();
    c.sd1_ids = j.at("sd1_ids").get<std::vector<int64_t>>();
    c.sd2_ids = j.at("sd2_ids").get<std::vector<int64_t>>();
    c.has_bpe = j.contains("sd1_bpe") && !j["sd1_bpe"].is_null();
    if (c.has_bpe) c.sd1_bpe = j["sd1_bpe"].get<std::vector<std::string>>();
    c.n_tokens_untruncated = j.at("n_tokens_untruncated").get<size_t>();
    cases.push_back(std::move(c));
  }
  return cases;
}

std::string error_of(const std::function<void()>& action) {
  try {
    action();
  } catch (const Error& e) {
    return e.what();
  }
  return "";
}

std::string hex_of(const std::string& bytes) {
  static const char* digits = "0123456789abcdef";
  std::string out;
  for (unsigned char b : bytes) out += std::string("\\x") + digits[b >> 4] + digits[b & 15];
  return out;
}

void write_file(const fs::path& path, const std::string& content) {
  std::ofstream out(path, std::ios::binary);
  out << content;
}

TEST(ClipTokenizer, ReproducesEveryReferenceCase) {
  const auto cases = load_cases();
  ASSERT_EQ(cases.size(), 380u);
  // The bare reference/tokenizer files must behave exactly like the SD1 diffusers folder.
  const auto sd1_files = ClipTokenizer::from_files(test::reference_path("tokenizer/vocab.json"),
                                                   test::reference_path("tokenizer/merges.txt"));
  int failures = 0;
  for (const Case& c : cases) {
    const auto tokens = sd1().tokenize(c.prompt);
    const bool ok = sd1().encode(c.prompt) == c.sd1_ids && sd2().encode(c.prompt) == c.sd2_ids &&
                    sd1_files.encode(c.prompt) == c.sd1_ids && (!c.has_bpe || tokens == c.sd1_bpe) &&
                    tokens.size() + 2 == c.n_tokens_untruncated;
    if (!ok && ++failures <= 20) ADD_FAILURE() << "prompt " << nlohmann::json(c.prompt).dump();
  }
  EXPECT_EQ(failures, 0);
}

TEST(ClipTokenizer, SpecialIdsAndPadTokens) {
  EXPECT_EQ(sd1().bos_id(), kBos);
  EXPECT_EQ(sd1().eos_id(), kEos);
  EXPECT_EQ(sd1().pad_id(), kEos);
  EXPECT_EQ(sd1().pad_token(), "<|endoftext|>");
  EXPECT_EQ(sd2().pad_id(), 0);
  EXPECT_EQ(sd2().pad_token(), "!");
  EXPECT_EQ(sd1().vocab_size(), 49408);
}

TEST(ClipTokenizer, EmptyAndBlankPrompts) {
  std::vector<int64_t> expected_sd1(77, kEos);
  expected_sd1[0] = kBos;
  std::vector<int64_t> expected_sd2(77, 0);
  expected_sd2[0] = kBos;
  expected_sd2[1] = kEos;
  for (const char* prompt : {"", " ", "\t\n", "\xE2\x80\x8B"}) {  // the last is U+200B, a dropped Cf character
    EXPECT_EQ(sd1().encode(prompt), expected_sd1) << nlohmann::json(prompt).dump();
    EXPECT_EQ(sd2().encode(prompt), expected_sd2) << nlohmann::json(prompt).dump();
    EXPECT_TRUE(sd1().tokenize(prompt).empty());
  }
}

TEST(ClipTokenizer, LongPromptKeepsEosLast) {
  std::string prompt;
  for (int i = 0; i < 100; ++i) prompt += "cat ";
  const int64_t cat = sd1().encode("cat")[1];
  for (const ClipTokenizer* tok : {&sd1(), &sd2()}) {
    const auto ids = tok->encode(prompt);
    ASSERT_EQ(ids.size(), 77u);
    EXPECT_EQ(ids.front(), kBos);
    EXPECT_EQ(ids[75], cat);
    EXPECT_EQ(ids[76], kEos);
  }
  EXPECT_EQ(sd1().tokenize(prompt).size(), 100u);  // tokenize does not truncate
  EXPECT_EQ(sd1().encode(prompt, 5), (std::vector<int64_t>{kBos, cat, cat, cat, kEos}));
  EXPECT_EQ(sd1().encode("cat", 2), (std::vector<int64_t>{kBos, kEos}));
  EXPECT_NE(error_of([] { sd1().encode("cat", 1); }).find("max_length"), std::string::npos);
  EXPECT_NE(error_of([] { sd1().encode("cat", 1 << 30); }).find("max_length"), std::string::npos);
}

TEST(ClipTokenizer, InvalidUtf8IsAnErrorNamingTheOffset) {
  const std::vector<std::pair<std::string, size_t>> cases = {
      {"ab\x80", 2},             // lone continuation byte
      {"abc\xC3", 3},            // truncated 2-byte sequence at the end
      {"a\xE2\x82z", 1},         // truncated 3-byte sequence before an ASCII byte
      {"\xC0\xAF", 0},           // overlong "/"
      {"x\xE0\x80\x80", 1},      // overlong NUL in 3 bytes
      {"ok \xED\xA0\x80", 3},    // UTF-16 surrogate U+D800
      {"\xF4\x90\x80\x80", 0},   // U+110000
      {"\xFF", 0},               // never valid
  };
  for (const auto& test_case : cases) {
    const std::string& text = test_case.first;  // a named reference: clang 14 cannot capture a structured binding
    const size_t offset = test_case.second;
    const std::string message = error_of([&] { sd1().encode(text); });
    EXPECT_NE(message.find("byte offset " + std::to_string(offset)), std::string::npos)
        << hex_of(text) << " -> '" << message << "'";
    EXPECT_NE(error_of([&] { sd2().tokenize(text); }), "");
  }
}

// Behaviour of Python 3.11 str.lower / unicodedata 14.0 / `regex` IGNORECASE that utf8proc alone would miss.
TEST(ClipTokenizer, PythonUnicodeDetails) {
  // Final sigma: "ΟΔΟΣ" lower-cases to "οδος", but Σ before an apostrophe and a letter stays σ.
  EXPECT_EQ(sd1().tokenize("\xCE\x9F\xCE\x94\xCE\x9F\xCE\xA3"), sd1().tokenize("\xCE\xBF\xCE\xB4\xCE\xBF\xCF\x82"));
  EXPECT_EQ(sd1().tokenize("\xCE\x91\xCE\xA3'\xCE\x91"),
            sd1().tokenize("\xCE\xB1\xCF\x83 ' \xCE\xB1"));
  // U+1FA77 (Unicode 15.0) is unassigned, hence dropped, for Python 3.11.
  EXPECT_EQ(sd1().encode("a\xF0\x9F\xA9\xB7" "b"), sd1().encode("ab"));
  // U+0345 is matched by no alternative of the CLIP pattern under IGNORECASE, so it vanishes.
  EXPECT_EQ(sd1().encode("a\xCD\x85" "b"), sd1().encode("a b"));
  // IGNORECASE lets "'ſ" (long s) match the "'s" alternative: one word, no "'</w>".
  EXPECT_EQ(sd1().tokenize("it'\xC5\xBF"), (std::vector<std::string>{"it</w>", "'", "\xC3\x85", "\xC2\xBF</w>"}));
  // U+2028 separates words (str.split) although BasicTokenizer keeps it.
  EXPECT_EQ(sd1().encode("a\xE2\x80\xA8" "b"), sd1().encode("a b"));
  // The emulation table lists exactly the Unicode 15.0 additions over Python 3.11's Unicode 14.0.
  EXPECT_EQ(tokenizer::unicode_data_version(), "15.0.0") << "regenerate kAssignedAfterUnicode14 for this utf8proc";
}

TEST(ClipTokenizer, SpecialTokensInText) {
  // Upper case is not split out as an added token, but lower-cased it matches the pattern's literal.
  EXPECT_EQ(sd1().tokenize("<|ENDOFTEXT|>"), (std::vector<std::string>{"<|endoftext|>"}));
  // A NUL inside is dropped by BasicTokenizer, which also yields the literal.
  EXPECT_EQ(sd1().encode(std::string("<|endof\0text|>", 14))[1], kEos);
  // SD2's pad token "!" is an added token: every "!" becomes id 0, even inside a word.
  const auto ids = sd2().encode("x!y");
  EXPECT_EQ(ids[2], 0);
  EXPECT_EQ(sd2().tokenize("x!y"), (std::vector<std::string>{"x</w>", "!", "y</w>"}));
  EXPECT_EQ(sd1().tokenize("x!y"), (std::vector<std::string>{"x</w>", "!</w>", "y</w>"}));
}

TEST(ClipTokenizer, TokenOf) {
  EXPECT_EQ(sd1().token_of(kBos), "<|startoftext|>");
  EXPECT_EQ(sd1().token_of(kEos), "<|endoftext|>");
  EXPECT_EQ(sd1().token_of(sd1().encode("photo")[1]), "photo</w>");
  EXPECT_NE(error_of([] { sd1().token_of(-1); }).find("-1"), std::string::npos);
  EXPECT_NE(error_of([] { sd1().token_of(49408); }).find("49408"), std::string::npos);
}

TEST(ClipTokenizer, FromFolderErrors) {
  const fs::path dir = test::make_temp_dir("clip_tokenizer");
  const std::string merges = test::reference_path("tokenizer/merges.txt");
  EXPECT_NE(error_of([&] { ClipTokenizer::from_folder((dir / "absent").string()); }).find("absent"),
            std::string::npos);

  fs::copy_file(merges, dir / "merges.txt");
  const std::string missing = error_of([&] { ClipTokenizer::from_folder(dir.string()); });
  EXPECT_NE(missing.find("vocab.json"), std::string::npos) << missing;

  write_file(dir / "vocab.json", "{\"a\": 1,");
  const std::string not_json = error_of([&] { ClipTokenizer::from_folder(dir.string()); });
  EXPECT_NE(not_json.find("vocab.json"), std::string::npos) << not_json;
  EXPECT_NE(not_json.find("not valid JSON"), std::string::npos) << not_json;

  write_file(dir / "vocab.json", "[1, 2]");
  EXPECT_NE(error_of([&] { ClipTokenizer::from_folder(dir.string()); }).find("JSON object"), std::string::npos);

  write_file(dir / "vocab.json", "{\"a\": 1}");  // valid JSON, but no <|startoftext|>
  EXPECT_NE(error_of([&] { ClipTokenizer::from_folder(dir.string()); }).find("<|startoftext|>"), std::string::npos);
}

TEST(ClipTokenizer, FromFolderReadsPadToken) {
  const fs::path dir = test::make_temp_dir("clip_tokenizer_pad");
  fs::copy_file(test::reference_path("tokenizer/vocab.json"), dir / "vocab.json");
  fs::copy_file(test::reference_path("tokenizer/merges.txt"), dir / "merges.txt");
  EXPECT_EQ(ClipTokenizer::from_folder(dir.string()).pad_id(), kEos);  // no config: CLIP's default

  write_file(dir / "tokenizer_config.json", R"({"pad_token": "!"})");
  EXPECT_EQ(ClipTokenizer::from_folder(dir.string()).pad_id(), 0);

  // special_tokens_map.json wins over tokenizer_config.json, and may hold an AddedToken object.
  write_file(dir / "special_tokens_map.json", R"({"pad_token": {"content": "<|endoftext|>", "lstrip": false}})");
  EXPECT_EQ(ClipTokenizer::from_folder(dir.string()).pad_id(), kEos);

  write_file(dir / "special_tokens_map.json", R"({"pad_token": 5})");
  EXPECT_NE(error_of([&] { ClipTokenizer::from_folder(dir.string()); }).find("pad_token"), std::string::npos);

  write_file(dir / "special_tokens_map.json", R"({"pad_token": "no-such-token"})");
  EXPECT_NE(error_of([&] { ClipTokenizer::from_folder(dir.string()); }).find("no-such-token"), std::string::npos);
}

TEST(ClipTokenizer, MalformedMergesAreAnError) {
  const fs::path dir = test::make_temp_dir("clip_tokenizer_merges");
  fs::copy_file(test::reference_path("tokenizer/vocab.json"), dir / "vocab.json");
  write_file(dir / "merges.txt", "#version: 0.2\ni n\nt h e\n");
  const std::string message = error_of([&] { ClipTokenizer::from_folder(dir.string()); });
  EXPECT_NE(message.find("line 3"), std::string::npos) << message;
}

TEST(ClipTokenizer, LoadsQuickly) {
  const auto start = std::chrono::steady_clock::now();
  const auto tok = ClipTokenizer::from_folder(test::reference_path("models/sd1-tiny/tokenizer"));
  const double seconds = std::chrono::duration<double>(std::chrono::steady_clock::now() - start).count();
  EXPECT_EQ(tok.encode("a cat")[2], sd1().encode("a cat")[2]);
  EXPECT_LT(seconds, 2.0);  // ~0.1 s measured; generous for a loaded 2-core machine
}

}  // namespace
}  // namespace sdrt
