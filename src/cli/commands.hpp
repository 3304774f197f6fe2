// The sdrt subcommands. Each registers its options on the CLI11 app and returns the function to run.
#pragma once
#include <CLI/CLI.hpp>
#include <functional>

namespace sdrt::cli {

using Command = std::function<int()>;

Command add_generate(CLI::App& app);
Command add_convert(CLI::App& app);
Command add_inspect(CLI::App& app);
Command add_tokenize(CLI::App& app);
Command add_bench(CLI::App& app);
Command add_serve(CLI::App& app);  // src/server/serve_command.cpp

}  // namespace sdrt::cli
