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
          const float* p = x.data() + i * per + c * hw;
          for (std::size_t j = 0; j < hw; ++j) sum += p[j];
        }
        const double mean = sum / count;
        double sq = 0.0;
        for (int i = 0; i < n; ++i) {
          const float* p = x.data() + i * per + c * hw;
          for (std::size_t j = 0; j < hw; ++j) sq += (p[j] - mean) * (p[j] - mean);
        }
        const double var = sq / count;  // biased: what the batch is normalised with
        mean_[c] = static_cast<float>(mean);
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
        const float* p = x.data() + i * per + c * hw;
        float* q = y.data() + i * per + c * hw;
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
      const double mean = mean_[c];
      const double inv_std = inv_std_[c];
      double sum_dy = 0.0, sum_dy_xhat = 0.0;
      for (int i = 0; i < n; ++i) {
        const float* p = x.data() + i * per + c * hw;
        const float* g = dy.data() + i * per + c * hw;
        for (std::size_t j = 0; j < hw; ++j) {
          sum_dy += g[j];
          sum_dy_xhat += g[j] * (p[j] - mean) * inv_std;
        }
      }
      gamma_.grad[c] += static_cast<float>(sum_dy_xhat);
      beta_.grad[c] += static_cast<float>(sum_dy);
      const double gamma = gamma_.value[c];
      // Train: the batch statistics depend on x, so
      //   dx = gamma * inv_std * (dy - mean(dy) - xhat * mean(dy * xhat)).
      // Test: the statistics are constants, dx = gamma * inv_std * dy.
      const double mean_dy = train_ ? sum_dy / count : 0.0;
      const double mean_dy_xhat = train_ ? sum_dy_xhat / count : 0.0;
      const float k = static_cast<float>(gamma * inv_std);
      for (int i = 0; i < n; ++i) {
        const float* p = x.data() + i * per + c * hw;
        const float* g = dy.data() + i * per + c * hw;
        float* d = dx.data() + i * per + c * hw;
        for (std::size_t j = 0; j < hw; ++j) {
          const double xhat = (p[j] - mean) * inv_std;
          d[j] = k * static_cast<float>(g[j] - mean_dy - xhat * mean_dy_xhat);
        }
      }
    }
  });
}

}  // namespace augflow::model
