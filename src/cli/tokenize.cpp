// `sdrt tokenize`: how a prompt is cut into CLIP tokens.
#include <cstdio>
#include <filesystem>

#include "cli/commands.hpp"
#include "cli/embedding_flags.hpp"
#include "sdrt/pipeline/prompt_weighting.hpp"
#include "sdrt/pipeline/textual_inversion.hpp"
#include "sdrt/pipeline/model_source.hpp"
#include "sdrt/tokenizer/clip_tokenizer.hpp"

namespace sdrt::cli {
namespace {

// The tokenizer to show, and which of the model's text encoders it belongs to (an SDXL embedding file holds
// vectors for each encoder).
struct ShownTokenizer {
  tokenizer::ClipTokenizer tok;
  size_t encoder = 0, encoder_count = 1;
};

// The tokenizer files of a bundle, a diffusers folder (tokenizer/; SDXL: tokenizer/ of two, the refiner's
// tokenizer_2/) or a plain folder of BPE files.
ShownTokenizer open_tokenizer(const std::string& path) {
  namespace fs = std::filesystem;
  const fs::path root(path);
  if (fs::exists(root / "model_index.json")) {
    const bool second = fs::exists(root / "tokenizer_2");
    if (!fs::exists(root / "tokenizer") && second)
      return {tokenizer::ClipTokenizer::from_folder(path + "/tokenizer_2"), 1, 2};
    return {tokenizer::ClipTokenizer::from_folder(path + "/tokenizer"), 0, second ? 2u : 1u};
  }
  if (fs::exists(root / "manifest.json")) {
    pipeline::SourceOptions so;
    so.verify_checksums = false;
    const auto src = pipeline::open_model_source(path, so);
    const bool first = src.has(pipeline::component::text_encoder);
    const auto& t = first || !src.tokenizer_2 ? src.tokenizer : *src.tokenizer_2;  // SDXL refiner: the second
    return {tokenizer::ClipTokenizer::from_files(t.vocab_json, t.merges_txt, t.pad_token), first ? 0u : 1u,
            src.tokenizer_2 ? 2u : 1u};
  }
  return {tokenizer::ClipTokenizer::from_folder(path)};
}

}  // namespace

Command add_tokenize(CLI::App& app) {
  auto path = std::make_shared<std::string>("./");
  auto prompt = std::make_shared<std::string>();
  auto verbose = std::make_shared<bool>(false);
  auto syntax = std::make_shared<std::string>("plain");
  auto embeddings = std::make_shared<std::vector<std::string>>();
  auto embeddings_dir = std::make_shared<std::string>();
  app.add_option("prompt", *prompt, "Text prompt")->required();
  app.add_option("--resource-path", *path, "sdrt bundle or diffusers folder")->capture_default_str();
  app.add_flag("--verbose", *verbose, "Also show the BPE tokens");
  app.add_option("--prompt-syntax", *syntax, "plain | a1111 (ids of every 77-token chunk; --verbose shows weights)")
      ->check(CLI::IsMember({"plain", "a1111"}))
      ->capture_default_str();
  add_embedding_flags(app, *embeddings, *embeddings_dir);
  return [=] {
    auto [tok, encoder, encoder_count] = open_tokenizer(*path);
    std::vector<EmbeddingInput> inputs;
    for (const auto& e : *embeddings) inputs.push_back(parse_embedding_flag(e));
    // The tokenizer alone knows no hidden size: dimensions are checked by generate.
    const auto added = pipeline::added_vocabulary(pipeline::load_embeddings(inputs, *embeddings_dir, {*prompt}), encoder,
                                                  encoder_count, tok.vocab_size(), 0);
    if (!added.tokens.empty()) tok = tok.with_added_tokens(added.tokens);
    std::vector<int64_t> ids;
    std::vector<float> weights;
    if (*syntax == "a1111") {
      const std::vector<pipeline::WeightedTokens> one{pipeline::weighted_tokens(tok, *prompt)};
      const auto chunks = pipeline::chunk_prompts(one, pipeline::chunk_count(one), tok.bos_id(), tok.eos_id(), tok.pad_id());
      ids = chunks.ids;
      weights = chunks.weights;
    } else {
      ids = tok.encode(*prompt);
    }
    std::string line = "[";
    for (size_t i = 0; i < ids.size(); ++i) line += (i ? ", " : "") + std::to_string(ids[i]);
    std::printf("%s]\n", line.c_str());
    if (*verbose && !weights.empty()) {
      std::fprintf(stderr, "%zu chunks of 77:\n", ids.size() / 77);
      for (size_t i = 0; i < ids.size(); ++i)
        std::fprintf(stderr, "  %4zu %6lld %-24s x%g\n", i, static_cast<long long>(ids[i]), tok.token_of(ids[i]).c_str(),
                     static_cast<double>(weights[i]));
    } else if (*verbose) {
      const auto tokens = tok.tokenize(*prompt);
      std::fprintf(stderr, "%zu tokens%s:\n", tokens.size(), tokens.size() > 75 ? " (truncated to 75)" : "");
      for (size_t i = 0; i < tokens.size(); ++i) std::fprintf(stderr, "  %3zu %s\n", i + 1, tokens[i].c_str());
    }
    return 0;
  };
}

}  // namespace sdrt::cli
