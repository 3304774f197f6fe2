// LDM yaml reader (v1-inference.yaml and friends). The first input byte selects raw text (even) or a
// generated document (odd: deep indentation, long keys, an unclosed flow list, many siblings).
#include "generators.hpp"
#include "sdrt/convert/ldm_checkpoint.hpp"

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  using namespace sdrt;
  if (size == 0) return 0;
  fuzz::Params p(data + 1, size - 1);
  const std::string text = data[0] % 2 ? fuzz::gen_ldm_yaml(p) : std::string(reinterpret_cast<const char*>(data) + 1, size - 1);
  fuzz::expect_clean([&] { pipeline::parse_ldm_yaml(text, "in.yaml"); });
  return 0;
}
