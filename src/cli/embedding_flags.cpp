#include "cli/embedding_flags.hpp"

#include "sdrt/base/error.hpp"

namespace sdrt::cli {

EmbeddingInput parse_embedding_flag(const std::string& text) {
  const size_t eq = text.find('=');
  if (eq == std::string::npos || eq == 0 || eq + 1 == text.size())
    throw Error("--embedding takes TOKEN=PATH (got '" + text + "')");
  return {text.substr(0, eq), text.substr(eq + 1)};
}

void add_embedding_flags(CLI::App& app, std::vector<std::string>& embeddings, std::string& dir) {
  app.add_option("--embedding", embeddings,
                 "Textual-inversion embedding TOKEN=PATH (.safetensors, A1111 .pt, diffusers .bin); repeatable");
  app.add_option("--embeddings-dir", dir, "Folder of embeddings whose file names (without extension) are their tokens");
}

}  // namespace sdrt::cli
