// attention_amx_driver.hpp on a scalar emulation of the AMX tile instructions, as the Intel SDM defines
// them (LDTILECFG palette 1, TILEZERO, TILELOADD, TILESTORED, TDPBF16PS, TILERELEASE). Operations the
// hardware would fault on (no configuration, a tile shape beyond 16 rows x 64 bytes, operands whose
// shapes do not fit together) abort, so a test of the driver also checks that its tile use is legal.
#include <cstdio>
#include <cstdlib>
#include <cstring>

#include "kernels/cpu/attention_amx.hpp"
#include "kernels/cpu/attention_amx_driver.hpp"

namespace sdrt::kernels::cpu {
namespace {

[[noreturn]] void fault(const char* what) {
  std::fprintf(stderr, "emulated AMX: %s (the hardware would raise #UD)\n", what);
  std::abort();
}

class EmulatedTiles {
 public:
  static void configure(const TileConfig& c) {
    if (c.palette != 1 || c.start_row != 0) fault("unsupported palette or start row");
    for (int t = 0; t < 16; ++t) {
      const bool in_range = c.rows[t] <= kTileRows && c.colsb[t] <= kTileBytes;
      const bool valid = t < 8 ? in_range && (c.rows[t] == 0) == (c.colsb[t] == 0) : c.rows[t] == 0 && c.colsb[t] == 0;
      if (!valid) fault("invalid tile shape in the configuration");
    }
    State& s = state();
    s.config = c;
    s.configured = true;
    std::memset(s.tiles, 0, sizeof(s.tiles));
  }
  template <int T>
  static void zero() {
    std::memset(tile<T>(), 0, kTileSize);
  }
  // Rows of colsb bytes, `stride` apart; the rest of the tile is zeroed.
  template <int T>
  static void load(const void* base, int64_t stride) {
    uint8_t* t = tile<T>();
    std::memset(t, 0, kTileSize);
    const TileConfig& c = state().config;
    const auto* src = static_cast<const uint8_t*>(base);
    for (int r = 0; r < c.rows[T]; ++r) std::memcpy(t + r * kTileBytes, src + r * stride, c.colsb[T]);
  }
  template <int T>
  static void store(void* base, int64_t stride) {
    const uint8_t* t = tile<T>();
    const TileConfig& c = state().config;
    auto* dst = static_cast<uint8_t*>(base);
    for (int r = 0; r < c.rows[T]; ++r) std::memcpy(dst + r * stride, t + r * kTileBytes, c.colsb[T]);
  }
  // C[m][n] += sum over k < A.colsb/4 of A[m][2k] B[k][2n] + A[m][2k+1] B[k][2n+1], in fp32.
  template <int C, int A, int B>
  static void dot() {
    static_assert(C != A && C != B && A != B, "TDPBF16PS needs three different tiles");
    const TileConfig& c = state().config;
    const int m_rows = c.rows[C], n_cols = c.colsb[C] / 4, k_pairs = c.colsb[A] / 4;
    if (c.rows[A] != m_rows || c.rows[B] != k_pairs || c.colsb[B] != c.colsb[C] || c.colsb[C] % 4 != 0 ||
        c.colsb[A] % 4 != 0)
      fault("TDPBF16PS operand shapes do not match");
    float acc[kTileRows][16];
    uint16_t a[kTileRows][32], b[kTileRows][32];
    std::memcpy(acc, tile<C>(), kTileSize);
    std::memcpy(a, tile<A>(), kTileSize);
    std::memcpy(b, tile<B>(), kTileSize);
    for (int m = 0; m < m_rows; ++m)
      for (int k = 0; k < k_pairs; ++k) {
        const float a0 = bf16_to_f32(a[m][2 * k]), a1 = bf16_to_f32(a[m][2 * k + 1]);
        for (int n = 0; n < n_cols; ++n) {
          acc[m][n] += a0 * bf16_to_f32(b[k][2 * n]);
          acc[m][n] += a1 * bf16_to_f32(b[k][2 * n + 1]);
        }
      }
    // Columns past colsb are zeroed, as the instruction writes whole rows.
    for (int m = 0; m < kTileRows; ++m)
      for (int n = m < m_rows ? n_cols : 0; n < 16; ++n) acc[m][n] = 0.0f;
    std::memcpy(tile<C>(), acc, kTileSize);
  }
  static void release() { state().configured = false; }

 private:
  static constexpr size_t kTileSize = kTileRows * kTileBytes;
  struct State {
    TileConfig config;
    bool configured = false;
    alignas(64) uint8_t tiles[8][kTileSize];
  };
  // Tile registers are per thread, as on the hardware.
  static State& state() {
    thread_local State s;
    return s;
  }
  template <int T>
  static uint8_t* tile() {
    static_assert(T >= 0 && T < 8, "tiles are tmm0-tmm7");
    State& s = state();
    if (!s.configured) fault("tile instruction without a tile configuration");
    return s.tiles[T];
  }
};

}  // namespace

Tensor attention_flash_amx_emulated(const Tensor& q, const Tensor& k, const Tensor& v, int heads, float scale,
                                    bool causal) {
  return amx::attention<EmulatedTiles>(q, k, v, heads, scale, causal);
}

}  // namespace sdrt::kernels::cpu
