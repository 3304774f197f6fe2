// Torch checkpoints: the restricted unpickler and its zip container. The first input byte selects:
//   0: the input is the whole file (zip);
//   1: the input is data.pkl, wrapped in a valid zip with storages "0".."3" of 64 bytes;
//   2: many views of one storage; 3: dicts shared through the pickle memo; 4: deep nesting, long keys.
#include "generators.hpp"
#include "sdrt/io/torch_checkpoint.hpp"

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  using namespace sdrt;
  if (size == 0) return 0;
  fuzz::Params p(data + 1, size - 1);
  const std::string_view rest(reinterpret_cast<const char*>(data) + 1, size - 1);
  std::string bytes;
  switch (data[0] % 5) {
    case 0: bytes = rest; break;
    case 1: {
      std::vector<std::pair<std::string, std::string>> storages;
      for (int i = 0; i < 4; ++i) storages.emplace_back(std::to_string(i), std::string(64, '\x01'));
      bytes = fuzz::torch_zip(std::string(rest), storages);
      break;
    }
    case 2: bytes = fuzz::gen_torch_views(p); break;
    case 3: bytes = fuzz::gen_torch_shared_dicts(p); break;
    default: bytes = fuzz::gen_torch_deep(p); break;
  }
  const std::string path = fuzz::scratch_file("in.ckpt", bytes);
  fuzz::expect_clean([&] {
    volatile uint8_t sink = 0;
    for (const auto& [name, t] : io::read_torch_checkpoint(path))
      if (t.nbytes) sink = sink ^ t.data[0] ^ t.data[t.nbytes - 1] ^ static_cast<uint8_t>(name.size());
  });
  return 0;
}
