// `sdrt tokenize`: how a prompt is cut into CLIP tokens.
#include <cstdio>
#include <filesystem>

#include "cli/commands.hpp"
#include "sdrt/pipeline/model_source.hpp"
#include "sdrt/tokenizer/clip_tokenizer.hpp"

namespace sdrt::cli {
namespace {

// The tokenizer files of a bundle, a diffusers folder (tokenizer/) or a plain folder of BPE files.
tokenizer::ClipTokenizer open_tokenizer(const std::string& path) {
  namespace fs = std::filesystem;
  if (fs::exists(fs::path(path) / "model_index.json")) return tokenizer::ClipTokenizer::from_folder(path + "/tokenizer");
  if (fs::exists(fs::path(path) / "manifest.json")) {
    pipeline::SourceOptions so;
    so.verify_checksums = false;
    const auto t = pipeline::open_model_source(path, so).tokenizer;
    return tokenizer::ClipTokenizer::from_files(t.vocab_json, t.merges_txt, t.pad_token);
  }
  return tokenizer::ClipTokenizer::from_folder(path);
}

}  // namespace

Command add_tokenize(CLI::App& app) {
  auto path = std::make_shared<std::string>("./");
  auto prompt = std::make_shared<std::string>();
  auto verbose = std::make_shared<bool>(false);
  app.add_option("prompt", *prompt, "Text prompt")->required();
  app.add_option("--resource-path", *path, "sdrt bundle or diffusers folder")->capture_default_str();
  app.add_flag("--verbose", *verbose, "Also show the BPE tokens");
  return [=] {
    const auto tok = open_tokenizer(*path);
    const auto ids = tok.encode(*prompt);
    std::string line = "[";
    for (size_t i = 0; i < ids.size(); ++i) line += (i ? ", " : "") + std::to_string(ids[i]);
    std::printf("%s]\n", line.c_str());
    if (*verbose) {
      const auto tokens = tok.tokenize(*prompt);
      std::fprintf(stderr, "%zu tokens%s:\n", tokens.size(), tokens.size() > 75 ? " (truncated to 75)" : "");
      for (size_t i = 0; i < tokens.size(); ++i) std::fprintf(stderr, "  %3zu %s\n", i + 1, tokens[i].c_str());
    }
    return 0;
  };
}

}  // namespace sdrt::cli
