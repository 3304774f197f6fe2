#include "support/cli_support.hpp"

#include <sys/wait.h>
#include <unistd.h>

#include <algorithm>
#include <array>
#include <cstdio>
#include <cstdlib>
#include <filesystem>
#include <fstream>
#include <sstream>

#include "sdrt/base/error.hpp"
#include "support/torch_writer.hpp"

namespace fs = std::filesystem;

namespace sdrt::test {
namespace {

std::string sdrt_executable() {
#ifdef SDRT_CLI_PATH
  const char* exe = std::getenv("SDRT_CLI") ? std::getenv("SDRT_CLI") : SDRT_CLI_PATH;
#else
  const char* exe = std::getenv("SDRT_CLI");
#endif
  if (!exe) throw Error("SDRT_CLI is not set");
  return exe;
}

// Runs a shell command and returns its exit code and stdout.
CliResult run_shell(const std::string& cmd) {
  FILE* pipe = ::popen(cmd.c_str(), "r");
  if (!pipe) throw Error("cannot run " + cmd);
  CliResult r;
  std::array<char, 4096> buf{};
  size_t n = 0;
  while ((n = std::fread(buf.data(), 1, buf.size(), pipe)) > 0) r.output.append(buf.data(), n);
  const int status = ::pclose(pipe);
  r.exit_code = WIFEXITED(status) ? WEXITSTATUS(status) : -1;
  return r;
}

}  // namespace

std::string shell_quote(const std::string& s) {
  std::string out = "'";
  for (char c : s) out += c == '\'' ? std::string("'\\''") : std::string(1, c);
  return out + "'";
}

CliResult run_sdrt(const std::string& args) { return run_shell(shell_quote(sdrt_executable()) + " " + args + " 2>&1"); }

CliStreams run_sdrt_streams(const std::string& args) {
  const fs::path err_file = fs::temp_directory_path() / ("sdrt-stderr-" + std::to_string(::getpid()) + ".txt");
  const auto r = run_shell(shell_quote(sdrt_executable()) + " " + args + " 2>" + shell_quote(err_file.string()));
  CliStreams s{r.exit_code, r.output, read_bytes(err_file.string())};
  fs::remove(err_file);
  return s;
}

std::string convert_bundle(const std::string& source, const std::string& out, const std::string& extra) {
  const auto r = run_sdrt("convert " + shell_quote(source) + " -o " + shell_quote(out) + " " + extra);
  if (r.exit_code != 0) throw Error("sdrt convert " + source + " failed:\n" + r.output);
  return out;
}

std::vector<std::string> folder_entries(const std::string& dir) {
  std::vector<std::string> names;
  if (!fs::is_directory(dir)) return names;
  for (const auto& e : fs::directory_iterator(dir)) names.push_back(e.path().filename().string());
  std::sort(names.begin(), names.end());
  return names;
}

std::string read_bytes(const std::string& path) {
  std::ifstream in(path, std::ios::binary);
  if (!in) throw Error("cannot read " + path);
  std::ostringstream s;
  s << in.rdbuf();
  return s.str();
}

void write_bytes(const std::string& path, const std::string& bytes) {
  std::ofstream out(path, std::ios::binary | std::ios::trunc);
  out << bytes;
  if (!out) throw Error("cannot write " + path);
}

std::string stored_zip(const std::vector<std::pair<std::string, std::string>>& entries) { return zip_stored(entries); }

}  // namespace sdrt::test
