// Running the sdrt executable from tests.
#pragma once
#include <string>
#include <utility>
#include <vector>

namespace sdrt::test {

struct CliResult {
  int exit_code = -1;
  std::string output;  // stdout and stderr together
};

struct CliStreams {
  int exit_code = -1;
  std::string out, err;  // stdout and stderr apart
};

// Runs `sdrt <args>` (args already shell-quoted where needed) and captures its output.
CliResult run_sdrt(const std::string& args);
// Same, keeping stdout and stderr apart.
CliStreams run_sdrt_streams(const std::string& args);
// Single-quotes a string for /bin/sh.
std::string shell_quote(const std::string& s);

// `sdrt convert <source> -o <out> <extra>`; throws with sdrt's output when it fails. Returns out.
std::string convert_bundle(const std::string& source, const std::string& out, const std::string& extra = "");

// The names of the entries of a folder, sorted (empty when the folder does not exist).
std::vector<std::string> folder_entries(const std::string& dir);

// Whole-file bytes.
std::string read_bytes(const std::string& path);
void write_bytes(const std::string& path, const std::string& bytes);

// A zip archive of stored (uncompressed) entries, as torch.save writes its checkpoints.
std::string stored_zip(const std::vector<std::pair<std::string, std::string>>& entries);

}  // namespace sdrt::test
