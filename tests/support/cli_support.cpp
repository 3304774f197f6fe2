#include "support/cli_support.hpp"

#include <sys/wait.h>

#include <array>
#include <cstdio>
#include <cstdlib>

#include "sdrt/base/error.hpp"

namespace sdrt::test {

std::string shell_quote(const std::string& s) {
  std::string out = "'";
  for (char c : s) out += c == '\'' ? std::string("'\\''") : std::string(1, c);
  return out + "'";
}

CliResult run_sdrt(const std::string& args) {
#ifdef SDRT_CLI_PATH
  const char* exe = std::getenv("SDRT_CLI") ? std::getenv("SDRT_CLI") : SDRT_CLI_PATH;
#else
  const char* exe = std::getenv("SDRT_CLI");
#endif
  if (!exe) throw Error("SDRT_CLI is not set");
  const std::string cmd = shell_quote(exe) + " " + args + " 2>&1";
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

}  // namespace sdrt::test
