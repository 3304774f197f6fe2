// JSON configs: the parser with Python literals, then the text as a scheduler config: parsed, a scheduler
// built from it and its timesteps set. The first input byte selects raw text (even) or a generated
// document (odd: deep nesting, long keys, long or overflowing numbers, many Python literals); the second
// picks the scheduler and step count.
#include <nlohmann/json.hpp>

#include "generators.hpp"
#include "sdrt/io/json.hpp"
#include "sdrt/schedulers/scheduler.hpp"

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  using namespace sdrt;
  if (size < 2) return 0;
  fuzz::Params p(data + 2, size - 2);
  const std::string text = data[0] % 2 ? fuzz::gen_json(p) : std::string(reinterpret_cast<const char*>(data) + 2, size - 2);
  fuzz::expect_clean([&] { io::parse_json_text(text, "in.json"); });
  fuzz::expect_clean([&] {
    const auto config = schedulers::parse_scheduler_config_text(text, "in.json");
    const auto& names = schedulers::scheduler_names();
    const auto scheduler = schedulers::make_scheduler(names[data[1] % names.size()], config);
    scheduler->set_timesteps(1 + data[1] / 16 * 4);
  });
  return 0;
}
