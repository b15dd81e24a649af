#include "model/activation.hpp"

#include <charconv>
#include <cmath>

#include "common/error.hpp"
#include "common/format.hpp"
#include "model/parallel.hpp"

namespace augflow::model {
namespace {

/// Runs f(from, to) over the whole tensor's element range, in batch chunks (elements are
/// independent). The kernels below loop over [from, to) through local __restrict pointers with
/// branch-free bodies (every load unconditional), which is what lets the compiler vectorise
/// them: a `x > 0 ? g : 0` whose g is loaded only when taken compiles to a mispredicted branch
/// per element.
template <typename F>
void elementwise(const Shape& shape, F&& f) {
  const std::size_t per = shape.per_sample();
  for_each_chunk(shape.n, shape.size(), [&](int, int begin, int end) {
    f(static_cast<std::size_t>(begin) * per, static_cast<std::size_t>(end) * per);
  });
}

}  // namespace

void ReLU::forward(const Tensor& x, Tensor& y, const ForwardContext& ctx) {
  (void)ctx;
  y.resize(x.shape());
  const float* __restrict xs = x.data();
  float* __restrict ys = y.data();
  elementwise(x.shape(), [=](std::size_t from, std::size_t to) {
    for (std::size_t i = from; i < to; ++i) ys[i] = xs[i] > 0.0f ? xs[i] : 0.0f;
  });
}

void ReLU::backward(const Tensor& x, const Tensor& y, const Tensor& dy, Tensor& dx) {
  (void)y;
  dx.resize(x.shape());
  const float* __restrict xs = x.data();
  const float* __restrict g = dy.data();
  float* __restrict d = dx.data();
  elementwise(x.shape(), [=](std::size_t from, std::size_t to) {
    for (std::size_t i = from; i < to; ++i) {
      const float gi = g[i];
      d[i] = xs[i] > 0.0f ? gi : 0.0f;
    }
  });
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
  const float* __restrict xs = x.data();
  float* __restrict ys = y.data();
  elementwise(x.shape(), [=](std::size_t from, std::size_t to) {
    for (std::size_t i = from; i < to; ++i) ys[i] = xs[i] > 0.0f ? xs[i] : a * xs[i];
  });
}

void LeakyReLU::backward(const Tensor& x, const Tensor& y, const Tensor& dy, Tensor& dx) {
  (void)y;
  dx.resize(x.shape());
  const float a = static_cast<float>(slope_);
  const float* __restrict xs = x.data();
  const float* __restrict g = dy.data();
  float* __restrict d = dx.data();
  elementwise(x.shape(), [=](std::size_t from, std::size_t to) {
    for (std::size_t i = from; i < to; ++i) {
      const float gi = g[i];
      d[i] = xs[i] > 0.0f ? gi : a * gi;
    }
  });
}

void Tanh::forward(const Tensor& x, Tensor& y, const ForwardContext& ctx) {
  (void)ctx;
  y.resize(x.shape());
  const float* __restrict xs = x.data();
  float* __restrict ys = y.data();
  elementwise(x.shape(), [=](std::size_t from, std::size_t to) {
    for (std::size_t i = from; i < to; ++i) ys[i] = std::tanh(xs[i]);
  });
}

void Tanh::backward(const Tensor& x, const Tensor& y, const Tensor& dy, Tensor& dx) {
  dx.resize(x.shape());
  const float* __restrict ys = y.data();
  const float* __restrict g = dy.data();
  float* __restrict d = dx.data();
  elementwise(x.shape(), [=](std::size_t from, std::size_t to) {
    for (std::size_t i = from; i < to; ++i) d[i] = g[i] * (1.0f - ys[i] * ys[i]);
  });
}

}  // namespace augflow::model
