// Sigma-space helpers shared by the Euler family and DPM-Solver: interpolation, Karras spacing and
// the sigma -> timestep inversion.
#include <algorithm>
#include <cmath>

#include "schedulers/schedule_math.hpp"

namespace sdrt::schedulers::detail {

std::vector<float> sigmas_from_alphas_cumprod(const std::vector<float>& alphas_cumprod) {
  std::vector<float> sigmas(alphas_cumprod.size());
  for (size_t i = 0; i < sigmas.size(); ++i)
    sigmas[i] = std::sqrt((1.0f - alphas_cumprod[i]) / alphas_cumprod[i]);
  return sigmas;
}

double interp_at(double x, const std::vector<float>& fp) {
  const auto last = static_cast<double>(fp.size() - 1);
  if (std::isnan(x)) return x;
  if (x <= 0) return fp.front();
  if (x >= last) return fp.back();
  const double lower = std::floor(x);
  const auto j = static_cast<size_t>(lower);
  if (lower == x) return fp[j];
  const double slope = static_cast<double>(fp[j + 1]) - static_cast<double>(fp[j]);  // xp spacing is 1
  return slope * (x - lower) + static_cast<double>(fp[j]);
}

std::vector<float> log_f32(const std::vector<float>& x) {
  std::vector<float> out(x.size());
  for (size_t i = 0; i < x.size(); ++i) out[i] = std::log(x[i]);
  return out;
}

std::vector<double> karras_sigmas(double sigma_min, double sigma_max, int n) {
  constexpr double rho = 7.0;
  const double min_inv_rho = std::pow(sigma_min, 1 / rho), max_inv_rho = std::pow(sigma_max, 1 / rho);
  std::vector<double> sigmas;
  for (double r : np_linspace(0, 1, n)) sigmas.push_back(std::pow(max_inv_rho + r * (min_inv_rho - max_inv_rho), rho));
  return sigmas;
}

double sigma_to_t(double sigma, const std::vector<float>& log_sigmas) {
  const double log_sigma = std::log(std::max(sigma, 1e-10));
  // numpy: cumsum(log_sigma - log_sigmas >= 0).argmax() = the last index at or below log_sigma (0 if none)
  size_t low_idx = 0;
  for (size_t i = 0; i < log_sigmas.size(); ++i)
    if (log_sigma - static_cast<double>(log_sigmas[i]) >= 0) low_idx = i;
  low_idx = std::min(low_idx, log_sigmas.size() - 2);
  const size_t high_idx = low_idx + 1;
  const auto low = static_cast<double>(log_sigmas[low_idx]), high = static_cast<double>(log_sigmas[high_idx]);
  const double w = std::clamp((low - log_sigma) / (low - high), 0.0, 1.0);
  return (1 - w) * static_cast<double>(low_idx) + w * static_cast<double>(high_idx);
}

}  // namespace sdrt::schedulers::detail
