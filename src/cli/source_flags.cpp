#include "cli/source_flags.hpp"

#include <string>
#include <utility>

#include "sdrt/base/error.hpp"

namespace sdrt::cli {

void with_source_flag_names(const std::function<void()>& f) {
  try {
    f();
  } catch (const Error& e) {
    static const std::pair<const char*, const char*> flags[] = {
        {"text_encoder_heads", "--text-encoder-heads"},
        {"prediction_type", "--prediction-type"},
        {"tokenizer_dir", "--tokenizer"},
        {"config_dir", "--config-dir"},
        {"norm_num_groups", "--norm-groups"},
    };
    const std::string message = e.what();
    for (const auto& [field, flag] : flags)
      if (message.find(field) != std::string::npos) throw Error(message + " (" + field + ": " + flag + ")");
    throw;
  }
}

}  // namespace sdrt::cli
