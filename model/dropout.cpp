#include "model/dropout.hpp"

#include <charconv>

#include "common/error.hpp"
#include "common/format.hpp"
#include "model/parallel.hpp"

namespace augflow::model {

Dropout::Dropout(double p) : p_(p) {
  if (!(p_ >= 0.0 && p_ < 1.0))
    throw SpecError(spec() + ": the drop probability must be in [0, 1) (1 would drop every unit)",
                    spec());
}

std::string Dropout::spec() const {
  return "drop" + format_number(p_);
}

void Dropout::forward(const Tensor& x, Tensor& y, const ForwardContext& ctx) {
  const Shape shape = x.shape();
  y.resize(shape);
  masked_ = ctx.mode == Mode::train && p_ > 0.0;
  if (!masked_) {
    std::copy(x.data(), x.data() + x.size(), y.data());
    return;
  }
  mask_.resize(x.size());
  const std::size_t per = shape.per_sample();
  const double keep = 1.0 - p_;
  const float scale = static_cast<float>(1.0 / keep);
  for_each_chunk(shape.n, x.size() * 4, [&](int, int begin, int end) {
    for (int i = begin; i < end; ++i) {
      Rng rng = ctx.rng(i);
      float* m = mask_.data() + i * per;
      const float* xs = x.sample(i);
      float* ys = y.sample(i);
      for (std::size_t j = 0; j < per; ++j) {
        m[j] = rng.bernoulli(keep) ? scale : 0.0f;
        ys[j] = xs[j] * m[j];
      }
    }
  });
}

void Dropout::backward(const Tensor& x, const Tensor& y, const Tensor& dy, Tensor& dx) {
  (void)y;
  dx.resize(x.shape());
  if (!masked_) {
    std::copy(dy.data(), dy.data() + dy.size(), dx.data());
    return;
  }
  const std::size_t per = x.shape().per_sample();
  for_each_chunk(x.shape().n, x.size(), [&](int, int begin, int end) {
    const std::size_t to = static_cast<std::size_t>(end) * per;
    for (std::size_t j = static_cast<std::size_t>(begin) * per; j < to; ++j)
      dx[j] = dy[j] * mask_[j];
  });
}

}  // namespace augflow::model
