// The shared numeric gradient checker of the layers (Caffe's GradientChecker, dlib's
// test_layer): every layer's backward is compared with central differences.
//
// The scalar loss is L = sum(y * R) with R a fixed random tensor (uniform in [-1, 1)), so
// dL/dy = R is what backward receives. For each input value and each parameter value v the
// numeric derivative is (L(v + h) - L(v - h)) / ((v + h) - (v - h)), L summed in double, the
// denominator taken from the float values actually stored (v + h rounds). The analytic value a
// and numeric value d agree when
//   |a - d| <= rel_tolerance * max(abs_floor, |a|, |d|),
// a relative tolerance with an absolute floor (float32 forward passes lose ~1e-6 relative in L,
// which divided by 2h is the floor's order of magnitude).
//
// Randomness is frozen by the ForwardContext: a layer's masks depend only on ctx (seed, step,
// sample id, layer index), so the +h and -h passes see the same mask in Mode::train too.
// Non-differentiable points (ReLU at 0, max-pool ties): for a layer's own input the caller picks
// values at least h away from them. Composite layers (a residual block: ReLU after batch norm)
// have kinks inside that no input choice avoids, so a mismatch is attributed to a kink, and the
// value skipped, when the one-sided differences (L(v+h) - L(v)) / h and (L(v) - L(v-h)) / h
// disagree by more than the mismatch itself: across a kink at distance d < h the central
// difference is off by jump * (h - d) / 2h while the one-sided ones differ by jump * (h - d) / h;
// a wrong analytic gradient leaves both one-sided differences agreeing with each other.
// Callers bound the skipped fraction (GradCheckResult::skipped).
//
// API: internal to augflow's tests; not installed.
#pragma once

#include <algorithm>
#include <cmath>
#include <cstdint>
#include <sstream>
#include <string>
#include <vector>

#include "common/rng.hpp"
#include "model/layer.hpp"

namespace augflow::model {

struct GradCheckOptions {
  double step = 1e-2;           ///< h
  double rel_tolerance = 1e-2;
  double abs_floor = 1e-2;
  std::uint64_t seed = 1;       ///< draws R
  std::size_t max_reported = 8; ///< failures kept for the report
};

struct GradCheckResult {
  std::size_t checked = 0;   ///< values compared
  std::size_t failed = 0;
  std::size_t skipped = 0;   ///< mismatches explained by a kink within +-h (see above)
  double max_error = 0.0;    ///< the largest |a - d| / max(abs_floor, |a|, |d|)
  std::vector<std::string> failures;  ///< "dx[12]: analytic 0.31 numeric 0.29"
  bool ok() const { return failed == 0 && checked > 0; }
  std::string report() const {
    std::ostringstream out;
    out << failed << " of " << checked << " values differ, " << skipped
        << " skipped at kinks (max relative error " << max_error << ")";
    for (const auto& f : failures) out << "\n  " << f;
    return out.str();
  }
};

namespace grad_check_detail {

inline double loss(Layer& layer, const Tensor& x, Tensor& y, const Tensor& r,
                   const ForwardContext& ctx) {
  layer.forward(x, y, ctx);
  double sum = 0.0;
  for (std::size_t i = 0; i < y.size(); ++i) sum += static_cast<double>(y[i]) * r[i];
  return sum;
}

/// Compares analytic[i] with the numeric derivative with respect to values[i], for every i.
inline void compare(Layer& layer, const Tensor& x, Tensor& values, const FloatBuffer& analytic,
                    const std::string& label, const Tensor& r, const ForwardContext& ctx,
                    const GradCheckOptions& opt, double l_zero, GradCheckResult& result) {
  Tensor y;
  for (std::size_t i = 0; i < values.size(); ++i) {
    const float saved = values[i];
    const float plus = static_cast<float>(saved + opt.step);
    const float minus = static_cast<float>(saved - opt.step);
    values[i] = plus;
    const double l_plus = loss(layer, x, y, r, ctx);
    values[i] = minus;
    const double l_minus = loss(layer, x, y, r, ctx);
    values[i] = saved;
    const double numeric = (l_plus - l_minus) / (static_cast<double>(plus) - minus);
    const double a = analytic[i];
    const double scale = std::max({opt.abs_floor, std::abs(a), std::abs(numeric)});
    const double error = std::abs(a - numeric) / scale;
    ++result.checked;
    if (!(error <= opt.rel_tolerance)) {
      const double forward_diff = (l_plus - l_zero) / (static_cast<double>(plus) - saved);
      const double backward_diff = (l_zero - l_minus) / (static_cast<double>(saved) - minus);
      if (std::abs(forward_diff - backward_diff) > std::abs(a - numeric)) {
        ++result.skipped;
        continue;
      }
    }
    if (!(error <= result.max_error)) result.max_error = error;  // also catches NaN
    if (!(error <= opt.rel_tolerance)) {
      ++result.failed;
      if (result.failures.size() < opt.max_reported) {
        std::ostringstream f;
        f << label << "[" << i << "]: analytic " << a << " numeric " << numeric;
        result.failures.push_back(f.str());
      }
    }
  }
}

}  // namespace grad_check_detail

/// Checks dx and every Param's gradient of `layer` at input `x` (forward and backward run with
/// `ctx`). Leaves the layer's parameter values as they were; overwrites their gradients.
inline GradCheckResult check_gradients(Layer& layer, const Tensor& x, const ForwardContext& ctx,
                                       const GradCheckOptions& opt = {}) {
  GradCheckResult result;
  Tensor y;
  layer.forward(x, y, ctx);
  Tensor r(y.shape());
  Rng rng({opt.seed, 0, 0}, 0x4752414443484Bull);
  for (std::size_t i = 0; i < r.size(); ++i) r[i] = static_cast<float>(rng.uniform(-1.0, 1.0));

  // Analytic: one forward and backward with dL/dy = R, from zeroed gradients.
  const std::vector<Param*> params = layer.params();
  for (Param* p : params) p->grad.fill(0.0f);
  layer.forward(x, y, ctx);
  Tensor dx;
  layer.backward(x, y, r, dx);
  if (!(dx.shape() == x.shape())) {
    result.failed = 1;
    result.failures.push_back("dx has shape " + dx.shape().str() + ", x has " + x.shape().str());
    return result;
  }
  std::vector<FloatBuffer> param_grads;
  for (Param* p : params) param_grads.push_back(p->grad.storage());

  // Numeric, input first (on a copy: perturbing the caller's tensor would be a surprise).
  Tensor xc = x;
  const double l_zero = grad_check_detail::loss(layer, xc, y, r, ctx);
  grad_check_detail::compare(layer, xc, xc, dx.storage(), "dx", r, ctx, opt, l_zero, result);
  for (std::size_t k = 0; k < params.size(); ++k)
    grad_check_detail::compare(layer, xc, params[k]->value, param_grads[k],
                               params[k]->name.empty() ? "param" : params[k]->name, r, ctx, opt,
                               l_zero, result);
  return result;
}

}  // namespace augflow::model
