#include <cstdio>
#include <exception>
#include <map>
#include <string>

#include "cli/commands.hpp"
#include "sdrt/base/error.hpp"
#include "sdrt/convert/checkpoint_importer.hpp"

int main(int argc, char** argv) {
  // generate, convert, inspect, serve and bench open single-file checkpoints through the converter.
  sdrt::convert::install_checkpoint_importer();
  CLI::App app{"sdrt: Stable Diffusion runtime and model converter"};
  app.set_version_flag("--version", "sdrt " SDRT_VERSION);
  app.require_subcommand(1);
  std::map<CLI::App*, sdrt::cli::Command> commands;
  auto add = [&](const char* name, const char* help, sdrt::cli::Command (*reg)(CLI::App&)) {
    CLI::App* sub = app.add_subcommand(name, help);
    commands[sub] = reg(*sub);
  };
  add("generate", "Generate images from a prompt", sdrt::cli::add_generate);
  add("convert", "Convert a diffusers folder or a single-file checkpoint into an sdrt bundle", sdrt::cli::add_convert);
  add("inspect", "List the tensors of a weights file or model folder and detect the model kind", sdrt::cli::add_inspect);
  add("tokenize", "Print the 77 CLIP token ids of a prompt", sdrt::cli::add_tokenize);
  add("serve", "Serve the OpenAI images API, the A1111 API and a web page from a loaded model", sdrt::cli::add_serve);
  add("bench", "Time the text encoder, UNet, VAE and a whole generation", sdrt::cli::add_bench);
  try {
    app.parse(argc, argv);
  } catch (const CLI::ParseError& e) {
    return app.exit(e);
  }
  try {
    for (auto& [sub, run] : commands)
      if (sub->parsed()) return run();
  } catch (const sdrt::Cancelled&) {
    std::fprintf(stderr, "sdrt: cancelled\n");
    return 130;
  } catch (const std::exception& e) {
    std::fprintf(stderr, "sdrt: error: %s\n", e.what());
    return 1;
  }
  return 1;
}
