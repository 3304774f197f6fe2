// safetensors reader: the file as given (mode byte even) or a generated header with huge dims, many tensors,
// long or duplicate keys (odd). Tensors are read end to end, and compressed-weight specs in the metadata
// are decoded the way a bundle loads them.
#include <nlohmann/json.hpp>

#include "generators.hpp"
#include "sdrt/io/safetensors.hpp"
#include "sdrt/pipeline/compressed_tensor_file.hpp"

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  using namespace sdrt;
  if (size == 0) return 0;
  fuzz::Params p(data + 1, size - 1);
  const std::string bytes = data[0] % 2 ? fuzz::gen_safetensors(p)
                                        : std::string(reinterpret_cast<const char*>(data) + 1, size - 1);
  const std::string path = fuzz::scratch_file("in.safetensors", bytes);
  fuzz::expect_clean([&] {
    const auto st = io::SafetensorsFile::open(path);
    volatile uint8_t sink = 0;
    for (const auto& name : st.names()) {
      const auto t = st.get(name);
      if (t.nbytes) sink = sink ^ t.data[0] ^ t.data[t.nbytes - 1];
    }
    const auto it = st.metadata().find(pipeline::kCompressionMetadataKey);
    if (it == st.metadata().end()) return;
    const auto specs = nlohmann::json::parse(it->second, nullptr, /*allow_exceptions=*/false);
    if (!specs.is_object()) return;
    for (auto s = specs.begin(); s != specs.end(); ++s) pipeline::read_compressed(st, s.key(), s.value());
  });
  return 0;
}
