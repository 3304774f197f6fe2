// Shared schedule arithmetic, reproducing the numpy (float64) / torch (float32) evaluation order of
// diffusers 0.27.2 so that timesteps and sigmas match it to the last bit where it matters.
#pragma once
#include <functional>
#include <string>
#include <vector>

#include "sdrt/schedulers/scheduler.hpp"

namespace sdrt::schedulers::detail {

// ---- numpy / torch primitives ----
// torch.linspace(start, end, steps, dtype=float32) as torch's AVX2 CPU kernel evaluates it.
std::vector<float> torch_linspace_f32(double start, double end, int steps);
// np.linspace(start, stop, num) in float64, endpoint included.
std::vector<double> np_linspace(double start, double stop, int num);
// np.arange(start, stop, step) for a float step (numpy's length and fill rule).
std::vector<double> np_arange(double start, double stop, double step);
// np.round: half to even.
double np_round(double x);

// ---- training schedule (scheduler_config.cpp) ----
// diffusers' betas (float32), rescaled to zero terminal SNR when `rescale` is set.
std::vector<float> make_betas(const SchedulerConfig& cfg, bool rescale);
// torch.cumprod(1 - betas): float32 alphas, float64 accumulator (torch's CPU kernel), float32 results.
std::vector<float> cumprod_alphas(const std::vector<float>& betas);

// ---- inference timesteps (scheduler_config.cpp) ----
// Descending timesteps of the common set_timesteps code (DDIM, DDPM, Euler, Euler a, LMS, Heun):
// "linspace" np.linspace(0, T-1, n) (rounded to integers when `round_linspace`, else float32),
// "leading" arange(n) * (T // n) + steps_offset, "trailing" round(arange(T, 0, -T / n)) - 1.
std::vector<double> spaced_timesteps(const SchedulerConfig& cfg, int n, bool round_linspace);
// Throws sdrt::Error unless 0 < n <= num_train_timesteps.
void check_inference_steps(int n, const SchedulerConfig& cfg, const std::string& who);

// ---- sigmas (sigma_schedule.cpp) ----
// ((1 - acp) / acp) ** 0.5 in float32.
std::vector<float> sigmas_from_alphas_cumprod(const std::vector<float>& alphas_cumprod);
// np.interp(x, arange(len(fp)), fp) in float64.
double interp_at(double x, const std::vector<float>& fp);
// np.log of a float32 array (float32 results).
std::vector<float> log_f32(const std::vector<float>& x);
// Karras et al. rho = 7 spacing from sigma_max down to sigma_min (float64), as _convert_to_karras.
std::vector<double> karras_sigmas(double sigma_min, double sigma_max, int n);
// diffusers' _sigma_to_t: fractional training timestep of sigma by log-sigma interpolation.
double sigma_to_t(double sigma, const std::vector<float>& log_sigmas);

// ---- quadrature (gauss_kronrod.cpp) ----
// scipy.integrate.quad(f, a, b, epsabs, epsrel) for smooth integrands: QUADPACK's 21-point
// Gauss-Kronrod rule with its error estimate, bisecting the worst interval until the estimate meets
// max(epsabs, epsrel * |integral|) (the smooth-integrand path of qagse, without epsilon extrapolation).
double integrate(const std::function<double(double)>& f, double a, double b, double epsabs = 1.49e-8,
                 double epsrel = 1.49e-8, int limit = 50);

}  // namespace sdrt::schedulers::detail
