// make_scheduler: short names and diffusers class names -> a configured scheduler.
#include <string>

#include "schedulers/scheduler_base.hpp"

namespace sdrt::schedulers {
namespace {

struct Entry {
  std::string short_name;
  detail::SchedulerClass (*cls)();
  nlohmann::json overrides;  // applied on top of the config, like from_config(config, **overrides)
};

const std::vector<Entry>& entries() {
  static const std::vector<Entry> table = {
      {"pndm", detail::pndm_class, nlohmann::json::object()},
      {"ddim", detail::ddim_class, nlohmann::json::object()},
      {"dpmpp", detail::dpm_solver_multistep_class,
       {{"solver_order", 2}, {"algorithm_type", "dpmsolver++"}, {"use_karras_sigmas", false}}},
      {"dpmpp-karras", detail::dpm_solver_multistep_class,
       {{"solver_order", 2}, {"algorithm_type", "dpmsolver++"}, {"use_karras_sigmas", true}}},
      {"euler", detail::euler_discrete_class, nlohmann::json::object()},
      {"euler-a", detail::euler_ancestral_discrete_class, nlohmann::json::object()},
      {"lms", detail::lms_discrete_class, nlohmann::json::object()},
      {"heun", detail::heun_discrete_class, nlohmann::json::object()},
      {"ddpm", detail::ddpm_class, nlohmann::json::object()},
      {"lcm", detail::lcm_class, nlohmann::json::object()},
  };
  return table;
}

std::unique_ptr<Scheduler> build(const detail::SchedulerClass& cls, const nlohmann::json& config,
                                 const nlohmann::json& overrides) {
  if (!config.is_null() && !config.is_object())
    throw Error("scheduler config for " + cls.class_name + ": expected a JSON object");
  nlohmann::json merged = config.is_null() ? nlohmann::json::object() : config;
  for (const auto& [key, value] : overrides.items()) merged[key] = value;
  return cls.make(parse_scheduler_config(merged, cls.defaults));
}

}  // namespace

std::unique_ptr<Scheduler> make_scheduler(std::string_view name, const nlohmann::json& config) {
  for (const Entry& e : entries()) {
    if (name == e.short_name) return build(e.cls(), config, e.overrides);
    const detail::SchedulerClass cls = e.cls();
    if (name == cls.class_name) return build(cls, config, nlohmann::json::object());
  }
  std::string known;
  for (const std::string& n : scheduler_names()) known += " " + n;
  throw Error("unknown scheduler '" + std::string(name) + "' (known:" + known + ", or a diffusers class name)");
}

const std::vector<std::string>& scheduler_names() {
  static const std::vector<std::string> names = [] {
    std::vector<std::string> out;
    for (const Entry& e : entries()) out.push_back(e.short_name);
    return out;
  }();
  return names;
}

}  // namespace sdrt::schedulers
