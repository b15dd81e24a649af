#include "model/batch_norm.hpp"

#include <cmath>

#include "common/error.hpp"
#include "model/parallel.hpp"

namespace augflow::model {

BatchNorm::BatchNorm(const Shape& in) : c_(in.c), h_(in.h), w_(in.w) {
  if (c_ < 1 || h_ < 1 || w_ < 1) throw ShapeError("bn: empty input " + in.str());
  const Shape per_channel{1, c_, 1, 1};
  gamma_.value = Tensor(per_channel, 1.0f);
  gamma_.grad = Tensor(per_channel);
  gamma_.regularized = false;
  beta_.value = Tensor(per_channel);
  beta_.grad = Tensor(per_channel);
  beta_.regularized = false;
  running_mean_ = Tensor(per_channel);
  running_var_ = Tensor(per_channel, 1.0f);
  mean_.resize(c_);
  inv_std_.resize(c_);
  set_param_prefix("bn");
}

void BatchNorm::set_param_prefix(const std::string& prefix) {
  gamma_.name = prefix + ".gamma";
  beta_.name = prefix + ".beta";
}

Shape BatchNorm::output_shape(const Shape& in) const {
  if (in.c != c_ || in.h != h_ || in.w != w_)
    throw ShapeError("bn: built for inputs of " + std::to_string(c_) + "x" + std::to_string(h_) +
                     "x" + std::to_string(w_) + " per sample, got " + in.str());
  return in;
}

void BatchNorm::initialize(Rng& rng) {
  (void)rng;
  gamma_.value.fill(1.0f);
  beta_.value.fill(0.0f);
  running_mean_.fill(0.0f);
  running_var_.fill(1.0f);
}

namespace {

/// The sum of term(j) over [0, len): 16 float lanes, then added up in double. The order is
/// fixed (the same whatever thread runs it) and lets the compiler vectorise the lanes, which a
/// single running sum would forbid.
template <typename Term>
double lane_sum(std::size_t len, Term&& term) {
  constexpr std::size_t kLanes = 16;
  float lanes[kLanes] = {};
  std::size_t j = 0;
  for (; j + kLanes <= len; j += kLanes)
    for (std::size_t l = 0; l < kLanes; ++l) lanes[l] += term(j + l);
  double total = 0.0;
  for (; j < len; ++j) total += term(j);
  for (float lane : lanes) total += lane;
  return total;
}

}  // namespace

void BatchNorm::forward(const Tensor& x, Tensor& y, const ForwardContext& ctx) {
  const Shape shape = output_shape(x.shape());
  y.resize(shape);
  train_ = ctx.mode == Mode::train;
  const int n = shape.n;
  const std::size_t hw = static_cast<std::size_t>(h_) * w_;
  const std::size_t per = shape.per_sample();
  const double count = static_cast<double>(n) * hw;
  for_each_range(c_, x.size(), [&](int c_begin, int c_end) {
    for (int c = c_begin; c < c_end; ++c) {
      if (train_) {
        if (n == 0) continue;
        double sum = 0.0;
        for (int i = 0; i < n; ++i) {
          const float* __restrict p = x.data() + i * per + c * hw;
          sum += lane_sum(hw, [p](std::size_t j) { return p[j]; });
        }
        const double mean = sum / count;
        const float m = static_cast<float>(mean);
        double sq = 0.0;
        for (int i = 0; i < n; ++i) {
          const float* __restrict p = x.data() + i * per + c * hw;
          sq += lane_sum(hw, [p, m](std::size_t j) { return (p[j] - m) * (p[j] - m); });
        }
        const double var = sq / count;  // biased: what the batch is normalised with
        mean_[c] = m;
        inv_std_[c] = static_cast<float>(1.0 / std::sqrt(var + kEps));
        running_mean_[c] = static_cast<float>((1.0 - kMomentum) * running_mean_[c] + kMomentum * mean);
        if (count > 1)
          running_var_[c] = static_cast<float>((1.0 - kMomentum) * running_var_[c] +
                                               kMomentum * sq / (count - 1.0));
      } else {
        mean_[c] = running_mean_[c];
        inv_std_[c] = static_cast<float>(1.0 / std::sqrt(static_cast<double>(running_var_[c]) + kEps));
      }
      const float scale = gamma_.value[c] * inv_std_[c];
      const float shift = beta_.value[c] - mean_[c] * scale;
      for (int i = 0; i < n; ++i) {
        const float* __restrict p = x.data() + i * per + c * hw;
        float* __restrict q = y.data() + i * per + c * hw;
        for (std::size_t j = 0; j < hw; ++j) q[j] = p[j] * scale + shift;
      }
    }
  });
}

void BatchNorm::backward(const Tensor& x, const Tensor& y, const Tensor& dy, Tensor& dx) {
  (void)y;
  const Shape shape = x.shape();
  dx.resize(shape);
  const int n = shape.n;
  const std::size_t hw = static_cast<std::size_t>(h_) * w_;
  const std::size_t per = shape.per_sample();
  const double count = static_cast<double>(n) * hw;
  for_each_range(c_, x.size(), [&](int c_begin, int c_end) {
    for (int c = c_begin; c < c_end; ++c) {
      const float m = mean_[c];
      const double inv_std = inv_std_[c];
      double sum_dy = 0.0, sum_dy_centred = 0.0;
      for (int i = 0; i < n; ++i) {
        const float* __restrict p = x.data() + i * per + c * hw;
        const float* __restrict g = dy.data() + i * per + c * hw;
        sum_dy += lane_sum(hw, [g](std::size_t j) { return g[j]; });
        sum_dy_centred += lane_sum(hw, [p, g, m](std::size_t j) { return g[j] * (p[j] - m); });
      }
      const double sum_dy_xhat = sum_dy_centred * inv_std;
      gamma_.grad[c] += static_cast<float>(sum_dy_xhat);
      beta_.grad[c] += static_cast<float>(sum_dy);
      const double gamma = gamma_.value[c];
      // Train: the batch statistics depend on x, so
      //   dx = gamma * inv_std * (dy - mean(dy) - xhat * mean(dy * xhat)),
      // computed as k * dy + slope * (x - mean) + offset. Test: the statistics are constants,
      // dx = gamma * inv_std * dy.
      const double mean_dy = train_ ? sum_dy / count : 0.0;
      const double mean_dy_xhat = train_ ? sum_dy_xhat / count : 0.0;
      const double k = gamma * inv_std;
      const float kf = static_cast<float>(k);
      const float slope = static_cast<float>(-k * inv_std * mean_dy_xhat);
      const float offset = static_cast<float>(-k * mean_dy);
      for (int i = 0; i < n; ++i) {
        const float* __restrict p = x.data() + i * per + c * hw;
        const float* __restrict g = dy.data() + i * per + c * hw;
        float* __restrict d = dx.data() + i * per + c * hw;
        for (std::size_t j = 0; j < hw; ++j) d[j] = kf * g[j] + slope * (p[j] - m) + offset;
      }
    }
  });
}

}  // namespace augflow::model
