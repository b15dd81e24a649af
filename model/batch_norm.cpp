#include "model/batch_norm.hpp"

#include <algorithm>
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
/// single running sum would forbid. The whole-batch and the shared-batch (data-parallel) paths
/// must give the same bits, and GCC fuses a * b + c into one FMA (its C++ default) as it sees fit
/// in each inlined copy: restructuring these sums can split the two paths' bits, which the
/// Parallel.* tests catch and the layer tests do not.
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

/// lane_sum of d and of d * d, d = p[j] - shift, in one read of p.
void shifted_sums(const float* __restrict p, std::size_t len, float shift, double& sum, double& sum_sq) {
  constexpr std::size_t kLanes = 16;
  float lanes[kLanes] = {}, sq_lanes[kLanes] = {};
  std::size_t j = 0;
  for (; j + kLanes <= len; j += kLanes)
    for (std::size_t l = 0; l < kLanes; ++l) {
      const float d = p[j + l] - shift;
      lanes[l] += d;
      sq_lanes[l] += d * d;
    }
  double s = 0.0, sq = 0.0;
  for (; j < len; ++j) {
    const float d = p[j] - shift;
    s += d;
    sq += static_cast<double>(d) * d;
  }
  for (std::size_t l = 0; l < kLanes; ++l) s += lanes[l], sq += sq_lanes[l];
  sum += s;
  sum_sq += sq;
}

}  // namespace

void BatchNorm::forward(const Tensor& x, Tensor& y, const ForwardContext& ctx) {
  y.resize(output_shape(x.shape()));
  run_forward(x, &y, ctx);
}

void BatchNorm::statistics(const Tensor& x, const ForwardContext& ctx) {
  if (fused_relu_) throw Error("bn: statistics() is for a batch norm without its fused ReLU");
  run_forward(x, nullptr, ctx);
}

void BatchNorm::run_forward(const Tensor& x, Tensor* y, const ForwardContext& ctx) {
  const Shape shape = output_shape(x.shape());
  train_ = ctx.mode == Mode::train;
  const int n = shape.n;
  const std::size_t hw = static_cast<std::size_t>(h_) * w_;
  const std::size_t per = shape.per_sample();
  const bool relu = fused_relu_;
  const ChunkLayout layout(n);
  const std::vector<int> samples = chunk_samples(layout);
  double count = 0.0;
  for (int s : samples) count += static_cast<double>(s) * hw;
  // Train: one read of the batch per chunk gives the sums of d = x - K and of d^2, K the mean of
  // the chunk's first plane, which is close to the chunk's mean, so that E[d^2] - E[d]^2 does not
  // cancel (the shifted-data algorithm; an unshifted one-pass variance would). Each chunk's mean
  // and centred sum of squares are then combined in chunk order (Chan et al.): a fixed order,
  // into which the chunks held by other processes (data-parallel training) enter as they would
  // here. `stats` holds (mean, m2) per chunk and channel: [chunk][channel][2].
  std::vector<double> stats(train_ ? static_cast<std::size_t>(layout.count) * 2 * c_ : 0, 0.0);
  const auto chunk_statistics = [&](int c) {
    for (int chunk = 0; chunk < layout.count; ++chunk) {
      if (layout.end(chunk) == layout.begin(chunk)) continue;
      const float* first = x.data() + layout.begin(chunk) * per + c * hw;
      const float shift = static_cast<float>(lane_sum(hw, [first](std::size_t j) { return first[j]; }) / hw);
      double sum = 0.0, sum_sq = 0.0;
      for (int i = layout.begin(chunk); i < layout.end(chunk); ++i)
        shifted_sums(x.data() + i * per + c * hw, hw, shift, sum, sum_sq);
      const double values = static_cast<double>(layout.end(chunk) - layout.begin(chunk)) * hw;
      double* out = stats.data() + (static_cast<std::size_t>(chunk) * c_ + c) * 2;
      out[0] = shift + sum / values;
      out[1] = std::max(0.0, sum_sq - sum * sum / values);
    }
  };
  // The channel's statistics from every chunk's (in `all`, laid out as `stats`), then its output.
  const auto finish_channel = [&](int c, const double* all) {
    if (train_ && count > 0) {
      double mean = 0.0, m2 = 0.0, seen = 0.0;
      for (std::size_t chunk = 0; chunk < samples.size(); ++chunk) {
        if (samples[chunk] == 0) continue;
        const double* part = all + (chunk * c_ + c) * 2;
        const double values = static_cast<double>(samples[chunk]) * hw;
        const double total = seen + values, delta = part[0] - mean;
        mean += delta * values / total;
        m2 += part[1] + delta * delta * seen * values / total;
        seen = total;
      }
      const double var = m2 / count;  // biased: what the batch is normalised with
      mean_[c] = static_cast<float>(mean);
      inv_std_[c] = static_cast<float>(1.0 / std::sqrt(var + kEps));
      running_mean_[c] = static_cast<float>((1.0 - kMomentum) * running_mean_[c] + kMomentum * mean);
      if (count > 1)
        running_var_[c] = static_cast<float>((1.0 - kMomentum) * running_var_[c] + kMomentum * m2 / (count - 1.0));
    } else if (!train_) {
      mean_[c] = running_mean_[c];
      inv_std_[c] = static_cast<float>(1.0 / std::sqrt(static_cast<double>(running_var_[c]) + kEps));
    }
    if (!y) return;  // statistics(): the caller applies scale(c) and shift(c) itself
    const float channel_scale = scale(c), channel_shift = shift(c);
    for (int i = 0; i < n; ++i) {
      const float* __restrict p = x.data() + i * per + c * hw;
      float* __restrict q = y->data() + i * per + c * hw;
      if (relu) {
        for (std::size_t j = 0; j < hw; ++j) {
          const float z = p[j] * channel_scale + channel_shift;
          q[j] = z > 0.0f ? z : 0.0f;
        }
      } else {
        for (std::size_t j = 0; j < hw; ++j) q[j] = p[j] * channel_scale + channel_shift;
      }
    }
  };
  if (!train_ || layout.whole()) {
    // Every chunk is here: statistics and output channel by channel, while its planes are in cache.
    for_each_range(c_, x.size(), [&](int c_begin, int c_end) {
      for (int c = c_begin; c < c_end; ++c) {
        if (train_) chunk_statistics(c);
        finish_channel(c, stats.data());
      }
    });
    return;
  }
  for_each_range(c_, x.size(), [&](int c_begin, int c_end) {
    for (int c = c_begin; c < c_end; ++c) chunk_statistics(c);
  });
  const std::vector<double> all = all_chunks(layout, stats, 2 * static_cast<std::size_t>(c_));
  for_each_range(c_, x.size(), [&](int c_begin, int c_end) {
    for (int c = c_begin; c < c_end; ++c) finish_channel(c, all.data());
  });
}

void BatchNorm::backward(const Tensor& x, const Tensor& y, const Tensor& dy, Tensor& dx) {
  const Shape shape = x.shape();
  dx.resize(shape);
  const int n = shape.n;
  const std::size_t hw = static_cast<std::size_t>(h_) * w_;
  const std::size_t per = shape.per_sample();
  // With the fused ReLU the normalised value's gradient is dy where the output is positive and 0
  // elsewhere; reading the mask from y (every load unconditional) keeps the loops branch-free.
  const bool relu = fused_relu_;
  const ChunkLayout layout(n);
  const std::vector<int> samples = chunk_samples(layout);
  double count = 0.0;
  for (int s : samples) count += static_cast<double>(s) * hw;
  // Per chunk in double, then added in chunk order over the whole batch (as the statistics):
  // [chunk][channel][2] = (sum of dy, sum of dy * (x - mean)).
  std::vector<double> sums(static_cast<std::size_t>(layout.count) * 2 * c_, 0.0);
  const auto chunk_sums = [&](int c) {
    const float m = mean_[c];
    for (int chunk = 0; chunk < layout.count; ++chunk) {
      double chunk_dy = 0.0, chunk_dy_centred = 0.0;
      for (int i = layout.begin(chunk); i < layout.end(chunk); ++i) {
        const float* __restrict p = x.data() + i * per + c * hw;
        const float* __restrict g = dy.data() + i * per + c * hw;
        if (relu) {
          const float* __restrict o = y.data() + i * per + c * hw;
          chunk_dy += lane_sum(hw, [g, o](std::size_t j) { return o[j] > 0.0f ? g[j] : 0.0f; });
          chunk_dy_centred += lane_sum(hw, [p, g, o, m](std::size_t j) { return (o[j] > 0.0f ? g[j] : 0.0f) * (p[j] - m); });
        } else {
          chunk_dy += lane_sum(hw, [g](std::size_t j) { return g[j]; });
          chunk_dy_centred += lane_sum(hw, [p, g, m](std::size_t j) { return g[j] * (p[j] - m); });
        }
      }
      double* out = sums.data() + (static_cast<std::size_t>(chunk) * c_ + c) * 2;
      out[0] = chunk_dy;
      out[1] = chunk_dy_centred;
    }
  };
  const auto finish_channel = [&](int c, const double* all) {
    const float m = mean_[c];
    const double inv_std = inv_std_[c];
    double sum_dy = 0.0, sum_dy_centred = 0.0;
    for (std::size_t chunk = 0; chunk < samples.size(); ++chunk) {
      if (samples[chunk] == 0) continue;
      sum_dy += all[(chunk * c_ + c) * 2];
      sum_dy_centred += all[(chunk * c_ + c) * 2 + 1];
    }
    const double sum_dy_xhat = sum_dy_centred * inv_std;
    gamma_.grad[c] += static_cast<float>(sum_dy_xhat);
    beta_.grad[c] += static_cast<float>(sum_dy);
    const double gamma = gamma_.value[c];
    // Train: the batch statistics depend on x, so
    //   dx = gamma * inv_std * (dy - mean(dy) - xhat * mean(dy * xhat)),
    // computed as k * dy + slope * (x - mean) + offset. Test: the statistics are constants,
    // dx = gamma * inv_std * dy.
    const double mean_dy = train_ && count > 0 ? sum_dy / count : 0.0;
    const double mean_dy_xhat = train_ && count > 0 ? sum_dy_xhat / count : 0.0;
    const double k = gamma * inv_std;
    const float kf = static_cast<float>(k);
    const float slope = static_cast<float>(-k * inv_std * mean_dy_xhat);
    const float offset = static_cast<float>(-k * mean_dy);
    for (int i = 0; i < n; ++i) {
      const float* __restrict p = x.data() + i * per + c * hw;
      const float* __restrict g = dy.data() + i * per + c * hw;
      float* __restrict d = dx.data() + i * per + c * hw;
      if (relu) {
        const float* __restrict o = y.data() + i * per + c * hw;
        for (std::size_t j = 0; j < hw; ++j) d[j] = kf * (o[j] > 0.0f ? g[j] : 0.0f) + slope * (p[j] - m) + offset;
      } else {
        for (std::size_t j = 0; j < hw; ++j) d[j] = kf * g[j] + slope * (p[j] - m) + offset;
      }
    }
  };
  if (layout.whole()) {
    // Every chunk is here: sums and dx channel by channel, while its planes are in cache.
    for_each_range(c_, x.size(), [&](int c_begin, int c_end) {
      for (int c = c_begin; c < c_end; ++c) {
        chunk_sums(c);
        finish_channel(c, sums.data());
      }
    });
    return;
  }
  for_each_range(c_, x.size(), [&](int c_begin, int c_end) {
    for (int c = c_begin; c < c_end; ++c) chunk_sums(c);
  });
  const std::vector<double> all = all_chunks(layout, sums, 2 * static_cast<std::size_t>(c_));
  for_each_range(c_, x.size(), [&](int c_begin, int c_end) {
    for (int c = c_begin; c < c_end; ++c) finish_channel(c, all.data());
  });
}

}  // namespace augflow::model
