#include "model/activation.hpp"

#include <charconv>
#include <cmath>

#include "common/error.hpp"
#include "common/format.hpp"
#include "model/parallel.hpp"

namespace augflow::model {
namespace {

/// Applies out[i] = f(i) over the whole tensor, in batch chunks (elements are independent).
template <typename F>
void elementwise(const Shape& shape, F&& f) {
  const std::size_t per = shape.per_sample();
  for_each_chunk(shape.n, shape.size(), [&](int, int begin, int end) {
    const std::size_t to = static_cast<std::size_t>(end) * per;
    for (std::size_t i = static_cast<std::size_t>(begin) * per; i < to; ++i) f(i);
  });
}

}  // namespace

void ReLU::forward(const Tensor& x, Tensor& y, const ForwardContext& ctx) {
  (void)ctx;
  y.resize(x.shape());
  const float* xs = x.data();
  float* ys = y.data();
  elementwise(x.shape(), [&](std::size_t i) { ys[i] = xs[i] > 0.0f ? xs[i] : 0.0f; });
}

void ReLU::backward(const Tensor& x, const Tensor& y, const Tensor& dy, Tensor& dx) {
  (void)y;
  dx.resize(x.shape());
  const float* xs = x.data();
  const float* g = dy.data();
  float* d = dx.data();
  elementwise(x.shape(), [&](std::size_t i) { d[i] = xs[i] > 0.0f ? g[i] : 0.0f; });
}

LeakyReLU::LeakyReLU(double slope) : slope_(slope) {
  if (!(slope_ >= 0.0 && slope_ < 1.0))
    throw SpecError(spec() + ": the slope must be in [0, 1)", spec());
}

std::string LeakyReLU::spec() const {
  if (slope_ == kDefaultSlope) return "lrelu";
  return "lrelu" + format_number(slope_);
}

void LeakyReLU::forward(const Tensor& x, Tensor& y, const ForwardContext& ctx) {
  (void)ctx;
  y.resize(x.shape());
  const float a = static_cast<float>(slope_);
  const float* xs = x.data();
  float* ys = y.data();
  elementwise(x.shape(), [&](std::size_t i) { ys[i] = xs[i] > 0.0f ? xs[i] : a * xs[i]; });
}

void LeakyReLU::backward(const Tensor& x, const Tensor& y, const Tensor& dy, Tensor& dx) {
  (void)y;
  dx.resize(x.shape());
  const float a = static_cast<float>(slope_);
  const float* xs = x.data();
  const float* g = dy.data();
  float* d = dx.data();
  elementwise(x.shape(), [&](std::size_t i) { d[i] = xs[i] > 0.0f ? g[i] : a * g[i]; });
}

void Tanh::forward(const Tensor& x, Tensor& y, const ForwardContext& ctx) {
  (void)ctx;
  y.resize(x.shape());
  const float* xs = x.data();
  float* ys = y.data();
  elementwise(x.shape(), [&](std::size_t i) { ys[i] = std::tanh(xs[i]); });
}

void Tanh::backward(const Tensor& x, const Tensor& y, const Tensor& dy, Tensor& dx) {
  dx.resize(x.shape());
  const float* ys = y.data();
  const float* g = dy.data();
  float* d = dx.data();
  elementwise(x.shape(), [&](std::size_t i) { d[i] = g[i] * (1.0f - ys[i] * ys[i]); });
}

}  // namespace augflow::model
