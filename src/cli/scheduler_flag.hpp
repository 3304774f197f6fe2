// --scheduler as generate and bench take it: one of the library's short names.
#pragma once
#include <string>

namespace sdrt::cli {

// Throws naming the flag and the known names when `name` is not one of schedulers::scheduler_names().
void check_scheduler_flag(const std::string& name);

}  // namespace sdrt::cli
