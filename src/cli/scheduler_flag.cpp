#include "cli/scheduler_flag.hpp"

#include <algorithm>

#include "sdrt/base/error.hpp"
#include "sdrt/schedulers/scheduler.hpp"

namespace sdrt::cli {

void check_scheduler_flag(const std::string& name) {
  const auto& names = schedulers::scheduler_names();
  if (std::find(names.begin(), names.end(), name) != names.end()) return;
  std::string known;
  for (const auto& n : names) known += (known.empty() ? "" : " ") + n;
  throw Error("--scheduler: unknown scheduler '" + name + "' (known: " + known + ")");
}

}  // namespace sdrt::cli
