#include "model/pool.hpp"

#include <algorithm>

#include "common/error.hpp"
#include "model/parallel.hpp"

namespace augflow::model {
namespace {

Shape window_output(const std::string& token, int k, const Shape& in) {
  if (in.h < k || in.w < k)
    throw ShapeError(token + ": input " + in.str() + " is smaller than the " + std::to_string(k) +
                     "x" + std::to_string(k) + " window");
  return {in.n, in.c, in.h / k, in.w / k};
}

void check_window(const std::string& token, int k, const Shape& in) {
  if (k < 1) throw SpecError(token + ": the window size must be at least 1", token);
  window_output(token, k, in);
}

}  // namespace

MaxPool::MaxPool(const Shape& in, int k) : k_(k) { check_window(spec(), k_, in); }

Shape MaxPool::output_shape(const Shape& in) const { return window_output(spec(), k_, in); }

void MaxPool::forward(const Tensor& x, Tensor& y, const ForwardContext& ctx) {
  (void)ctx;
  const Shape in = x.shape();
  const Shape out = output_shape(in);
  y.resize(out);
  argmax_.resize(out.size());
  const int k = k_;
  for_each_chunk(in.n, x.size(), [&](int, int begin, int end) {
    for (int i = begin; i < end; ++i) {
      const float* xs = x.sample(i);
      float* ys = y.sample(i);
      std::int32_t* am = argmax_.data() + static_cast<std::size_t>(i) * out.per_sample();
      for (int c = 0; c < in.c; ++c) {
        for (int oh = 0; oh < out.h; ++oh) {
          for (int ow = 0; ow < out.w; ++ow) {
            int best = (c * in.h + oh * k) * in.w + ow * k;
            for (int di = 0; di < k; ++di) {
              const int row = (c * in.h + oh * k + di) * in.w + ow * k;
              for (int dj = 0; dj < k; ++dj)
                if (xs[row + dj] > xs[best]) best = row + dj;
            }
            const int o = (c * out.h + oh) * out.w + ow;
            ys[o] = xs[best];
            am[o] = best;
          }
        }
      }
    }
  });
}

void MaxPool::backward(const Tensor& x, const Tensor& y, const Tensor& dy, Tensor& dx) {
  (void)y;
  const Shape in = x.shape();
  const std::size_t out_per_sample = dy.shape().per_sample();
  dx.resize(in);
  for_each_chunk(in.n, x.size(), [&](int, int begin, int end) {
    for (int i = begin; i < end; ++i) {
      float* dxs = dx.sample(i);
      std::fill(dxs, dxs + in.per_sample(), 0.0f);
      const float* dys = dy.sample(i);
      const std::int32_t* am = argmax_.data() + static_cast<std::size_t>(i) * out_per_sample;
      // Windows do not overlap (stride = k): each input receives at most one value.
      for (std::size_t o = 0; o < out_per_sample; ++o) dxs[am[o]] += dys[o];
    }
  });
}

AvgPool::AvgPool(const Shape& in, int k) : k_(k) { check_window(spec(), k_, in); }

Shape AvgPool::output_shape(const Shape& in) const { return window_output(spec(), k_, in); }

void AvgPool::forward(const Tensor& x, Tensor& y, const ForwardContext& ctx) {
  (void)ctx;
  const Shape in = x.shape();
  const Shape out = output_shape(in);
  y.resize(out);
  const int k = k_;
  const float scale = 1.0f / static_cast<float>(k * k);
  for_each_chunk(in.n, x.size(), [&](int, int begin, int end) {
    for (int i = begin; i < end; ++i) {
      const float* xs = x.sample(i);
      float* ys = y.sample(i);
      for (int c = 0; c < in.c; ++c)
        for (int oh = 0; oh < out.h; ++oh)
          for (int ow = 0; ow < out.w; ++ow) {
            float sum = 0.0f;
            for (int di = 0; di < k; ++di) {
              const float* row = xs + (c * in.h + oh * k + di) * in.w + ow * k;
              for (int dj = 0; dj < k; ++dj) sum += row[dj];
            }
            ys[(c * out.h + oh) * out.w + ow] = sum * scale;
          }
    }
  });
}

void AvgPool::backward(const Tensor& x, const Tensor& y, const Tensor& dy, Tensor& dx) {
  (void)y;
  const Shape in = x.shape();
  const Shape out = dy.shape();
  dx.resize(in);
  const int k = k_;
  const float scale = 1.0f / static_cast<float>(k * k);
  for_each_chunk(in.n, x.size(), [&](int, int begin, int end) {
    for (int i = begin; i < end; ++i) {
      float* dxs = dx.sample(i);
      std::fill(dxs, dxs + in.per_sample(), 0.0f);
      const float* dys = dy.sample(i);
      for (int c = 0; c < in.c; ++c)
        for (int oh = 0; oh < out.h; ++oh)
          for (int ow = 0; ow < out.w; ++ow) {
            const float g = dys[(c * out.h + oh) * out.w + ow] * scale;
            for (int di = 0; di < k; ++di) {
              float* row = dxs + (c * in.h + oh * k + di) * in.w + ow * k;
              for (int dj = 0; dj < k; ++dj) row[dj] = g;
            }
          }
    }
  });
}

Shape GlobalAvgPool::output_shape(const Shape& in) const {
  if (in.c < 1 || in.h < 1 || in.w < 1) throw ShapeError("gap: empty input " + in.str());
  return {in.n, in.c, 1, 1};
}

void GlobalAvgPool::forward(const Tensor& x, Tensor& y, const ForwardContext& ctx) {
  (void)ctx;
  const Shape in = x.shape();
  y.resize(output_shape(in));
  const int hw = in.h * in.w;
  const float scale = 1.0f / static_cast<float>(hw);
  for_each_chunk(in.n, x.size(), [&](int, int begin, int end) {
    for (int i = begin; i < end; ++i)
      for (int c = 0; c < in.c; ++c) {
        const float* plane = x.sample(i) + static_cast<std::size_t>(c) * hw;
        float sum = 0.0f;
        for (int j = 0; j < hw; ++j) sum += plane[j];
        y.sample(i)[c] = sum * scale;
      }
  });
}

void GlobalAvgPool::backward(const Tensor& x, const Tensor& y, const Tensor& dy, Tensor& dx) {
  (void)y;
  const Shape in = x.shape();
  dx.resize(in);
  const int hw = in.h * in.w;
  const float scale = 1.0f / static_cast<float>(hw);
  for_each_chunk(in.n, x.size(), [&](int, int begin, int end) {
    for (int i = begin; i < end; ++i)
      for (int c = 0; c < in.c; ++c) {
        float* plane = dx.sample(i) + static_cast<std::size_t>(c) * hw;
        std::fill(plane, plane + hw, dy.sample(i)[c] * scale);
      }
  });
}

Shape Flatten::output_shape(const Shape& in) const {
  return {in.n, static_cast<int>(in.per_sample()), 1, 1};
}

void Flatten::forward(const Tensor& x, Tensor& y, const ForwardContext& ctx) {
  (void)ctx;
  y.resize(output_shape(x.shape()));
  std::copy(x.data(), x.data() + x.size(), y.data());
}

void Flatten::backward(const Tensor& x, const Tensor& y, const Tensor& dy, Tensor& dx) {
  (void)y;
  dx.resize(x.shape());
  std::copy(dy.data(), dy.data() + dy.size(), dx.data());
}

}  // namespace augflow::model
