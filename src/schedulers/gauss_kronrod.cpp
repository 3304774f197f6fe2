// Adaptive 21-point Gauss-Kronrod quadrature with QUADPACK's (qk21 / qagse) error estimate, standing in
// for scipy.integrate.quad in the LMS coefficients.
#include <algorithm>
#include <cfloat>
#include <cmath>
#include <queue>

#include "schedulers/schedule_math.hpp"
#include "sdrt/base/error.hpp"

namespace sdrt::schedulers::detail {
namespace {

// Kronrod abscissae (xgk[1,3,..,9] are the 10-point Gauss nodes) and weights, from QUADPACK's qk21.
constexpr double kXgk[11] = {0.995657163025808080735527280689003, 0.973906528517171720077964012084452,
                             0.930157491355708226001207180059508, 0.865063366688984510732096688423493,
                             0.780817726586416897063717578345042, 0.679409568299024406234327365114874,
                             0.562757134668604683339000099272694, 0.433395394129247190799265943165784,
                             0.294392862701460198131126603103866, 0.148874338981631210884826001129720,
                             0.000000000000000000000000000000000};
constexpr double kWgk[11] = {0.011694638867371874278064396062192, 0.032558162307964727478818972459390,
                             0.054755896574351996031381300244580, 0.075039674810919952767043140916190,
                             0.093125454583697605535065465083366, 0.109387158802297641899210590325805,
                             0.123491976262065851077208980083264, 0.134709217311473325928054001771707,
                             0.142775938577060080797094273138717, 0.147739104901338491374841515972068,
                             0.149445554002916905664936468389821};
constexpr double kWg[5] = {0.066671344308688137593568809893332, 0.149451349150580593145776339657697,
                           0.219086362515982043995534934228163, 0.269266719309996355091226921569469,
                           0.295524224714752870173892994651338};

struct Piece {
  double a, b, result, error, resabs;
  bool operator<(const Piece& o) const { return error < o.error; }
};

// qk21: the 21-point Kronrod result on [a, b] and QUADPACK's error estimate (same summation order).
Piece qk21(const std::function<double(double)>& f, double a, double b) {
  const double centr = 0.5 * (a + b), hlgth = 0.5 * (b - a), dhlgth = std::fabs(hlgth);
  double fv1[10], fv2[10];
  const double fc = f(centr);
  double resg = 0, resk = kWgk[10] * fc, resabs = std::fabs(resk);
  const auto add_pair = [&](int k) {
    const double absc = hlgth * kXgk[k];
    const double f1 = f(centr - absc), f2 = f(centr + absc);
    fv1[k] = f1;
    fv2[k] = f2;
    const double fsum = f1 + f2;
    resk += kWgk[k] * fsum;
    resabs += kWgk[k] * (std::fabs(f1) + std::fabs(f2));
    return fsum;
  };
  for (int j = 0; j < 5; ++j) resg += kWg[j] * add_pair(2 * j + 1);
  for (int j = 0; j < 5; ++j) add_pair(2 * j);
  const double reskh = resk * 0.5;
  double resasc = kWgk[10] * std::fabs(fc - reskh);
  for (int j = 0; j < 10; ++j) resasc += kWgk[j] * (std::fabs(fv1[j] - reskh) + std::fabs(fv2[j] - reskh));
  resabs *= dhlgth;
  resasc *= dhlgth;
  double abserr = std::fabs((resk - resg) * hlgth);
  if (resasc != 0 && abserr != 0) abserr = resasc * std::min(1.0, std::pow(200 * abserr / resasc, 1.5));
  if (resabs > DBL_MIN / (50 * DBL_EPSILON)) abserr = std::max(DBL_EPSILON * 50 * resabs, abserr);
  return {a, b, resk * hlgth, abserr, resabs};
}

}  // namespace

double integrate(const std::function<double(double)>& f, double a, double b, double epsabs, double epsrel,
                 int limit) {
  Piece whole = qk21(f, a, b);
  const auto bound = [&](double result) { return std::max(epsabs, epsrel * std::fabs(result)); };
  // qagse's first test: accept the single rule when its estimate is good enough.
  if ((whole.error <= bound(whole.result) && whole.error != whole.resabs) || whole.error == 0) return whole.result;
  std::priority_queue<Piece> pieces;
  pieces.push(whole);
  double result = whole.result, error = whole.error;
  for (int n = 1; n < limit && error > bound(result); ++n) {
    const Piece worst = pieces.top();
    pieces.pop();
    const double mid = 0.5 * (worst.a + worst.b);
    const Piece left = qk21(f, worst.a, mid), right = qk21(f, mid, worst.b);
    result += left.result + right.result - worst.result;
    error += left.error + right.error - worst.error;
    pieces.push(left);
    pieces.push(right);
  }
  double total = 0;  // re-sum the pieces: the running total above only steers the loop
  for (; !pieces.empty(); pieces.pop()) total += pieces.top().result;
  if (!std::isfinite(total)) throw Error("integrate: non-finite integral");
  return total;
}

}  // namespace sdrt::schedulers::detail
