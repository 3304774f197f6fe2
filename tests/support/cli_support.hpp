// Running the sdrt executable from tests.
#pragma once
#include <string>

namespace sdrt::test {

struct CliResult {
  int exit_code = -1;
  std::string output;  // stdout and stderr together
};

// Runs `sdrt <args>` (args already shell-quoted where needed) and captures its output.
CliResult run_sdrt(const std::string& args);
// Single-quotes a string for /bin/sh.
std::string shell_quote(const std::string& s);

}  // namespace sdrt::test
