// --embedding TOKEN=PATH and --embeddings-dir, shared by generate and tokenize.
#pragma once
#include <CLI/CLI.hpp>
#include <string>
#include <vector>

#include "sdrt/pipeline/pipeline.hpp"

namespace sdrt::cli {

// "TOKEN=PATH" -> {token, path}; throws naming the flag for anything else.
EmbeddingInput parse_embedding_flag(const std::string& text);
void add_embedding_flags(CLI::App& app, std::vector<std::string>& embeddings, std::string& dir);

}  // namespace sdrt::cli
