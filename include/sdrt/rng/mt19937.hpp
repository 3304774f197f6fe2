// The 32-bit Mersenne Twister (MT19937) that numpy's legacy RandomState and torch's CPU generator
// share: init_genrand seeding, standard twist and tempering.
#pragma once
#include <array>
#include <cstddef>
#include <cstdint>

namespace sdrt::rng {

class Mt19937 {
 public:
  static constexpr size_t kStateSize = 624;

  // init_genrand(seed): the state every 32-bit seed gets in numpy (RandomState(seed)) and torch (manual_seed).
  explicit Mt19937(uint32_t seed);

  // The next tempered 32-bit output.
  uint32_t next();

 private:
  void twist();

  std::array<uint32_t, kStateSize> state_{};
  size_t index_ = kStateSize;  // the first draw twists
};

}  // namespace sdrt::rng
